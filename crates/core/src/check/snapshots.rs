//! Checking what snapshots reference: every tree loads, every entry name is
//! safe, every directory has a tree and every data blob is stored.
//!
//! Snapshots share most of their trees, so each tree is read once. Damage
//! is first recorded against the tree that holds it; then every snapshot
//! that reaches a damaged tree is found by descending, in memory, only into
//! subtrees known to lead to damage. A problem shared by several snapshots
//! is therefore reported once, naming all of them, at the cost of keeping
//! each tree's list of subtrees while the check runs.

use std::collections::HashMap;

use super::{CheckReport, Lost};
use crate::error::Result;
use crate::format::quote_bytes;
use crate::format::tree::{Node, NodeKind, Tree};
use crate::id::Id;
use crate::repository::{Index, Repository};

/// One problem inside a tree: about an entry, or (`entry: None`) about the
/// tree itself, which could not be read.
struct Damage {
    entry: Option<Vec<u8>>,
    message: String,
}

/// What reading one tree found: its subtrees, by entry name, and damage.
#[derive(Default)]
struct TreeInfo {
    subtrees: Vec<(Vec<u8>, Id)>,
    damage: Vec<Damage>,
}

/// Every tree reachable from the snapshots, read once.
#[derive(Default)]
struct Trees {
    read: HashMap<Id, TreeInfo>,
    /// Memo of [`Trees::leads_to_damage`].
    tainted: HashMap<Id, bool>,
}

/// Check the trees of every snapshot; `lost` holds the packs the index
/// lists but storage does not hold and the copies of blobs found damaged:
/// a blob with no other copy counts as missing or damaged.
pub(super) fn check(repo: &Repository, lost_packs: &Lost, report: &mut CheckReport) -> Result<()> {
    let (snaps, bad) = repo.snapshots()?;
    report.errors.extend(
        bad.into_iter()
            .map(|(name, e)| format!("snapshot {name}: {e}")),
    );
    report.snapshots = snaps.len();
    let mut trees = Trees::default();
    for (_, snap) in &snaps {
        trees.read_all(repo, lost_packs, snap.tree, report);
    }
    let mut found = Findings::default();
    for (id, snap) in &snaps {
        if trees.leads_to_damage(snap.tree) {
            report.damaged_snapshots.push(*id);
            trees.collect(snap.tree, b"/", *id, &mut found);
        }
    }
    report.errors.extend(found.messages());
    Ok(())
}

impl Trees {
    /// Read every tree under `root` not read before, recording its
    /// subtrees and damage.
    fn read_all(
        &mut self,
        repo: &Repository,
        lost_packs: &Lost,
        root: Id,
        report: &mut CheckReport,
    ) {
        let mut stack = vec![root];
        while let Some(id) = stack.pop() {
            if self.read.contains_key(&id) {
                continue;
            }
            let mut info = TreeInfo::default();
            match repo.load_tree(&id) {
                Ok(tree) => {
                    report.trees += 1;
                    if !tree.names_in_order() {
                        info.damage.push(Damage {
                            entry: None,
                            message: format!(
                                "tree {} has duplicate or unsorted names: restore refuses it",
                                id.short()
                            ),
                        });
                    }
                    let index = repo.index();
                    for node in &tree.nodes {
                        info.damage.extend(entry_damage(node, &index, lost_packs));
                    }
                    info.subtrees = subtrees(tree);
                }
                Err(e) => info.damage.push(Damage {
                    entry: None,
                    message: format!("tree {}: {e}", id.short()),
                }),
            }
            stack.extend(info.subtrees.iter().map(|(_, sub)| *sub));
            self.read.insert(id, info);
        }
    }

    /// Whether the tree `id` or anything below it is damaged.
    fn leads_to_damage(&mut self, id: Id) -> bool {
        if let Some(&known) = self.tainted.get(&id) {
            return known;
        }
        // Trees are content-addressed, so they cannot contain themselves:
        // the recursion ends. Its depth is the depth of the directories.
        let Some(info) = self.read.get(&id) else {
            return false;
        };
        let own = !info.damage.is_empty();
        let subs: Vec<Id> = info.subtrees.iter().map(|(_, sub)| *sub).collect();
        let tainted = own || subs.into_iter().any(|s| self.leads_to_damage(s));
        self.tainted.insert(id, tainted);
        tainted
    }

    /// Record, for `snapshot`, the damage under tree `id` found at `path`,
    /// descending only into subtrees that lead to damage (and, as trees
    /// cannot contain themselves, never in circles).
    fn collect(&mut self, id: Id, path: &[u8], snapshot: Id, found: &mut Findings) {
        if !self.leads_to_damage(id) {
            return;
        }
        let Some(info) = self.read.get(&id) else {
            return;
        };
        for d in &info.damage {
            let at = match &d.entry {
                Some(name) => [path, name].concat(),
                None => path.to_vec(),
            };
            found.add(&quote_bytes(&at), &d.message, snapshot);
        }
        let subs = info.subtrees.clone();
        for (name, sub) in subs {
            let child = [path, &name, b"/"].concat();
            self.collect(sub, &child, snapshot, found);
        }
    }
}

/// The subtrees of a tree's directories, with their names.
fn subtrees(tree: Tree) -> Vec<(Vec<u8>, Id)> {
    tree.nodes
        .into_iter()
        .filter(Node::is_dir)
        .filter_map(|n| Some((n.name, n.subtree?)))
        .collect()
}

/// What is wrong with one entry of a tree, if anything.
fn entry_damage(node: &Node, index: &Index, lost: &Lost) -> Vec<Damage> {
    let damage = |message: String| Damage {
        entry: Some(node.name.clone()),
        message,
    };
    let mut out = Vec::new();
    if !Node::valid_name(&node.name) {
        out.push(damage("invalid entry name".into()));
    }
    match node.kind {
        NodeKind::Dir if node.subtree.is_none() => {
            out.push(damage("directory has no tree".into()));
        }
        NodeKind::File => {
            let missing: Vec<(&Id, &str)> = node
                .content
                .iter()
                .flatten()
                .filter_map(|b| Some((b, lost.blob(index, b)?)))
                .collect();
            if let Some((first, why)) = missing.first() {
                let more = match missing.len() {
                    1 => String::new(),
                    n => format!(" (and {} more)", n - 1),
                };
                out.push(damage(format!("data blob {first} is {why}{more}")));
            }
        }
        _ => {}
    }
    out
}

/// Problems found, each with the snapshots it affects, in the order found.
#[derive(Default)]
struct Findings {
    order: Vec<(String, String)>,
    snapshots: HashMap<(String, String), Vec<Id>>,
}

impl Findings {
    fn add(&mut self, path: &str, message: &str, snapshot: Id) {
        let key = (path.to_string(), message.to_string());
        let list = self.snapshots.entry(key.clone()).or_insert_with(|| {
            self.order.push(key);
            Vec::new()
        });
        if !list.contains(&snapshot) {
            list.push(snapshot);
        }
    }

    /// `snapshots 1a2b3c4d, 5e6f7a8b: /etc/hosts: data blob … is missing`.
    fn messages(self) -> Vec<String> {
        let Findings {
            order,
            mut snapshots,
        } = self;
        order
            .into_iter()
            .map(|key| {
                let ids = snapshots.remove(&key).unwrap_or_default();
                let names: Vec<String> = ids.iter().map(Id::short).collect();
                let label = if names.len() == 1 {
                    "snapshot"
                } else {
                    "snapshots"
                };
                format!("{label} {}: {}: {}", names.join(", "), key.0, key.1)
            })
            .collect()
    }
}
