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

impl Repository {
    /// The trees `ids` (duplicates allowed), by id.
    pub fn load_trees(&self, ids: &[Id]) -> Result<HashMap<Id, Tree>> {
        let runs = self.tree_runs(ids)?;
        let next = AtomicUsize::new(0);
        let found: Mutex<Result<HashMap<Id, Tree>>> = Mutex::new(Ok(HashMap::new()));
        std::thread::scope(|scope| {
            for _ in 0..READERS.min(runs.len()) {
                scope.spawn(|| {
                    while let Some(run) = runs.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let trees = self.read_run(run);
                        let mut found = found.lock().unwrap_or_else(|p| p.into_inner());
                        match (&mut *found, trees) {
                            (Ok(map), Ok(trees)) => map.extend(trees),
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
    fn tree_runs(&self, ids: &[Id]) -> Result<Vec<Run>> {
        let index = self.index();
        let mut by_pack: HashMap<Id, HashMap<Id, BlobLocation>> = HashMap::new();
        for id in ids {
            let loc = *index
                .get(id)
                .ok_or_else(|| Error::missing(format!("tree {id} is not in the index")))?;
            by_pack.entry(loc.pack).or_default().insert(*id, loc);
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
        Ok(runs)
    }

    fn read_run(&self, run: &Run) -> Result<Vec<(Id, Tree)>> {
        let name = run.pack.to_hex();
        let open = |bytes: &[u8]| -> Result<Vec<(Id, Tree)>> {
            run.blobs
                .iter()
                .map(|(id, loc)| {
                    let from = (u64::from(loc.offset) - run.start) as usize;
                    let sealed = &bytes[from..from + loc.length as usize];
                    let plain = self
                        .open_blob(id, loc.kind, sealed, loc.raw_length)
                        .map_err(|e| e.context(format!("pack {name}")))?;
                    Ok((*id, from_cbor(&plain, &format!("tree {id}"))?))
                })
                .collect()
        };
        match self.read_tree_range(&name, run.start, run.end - run.start, open) {
            // A prune moved these trees (docs/design.md, "Prune"): read each
            // where the index now says.
            Err(e) if e.kind() == ErrorKind::Missing => run
                .blobs
                .iter()
                .map(|(id, _)| Ok((*id, self.load_tree(id)?)))
                .collect(),
            other => other,
        }
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
