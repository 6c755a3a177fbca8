//! Repairing snapshots: removing what refers to lost data, so that a
//! damaged repository becomes consistent again with the data that survives.
//!
//! For each snapshot the trees are walked, and
//! - a file with a data blob the index does not have (or, with `read_data`,
//!   a blob that cannot be read and verified) is removed: a file restored
//!   with a piece missing would look whole and be wrong, so it is left out
//!   and named in the report. (restic instead keeps such files with the
//!   missing chunks cut out.)
//! - a directory whose tree cannot be read is removed, not replaced by an
//!   empty one, which a mirror restore (`--delete`) would take at its word;
//! - entries that restore refuses (unsafe names, directories without a
//!   tree) are removed.
//!
//! Trees that change are written anew (unchanged ones keep their ids, so a
//! repair costs in proportion to the damage) and a new snapshot is saved
//! with the same time, host and paths, the tag `repaired`, `partial` set
//! and `original` naming the damaged snapshot, which is kept unless asked
//! otherwise. A snapshot whose root tree is unreadable keeps nothing and
//! gets no replacement.
//!
//! Planning reads and changes nothing; [`execute`] writes the planned trees,
//! then their index, then the snapshots, and only then removes originals.
//! The caller holds an exclusive lock across both, so no prune can delete
//! what the plan found present.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format::pack::BlobKind;
use crate::format::snapshot::Snapshot;
use crate::format::to_cbor;
use crate::format::tree::{Node, NodeKind, Tree};
use crate::id::Id;
use crate::packer::BlobSaver;
use crate::repository::Repository;
use crate::storage::ObjectKind;

/// The tag every repaired snapshot carries.
pub const TAG: &str = "repaired";

#[derive(Clone, Debug, Default)]
pub struct RepairOptions {
    /// Read and verify every data blob the snapshots use, and treat those
    /// that fail like missing ones (slow: reads all data once).
    pub read_data: bool,
}

/// An entry left out of a repaired snapshot, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Removed {
    /// Path inside the snapshot (`/data/file`).
    pub path: PathBuf,
    pub kind: NodeKind,
    pub reason: String,
}

/// What repair does to one snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Everything it refers to is present: left alone.
    Intact,
    /// A new snapshot with root tree `tree` replaces it.
    Repaired { tree: Id, removed: Vec<Removed> },
    /// Its root tree is unreadable: nothing can be kept.
    Lost { reason: String },
}

#[derive(Clone, Debug)]
pub struct SnapshotPlan {
    pub id: Id,
    pub snapshot: Snapshot,
    pub outcome: Outcome,
    /// A snapshot an earlier repair already wrote with the same contents:
    /// it is not written again, so repeating a repair changes nothing.
    pub replaced_by: Option<Id>,
}

/// What a repair would write: a value to print (`--dry-run`) or execute.
#[derive(Clone, Debug, Default)]
pub struct RepairPlan {
    pub snapshots: Vec<SnapshotPlan>,
    /// Encoded tree blobs the repaired snapshots need, by id.
    trees: HashMap<Id, Vec<u8>>,
}

impl RepairPlan {
    /// Whether executing the plan would write anything.
    pub fn changes_anything(&self) -> bool {
        self.snapshots.iter().any(|s| s.outcome != Outcome::Intact)
    }
}

/// What [`execute`] did.
#[derive(Clone, Debug, Default)]
pub struct Executed {
    /// (damaged snapshot, the snapshot that replaces it: new, or the one
    /// an earlier repair wrote)
    pub replacements: Vec<(Id, Id)>,
    /// Damaged snapshots removed (with `forget`).
    pub forgotten: Vec<Id>,
}

/// Decide, for each of `snaps`, what to keep. Reads trees (and, with
/// `read_data`, data) but writes nothing. Refuses to run while the index
/// lists packs storage does not have: lost data must first be made visible
/// by `repair index`, or a repaired tree could deduplicate against a blob
/// that is gone.
pub fn plan(
    repo: &Repository,
    snaps: Vec<(Id, Snapshot)>,
    opts: &RepairOptions,
) -> Result<RepairPlan> {
    repo.load_index()?;
    refuse_stale_index(repo)?;
    let (all, _) = repo.snapshots()?;
    let mut rewriter = Rewriter {
        repo,
        read_data: opts.read_data,
        blobs: HashMap::new(),
        memo: HashMap::new(),
        trees: HashMap::new(),
    };
    let mut planned = Vec::new();
    for (id, snapshot) in snaps {
        let outcome = rewriter.outcome(snapshot.tree)?;
        let replaced_by = match &outcome {
            Outcome::Repaired { tree, .. } => earlier_repair(&all, id, &snapshot, *tree),
            _ => None,
        };
        planned.push(SnapshotPlan {
            id,
            snapshot,
            outcome,
            replaced_by,
        });
    }
    Ok(RepairPlan {
        snapshots: planned,
        trees: rewriter.trees,
    })
}

/// Write the plan: new trees, their index, the new snapshots; then, with
/// `forget`, remove the damaged snapshots (also those nothing could be
/// kept of). Each step finishes before the next begins, so a crash leaves
/// at worst both the damaged snapshot and its replacement.
pub fn execute(repo: &Arc<Repository>, plan: &RepairPlan, forget: bool) -> Result<Executed> {
    let saver = BlobSaver::new(repo.clone());
    for (id, bytes) in &plan.trees {
        saver.save_with_id(BlobKind::Tree, *id, bytes)?;
    }
    saver.finish()?;
    let mut done = Executed::default();
    for p in &plan.snapshots {
        if let Outcome::Repaired { tree, .. } = &p.outcome {
            let new = match p.replaced_by {
                Some(earlier) => earlier,
                None => repo.save_snapshot(&replacement(p.id, &p.snapshot, *tree))?,
            };
            done.replacements.push((p.id, new));
        }
    }
    if forget {
        for p in plan
            .snapshots
            .iter()
            .filter(|p| p.outcome != Outcome::Intact)
        {
            repo.storage()
                .remove(ObjectKind::Snapshot, &p.id.to_hex())?;
            done.forgotten.push(p.id);
        }
    }
    Ok(done)
}

/// The snapshot that replaces the damaged `old` (id `id`).
fn replacement(id: Id, old: &Snapshot, tree: Id) -> Snapshot {
    let mut new = old.clone();
    new.tree = tree;
    new.partial = true;
    new.original = Some(first_original(id, old));
    if !new.tags.iter().any(|t| t == TAG) {
        new.tags.push(TAG.to_string());
    }
    new.program_version = env!("CARGO_PKG_VERSION").to_string();
    new
}

/// The snapshot a repair chain started from: a repaired snapshot repaired
/// again still points at the first damaged one.
fn first_original(id: Id, snap: &Snapshot) -> Id {
    snap.original.unwrap_or(id)
}

/// A replacement of `id` with root `tree` that an earlier repair wrote.
fn earlier_repair(all: &[(Id, Snapshot)], id: Id, snap: &Snapshot, tree: Id) -> Option<Id> {
    let original = first_original(id, snap);
    all.iter()
        .find(|(_, s)| s.tree == tree && s.original == Some(original))
        .map(|(other, _)| *other)
}

fn refuse_stale_index(repo: &Repository) -> Result<()> {
    let stored: std::collections::HashSet<String> = repo
        .storage()
        .list(ObjectKind::Pack)?
        .into_iter()
        .map(|o| o.name)
        .collect();
    let index = repo.index();
    let lost: Vec<&Id> = index
        .packs()
        .filter(|p| !stored.contains(&p.to_hex()))
        .collect();
    match lost.first() {
        None => Ok(()),
        Some(first) => Err(Error::missing(format!(
            "the index lists {} pack(s) that are not in the repository (such as {first}): \
             run `strata repair index` first, then repair the snapshots",
            lost.len()
        ))),
    }
}

/// What rewriting one tree gives; removed paths are relative to the tree.
#[derive(Clone, Debug)]
enum Rewritten {
    Same,
    Changed(Id, Vec<Removed>),
    Unreadable(String),
}

/// What becomes of one entry of a tree.
enum Entry {
    Keep(Node),
    Replace(Node, Vec<Removed>),
    Drop(Removed),
}

impl Removed {
    fn new(name: &[u8], kind: NodeKind, reason: String) -> Removed {
        Removed {
            path: PathBuf::from(OsStr::from_bytes(name)),
            kind,
            reason,
        }
    }

    /// The same removal seen from a directory above.
    fn under(self, dir: &Path) -> Removed {
        Removed {
            path: dir.join(self.path),
            ..self
        }
    }
}

struct Rewriter<'a> {
    repo: &'a Repository,
    read_data: bool,
    /// Data blobs looked at: `Some(reason)` if unusable.
    blobs: HashMap<Id, Option<String>>,
    /// Trees looked at: snapshots share most of theirs.
    memo: HashMap<Id, Rewritten>,
    /// New trees, encoded.
    trees: HashMap<Id, Vec<u8>>,
}

impl Rewriter<'_> {
    /// What becomes of a snapshot with the root tree `root`.
    fn outcome(&mut self, root: Id) -> Result<Outcome> {
        Ok(match self.tree(root)? {
            Rewritten::Same => Outcome::Intact,
            Rewritten::Changed(tree, removed) => Outcome::Repaired {
                tree,
                removed: removed
                    .into_iter()
                    .map(|r| r.under(Path::new("/")))
                    .collect(),
            },
            Rewritten::Unreadable(reason) => Outcome::Lost { reason },
        })
    }

    fn tree(&mut self, id: Id) -> Result<Rewritten> {
        if let Some(done) = self.memo.get(&id) {
            return Ok(done.clone());
        }
        let result = match self.repo.load_tree(&id) {
            Ok(tree) => self.rewrite(tree)?,
            Err(e) if e.is_damage() => Rewritten::Unreadable(format!("tree {}: {e}", id.short())),
            Err(e) => return Err(e),
        };
        self.memo.insert(id, result.clone());
        Ok(result)
    }

    fn rewrite(&mut self, tree: Tree) -> Result<Rewritten> {
        let mut nodes = Vec::with_capacity(tree.nodes.len());
        let mut removed = Vec::new();
        for node in tree.nodes {
            match self.entry(node)? {
                Entry::Keep(node) => nodes.push(node),
                Entry::Replace(node, below) => {
                    nodes.push(node);
                    removed.extend(below);
                }
                Entry::Drop(r) => removed.push(r),
            }
        }
        if removed.is_empty() {
            return Ok(Rewritten::Same);
        }
        let bytes = to_cbor(&Tree { nodes });
        let id = self.repo.key().blob_id(&bytes);
        self.trees.insert(id, bytes);
        Ok(Rewritten::Changed(id, removed))
    }

    fn entry(&mut self, mut node: Node) -> Result<Entry> {
        let drop = |node: &Node, reason: &str| {
            Ok(Entry::Drop(Removed::new(
                &node.name,
                node.kind,
                reason.to_string(),
            )))
        };
        if !Node::valid_name(&node.name) {
            return drop(&node, "its name is unsafe to restore");
        }
        match node.kind {
            NodeKind::File => match self.unusable_content(&node)? {
                Some(reason) => drop(&node, &reason),
                None => Ok(Entry::Keep(node)),
            },
            NodeKind::Dir => {
                let Some(sub) = node.subtree else {
                    return drop(&node, "the directory has no tree");
                };
                match self.tree(sub)? {
                    Rewritten::Same => Ok(Entry::Keep(node)),
                    Rewritten::Unreadable(reason) => drop(&node, &reason),
                    Rewritten::Changed(new, below) => {
                        let dir = PathBuf::from(OsStr::from_bytes(&node.name));
                        node.subtree = Some(new);
                        let below = below.into_iter().map(|r| r.under(&dir)).collect();
                        Ok(Entry::Replace(node, below))
                    }
                }
            }
            _ => Ok(Entry::Keep(node)),
        }
    }

    /// Why a file's data cannot be restored, if it cannot.
    fn unusable_content(&mut self, node: &Node) -> Result<Option<String>> {
        for id in node.content.iter().flatten() {
            if let Some(reason) = self.blob_problem(*id)? {
                return Ok(Some(reason));
            }
        }
        Ok(None)
    }

    fn blob_problem(&mut self, id: Id) -> Result<Option<String>> {
        if let Some(known) = self.blobs.get(&id) {
            return Ok(known.clone());
        }
        let (kind, chain) = {
            let index = self.repo.index();
            (index.get(&id).map(|l| l.kind), index.chain_listed(&id))
        };
        let problem = match kind {
            None => Some(format!("data blob {id} is missing")),
            Some(BlobKind::Data) if !chain => {
                Some(format!("data blob {id} is a delta whose base is missing"))
            }
            Some(BlobKind::Tree) => Some(format!("data blob {id} is indexed as a tree")),
            Some(BlobKind::Data) if self.read_data => match self.repo.read_blob(&id) {
                Ok(_) => None,
                Err(e) if e.is_damage() => Some(format!("data blob {id} is unreadable: {e}")),
                Err(e) => return Err(e),
            },
            Some(BlobKind::Data) => None,
        };
        self.blobs.insert(id, problem.clone());
        Ok(problem)
    }
}
