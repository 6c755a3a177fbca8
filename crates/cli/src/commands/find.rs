use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::{Context, Result};
use globset::GlobBuilder;
use serde_json::json;

use crate::output;
use crate::repo::{self, FilterArgs, GlobalArgs};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Glob matched against file names, or against whole paths if it contains `/`.
    #[arg(value_name = "PATTERN")]
    pattern: String,
    /// Match without regard to case.
    #[arg(short, long)]
    ignore_case: bool,
    #[command(flatten)]
    filter: FilterArgs,
}

pub fn run(global: &GlobalArgs, args: &Args) -> Result<u8> {
    let glob = GlobBuilder::new(&args.pattern)
        .case_insensitive(args.ignore_case)
        .literal_separator(true)
        .build()
        .with_context(|| format!("bad pattern {:?}", args.pattern))?
        .compile_matcher();
    let whole_path = args.pattern.contains('/');
    let repo = repo::open(global)?;
    repo.load_index()?;
    let filter = args.filter.filter()?;
    let (snaps, bad) = repo.snapshots()?;
    for (name, e) in &bad {
        errln!("warning: snapshot {name} is not searched: {e}");
    }
    let mut hits = Vec::new();
    for (id, snap) in snaps.iter().filter(|(_, s)| filter.matches(s)) {
        super::walk_tree(&repo, snap.tree, Path::new("/"), &mut |path, node| {
            let matched = if whole_path {
                glob.is_match(path)
            } else {
                glob.is_match(std::ffi::OsStr::from_bytes(&node.name))
            };
            if matched {
                if global.json {
                    hits.push(json!({"snapshot": id.to_hex(), "short_id": id.short(), "time": snap.time.to_string(), "node": super::ls::node_json(path, node)}));
                } else {
                    outln!(
                        "{}  {}  {:>12}  {}",
                        id.short(),
                        output::local_time(snap.time),
                        node.size,
                        output::path(path)
                    );
                }
            }
            Ok(true)
        })?;
    }
    if global.json {
        outln!("{}", serde_json::Value::Array(hits));
    }
    Ok(crate::exit::OK)
}
