//! Space accounting: how big the snapshots are when restored, how much
//! unique data they hold, what that costs stored, and what each backup added.

use std::collections::HashSet;

use crate::error::Result;
use crate::format::snapshot::Snapshot;
use crate::format::tree::NodeKind;
use crate::id::Id;
use crate::repository::Repository;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    pub snapshots: u64,
    pub files: u64,
    /// Sum of file sizes over all the snapshots: what restoring them all writes.
    pub restore_size: u64,
    /// Plaintext bytes of the distinct blobs they reference.
    pub unique_size: u64,
    /// Bytes those blobs take in the packs (compressed and encrypted).
    pub stored_size: u64,
    pub blobs: u64,
    pub packs: u64,
    /// Of those blobs, the ones stored as deltas: how many, their
    /// plaintext and what they take stored (format.md, "Delta blobs").
    pub delta_blobs: u64,
    pub delta_size: u64,
    pub delta_stored: u64,
    /// Blobs kept only as the base of a delta (no snapshot given names
    /// them): how many and what they take stored, counted in `stored_size`.
    pub base_blobs: u64,
    pub base_stored: u64,
    /// The most deltas a restore decodes for one blob.
    pub longest_chain: u64,
}

impl Stats {
    /// Restore size over unique size.
    pub fn dedup_ratio(&self) -> f64 {
        ratio(self.restore_size, self.unique_size)
    }

    /// Unique size over stored size.
    pub fn compression_ratio(&self) -> f64 {
        ratio(self.unique_size, self.stored_size)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        1.0
    } else {
        a as f64 / b as f64
    }
}

/// What one snapshot added: blobs no earlier snapshot (of those given)
/// referenced — the cost of that backup.
#[derive(Clone, Debug, PartialEq)]
pub struct Added {
    pub id: Id,
    pub restore_size: u64,
    pub blobs: u64,
    pub size: u64,
    pub stored: u64,
}

/// Account for `snapshots` (oldest first); also returns what each added.
/// Needs the repository index loaded.
pub fn run(repo: &Repository, snapshots: &[(Id, Snapshot)]) -> Result<(Stats, Vec<Added>)> {
    let mut seen_blobs: HashSet<Id> = HashSet::new();
    let mut bases: HashSet<Id> = HashSet::new();
    let mut seen_trees: HashSet<Id> = HashSet::new();
    let mut stats = Stats {
        snapshots: snapshots.len() as u64,
        ..Stats::default()
    };
    let mut added = Vec::new();
    for (id, snap) in snapshots {
        let mut this = Added {
            id: *id,
            restore_size: 0,
            blobs: 0,
            size: 0,
            stored: 0,
        };
        let mut stack = vec![snap.tree];
        // Each snapshot's files are counted in full, but trees shared with an
        // earlier snapshot are not walked again for new blobs.
        let mut own_trees: HashSet<Id> = HashSet::new();
        while let Some(tree) = stack.pop() {
            if !own_trees.insert(tree) {
                continue;
            }
            let first_time = seen_trees.insert(tree);
            if first_time {
                this.account(repo, &mut seen_blobs, &mut bases, &mut stats, tree);
            }
            for node in repo.load_tree(&tree)?.nodes {
                match node.kind {
                    NodeKind::Dir => stack.extend(node.subtree),
                    NodeKind::File => {
                        stats.files += 1;
                        this.restore_size += node.size;
                        if first_time {
                            for blob in node.content.iter().flatten() {
                                this.account(repo, &mut seen_blobs, &mut bases, &mut stats, *blob);
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        stats.restore_size += this.restore_size;
        added.push(this);
    }
    let index = repo.index();
    let mut packs = HashSet::new();
    for blob in &seen_blobs {
        if let Some(loc) = index.get(blob) {
            packs.insert(loc.pack);
        }
    }
    for base in bases.difference(&seen_blobs) {
        if let Some(loc) = index.get(base) {
            packs.insert(loc.pack);
            stats.base_blobs += 1;
            stats.base_stored += u64::from(loc.length);
        }
    }
    stats.blobs = seen_blobs.len() as u64;
    stats.packs = packs.len() as u64;
    stats.unique_size = added.iter().map(|a| a.size).sum();
    stats.stored_size = added.iter().map(|a| a.stored).sum::<u64>() + stats.base_stored;
    Ok((stats, added))
}

impl Added {
    /// Count `blob` if it is new, and note the bases a delta needs.
    fn account(
        &mut self,
        repo: &Repository,
        seen: &mut HashSet<Id>,
        bases: &mut HashSet<Id>,
        stats: &mut Stats,
        blob: Id,
    ) {
        if !seen.insert(blob) {
            return;
        }
        let index = repo.index();
        let Some(loc) = index.get(&blob) else {
            return;
        };
        self.blobs += 1;
        self.size += u64::from(loc.raw_length);
        self.stored += u64::from(loc.length);
        if loc.base.is_none() {
            return;
        }
        stats.delta_blobs += 1;
        stats.delta_size += u64::from(loc.raw_length);
        stats.delta_stored += u64::from(loc.length);
        let mut depth = 0;
        let mut at = loc.base;
        while let Some(base) = at {
            depth += 1;
            // A cycle (a hostile index) ends at the format's limit.
            if depth > crate::format::delta::MAX_CHAIN as u64 {
                break;
            }
            bases.insert(base);
            at = index.get(&base).and_then(|l| l.base);
        }
        stats.longest_chain = stats.longest_chain.max(depth);
    }
}
