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

pub(super) fn fill_files(
    repo: &Arc<Repository>,
    jobs: &[FileJob],
    nodes: &[&Node],
    threads: usize,
    progress: &dyn RestoreProgress,
) -> Result<u64> {
    let packs = plan(repo, jobs, nodes)?;
    let threads = if threads == 0 {
        // One more reader than cores: while one waits for a read or write,
        // the others decrypt (docs/benchmarks.md).
        std::thread::available_parallelism().map_or(2, |n| n.get()) + 1
    } else {
        threads
    };
    let next = AtomicUsize::new(0);
    let written = AtomicU64::new(0);
    let failure: Mutex<Option<Error>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..threads.min(packs.len().max(1)) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((pack, needs)) = packs.get(i) else {
                    break;
                };
                if failure.lock().map(|f| f.is_some()).unwrap_or(true) {
                    break;
                }
                let result = match restore_pack(repo, pack, needs, jobs, nodes, progress) {
                    Err(e) if e.kind() == ErrorKind::Missing => {
                        restore_moved(repo, needs, jobs, nodes, progress)
                    }
                    other => other,
                };
                match result {
                    Ok(n) => {
                        written.fetch_add(n, Ordering::Relaxed);
                    }
                    Err(e) => {
                        if let Ok(mut f) = failure.lock() {
                            f.get_or_insert(e);
                        }
                    }
                }
            });
        }
    });
    match failure.into_inner().unwrap_or(None) {
        Some(e) => Err(e),
        None => Ok(written.into_inner()),
    }
}

fn plan(repo: &Repository, jobs: &[FileJob], nodes: &[&Node]) -> Result<Vec<(Id, Vec<Need>)>> {
    let index = repo.index();
    let mut by_pack: HashMap<Id, HashMap<Id, Need>> = HashMap::new();
    for (j, job) in jobs.iter().enumerate() {
        let mut offset = 0u64;
        let node = nodes[job.entry];
        for id in node.content.iter().flatten().filter(|_| job.write) {
            let loc = *index.get(id).ok_or_else(|| {
                Error::missing(format!(
                    "blob {id} of {} is missing from the repository (run `strata check`)",
                    job.path.display()
                ))
            })?;
            by_pack
                .entry(loc.pack)
                .or_default()
                .entry(*id)
                .or_insert_with(|| Need {
                    id: *id,
                    loc,
                    targets: Vec::new(),
                })
                .targets
                .push((j, offset));
            offset += u64::from(loc.raw_length);
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
    Ok(packs)
}

fn restore_pack(
    repo: &Repository,
    pack: &Id,
    needs: &[Need],
    jobs: &[FileJob],
    nodes: &[&Node],
    progress: &dyn RestoreProgress,
) -> Result<u64> {
    let name = pack.to_hex();
    let mut written = 0u64;
    // One plaintext buffer per pack, reused for every blob in it.
    let mut plain = Vec::new();
    let spans = needs
        .iter()
        .map(|n| (u64::from(n.loc.offset), u64::from(n.loc.length)));
    for (range, start, end) in crate::repository::merge_runs(spans, MAX_GAP, MAX_RUN) {
        let mut run = repo
            .storage()
            .read_range(ObjectKind::Pack, &name, start, end - start)?;
        for need in &needs[range] {
            let from = (u64::from(need.loc.offset) - start) as usize;
            let sealed = &mut run[from..from + need.loc.length as usize];
            repo.open_blob_into(
                &need.id,
                need.loc.kind,
                sealed,
                need.loc.raw_length,
                &mut plain,
            )
            .map_err(|e| e.context(format!("pack {name}")))?;
            written += write_targets(need, &plain, jobs, nodes, progress)?;
        }
    }
    Ok(written)
}

/// Write one blob's plaintext everywhere the files need it.
fn write_targets(
    need: &Need,
    plain: &[u8],
    jobs: &[FileJob],
    nodes: &[&Node],
    progress: &dyn RestoreProgress,
) -> Result<u64> {
    let mut written = 0;
    for &(job, offset) in &need.targets {
        let path = &jobs[job].path;
        let file =
            super::fsops::open_for_write(path).map_err(|e| Error::io(path, "cannot open", e))?;
        write_stream(
            &file,
            nodes[jobs[job].entry].extents.as_deref(),
            offset,
            plain,
        )
        .map_err(|e| Error::io(path, "cannot write", e))?;
        written += plain.len() as u64;
        progress.bytes_written(plain.len() as u64);
    }
    Ok(written)
}

/// The pack is gone: a prune deleted it after storing its blobs elsewhere
/// (docs/design.md, "Prune"). Read each blob where the index says now.
fn restore_moved(
    repo: &Repository,
    needs: &[Need],
    jobs: &[FileJob],
    nodes: &[&Node],
    progress: &dyn RestoreProgress,
) -> Result<u64> {
    let mut written = 0;
    for need in needs {
        let plain = repo.read_blob(&need.id)?;
        written += write_targets(need, &plain, jobs, nodes, progress)?;
    }
    Ok(written)
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

pub(super) fn verify(
    repo: &Repository,
    jobs: &[FileJob],
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
