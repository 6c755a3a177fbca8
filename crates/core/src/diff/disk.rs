//! Comparing a directory of a snapshot with a directory on disk: what
//! changed since the backup.
//!
//! The snapshot is the old side, the disk the new one; entries are merged
//! by name and reported as in a comparison of two snapshots. Whether a
//! file's data changed is decided, by default, from its size and mtime,
//! like rsync's quick check. The ctime and inode that backup also looks at
//! are left out here: chmod, chown, a new hard link or a restore change them
//! without touching data, and would make a diff call unchanged files
//! modified. So a file rewritten with its old size and mtime put back is
//! missed; with [`DiskOptions::content`] every file of unchanged size is
//! read, chunked and hashed with the repository key as a backup would, and
//! its blob ids compared with the snapshot's: exact, at the cost of reading.
//!
//! Entries on disk that cannot be read are reported as warnings, never as
//! removed or changed.

use std::ffi::OsStr;
use std::fs::Metadata;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use super::{merge, Change, DiffEntry, DiffStats, Differ, Side};
use crate::error::Result;
use crate::format::tree::{Node, NodeKind};
use crate::id::Id;
use crate::repository::Repository;
use crate::walk::{kind_of, node_reusing, ExcludeOptions, Excluder, NameCache};

#[derive(Clone, Debug, Default)]
pub struct DiskOptions {
    /// Read and hash every file whose size is unchanged, and compare blob
    /// ids instead of trusting size and mtime.
    pub content: bool,
    /// Entries on disk these rules exclude (as in a backup) are left out of
    /// the comparison, together with their counterparts in the snapshot.
    pub excludes: ExcludeOptions,
}

/// Compare the snapshot tree `tree` with the directory `dir` (absolute, so
/// that exclude patterns anchored at `/` apply), calling `report` for each
/// difference in path order and `warn` for each entry that cannot be read.
/// Paths are reported under `dir`. A modified file counts in the totals
/// with its whole old and new sizes.
pub fn run(
    repo: &Repository,
    tree: Id,
    dir: &Path,
    opts: &DiskOptions,
    report: &mut dyn FnMut(&DiffEntry),
    warn: &mut dyn FnMut(&Path, &str),
) -> Result<DiffStats> {
    let mut d = DiskDiffer {
        differ: Differ {
            repo,
            report,
            stats: DiffStats::default(),
        },
        warn,
        names: NameCache::default(),
        excluder: Excluder::new(opts.excludes.clone())?,
        content: opts.content,
    };
    d.dir(Some(tree), dir)?;
    Ok(d.differ.stats)
}

/// An entry of a directory on disk: its raw name and what `lstat` said.
type DiskEntry = (Vec<u8>, io::Result<Metadata>);
/// A directory's entries, sorted by name.
type Listing = Vec<DiskEntry>;

struct DiskDiffer<'a> {
    differ: Differ<'a>,
    warn: &'a mut dyn FnMut(&Path, &str),
    names: NameCache,
    excluder: Excluder,
    content: bool,
}

impl DiskDiffer<'_> {
    /// Compare the snapshot tree `tree` (`None`: nothing) with `dir`.
    fn dir(&mut self, tree: Option<Id>, dir: &Path) -> Result<()> {
        let old = self.differ.load(tree)?;
        let Some(new) = self.list(dir) else {
            return Ok(());
        };
        merge(
            old,
            new,
            |n| &n.name,
            |e| &e.0,
            |side| self.entry(side, dir),
        )
    }

    /// The entries of `dir`, or `None` (after a warning) if it cannot be
    /// listed: then nothing is said about its contents.
    fn list(&mut self, dir: &Path) -> Option<Listing> {
        let entries = match std::fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) => {
                (self.warn)(dir, &format!("cannot list directory: {e}"));
                return None;
            }
        };
        let mut out = Vec::new();
        for entry in entries {
            match entry {
                Ok(e) => out.push((e.file_name().into_vec(), e.metadata())),
                Err(e) => (self.warn)(dir, &format!("cannot list directory: {e}")),
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Some(out)
    }

    fn entry(&mut self, side: Side<Node, DiskEntry>, dir: &Path) -> Result<()> {
        let (old, (name, meta)) = match side {
            Side::Old(old) => return self.differ.removed(&old, dir),
            Side::New(new) => (None, new),
            Side::Both(old, new) => (Some(old), new),
        };
        let path = dir.join(OsStr::from_bytes(&name));
        let meta = match meta {
            Ok(m) => m,
            Err(e) => {
                (self.warn)(&path, &format!("cannot stat: {e}"));
                return Ok(());
            }
        };
        if self.excluder.excludes(&path, &meta) {
            return Ok(());
        }
        match old {
            Some(old) => self.both(&old, &path, &name, &meta),
            None => self.added(&path, &meta),
        }
    }

    /// Report an entry only on disk, and everything under it.
    fn added(&mut self, path: &Path, meta: &Metadata) -> Result<()> {
        let kind = kind_of(meta);
        let stats = &mut self.differ.stats;
        stats.added += 1;
        if kind == NodeKind::File {
            stats.bytes_added += meta.len();
        }
        self.differ.emit(path.to_path_buf(), kind, Change::Added);
        if kind == NodeKind::Dir {
            self.dir(None, path)?;
        }
        Ok(())
    }

    fn both(&mut self, old: &Node, path: &Path, name: &[u8], meta: &Metadata) -> Result<()> {
        // Xattrs and link targets are read only if the inode changed.
        let new = match node_reusing(path, name, meta, &mut self.names, Some(old)) {
            Ok(n) => n,
            Err(e) => {
                (self.warn)(path, &e.to_string());
                return Ok(());
            }
        };
        let Some(data_changed) = self.data_changed(old, &new, path) else {
            return Ok(());
        };
        let bytes = if data_changed {
            (new.size, old.size)
        } else {
            (0, 0)
        };
        if self.differ.compare(old, &new, path, data_changed, bytes) && new.is_dir() {
            self.dir(old.subtree, path)?;
        }
        Ok(())
    }

    /// Whether the data of `new`, at `path` on disk, differs from `old`'s;
    /// `None` (after a warning) if the file cannot be read to tell.
    fn data_changed(&mut self, old: &Node, new: &Node, path: &Path) -> Option<bool> {
        if old.kind != new.kind {
            return Some(true);
        }
        if new.kind != NodeKind::File {
            return Some(old.target != new.target || old.rdev != new.rdev);
        }
        if old.size != new.size {
            return Some(true);
        }
        if !self.content {
            return Some(old.mtime != new.mtime);
        }
        match crate::backup::content_of(self.differ.repo, path) {
            Ok((ids, extents)) => {
                Some(old.content.as_ref() != Some(&ids) || old.extents != extents)
            }
            Err(e) => {
                (self.warn)(path, &format!("cannot read: {e}"));
                None
            }
        }
    }
}
