//! The access keys used lately, found without moka's bookkeeping: a direct-mapped table in
//! front of the lookup cache. An id's hash picks one slot; a hit compares the whole id and
//! the age of the lookup that found the key, so a key is trusted here no longer than the
//! lookup cache would trust it ([`LOOKUP_TTL`](super::LOOKUP_TTL)). Only active keys enter;
//! a revocation through [`AccessKeys`](super::AccessKeys) clears the id's slot at once.
//!
//! moka's `get` records each read for its admission policy and takes an epoch pin: about
//! 0.3 µs of every SigV4 request. A slot here is one atomic load and a compare. The slot is
//! picked by foldhash, seeded anew for each table: a fraction of SipHash's cost, and ids
//! made to share a slot only take turns in it. Memory is
//! bounded by the slot count; two ids sharing a slot only take turns in it (the lookup
//! cache behind still holds both).

use std::hash::BuildHasher;

use foldhash::fast::RandomState;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;

use super::{ActiveKey, LOOKUP_TTL};

/// How many slots the table has: enough for the keys of a busy gateway's active clients.
pub(super) const SLOTS: usize = 1024;

/// The table.
pub(super) struct RecentKeys {
    slots: Box<[ArcSwapOption<ActiveKey>]>,
    hasher: RandomState,
}

impl RecentKeys {
    /// An empty table of [`SLOTS`] slots.
    pub(super) fn new() -> Self {
        Self {
            slots: (0..SLOTS).map(|_| ArcSwapOption::empty()).collect(),
            hasher: RandomState::default(),
        }
    }

    fn slot(&self, id: &str) -> &ArcSwapOption<ActiveKey> {
        let hash = self.hasher.hash_one(id.as_bytes()) as usize;
        &self.slots[hash % SLOTS]
    }

    /// Key `id`, if it is here and was looked up less than the lookup TTL before `now`
    /// (monotonic).
    pub(super) fn get(&self, id: &str, now: Duration) -> Option<Arc<ActiveKey>> {
        let slot = self.slot(id).load();
        slot.as_ref()
            .filter(|key| {
                *key.access_key_id == *id && now.saturating_sub(key.looked_up) < LOOKUP_TTL
            })
            .map(Arc::clone)
    }

    /// Remembers `key` (in place of whatever shared its slot).
    pub(super) fn put(&self, key: Arc<ActiveKey>) {
        self.slot(&key.access_key_id).store(Some(key));
    }

    /// Forgets key `id`, if its slot holds it; returns what it held.
    pub(super) fn forget(&self, id: &str) -> Option<Arc<ActiveKey>> {
        let slot = self.slot(id);
        if slot
            .load()
            .as_ref()
            .is_some_and(|key| *key.access_key_id == *id)
        {
            return slot.swap(None);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, looked_up: Duration) -> Arc<ActiveKey> {
        Arc::new(ActiveKey::new(
            id,
            "demo".into(),
            None,
            "secret".into(),
            looked_up,
        ))
    }

    #[test]
    fn a_key_is_found_by_its_own_id_until_its_lookup_is_as_old_as_the_ttl() {
        let recent = RecentKeys::new();
        let at = Duration::from_secs(100);
        recent.put(key("AKSPAAAAAAAAAAAAAAAA", at));
        assert!(recent.get("AKSPAAAAAAAAAAAAAAAA", at).is_some());
        assert!(recent.get("AKSPBBBBBBBBBBBBBBBB", at).is_none());
        let almost = at + LOOKUP_TTL - Duration::from_millis(1);
        assert!(recent.get("AKSPAAAAAAAAAAAAAAAA", almost).is_some());
        assert!(recent
            .get("AKSPAAAAAAAAAAAAAAAA", at + LOOKUP_TTL)
            .is_none());
    }

    #[test]
    fn forgetting_an_id_clears_only_its_own_key() {
        let recent = RecentKeys::new();
        let at = Duration::from_secs(1);
        recent.put(key("AKSPAAAAAAAAAAAAAAAA", at));
        recent.forget("AKSPCCCCCCCCCCCCCCCC");
        assert!(recent.get("AKSPAAAAAAAAAAAAAAAA", at).is_some());
        recent.forget("AKSPAAAAAAAAAAAAAAAA");
        assert!(recent.get("AKSPAAAAAAAAAAAAAAAA", at).is_none());
    }
}
