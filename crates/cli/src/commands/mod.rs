pub mod backup;
pub mod cat;
pub mod check;
pub mod dump;
pub mod find;
pub mod init;
pub mod ls;
pub mod restore;
pub mod snapshots;

use std::path::Path;

use anyhow::{Context, Result};
use strata_core::format::tree::{Node, Tree};
use strata_core::repository::Repository;
use strata_core::Id;

/// Split `SNAPSHOT[:PATH]` into its parts.
pub fn split_selector(spec: &str) -> (&str, Option<&str>) {
    match spec.split_once(':') {
        Some((snap, path)) => (snap, Some(path)),
        None => (spec, None),
    }
}

/// Visit every node under `tree` depth first, with its path from the
/// snapshot root (`/etc/hosts`). The visitor returns false to skip a
/// directory's contents.
pub fn walk_tree(
    repo: &Repository,
    tree: Id,
    prefix: &Path,
    visit: &mut dyn FnMut(&Path, &Node) -> Result<bool>,
) -> Result<()> {
    let tree: Tree = repo.load_tree(&tree)?;
    for node in tree.nodes {
        let path = prefix.join(std::ffi::OsStr::from_bytes(&node.name));
        if visit(&path, &node)? {
            if let Some(sub) = node.subtree {
                walk_tree(repo, sub, &path, visit)?;
            }
        }
    }
    Ok(())
}

use std::os::unix::ffi::OsStrExt;

/// The node at `path` inside a snapshot's root tree (`None` for the root).
pub fn find_path(repo: &Repository, root: Id, path: &str) -> Result<Option<Node>> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let mut tree = root;
    let mut found = None;
    for (i, part) in parts.iter().enumerate() {
        let t = repo.load_tree(&tree)?;
        let node = t
            .nodes
            .into_iter()
            .find(|n| n.name == part.as_bytes())
            .with_context(|| format!("{path} is not in the snapshot"))?;
        if i + 1 < parts.len() {
            tree = node
                .subtree
                .with_context(|| format!("{} is not a directory", parts[..=i].join("/")))?;
        }
        found = Some(node);
    }
    Ok(found)
}
