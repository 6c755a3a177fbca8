//! Comparing two snapshots: what was added, removed, changed in content, or
//! changed only in metadata.
//!
//! The two trees are merged name by name; a subtree whose id is the same on
//! both sides is identical and skipped without being read, so a diff costs
//! in proportion to what changed. A removed directory is reported once, with
//! the number of files and bytes it held.

pub mod disk;

use std::cmp::Ordering;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::format::tree::{Node, NodeKind};
use crate::id::Id;
use crate::repository::Repository;

/// How an entry differs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Added,
    /// Removed; for a directory, everything it held went with it.
    Removed {
        files: u64,
        bytes: u64,
    },
    /// The data changed (file content, link target, device number), and
    /// perhaps metadata too.
    Modified {
        metadata: Vec<&'static str>,
    },
    /// Only metadata changed: the fields named.
    Metadata(Vec<&'static str>),
    /// Same name, different type (for example a file became a directory).
    TypeChanged,
}

#[derive(Clone, Debug)]
pub struct DiffEntry {
    /// Path inside the snapshots, as raw bytes joined with `/` (against
    /// the disk: the path on disk).
    pub path: PathBuf,
    pub kind: NodeKind,
    pub change: Change,
}

/// Totals of a diff.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiffStats {
    pub added: u64,
    pub removed: u64,
    pub modified: u64,
    pub metadata_only: u64,
    pub type_changed: u64,
    /// Bytes of data in the second snapshot that the first did not have
    /// (against the disk: whole sizes of added and modified files).
    pub bytes_added: u64,
    /// Bytes of data in the first snapshot that the second no longer has
    /// (against the disk: whole old sizes of removed and modified files).
    pub bytes_removed: u64,
}

/// Compare the trees `a` (older) and `b` (newer), calling `report` for each
/// difference in path order. Paths are reported below `prefix` (the
/// snapshot path of the two trees, `/` for root trees).
pub fn run(
    repo: &Repository,
    a: Id,
    b: Id,
    prefix: &Path,
    report: &mut dyn FnMut(&DiffEntry),
) -> Result<DiffStats> {
    let mut d = Differ {
        repo,
        report,
        stats: DiffStats::default(),
    };
    d.trees(Some(a), Some(b), prefix)?;
    Ok(d.stats)
}

struct Differ<'a> {
    repo: &'a Repository,
    report: &'a mut dyn FnMut(&DiffEntry),
    stats: DiffStats,
}

impl Differ<'_> {
    fn load(&self, id: Option<Id>) -> Result<Vec<Node>> {
        match id {
            Some(id) => Ok(self.repo.load_tree(&id)?.nodes),
            None => Ok(Vec::new()),
        }
    }

    fn trees(&mut self, a: Option<Id>, b: Option<Id>, prefix: &Path) -> Result<()> {
        if a == b {
            return Ok(());
        }
        let (old, new) = (self.load(a)?, self.load(b)?);
        merge(
            old,
            new,
            |n| &n.name,
            |n| &n.name,
            |side| match side {
                Side::Both(x, y) => self.both(&x, &y, prefix),
                Side::Old(x) => self.removed(&x, prefix),
                Side::New(y) => self.added(&y, prefix),
            },
        )
    }

    fn emit(&mut self, path: PathBuf, kind: NodeKind, change: Change) {
        (self.report)(&DiffEntry { path, kind, change });
    }

    fn added(&mut self, n: &Node, prefix: &Path) -> Result<()> {
        let path = prefix.join(name(n));
        self.stats.added += 1;
        self.stats.bytes_added += n.size;
        self.emit(path.clone(), n.kind, Change::Added);
        if n.kind == NodeKind::Dir {
            self.trees(None, n.subtree, &path)?;
        }
        Ok(())
    }

    fn removed(&mut self, n: &Node, prefix: &Path) -> Result<()> {
        let (files, bytes) = match (n.kind, n.subtree) {
            (NodeKind::Dir, Some(sub)) => self.contents(sub)?,
            (NodeKind::File, _) => (1, n.size),
            _ => (0, 0),
        };
        self.stats.removed += 1;
        self.stats.bytes_removed += bytes;
        self.emit(
            prefix.join(name(n)),
            n.kind,
            Change::Removed { files, bytes },
        );
        Ok(())
    }

    /// Files and bytes under a tree.
    fn contents(&self, tree: Id) -> Result<(u64, u64)> {
        let (mut files, mut bytes) = (0, 0);
        for n in self.repo.load_tree(&tree)?.nodes {
            match (n.kind, n.subtree) {
                (NodeKind::Dir, Some(sub)) => {
                    let (f, b) = self.contents(sub)?;
                    files += f;
                    bytes += b;
                }
                (NodeKind::File, _) => {
                    files += 1;
                    bytes += n.size;
                }
                _ => {}
            }
        }
        Ok((files, bytes))
    }

    fn both(&mut self, a: &Node, b: &Node, prefix: &Path) -> Result<()> {
        let path = prefix.join(name(b));
        let data_changed = a.content != b.content
            || a.target != b.target
            || a.rdev != b.rdev
            || a.extents != b.extents;
        let bytes = if data_changed && a.kind == b.kind {
            self.changed_bytes(a, b)
        } else {
            (0, 0)
        };
        if self.compare(a, b, &path, data_changed, bytes) && b.kind == NodeKind::Dir {
            self.trees(a.subtree, b.subtree, &path)?;
        }
        Ok(())
    }

    /// Report how `b` differs from `a` at `path`, given whether their data
    /// differs and the bytes (added, removed) that change stands for.
    /// Returns whether both are of the same kind.
    fn compare(
        &mut self,
        a: &Node,
        b: &Node,
        path: &Path,
        data_changed: bool,
        (added, removed): (u64, u64),
    ) -> bool {
        if a.kind != b.kind {
            self.stats.type_changed += 1;
            self.stats.bytes_removed += a.size;
            self.stats.bytes_added += b.size;
            self.emit(path.to_path_buf(), b.kind, Change::TypeChanged);
            return false;
        }
        let fields = metadata_changes(a, b);
        if data_changed {
            self.stats.modified += 1;
            self.stats.bytes_added += added;
            self.stats.bytes_removed += removed;
            self.emit(
                path.to_path_buf(),
                b.kind,
                Change::Modified { metadata: fields },
            );
        } else if !fields.is_empty() {
            self.stats.metadata_only += 1;
            self.emit(path.to_path_buf(), b.kind, Change::Metadata(fields));
        }
        true
    }

    /// Bytes of chunks only in the new version, and only in the old one.
    fn changed_bytes(&self, a: &Node, b: &Node) -> (u64, u64) {
        let ids = |n: &Node| -> HashSet<Id> { n.content.iter().flatten().copied().collect() };
        let (old, new) = (ids(a), ids(b));
        let index = self.repo.index();
        let size = |set: &HashSet<Id>, other: &HashSet<Id>| -> u64 {
            set.difference(other)
                .filter_map(|id| index.get(id))
                .map(|l| u64::from(l.raw_length))
                .sum()
        };
        (size(&new, &old), size(&old, &new))
    }
}

/// The metadata fields that differ. Directory mtimes are left out: they
/// change whenever an entry is added or removed, which is reported itself.
fn metadata_changes(a: &Node, b: &Node) -> Vec<&'static str> {
    let mut out = Vec::new();
    if a.mode != b.mode {
        out.push("mode");
    }
    if a.uid != b.uid || a.gid != b.gid {
        out.push("owner");
    }
    if a.mtime != b.mtime && b.kind != NodeKind::Dir {
        out.push("mtime");
    }
    if a.xattrs != b.xattrs {
        out.push("xattrs");
    }
    out
}

/// An entry of the old list, of the new one, or of both under one name.
enum Side<A, B> {
    Old(A),
    New(B),
    Both(A, B),
}

/// Walk two lists sorted by name side by side, calling `visit` once for
/// each name.
fn merge<A, B>(
    a: Vec<A>,
    b: Vec<B>,
    key_a: impl Fn(&A) -> &[u8],
    key_b: impl Fn(&B) -> &[u8],
    mut visit: impl FnMut(Side<A, B>) -> Result<()>,
) -> Result<()> {
    let (mut a, mut b) = (a.into_iter().peekable(), b.into_iter().peekable());
    loop {
        let order = match (a.peek(), b.peek()) {
            (None, None) => return Ok(()),
            (Some(x), Some(y)) => key_a(x).cmp(key_b(y)),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
        };
        // The peeked entries exist, so `next` yields them.
        let side = match order {
            Ordering::Less => a.next().map(Side::Old),
            Ordering::Greater => b.next().map(Side::New),
            Ordering::Equal => a.next().zip(b.next()).map(|(x, y)| Side::Both(x, y)),
        };
        if let Some(side) = side {
            visit(side)?;
        }
    }
}

fn name(n: &Node) -> &std::ffi::OsStr {
    std::os::unix::ffi::OsStrExt::from_bytes(&n.name)
}
