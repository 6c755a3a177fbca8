//! Filling restored files with data, reading each pack once.
//!
//! All blobs needed by all files are grouped by pack; worker threads take
//! one pack at a time, read runs of nearby blobs with one ranged read, and
//! write each blob to every place that needs it. Memory is bounded by the
//! largest run (a few tens of MiB) times the number of workers.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::{FileJob, RestoreProgress, RestoreSummary};
use crate::error::{Error, ErrorKind, Result};
use crate::format::tree::{Extent, Node};
use crate::id::Id;
use crate::repository::{BlobLocation, Repository};
use crate::storage::ObjectKind;

/// Blobs further apart than this in a pack are read separately.
const MAX_GAP: u64 = 1 << 20;
/// The largest single read: bounds memory per worker.
const MAX_RUN: u64 = 4 << 20;

struct Need {
    id: Id,
    loc: BlobLocation,
    /// (job index, offset in the file's data stream)
    targets: Vec<(usize, u64)>,
}

/// What filling the files did: bytes written, and the files that could
/// not be completed (by job index) with the reason.
#[derive(Default)]
pub(super) struct Filled {
    pub written: u64,
    pub failed: HashMap<usize, String>,
    /// Stopped by the user ([`crate::interrupt`]): only the jobs with
    /// nothing `left` to write are complete.
    pub interrupted: bool,
    /// Per job, the blob placements still to write.
    pub left: Vec<usize>,
}

/// Fill every file that needs data. Damage (a blob whose every copy fails
/// to verify, or is gone) and write errors fail only the files concerned;
/// a storage error that is not damage stops the restore.
pub(super) fn fill_files(
    repo: &Arc<Repository>,
    jobs: &[FileJob],
    nodes: &[&Node],
    threads: usize,
    progress: &dyn RestoreProgress,
) -> Result<Filled> {
    let (packs, unstored) = plan(repo, jobs, nodes);
    let mut left = vec![0usize; jobs.len()];
    for (_, needs) in &packs {
        for need in needs {
            for &(job, _) in &need.targets {
                left[job] += 1;
            }
        }
    }
    let fill = Fill {
        repo,
        jobs,
        nodes,
        progress,
        failed: Mutex::new(unstored),
        written: AtomicU64::new(0),
        left: left.into_iter().map(AtomicUsize::new).collect(),
    };
    let threads = if threads == 0 {
        // One more reader than cores: while one waits for a read or write,
        // the others decrypt (docs/benchmarks.md).
        std::thread::available_parallelism().map_or(2, |n| n.get()) + 1
    } else {
        threads.min(crate::MAX_THREADS)
    };
    let next = AtomicUsize::new(0);
    let fatal: Mutex<Option<Error>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..threads.min(packs.len().max(1)) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((pack, needs)) = packs.get(i) else {
                    break;
                };
                if fatal.lock().map(|f| f.is_some()).unwrap_or(true) {
                    break;
                }
                if let Err(e) = crate::interrupt::check().and_then(|()| fill.pack(pack, needs)) {
                    if let Ok(mut f) = fatal.lock() {
                        f.get_or_insert(e);
                    }
                }
            });
        }
    });
    let interrupted = match fatal.into_inner().unwrap_or(None) {
        Some(e) if e.kind() == ErrorKind::Interrupted => true,
        Some(e) => return Err(e),
        None => false,
    };
    Ok(Filled {
        written: fill.written.into_inner(),
        failed: fill.failed.into_inner().unwrap_or_default(),
        interrupted,
        left: fill.left.into_iter().map(AtomicUsize::into_inner).collect(),
    })
}

/// The blobs each pack holds for the files, and the files that need a
/// blob no index lists (by job index, with the reason).
type Plan = (Vec<(Id, Vec<Need>)>, HashMap<usize, String>);

fn plan(repo: &Repository, jobs: &[FileJob], nodes: &[&Node]) -> Plan {
    let index = repo.index();
    let mut by_pack: HashMap<Id, HashMap<Id, Need>> = HashMap::new();
    let mut unstored = HashMap::new();
    for (j, job) in jobs.iter().enumerate().filter(|(_, job)| job.write) {
        let node = nodes[job.entry];
        let mut needs = Vec::new();
        let mut offset = 0u64;
        for id in node.content.iter().flatten() {
            let Some(loc) = index.get(id) else {
                unstored.insert(j, format!("blob {id} is missing from the repository"));
                break;
            };
            needs.push((*id, *loc, offset));
            offset += u64::from(loc.raw_length);
        }
        if unstored.contains_key(&j) {
            continue;
        }
        for (id, loc, offset) in needs {
            by_pack
                .entry(loc.pack)
                .or_default()
                .entry(id)
                .or_insert_with(|| Need {
                    id,
                    loc,
                    targets: Vec::new(),
                })
                .targets
                .push((j, offset));
        }
    }
    let mut packs: Vec<(Id, Vec<Need>)> = by_pack
        .into_iter()
        .map(|(pack, needs)| {
            let mut v: Vec<Need> = needs.into_values().collect();
            v.sort_by_key(|n| n.loc.offset);
            (pack, v)
        })
        .collect();
    packs.sort_by_key(|(id, _)| *id);
    (packs, unstored)
}

struct Fill<'a> {
    repo: &'a Repository,
    jobs: &'a [FileJob],
    nodes: &'a [&'a Node],
    progress: &'a dyn RestoreProgress,
    failed: Mutex<HashMap<usize, String>>,
    written: AtomicU64,
    /// Per job, the blob placements still to write.
    left: Vec<AtomicUsize>,
}

impl Fill<'_> {
    /// Read the blobs `needs` of one pack, in runs of nearby blobs, and
    /// write each where the files need it.
    fn pack(&self, pack: &Id, needs: &[Need]) -> Result<()> {
        let name = pack.to_hex();
        // One plaintext buffer per pack, reused for every blob in it.
        let mut plain = Vec::new();
        let spans = needs
            .iter()
            .map(|n| (u64::from(n.loc.offset), u64::from(n.loc.length)));
        for (range, start, end) in crate::repository::merge_runs(spans, MAX_GAP, MAX_RUN) {
            let mut run =
                match self
                    .repo
                    .storage()
                    .read_range(ObjectKind::Pack, &name, start, end - start)
                {
                    Ok(run) => run,
                    Err(e) if e.is_damage() => {
                        let e = e.context(format!("pack {name}"));
                        for need in &needs[range] {
                            self.elsewhere(need, None, &e)?;
                        }
                        continue;
                    }
                    Err(e) => return Err(e),
                };
            for need in &needs[range] {
                let from = (u64::from(need.loc.offset) - start) as usize;
                let sealed = &mut run[from..from + need.loc.length as usize];
                match self.repo.open_blob_into(
                    &need.id,
                    need.loc.kind,
                    sealed,
                    need.loc.raw_length,
                    &mut plain,
                ) {
                    Ok(()) => self.write_targets(need, &plain),
                    Err(e) => {
                        self.elsewhere(need, Some(pack), &e.context(format!("pack {name}")))?
                    }
                }
            }
        }
        Ok(())
    }

    /// The copy of `need` in `pack` is damaged or gone: read another copy
    /// (the index is loaded again if the pack vanished, as a prune moves
    /// blobs; docs/design.md, "Prune"), or fail the files that need it.
    /// `damaged`: the pack whose copy failed to verify, not read again
    /// (`None` when a whole run failed: each blob alone may still read).
    fn elsewhere(&self, need: &Need, damaged: Option<&Id>, first: &Error) -> Result<()> {
        let avoid = damaged.filter(|_| first.kind() == ErrorKind::Corrupted);
        match self.repo.read_blob_avoiding(&need.id, avoid) {
            Ok(plain) => {
                if first.kind() == ErrorKind::Corrupted {
                    tracing::warn!("{first}; read an intact copy from another pack");
                }
                self.write_targets(need, &plain);
                Ok(())
            }
            Err(e) if e.is_damage() => {
                let reason = if first.kind() == ErrorKind::Corrupted {
                    first.to_string()
                } else {
                    e.to_string()
                };
                for &(job, _) in &need.targets {
                    self.fail(job, &reason);
                }
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn fail(&self, job: usize, reason: &str) {
        if let Ok(mut failed) = self.failed.lock() {
            failed.entry(job).or_insert_with(|| reason.to_string());
        }
    }

    fn has_failed(&self, job: usize) -> bool {
        self.failed.lock().map_or(true, |f| f.contains_key(&job))
    }

    /// Write one blob's plaintext everywhere the files need it; a file
    /// that cannot be written fails alone.
    fn write_targets(&self, need: &Need, plain: &[u8]) {
        for &(job, offset) in &need.targets {
            if self.has_failed(job) {
                continue;
            }
            let path = self.jobs[job].data_path();
            let extents = self.nodes[self.jobs[job].entry].extents.as_deref();
            let written = super::fsops::open_for_write(path)
                .and_then(|file| write_stream(&file, extents, offset, plain));
            match written {
                Ok(()) => {
                    self.written
                        .fetch_add(plain.len() as u64, Ordering::Relaxed);
                    self.left[job].fetch_sub(1, Ordering::Relaxed);
                    self.progress.bytes_written(plain.len() as u64);
                }
                Err(e) => self.fail(job, &format!("cannot write: {e}")),
            }
        }
    }
}

/// Write `data`, found at `offset` of the file's data stream, to the file:
/// directly for dense files, through the extent map for sparse ones.
fn write_stream(
    file: &File,
    extents: Option<&[Extent]>,
    offset: u64,
    data: &[u8],
) -> std::io::Result<()> {
    let Some(extents) = extents else {
        return file.write_all_at(data, offset);
    };
    let (mut stream_pos, end) = (0u64, offset + data.len() as u64);
    for ext in extents {
        let (ext_start, ext_end) = (stream_pos, stream_pos + ext.length);
        let (lo, hi) = (offset.max(ext_start), end.min(ext_end));
        if lo < hi {
            let part = &data[(lo - offset) as usize..(hi - offset) as usize];
            file.write_all_at(part, ext.offset + (lo - ext_start))?;
        }
        stream_pos = ext_end;
        if stream_pos >= end {
            break;
        }
    }
    Ok(())
}

/// The blob ids of a file's data as it is on disk now (through `extents`
/// for sparse files), or `None` if it cannot be read.
pub(crate) fn content_ids(
    repo: &Repository,
    path: &Path,
    extents: Option<&[Extent]>,
) -> Option<Vec<Id>> {
    let file = crate::backup::open_for_reading(path).ok()?;
    crate::backup::chunk_ids(repo, &file, extents).ok()
}

/// Whether the file at `path` already holds exactly `node`'s data.
pub(super) fn same_content(repo: &Repository, path: &Path, node: &Node) -> bool {
    if node.extents.is_some() {
        return false; // holes would need checking too; rewrite
    }
    content_ids(repo, path, None).as_ref() == node.content.as_ref()
}

/// Check each file against the snapshot: those written, those kept as
/// identical and those left alone (`--overwrite never`) alike.
pub(super) fn verify(
    repo: &Repository,
    jobs: &[&FileJob],
    nodes: &[&Node],
    summary: &mut RestoreSummary,
    progress: &dyn RestoreProgress,
) {
    for job in jobs {
        let node = nodes[job.entry];
        let meta_ok = std::fs::metadata(&job.path).is_ok_and(|m| m.len() == node.size);
        let ids = content_ids(repo, &job.path, node.extents.as_deref());
        let want = node.content.as_ref().filter(|c| !c.is_empty());
        let ok = meta_ok && want.is_none_or(|w| ids.as_ref() == Some(w));
        if ok {
            summary.verified += 1;
        } else {
            summary.verify_failures += 1;
            progress.warning(
                &job.path,
                "verification failed: restored data differs from the snapshot",
            );
        }
    }
}
