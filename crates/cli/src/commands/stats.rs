use anyhow::Result;
use serde_json::json;

use crate::output::{self, bytes};
use crate::repo::{self, FilterArgs, GlobalArgs};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Totals over the selected snapshots.
    Total,
    /// Also what each snapshot added: data no earlier one referenced.
    Added,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Snapshots to account for (id prefixes or `latest`); all by default.
    #[arg(value_name = "SNAPSHOT")]
    snapshots: Vec<String>,
    #[arg(long, value_enum, default_value = "total")]
    mode: Mode,
    #[command(flatten)]
    filter: FilterArgs,
}

pub fn run(global: &GlobalArgs, args: &Args) -> Result<u8> {
    let repo = repo::open(global)?;
    repo.load_index()?;
    let filter = args.filter.filter()?;
    let (all, bad) = repo.snapshots()?;
    for (name, e) in &bad {
        errln!("warning: snapshot {name} is left out: {e}");
    }
    let mut chosen: Vec<_> = if args.snapshots.is_empty() {
        all.into_iter().filter(|(_, s)| filter.matches(s)).collect()
    } else {
        let mut v = Vec::new();
        for sel in &args.snapshots {
            v.push(strata_core::select::find_listed(
                all.clone(),
                &bad,
                sel,
                &filter,
            )?);
        }
        v
    };
    chosen.sort_by_key(|s| s.1.time);
    let (stats, added) = strata_core::stats::run(&repo, &chosen)?;
    if global.json {
        let per: Vec<_> = added
            .iter()
            .map(|a| json!({"id": a.id.to_hex(), "short_id": a.id.short(), "restore_size": a.restore_size,
                            "added_blobs": a.blobs, "added_size": a.size, "added_stored": a.stored}))
            .collect();
        outln!(
            "{}",
            json!({"snapshots": stats.snapshots, "files": stats.files, "restore_size": stats.restore_size,
                   "unique_size": stats.unique_size, "stored_size": stats.stored_size, "blobs": stats.blobs,
                   "packs": stats.packs, "dedup_ratio": stats.dedup_ratio(), "compression_ratio": stats.compression_ratio(),
                   "delta_blobs": stats.delta_blobs, "delta_size": stats.delta_size, "delta_stored": stats.delta_stored,
                   "base_blobs": stats.base_blobs, "base_stored": stats.base_stored, "longest_chain": stats.longest_chain,
                   "per_snapshot": if args.mode == Mode::Added { Some(per) } else { None }})
        );
        return Ok(crate::exit::OK);
    }
    if args.mode == Mode::Added {
        let rows: Vec<Vec<String>> = chosen
            .iter()
            .zip(&added)
            .map(|((id, s), a)| {
                vec![
                    id.short(),
                    output::local_time(s.time),
                    bytes(a.restore_size),
                    bytes(a.size),
                    bytes(a.stored),
                ]
            })
            .collect();
        output::table(
            &["ID", "Time", "Restore size", "Added", "Added (stored)"],
            &rows,
        );
        outln!();
    }
    outln!("Snapshots:          {}", stats.snapshots);
    outln!("Files:              {}", stats.files);
    outln!("Restore size:       {}", bytes(stats.restore_size));
    outln!(
        "Unique data:        {}  (deduplication ×{:.2})",
        bytes(stats.unique_size),
        stats.dedup_ratio()
    );
    outln!(
        "Stored:             {}  ({} ×{:.2})",
        bytes(stats.stored_size),
        if stats.delta_blobs > 0 {
            "compression and deltas"
        } else {
            "compression"
        },
        stats.compression_ratio()
    );
    outln!("Blobs / packs:      {} / {}", stats.blobs, stats.packs);
    if stats.delta_blobs > 0 {
        outln!(
            "Stored as deltas:   {} of data in {} ({}, chains up to {} long)",
            bytes(stats.delta_size),
            bytes(stats.delta_stored),
            strata_core::format::count(stats.delta_blobs, "blob"),
            stats.longest_chain
        );
        if stats.base_blobs > 0 {
            outln!(
                "Bases of deltas:    {} in {} no snapshot here names",
                bytes(stats.base_stored),
                strata_core::format::count(stats.base_blobs, "blob")
            );
        }
    }
    Ok(crate::exit::OK)
}
