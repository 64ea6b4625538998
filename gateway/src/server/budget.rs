//! How many connections the API listener holds: at most a global number, and at most a
//! number per client address, both taken before the TLS handshake so that a peer that
//! opens connections and sends nothing costs no more than its share.

use std::net::IpAddr;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::per_key::{PerKeyLimit, Slot};

/// Descriptors kept out of the connection budget for everything else the gateway opens
/// (the metrics listener, plugin sockets, databases, log files).
pub(super) const DESCRIPTOR_RESERVE: usize = 256;

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refused {
    /// The listener holds its most connections.
    Global,
    /// This peer holds its most connections.
    Peer,
}

impl Refused {
    /// The metric label.
    pub(super) fn label(self) -> &'static str {
        match self {
            Self::Global => "global",
            Self::Peer => "peer",
        }
    }
}

/// The listener's connection budget.
pub(super) struct ConnectionBudget {
    global: Arc<Semaphore>,
    per_peer: PerKeyLimit<IpAddr>,
}

/// One connection's place in the budget; given back on drop.
pub(super) struct Admitted {
    _global: OwnedSemaphorePermit,
    _peer: Slot<IpAddr>,
}

impl ConnectionBudget {
    /// At most `global` connections, `per_peer` of them from one address.
    pub(super) fn new(global: usize, per_peer: usize) -> Self {
        Self {
            global: Arc::new(Semaphore::new(global)),
            per_peer: PerKeyLimit::new(per_peer),
        }
    }

    /// A connection from `peer`, if the budget has room for it.
    pub(super) fn admit(&self, peer: IpAddr) -> Result<Admitted, Refused> {
        let global = Arc::clone(&self.global)
            .try_acquire_owned()
            .map_err(|_| Refused::Global)?;
        let peer = self.per_peer.take(&peer).ok_or(Refused::Peer)?;
        Ok(Admitted {
            _global: global,
            _peer: peer,
        })
    }
}

/// The global limit: `configured`, or what the descriptor limit leaves after
/// [`DESCRIPTOR_RESERVE`] (at least 16).
pub(super) fn global_limit(configured: Option<usize>) -> usize {
    configured.unwrap_or_else(|| {
        let descriptors = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(1 << 20);
        (descriptors as usize)
            .saturating_sub(DESCRIPTOR_RESERVE)
            .max(16)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_counted_globally_and_per_peer_and_given_back_on_drop() {
        let budget = ConnectionBudget::new(3, 2);
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        let a1 = budget.admit(a).unwrap();
        let _a2 = budget.admit(a).unwrap();
        assert_eq!(budget.admit(a).err(), Some(Refused::Peer));
        let _b1 = budget.admit(b).unwrap();
        assert_eq!(budget.admit(b).err(), Some(Refused::Global));
        drop(a1);
        let _a3 = budget.admit(a).unwrap();
        assert_eq!(budget.admit(b).err(), Some(Refused::Global));
    }

    #[test]
    fn the_default_limit_leaves_a_reserve_of_descriptors() {
        assert_eq!(global_limit(Some(10)), 10);
        let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(1 << 20) as usize;
        assert_eq!(
            global_limit(None),
            soft.saturating_sub(DESCRIPTOR_RESERVE).max(16)
        );
    }
}
