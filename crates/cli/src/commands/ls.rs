use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde_json::json;
use strata_core::format::display_bytes;
use strata_core::format::tree::Node;

use crate::output;
use crate::repo::{self, FilterArgs, GlobalArgs};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Snapshot: `latest` or an id prefix.
    #[arg(value_name = "SNAPSHOT")]
    snapshot: String,
    /// List only below this path inside the snapshot.
    #[arg(value_name = "PATH")]
    path: Option<std::ffi::OsString>,
    /// Long format: mode, owner, size, modification time.
    #[arg(short, long)]
    long: bool,
    /// Do not descend into subdirectories.
    #[arg(long)]
    no_recursive: bool,
    #[command(flatten)]
    filter: FilterArgs,
}

pub fn node_json(path: &Path, n: &Node) -> serde_json::Value {
    let mut value = json!({
        "path": crate::output::json_path(path),
        "name": display_bytes(&n.name),
        "type": n.kind,
        "mode": n.mode,
        "uid": n.uid,
        "gid": n.gid,
        "user": n.user,
        "group": n.group,
        "size": n.size,
        "mtime": time_string(n.mtime),
        "inode": n.inode,
        "links": n.links,
        "target": n.target.as_deref().map(display_bytes),
    });
    crate::output::add_bytes(&mut value, "path", path.as_os_str().as_encoded_bytes());
    crate::output::add_bytes(&mut value, "name", &n.name);
    if let Some(target) = &n.target {
        crate::output::add_bytes(&mut value, "target", target);
    }
    value
}

pub fn time_string(t: strata_core::format::tree::Time) -> String {
    jiff::Timestamp::new(t.s, t.ns as i32)
        .map(|ts| ts.to_string())
        .unwrap_or_else(|_| format!("{}.{:09}", t.s, t.ns))
}

fn long_line(path: &Path, n: &Node) -> String {
    let owner = n.user.as_deref().map_or_else(
        || n.uid.to_string(),
        |u| strata_core::format::quote_bytes(u.as_bytes()),
    );
    let group = n.group.as_deref().map_or_else(
        || n.gid.to_string(),
        |g| strata_core::format::quote_bytes(g.as_bytes()),
    );
    let mtime = jiff::Timestamp::new(n.mtime.s, 0)
        .map(output::local_time)
        .unwrap_or_default();
    let link = n
        .target
        .as_deref()
        .map(|t| format!(" -> {}", strata_core::format::quote_bytes(t)))
        .unwrap_or_default();
    format!(
        "{} {owner:>8} {group:>8} {:>12} {mtime} {}{link}",
        output::mode_string(n.kind, n.mode),
        n.size,
        crate::output::path(path)
    )
}

pub fn run(global: &GlobalArgs, args: &Args) -> Result<u8> {
    let repo = repo::open(global)?;
    repo.load_index()?;
    let (id, snap) = strata_core::select::find(&repo, &args.snapshot, &args.filter.filter()?)?;
    let mut start = snap.tree;
    let mut prefix = PathBuf::from("/");
    if let Some(p) = args.path.as_deref() {
        if let Some(node) = super::find_path(&repo, &snap, p)? {
            let stored = repo.resolve_in_snapshot(&snap, p.as_bytes())?;
            let stored = Path::new(std::ffi::OsStr::from_bytes(&stored));
            prefix = prefix.join(stored.strip_prefix("/").unwrap_or(stored));
            match node.subtree.filter(|_| node.is_dir()) {
                Some(sub) => start = sub,
                None => {
                    print_node(global, args, &prefix, &node);
                    return Ok(crate::exit::OK);
                }
            }
        }
    }
    if !global.json && !global.quiet {
        errln!(
            "snapshot {} of {} at {}",
            id.short(),
            output::snapshot_sources(&snap),
            output::local_time(snap.time)
        );
    }
    super::walk_tree(&repo, start, &prefix, &mut |path, node| {
        print_node(global, args, path, node);
        Ok(!args.no_recursive)
    })?;
    Ok(crate::exit::OK)
}

fn print_node(global: &GlobalArgs, args: &Args, path: &Path, node: &Node) {
    if global.json {
        output::json_line(&node_json(path, node));
    } else if args.long {
        outln!("{}", long_line(path, node));
    } else {
        outln!("{}", crate::output::path(path));
    }
}
