use anyhow::Result;
use serde_json::json;
use strata_core::format::snapshot::Snapshot;
use strata_core::Id;

use crate::output;
use crate::repo::{self, FilterArgs, GlobalArgs};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    filter: FilterArgs,
}

pub fn snapshot_json(id: &Id, s: &Snapshot) -> serde_json::Value {
    json!({
        "id": id.to_hex(),
        "short_id": id.short(),
        "time": s.time.to_string(),
        "host": s.hostname,
        "username": s.username,
        "paths": s.paths,
        "sources": s.sources,
        "streams": s.streams,
        "tags": s.tags,
        "parent": s.parent.map(|p| p.to_hex()),
        "original": s.original.map(|p| p.to_hex()),
        "tree": s.tree.to_hex(),
        "partial": s.partial,
        "summary": s.summary.as_ref().map(super::backup::summary_json),
    })
}

pub fn run(global: &GlobalArgs, args: &Args) -> Result<u8> {
    let repo = repo::open(global)?;
    let filter = args.filter.filter()?;
    let (snaps, bad) = repo.snapshots()?;
    for (name, e) in &bad {
        errln!("warning: snapshot {name}: {e}");
    }
    let snaps: Vec<_> = snaps
        .into_iter()
        .filter(|(_, s)| filter.matches(s))
        .collect();
    if global.json {
        let list: Vec<_> = snaps.iter().map(|(id, s)| snapshot_json(id, s)).collect();
        outln!("{}", serde_json::Value::Array(list));
        return Ok(crate::exit::OK);
    }
    let rows: Vec<Vec<String>> = snaps
        .iter()
        .map(|(id, s)| {
            let size = s
                .summary
                .as_ref()
                .map_or(String::new(), |x| output::bytes(x.total_bytes));
            vec![
                id.short(),
                output::local_time(s.time),
                s.hostname.clone(),
                s.tags.join(","),
                crate::output::snapshot_sources(s),
                format!("{size}{}", if s.partial { " (partial)" } else { "" }),
            ]
        })
        .collect();
    output::table(&["ID", "Time", "Host", "Tags", "Paths", "Size"], &rows);
    outln!(
        "{}",
        strata_core::format::count(rows.len() as u64, "snapshot")
    );
    Ok(crate::exit::OK)
}
