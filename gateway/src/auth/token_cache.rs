//! Cache of verified tokens (DESIGN §10): signature verification is most of a request's
//! cost, so a token verified once is remembered until its `exp`.
//!
//! A direct-mapped table: a token's hash picks one slot; a hit compares the full token bytes
//! and re-checks `exp`; an insert overwrites the slot. Memory is bounded by the slot count,
//! inserting costs one lock and one allocation (no eviction bookkeeping), and the table is
//! flushed whenever keys change. Only successes are ever stored.
//!
//! A token is stored on its second verification, not its first: each slot also remembers the
//! hash of the last token offered to it, and an insert whose hash matches is admitted. Tokens
//! used once (a new token on every request) then never allocate an entry nor evict one;
//! long-lived entries freed in random order fragment the allocator's heap, which made every
//! allocation of such a request slower, and cost more than the cache could save.

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::jwt::TokenClaims;

struct Entry {
    token: Box<str>,
    claims: Arc<TokenClaims>,
}

/// The verified-token cache.
pub struct TokenCache {
    slots: Box<[Mutex<Option<Entry>>]>,
    /// Per slot, the hash of the last token offered to [`TokenCache::insert`].
    offered: Box<[AtomicU64]>,
    mask: u64,
    hasher: RandomState,
}

impl TokenCache {
    /// A cache of about `entries` slots (rounded up to a power of two, at least 1).
    pub fn new(entries: u64) -> Self {
        let size = entries.max(1).next_power_of_two();
        Self {
            slots: (0..size).map(|_| Mutex::new(None)).collect(),
            offered: (0..size).map(|_| AtomicU64::new(0)).collect(),
            mask: size - 1,
            hasher: RandomState::new(),
        }
    }

    fn index(&self, hash: u64) -> usize {
        (hash & self.mask) as usize
    }

    /// The claims of `token` if it was verified before and `exp` is after `now`.
    pub fn get(&self, token: &str, now: u64) -> Option<Arc<TokenClaims>> {
        let index = self.index(self.hasher.hash_one(token));
        let slot = self.slots[index].lock().unwrap_or_else(|p| p.into_inner());
        match &*slot {
            Some(entry) if &*entry.token == token && entry.claims.exp > now => {
                Some(Arc::clone(&entry.claims))
            }
            _ => None,
        }
    }

    /// Remembers a verified token if it was offered before (its second verification).
    pub fn insert(&self, token: &str, claims: Arc<TokenClaims>) {
        let hash = self.hasher.hash_one(token);
        let index = self.index(hash);
        if self.offered[index].swap(hash, Ordering::Relaxed) != hash {
            return;
        }
        let entry = Entry {
            token: token.into(),
            claims,
        };
        *self.slots[index].lock().unwrap_or_else(|p| p.into_inner()) = Some(entry);
    }

    /// Forgets everything (keys changed).
    pub fn clear(&self) {
        for slot in self.slots.iter() {
            *slot.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: u64) -> Arc<TokenClaims> {
        Arc::new(TokenClaims {
            sub: "s".into(),
            tenant: "t".into(),
            dept: None,
            roles: Vec::new(),
            exp,
        })
    }

    #[test]
    fn hit_needs_identical_bytes_and_an_unexpired_token() {
        let cache = TokenCache::new(8);
        cache.insert("aaa.bbb.ccc", claims(100));
        cache.insert("aaa.bbb.ccc", claims(100));
        assert!(cache.get("aaa.bbb.ccc", 99).is_some());
        assert!(cache.get("aaa.bbb.ccc", 100).is_none(), "expires at exp");
        assert!(cache.get("aaa.bbb.ccd", 99).is_none());
        cache.clear();
        assert!(cache.get("aaa.bbb.ccc", 99).is_none());
    }

    #[test]
    fn colliding_tokens_overwrite_never_confuse() {
        let cache = TokenCache::new(1);
        cache.insert("one", claims(100));
        cache.insert("one", claims(100));
        cache.insert("two", claims(100));
        cache.insert("two", claims(100));
        assert!(cache.get("one", 0).is_none());
        assert_eq!(cache.get("two", 0).unwrap().exp, 100);
    }

    #[test]
    fn a_token_is_stored_on_its_second_verification() {
        let cache = TokenCache::new(8);
        cache.insert("aaa.bbb.ccc", claims(100));
        assert!(cache.get("aaa.bbb.ccc", 0).is_none(), "first verification");
        cache.insert("aaa.bbb.ccc", claims(100));
        assert!(cache.get("aaa.bbb.ccc", 0).is_some(), "second verification");
    }
}
