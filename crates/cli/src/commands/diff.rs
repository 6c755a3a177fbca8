use std::ffi::OsString;

use anyhow::{bail, Result};
use serde_json::json;
use strata_core::diff::{self, Change, DiffEntry};

use crate::output;
use crate::repo::{self, FilterArgs, GlobalArgs};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The older snapshot: an id prefix or `latest`.
    #[arg(value_name = "SNAPSHOT1")]
    first: String,
    /// The newer snapshot.
    #[arg(value_name = "SNAPSHOT2")]
    second: String,
    /// Compare only below this path inside the snapshots.
    #[arg(value_name = "PATH")]
    path: Option<OsString>,
    #[command(flatten)]
    filter: FilterArgs,
}

/// `+` added, `-` removed, `M` data changed, `U` metadata only, `T` type changed.
fn modifier(change: &Change) -> &'static str {
    match change {
        Change::Added => "+",
        Change::Removed { .. } => "-",
        Change::Modified { .. } => "M",
        Change::Metadata(_) => "U",
        Change::TypeChanged => "T",
    }
}

fn print(global: &GlobalArgs, e: &DiffEntry) {
    let path = output::path(&e.path);
    let slash = if e.kind == strata_core::format::tree::NodeKind::Dir {
        "/"
    } else {
        ""
    };
    if global.json {
        let (fields, files, bytes) = match &e.change {
            Change::Modified { metadata } | Change::Metadata(metadata) => {
                (metadata.clone(), None, None)
            }
            Change::Removed { files, bytes } => (Vec::new(), Some(*files), Some(*bytes)),
            _ => (Vec::new(), None, None),
        };
        output::json_line(
            &json!({"message_type": "change", "path": path, "type": e.kind, "modifier": modifier(&e.change),
                                  "metadata": fields, "files": files, "bytes": bytes}),
        );
        return;
    }
    let detail = match &e.change {
        Change::Removed { files, bytes } if slash == "/" => {
            format!("  ({files} files, {})", output::bytes(*bytes))
        }
        Change::Modified { metadata } if !metadata.is_empty() => {
            format!("  (and {})", metadata.join(", "))
        }
        Change::Metadata(fields) => format!("  ({})", fields.join(", ")),
        _ => String::new(),
    };
    println!("{}    {path}{slash}{detail}", modifier(&e.change));
}

pub fn run(global: &GlobalArgs, args: &Args) -> Result<u8> {
    let repo = repo::open(global)?;
    repo.load_index()?;
    let filter = args.filter.filter()?;
    let (id1, s1) = strata_core::select::find(&repo, &args.first, &filter)?;
    let (id2, s2) = strata_core::select::find(&repo, &args.second, &filter)?;
    let (mut a, mut b) = (s1.tree, s2.tree);
    let mut prefix = std::path::PathBuf::from("/");
    if let Some(p) = args.path.as_deref() {
        prefix.push(
            std::path::Path::new(p)
                .strip_prefix("/")
                .unwrap_or(std::path::Path::new(p)),
        );
        let sub = |root| -> Result<strata_core::Id> {
            match repo.find_node(root, std::os::unix::ffi::OsStrExt::as_bytes(p))? {
                Some(n) if n.is_dir() => Ok(n.subtree.unwrap_or_default()),
                _ => bail!(
                    "{} is not a directory in both snapshots",
                    output::path(std::path::Path::new(p))
                ),
            }
        };
        (a, b) = (sub(a)?, sub(b)?);
    }
    if !global.json && !global.quiet {
        eprintln!("comparing snapshot {} with {}", id1.short(), id2.short());
    }
    let stats = diff::run(&repo, a, b, &prefix, &mut |e| print(global, e))?;
    if global.json {
        output::json_line(
            &json!({"message_type": "statistics", "added": stats.added, "removed": stats.removed,
            "modified": stats.modified, "metadata_only": stats.metadata_only, "type_changed": stats.type_changed,
            "bytes_added": stats.bytes_added, "bytes_removed": stats.bytes_removed}),
        );
    } else if !global.quiet {
        println!();
        println!(
            "Added:    {} entries, {}",
            stats.added,
            output::bytes(stats.bytes_added)
        );
        println!(
            "Removed:  {} entries, {}",
            stats.removed,
            output::bytes(stats.bytes_removed)
        );
        println!(
            "Changed:  {} in content, {} in metadata only, {} in type",
            stats.modified, stats.metadata_only, stats.type_changed
        );
    }
    Ok(crate::exit::OK)
}
