//! Comparing two snapshots: what was added, removed, changed in content, or
//! changed only in metadata.
//!
//! The two trees are merged name by name; a subtree whose id is the same on
//! both sides is identical and skipped without being read, so a diff costs
//! in proportion to what changed. A removed directory is reported once, with
//! the number of files and bytes it held.

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
    /// Path inside the snapshots, as raw bytes joined with `/`.
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
    /// Bytes of data in the second snapshot that the first did not have.
    pub bytes_added: u64,
    /// Bytes of data in the first snapshot that the second no longer has.
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
        let (mut i, mut j) = (0, 0);
        while i < old.len() || j < new.len() {
            let order = match (old.get(i), new.get(j)) {
                (Some(x), Some(y)) => x.name.cmp(&y.name),
                (Some(_), None) => std::cmp::Ordering::Less,
                _ => std::cmp::Ordering::Greater,
            };
            match order {
                std::cmp::Ordering::Less => {
                    self.removed(&old[i], prefix)?;
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    self.added(&new[j], prefix)?;
                    j += 1;
                }
                std::cmp::Ordering::Equal => {
                    self.both(&old[i], &new[j], prefix)?;
                    i += 1;
                    j += 1;
                }
            }
        }
        Ok(())
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
        if a.kind != b.kind {
            self.stats.type_changed += 1;
            self.stats.bytes_removed += a.size;
            self.stats.bytes_added += b.size;
            self.emit(path, b.kind, Change::TypeChanged);
            return Ok(());
        }
        let fields = metadata_changes(a, b);
        let data_changed = a.content != b.content
            || a.target != b.target
            || a.rdev != b.rdev
            || a.extents != b.extents;
        if data_changed {
            self.stats.modified += 1;
            let (added, removed) = self.changed_bytes(a, b);
            self.stats.bytes_added += added;
            self.stats.bytes_removed += removed;
            self.emit(path.clone(), b.kind, Change::Modified { metadata: fields });
        } else if !fields.is_empty() {
            self.stats.metadata_only += 1;
            self.emit(path.clone(), b.kind, Change::Metadata(fields));
        }
        if b.kind == NodeKind::Dir {
            self.trees(a.subtree, b.subtree, &path)?;
        }
        Ok(())
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

fn name(n: &Node) -> &std::ffi::OsStr {
    std::os::unix::ffi::OsStrExt::from_bytes(&n.name)
}
