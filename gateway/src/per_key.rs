//! A count per key with a ceiling: how many connections one peer holds, how many requests
//! one tenant has in flight. A slot is taken by [`PerKeyLimit::take`] and given back when
//! it is dropped; a key whose count falls to zero is forgotten, so the map holds only the
//! keys that hold something.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

type Counts<K> = Arc<Mutex<HashMap<K, usize>>>;

/// At most `limit` slots per key.
pub(crate) struct PerKeyLimit<K: Hash + Eq> {
    limit: usize,
    counts: Counts<K>,
}

/// One slot of one key; given back on drop.
pub(crate) struct Slot<K: Hash + Eq> {
    key: Option<K>,
    counts: Counts<K>,
}

impl<K: Hash + Eq> Drop for Slot<K> {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else { return };
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        // One lookup (one hash of the key) for both the count and its removal.
        if let Entry::Occupied(mut count) = counts.entry(key) {
            *count.get_mut() -= 1;
            if *count.get() == 0 {
                count.remove();
            }
        }
    }
}

impl<K: Hash + Eq + Clone> PerKeyLimit<K> {
    /// At most `limit` (at least 1) slots per key.
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            limit: limit.max(1),
            counts: Arc::default(),
        }
    }

    /// The ceiling.
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// A slot of `key`, or `None` when it holds its most.
    pub(crate) fn take(&self, key: &K) -> Option<Slot<K>> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let count = counts.entry(key.clone()).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(Slot {
            key: Some(key.clone()),
            counts: Arc::clone(&self.counts),
        })
    }

    /// Keys holding at least one slot now.
    #[cfg(test)]
    pub(crate) fn holders(&self) -> usize {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_per_key_given_back_on_drop_and_idle_keys_forgotten() {
        let limit = PerKeyLimit::new(2);
        let a1 = limit.take(&"a").unwrap();
        let _a2 = limit.take(&"a").unwrap();
        assert!(limit.take(&"a").is_none());
        let b1 = limit.take(&"b").unwrap();
        assert_eq!(limit.holders(), 2);
        drop(a1);
        assert!(limit.take(&"a").is_some());
        drop(b1);
        assert_eq!(limit.holders(), 1, "b holds nothing and is forgotten");
    }
}
