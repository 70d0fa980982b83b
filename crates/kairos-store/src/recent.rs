//! The writer's index of keys written by its most recent groups.
//!
//! Dedup lookups against the store run on the callers' threads, in parallel,
//! before a job is queued (see `LogWriter::append`). What such a lookup cannot
//! see is a group the writer committed after the lookup began. Each job
//! therefore carries the writer's group number ("epoch") read before its
//! lookups, and the writer checks the job's events against the keys of every
//! group after that epoch — which it keeps here. A job older than what is
//! kept falls back to lookups on the writer thread, so the bound on memory
//! never costs correctness.

use std::collections::{HashMap, VecDeque};

/// Most keys kept (about 40 bytes each).
pub const RECENT_KEYS_MAX: usize = 1_000_000;

#[derive(Default)]
pub struct RecentKeys {
    /// key → (sequence number, group that wrote it, receive time in ms)
    index: HashMap<[u8; 16], (u64, u64, i64)>,
    groups: VecDeque<(u64, Vec<[u8; 16]>)>,
    keys: usize,
    /// Groups before this one have been evicted.
    oldest_kept: u64,
}

impl RecentKeys {
    pub fn new(first_group: u64) -> RecentKeys {
        RecentKeys {
            oldest_kept: first_group,
            ..RecentKeys::default()
        }
    }

    /// Whether every group after `epoch` is still kept.
    pub fn covers_after(&self, epoch: u64) -> bool {
        epoch + 1 >= self.oldest_kept
    }

    /// The sequence number a key was written at, if received after `since_ms`.
    pub fn get(&self, key: &[u8; 16], since_ms: i64) -> Option<u64> {
        self.index
            .get(key)
            .filter(|(_, _, received_ms)| *received_ms > since_ms)
            .map(|(seq, _, _)| *seq)
    }

    /// Records a key written by `group` (the group being built).
    pub fn insert(&mut self, key: [u8; 16], seq: u64, group: u64, received_ms: i64) {
        self.index.insert(key, (seq, group, received_ms));
        match self.groups.back_mut() {
            Some((last, keys)) if *last == group => keys.push(key),
            _ => self.groups.push_back((group, vec![key])),
        }
        self.keys += 1;
    }

    /// Forgets a group whose commit failed.
    pub fn discard_group(&mut self, group: u64) {
        if self.groups.back().is_some_and(|(last, _)| *last == group) {
            let (_, keys) = self.groups.pop_back().expect("checked above");
            self.forget(group, keys);
        }
    }

    /// Evicts whole old groups until at most `RECENT_KEYS_MAX` keys are kept.
    pub fn evict(&mut self) {
        while self.keys > RECENT_KEYS_MAX && self.groups.len() > 1 {
            let (group, keys) = self.groups.pop_front().expect("more than one group");
            self.forget(group, keys);
            self.oldest_kept = group + 1;
        }
    }

    fn forget(&mut self, group: u64, keys: Vec<[u8; 16]>) {
        self.keys -= keys.len();
        for key in keys {
            if self
                .index
                .get(&key)
                .is_some_and(|(_, written_by, _)| *written_by == group)
            {
                self.index.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_recent_groups_and_reports_coverage() {
        let mut recent = RecentKeys::new(1);
        recent.insert([1; 16], 10, 1, 1_000);
        recent.insert([2; 16], 11, 2, 1_000);
        assert_eq!(recent.get(&[1; 16], 0), Some(10));
        assert_eq!(
            recent.get(&[1; 16], 1_000),
            None,
            "outside the dedup window"
        );
        assert!(recent.covers_after(0));
        recent.discard_group(2);
        assert_eq!(recent.get(&[2; 16], 0), None);
        assert_eq!(recent.get(&[1; 16], 0), Some(10));
    }
}
