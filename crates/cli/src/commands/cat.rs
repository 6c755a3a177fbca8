use std::io::Write;

use anyhow::{Context, Result};
use serde_json::json;
use strata_core::format::display_bytes;
use strata_core::format::tree::Tree;
use strata_core::storage::ObjectKind;
use strata_core::Id;

use crate::repo::{self, GlobalArgs};

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum Kind {
    Config,
    Key,
    Snapshot,
    Index,
    Tree,
    Blob,
    Pack,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(value_enum)]
    kind: Kind,
    /// Object id (a prefix is enough for snapshots); for `tree`, also
    /// `SNAPSHOT[:PATH]`.
    #[arg(value_name = "ID")]
    id: Option<String>,
}

fn pretty(v: &serde_json::Value) -> Result<()> {
    outln!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn tree_json(tree: &Tree) -> serde_json::Value {
    let nodes: Vec<_> = tree
        .nodes
        .iter()
        .map(|n| {
            let mut v = super::ls::node_json(std::path::Path::new(""), n);
            let o = v.as_object_mut().expect("node json is an object");
            o.remove("path");
            o.insert("atime".into(), json!(super::ls::time_string(n.atime)));
            o.insert("ctime".into(), json!(super::ls::time_string(n.ctime)));
            o.insert("device".into(), json!(n.device));
            o.insert("rdev".into(), json!(n.rdev));
            o.insert(
                "content".into(),
                json!(n
                    .content
                    .as_ref()
                    .map(|c| c.iter().map(Id::to_hex).collect::<Vec<_>>())),
            );
            o.insert(
                "extents".into(),
                json!(n
                    .extents
                    .as_ref()
                    .map(|e| e.iter().map(|x| [x.offset, x.length]).collect::<Vec<_>>())),
            );
            o.insert("subtree".into(), json!(n.subtree.map(|s| s.to_hex())));
            o.insert(
                "xattrs".into(),
                json!(n
                    .xattrs
                    .iter()
                    .map(|x| display_bytes(&x.name))
                    .collect::<Vec<_>>()),
            );
            v
        })
        .collect();
    json!({ "nodes": nodes })
}

pub fn run(global: &GlobalArgs, args: &Args) -> Result<u8> {
    let repo = repo::open(global)?;
    let need_id = || args.id.clone().context("this kind needs an ID argument");
    match args.kind {
        Kind::Config => pretty(&serde_json::to_value(repo.config())?)?,
        Kind::Key => {
            let id = need_id()?;
            let data = repo.storage().read(ObjectKind::Key, &id)?;
            std::io::stdout().write_all(&data)?;
            outln!();
        }
        Kind::Snapshot => {
            let (id, snap) = strata_core::select::find(&repo, &need_id()?, &Default::default())?;
            let mut v = serde_json::to_value(&snap)?;
            v["id"] = json!(id.to_hex());
            pretty(&v)?;
        }
        Kind::Index => pretty(&serde_json::to_value(repo.read_index_file(&need_id()?)?)?)?,
        Kind::Tree => {
            repo.load_index()?;
            let spec = need_id()?;
            let tree_id = match Id::from_hex(&spec) {
                Ok(id) => id,
                Err(_) => {
                    let (snap, path) = super::split_selector(std::ffi::OsStr::new(&spec))?;
                    let (_, s) = strata_core::select::find(&repo, &snap, &Default::default())?;
                    match path.filter(|p| p.iter().any(|&b| b != b'/')) {
                        None => s.tree,
                        Some(p) => repo
                            .find_in_snapshot(&s, &p)?
                            .and_then(|n| n.subtree)
                            .context("not a directory")?,
                    }
                }
            };
            pretty(&tree_json(&repo.load_tree(&tree_id)?))?;
        }
        Kind::Blob => {
            repo.load_index()?;
            let data = repo.read_blob(&Id::from_hex(&need_id()?)?)?;
            std::io::stdout().write_all(&data)?;
        }
        Kind::Pack => {
            let id = need_id()?;
            let data = repo.storage().read(ObjectKind::Pack, &id)?;
            let entries =
                strata_core::format::pack::parse_pack_of(repo.key(), &data, repo.deltas())?;
            let list: Vec<_> = entries
                .iter()
                .map(|e| {
                    let mut blob = json!({"id": e.id.to_hex(), "type": e.kind, "offset": e.offset,
                                          "length": e.length, "raw_length": e.raw_length});
                    if let Some(base) = e.base {
                        blob["base"] = json!(base.to_hex());
                    }
                    blob
                })
                .collect();
            pretty(&json!({"id": id, "size": data.len(), "blobs": list}))?;
        }
    }
    Ok(crate::exit::OK)
}
