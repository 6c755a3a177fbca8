//! Reading many trees at once, as restore and other walks of a whole
//! snapshot do: a directory's subtrees are wanted together, so they are
//! grouped by pack and read with one ranged read per run of nearby blobs,
//! several packs in parallel. On remote storage this turns thousands of
//! round trips into a few per level of the tree.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::{BlobLocation, Repository};
use crate::error::{Error, ErrorKind, Result};
use crate::format::from_cbor;
use crate::format::tree::Tree;
use crate::id::Id;
use crate::storage::ObjectKind;

/// Tree blobs further apart than this are read separately. Tree packs hold
/// only trees, so a gap costs little next to another request.
const MAX_GAP: u64 = 1 << 20;
/// The largest single read.
const MAX_RUN: u64 = 8 << 20;
/// Reads in flight: enough to hide a remote round trip.
const READERS: usize = 8;

/// One ranged read: the blobs in `[start, end)` of `pack`.
struct Run {
    pack: Id,
    start: u64,
    end: u64,
    blobs: Vec<(Id, BlobLocation)>,
}

/// Trees read together: those that loaded, and why the others did not.
#[derive(Default)]
pub struct TreeBatch {
    pub trees: HashMap<Id, Tree>,
    /// Trees no copy of which could be read (damaged or missing), with
    /// the reason: the walk goes on without them.
    pub damaged: HashMap<Id, String>,
}

impl Repository {
    /// The trees `ids` (duplicates allowed). A tree whose copy is damaged is
    /// read from another copy if there is one, else reported in
    /// [`TreeBatch::damaged`]; only storage errors that are not damage
    /// fail the whole call.
    pub fn load_trees(&self, ids: &[Id]) -> Result<TreeBatch> {
        let (runs, unindexed) = self.tree_runs(ids);
        let next = AtomicUsize::new(0);
        let found: Mutex<Result<TreeBatch>> = Mutex::new(Ok(TreeBatch {
            damaged: unindexed,
            ..TreeBatch::default()
        }));
        std::thread::scope(|scope| {
            for _ in 0..READERS.min(runs.len()) {
                scope.spawn(|| {
                    while let Some(run) = runs.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let trees = self.read_run(run);
                        let mut found = found.lock().unwrap_or_else(|p| p.into_inner());
                        match (&mut *found, trees) {
                            (Ok(batch), Ok(trees)) => {
                                for (id, tree) in trees {
                                    match tree {
                                        Ok(t) => {
                                            batch.trees.insert(id, t);
                                        }
                                        Err(e) => {
                                            batch.damaged.insert(id, e.to_string());
                                        }
                                    }
                                }
                            }
                            (Ok(_), Err(e)) => *found = Err(e),
                            (Err(_), _) => break,
                        }
                    }
                });
            }
        });
        found.into_inner().unwrap_or_else(|p| p.into_inner())
    }

    /// Group the trees by pack and merge nearby ones into runs.
    /// Also returns the trees no index lists.
    fn tree_runs(&self, ids: &[Id]) -> (Vec<Run>, HashMap<Id, String>) {
        let index = self.index();
        let mut by_pack: HashMap<Id, HashMap<Id, BlobLocation>> = HashMap::new();
        let mut unindexed = HashMap::new();
        for id in ids {
            match index.get(id) {
                Some(loc) => {
                    by_pack.entry(loc.pack).or_default().insert(*id, *loc);
                }
                None => {
                    unindexed.insert(*id, format!("tree {id} is not in the index"));
                }
            }
        }
        let mut runs = Vec::new();
        for (pack, blobs) in by_pack {
            let mut blobs: Vec<(Id, BlobLocation)> = blobs.into_iter().collect();
            blobs.sort_by_key(|(_, loc)| loc.offset);
            let spans = blobs
                .iter()
                .map(|(_, loc)| (u64::from(loc.offset), u64::from(loc.length)));
            for (range, start, end) in super::merge_runs(spans, MAX_GAP, MAX_RUN) {
                runs.push(Run {
                    pack,
                    start,
                    end,
                    blobs: blobs[range].to_vec(),
                });
            }
        }
        // Largest first, so that one long read does not finish last alone.
        runs.sort_by_key(|r| std::cmp::Reverse(r.end - r.start));
        (runs, unindexed)
    }

    /// The trees of one run: each verified, or read from another copy
    /// when its own is damaged (or gone: a prune moved it, docs/design.md
    /// "Prune"), or an error of its own. Storage errors that are not
    /// damage fail the whole run.
    fn read_run(&self, run: &Run) -> Result<Vec<(Id, Result<Tree>)>> {
        let name = run.pack.to_hex();
        // `whole_run`: the run could not be read at all (a truncated pack):
        // the blob alone may still be readable from this pack.
        let elsewhere = |id: &Id, failed: Error, whole_run: bool| -> Result<Tree> {
            let avoid = (failed.kind() == ErrorKind::Corrupted && !whole_run).then_some(&run.pack);
            match self.read_blob_avoiding(id, avoid) {
                Ok(plain) => from_cbor(&plain, &format!("tree {id}")),
                Err(e) if e.kind() == ErrorKind::Io => Err(e),
                // The first failure says best what is wrong with this copy.
                Err(_) => Err(failed),
            }
        };
        let bytes = match self.storage.read_metadata_range(
            ObjectKind::Pack,
            &name,
            run.start,
            run.end - run.start,
        ) {
            Ok(bytes) => bytes,
            Err(e) if e.is_damage() => {
                let mut out = Vec::new();
                for (id, _) in &run.blobs {
                    let e = Error::new(e.kind(), e.to_string());
                    out.push((*id, elsewhere(id, e, true)));
                }
                return no_io_error(out);
            }
            Err(e) => return Err(e),
        };
        let mut out = Vec::with_capacity(run.blobs.len());
        for (id, loc) in &run.blobs {
            let from = (u64::from(loc.offset) - run.start) as usize;
            let open = |sealed: &[u8]| -> Result<Tree> {
                let plain = self
                    .open_blob(id, loc.kind, sealed, loc.raw_length)
                    .map_err(|e| e.context(format!("pack {name}")))?;
                from_cbor(&plain, &format!("tree {id}"))
            };
            let tree = match open(&bytes[from..from + loc.length as usize]) {
                // Perhaps a cached copy damaged since it was checked: read
                // the storage itself, then any other copy.
                Err(e) if e.is_damage() => self
                    .storage
                    .read_range(
                        ObjectKind::Pack,
                        &name,
                        u64::from(loc.offset),
                        u64::from(loc.length),
                    )
                    .and_then(|fresh| open(&fresh))
                    .or_else(|_| elsewhere(id, e, false)),
                other => other,
            };
            out.push((*id, tree));
        }
        no_io_error(out)
    }
}

/// Per-tree results, unless one failed for a reason that is not damage.
fn no_io_error(mut out: Vec<(Id, Result<Tree>)>) -> Result<Vec<(Id, Result<Tree>)>> {
    match out
        .iter()
        .position(|(_, r)| r.as_ref().is_err_and(|e| !e.is_damage()))
    {
        Some(pos) => match out.swap_remove(pos) {
            (_, Err(e)) => Err(e),
            (id, Ok(_)) => Err(Error::invalid(format!("tree {id}: inconsistent result"))),
        },
        None => Ok(out),
    }
}

#[cfg(test)]
mod tests {
    use super::super::merge_runs;

    #[test]
    fn runs_break_at_wide_gaps_and_at_the_size_limit() {
        // (offset, length): 0..10, 15..20 (gap 5), 100..110 (gap 80),
        // 110..150 (would make the run 50 > 45)
        let spans = [(0, 10), (15, 5), (100, 10), (110, 40)];
        let runs = merge_runs(spans, 10, 45);
        assert_eq!(
            runs,
            vec![(0..2, 0, 20), (2..3, 100, 110), (3..4, 110, 150)]
        );
        assert!(merge_runs([], 10, 45).is_empty());
    }
}
