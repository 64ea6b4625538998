//! Cache of verified tokens (DESIGN §10): signature verification is most of a request's
//! cost, so a token verified once is remembered until its `exp`.
//!
//! A direct-mapped table: a token's hash picks one slot; a hit compares the full token bytes
//! and re-checks `exp`; an insert overwrites the slot. Memory is bounded by the slot count
//! (16 bytes a slot, so a miss touches one cache line), lookups take no lock, inserting
//! costs one allocation (no eviction bookkeeping), and the table is flushed whenever keys
//! change. Only successes are ever stored.
//!
//! A token is stored on its second verification, not its first: each slot also remembers the
//! hash of the last token offered to it, and an insert whose hash matches is admitted. Tokens
//! used once (a new token on every request) then never allocate an entry nor evict one;
//! long-lived entries freed in random order fragment the allocator's heap, which made every
//! allocation of such a request slower, and cost more than the cache could save.
//!
//! A token is hashed once per request ([`TokenCache::hash`]), over its last
//! [`HASHED_TAIL`] bytes only: the tail of a token is its signature, which differs between
//! any two distinct tokens, so hashing the whole token (hundreds of bytes, twice on a miss)
//! bought nothing. A collision costs only a slot; hits always compare every byte.

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwapOption;

use super::claims::TokenClaims;

/// How many bytes at the end of a token are hashed to pick its slot.
pub const HASHED_TAIL: usize = 32;

struct Entry {
    token: Box<str>,
    claims: Arc<TokenClaims>,
}

struct Slot {
    entry: ArcSwapOption<Entry>,
    /// The hash of the last token offered to [`TokenCache::insert`] for this slot.
    offered: AtomicU64,
}

/// The verified-token cache.
pub struct TokenCache {
    slots: Box<[Slot]>,
    mask: u64,
    hasher: RandomState,
}

impl TokenCache {
    /// A cache of about `entries` slots (rounded up to a power of two, at least 1).
    pub fn new(entries: u64) -> Self {
        let size = entries.max(1).next_power_of_two();
        Self {
            slots: (0..size)
                .map(|_| Slot {
                    entry: ArcSwapOption::empty(),
                    offered: AtomicU64::new(0),
                })
                .collect(),
            mask: size - 1,
            hasher: RandomState::new(),
        }
    }

    fn index(&self, hash: u64) -> usize {
        (hash & self.mask) as usize
    }

    /// The hash that [`TokenCache::get`] and [`TokenCache::insert`] take for `token`.
    pub fn hash(&self, token: &str) -> u64 {
        let bytes = token.as_bytes();
        self.hasher
            .hash_one(&bytes[bytes.len().saturating_sub(HASHED_TAIL)..])
    }

    /// The claims of `token` (whose [`TokenCache::hash`] is `hash`) if it was verified before
    /// and `exp` is after `now`.
    pub fn get(&self, hash: u64, token: &str, now: u64) -> Option<Arc<TokenClaims>> {
        let entry = self.slots[self.index(hash)].entry.load();
        match &*entry {
            Some(entry) if &*entry.token == token && entry.claims.exp > now => {
                Some(Arc::clone(&entry.claims))
            }
            _ => None,
        }
    }

    /// Remembers a verified token (whose [`TokenCache::hash`] is `hash`) if it was offered
    /// before (its second verification).
    pub fn insert(&self, hash: u64, token: &str, claims: Arc<TokenClaims>) {
        let slot = &self.slots[self.index(hash)];
        if slot.offered.swap(hash, Ordering::Relaxed) != hash {
            return;
        }
        slot.entry.store(Some(Arc::new(Entry {
            token: token.into(),
            claims,
        })));
    }

    /// Forgets everything (keys changed).
    pub fn clear(&self) {
        for slot in self.slots.iter() {
            slot.entry.store(None);
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
            nbf: None,
            iat: None,
            jti: None,
            iss: None,
            aud: None,
            skyport_use: None,
        })
    }

    #[test]
    fn hit_needs_identical_bytes_and_an_unexpired_token() {
        let cache = TokenCache::new(8);
        cache.insert(cache.hash("aaa.bbb.ccc"), "aaa.bbb.ccc", claims(100));
        cache.insert(cache.hash("aaa.bbb.ccc"), "aaa.bbb.ccc", claims(100));
        assert!(cache
            .get(cache.hash("aaa.bbb.ccc"), "aaa.bbb.ccc", 99)
            .is_some());
        assert!(
            cache
                .get(cache.hash("aaa.bbb.ccc"), "aaa.bbb.ccc", 100)
                .is_none(),
            "expires at exp"
        );
        assert!(cache
            .get(cache.hash("aaa.bbb.ccd"), "aaa.bbb.ccd", 99)
            .is_none());
        cache.clear();
        assert!(cache
            .get(cache.hash("aaa.bbb.ccc"), "aaa.bbb.ccc", 99)
            .is_none());
    }

    #[test]
    fn colliding_tokens_overwrite_never_confuse() {
        let cache = TokenCache::new(1);
        cache.insert(cache.hash("one"), "one", claims(100));
        cache.insert(cache.hash("one"), "one", claims(100));
        cache.insert(cache.hash("two"), "two", claims(100));
        cache.insert(cache.hash("two"), "two", claims(100));
        assert!(cache.get(cache.hash("one"), "one", 0).is_none());
        assert_eq!(cache.get(cache.hash("two"), "two", 0).unwrap().exp, 100);
    }

    #[test]
    fn tokens_with_one_tail_share_a_slot_but_never_claims() {
        let cache = TokenCache::new(64);
        let tail = "s".repeat(HASHED_TAIL);
        let (one, two) = (format!("one.{tail}"), format!("two.{tail}"));
        assert_eq!(cache.hash(&one), cache.hash(&two));
        cache.insert(cache.hash(&one), &one, claims(100));
        cache.insert(cache.hash(&one), &one, claims(100));
        assert!(cache.get(cache.hash(&one), &one, 0).is_some());
        assert!(cache.get(cache.hash(&two), &two, 0).is_none());
    }

    #[test]
    fn a_token_is_stored_on_its_second_verification() {
        let cache = TokenCache::new(8);
        cache.insert(cache.hash("aaa.bbb.ccc"), "aaa.bbb.ccc", claims(100));
        assert!(
            cache
                .get(cache.hash("aaa.bbb.ccc"), "aaa.bbb.ccc", 0)
                .is_none(),
            "first verification"
        );
        cache.insert(cache.hash("aaa.bbb.ccc"), "aaa.bbb.ccc", claims(100));
        assert!(
            cache
                .get(cache.hash("aaa.bbb.ccc"), "aaa.bbb.ccc", 0)
                .is_some(),
            "second verification"
        );
    }
}
