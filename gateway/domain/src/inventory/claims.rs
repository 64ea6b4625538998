//! Claims: one API operation at a time per instance. While an operation holds an
//! instance, no other operation may start on it and the inventory sync leaves it alone
//! (the operation records and meters its own outcome). Admissions: one quota check and
//! insert at a time per tenant. In-process: each replica of a scaled-out gateway would
//! need a shared lease instead.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use skyport_core::error::{ErrorKind, GatewayError};

/// The instances API operations hold now.
#[derive(Clone, Default)]
pub struct Claims {
    held: Arc<Mutex<HashSet<String>>>,
}

/// An operation's hold on one instance; released on drop.
pub struct Claim {
    id: String,
    held: Arc<Mutex<HashSet<String>>>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

impl Claims {
    /// Claims instance `id` for one API operation; 409 while another one holds it.
    pub fn claim(&self, id: &str) -> Result<Claim, GatewayError> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if !held.insert(id.to_string()) {
            return Err(GatewayError::new(
                ErrorKind::Conflict,
                format!("another operation on instance {id} is in progress; retry when it ends"),
            ));
        }
        Ok(Claim {
            id: id.to_string(),
            held: Arc::clone(&self.held),
        })
    }

    /// Whether an API operation holds instance `id`.
    pub fn is_claimed(&self, id: &str) -> bool {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_operation_per_instance_and_the_claim_ends_with_its_guard() {
        let claims = Claims::default();
        let claim = claims.claim("i-1").unwrap();
        assert!(claims.is_claimed("i-1"));
        assert_eq!(
            claims.claim("i-1").err().map(|e| e.kind),
            Some(ErrorKind::Conflict)
        );
        assert!(claims.claim("i-2").is_ok());
        drop(claim);
        assert!(!claims.is_claimed("i-1"));
        assert!(claims.claim("i-1").is_ok());
    }
}

/// One admission at a time per tenant: a quota check and the insert that relies on its
/// answer run under the tenant's lock, so concurrent orders never pass a quota together.
#[derive(Default)]
pub struct Admissions {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Admissions {
    /// Waits for `tenant`'s lock; held until the guard is dropped.
    pub async fn enter(&self, tenant: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = Arc::clone(
            self.locks
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(tenant.to_string())
                .or_default(),
        );
        lock.lock_owned().await
    }
}
