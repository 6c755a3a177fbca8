pub mod backup;
pub mod cat;
pub mod check;
pub mod completions;
pub mod diff;
pub mod dump;
pub mod find;
pub mod forget;
pub mod init;
pub mod key;
pub mod ls;
pub mod man;
pub mod prune;
pub mod repair;
pub mod restore;
pub mod restore_db;
pub mod snapshots;
pub mod stats;
pub mod unlock;
pub mod upgrade;

use std::ffi::OsStr;
use std::path::Path;

use anyhow::{Context, Result};
use strata_core::format::snapshot::Snapshot;
use strata_core::format::tree::{Node, Tree};
use strata_core::repository::Repository;
use strata_core::Id;

/// Split `SNAPSHOT[:PATH]` into its parts; the path is raw bytes so names
/// that are not UTF-8 can be given.
pub fn split_selector(spec: &OsStr) -> Result<(String, Option<Vec<u8>>)> {
    let bytes = spec.as_bytes();
    let (snap, path) = match bytes.iter().position(|&b| b == b':') {
        Some(i) => (&bytes[..i], Some(bytes[i + 1..].to_vec())),
        None => (bytes, None),
    };
    let snap = std::str::from_utf8(snap)
        .with_context(|| "the snapshot part of SNAPSHOT:PATH is not text".to_string())?;
    Ok((snap.to_string(), path))
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
pub fn find_path(repo: &Repository, snap: &Snapshot, path: &OsStr) -> Result<Option<Node>> {
    Ok(repo.find_in_snapshot(snap, path.as_bytes())?)
}

use strata_core::MAX_THREADS;

/// `--threads N`: 0 (one per core) up to [`MAX_THREADS`].
pub fn parse_threads(text: &str) -> Result<usize, String> {
    let n: usize = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of threads"))?;
    if n > MAX_THREADS {
        return Err(format!(
            "{n} threads is too many: give at most {MAX_THREADS} (0 means one per core)"
        ));
    }
    Ok(n)
}
