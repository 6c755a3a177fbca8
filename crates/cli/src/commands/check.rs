use anyhow::Result;
use serde_json::json;
use strata_core::check::{self, CheckOptions};

use crate::output;
use crate::repo::{self, GlobalArgs};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Also read, decrypt and verify every blob of every pack.
    #[arg(long)]
    read_data: bool,
    /// Read and verify only a subset of the packs: `n/m` (run 1/m … m/m in
    /// turn to cover everything) or a random percentage like `10%`.
    #[arg(long, value_name = "n/m|PCT%")]
    read_data_subset: Option<String>,
}

pub fn run(global: &GlobalArgs, args: &Args) -> Result<u8> {
    // what the storage holds, not what the cache remembers
    let repo = repo::open_with(global, repo::Cache::Bypass)?;
    let subset = args
        .read_data_subset
        .as_deref()
        .map(check::Subset::parse)
        .transpose()?;
    let report = check::run(
        &repo,
        &CheckOptions {
            read_data: args.read_data,
            subset,
        },
    )?;
    if global.json {
        outln!(
            "{}",
            json!({
                "ok": report.ok(),
                "errors": report.errors,
                "warnings": report.warnings,
                "packs": report.packs,
                "blobs": report.blobs,
                "snapshots": report.snapshots,
                "damaged_snapshots": report.damaged_snapshots.iter().map(|id| id.to_hex()).collect::<Vec<_>>(),
                "trees": report.trees,
                "bytes_read": report.bytes_read,
                "packs_read": report.packs_read,
            })
        );
    } else {
        for w in &report.warnings {
            errln!("warning: {w}");
        }
        for e in &report.errors {
            errln!("error: {e}");
        }
        if !global.quiet {
            outln!(
                "checked {}, {}, {} in {}{}",
                strata_core::format::count(report.snapshots as u64, "snapshot"),
                strata_core::format::count(report.trees as u64, "tree"),
                strata_core::format::count(report.blobs as u64, "blob"),
                strata_core::format::count(report.packs as u64, "pack"),
                if args.read_data || subset.is_some() {
                    format!(
                        ", read {} in {}",
                        output::bytes(report.bytes_read),
                        strata_core::format::count(report.packs_read as u64, "pack")
                    )
                } else {
                    String::new()
                }
            );
            if report.ok() {
                outln!("no errors were found");
            } else {
                outln!(
                    "{} found: the repository is damaged",
                    strata_core::format::count(report.errors.len() as u64, "error")
                );
                print_damaged_snapshots(&report.damaged_snapshots);
            }
        }
    }
    Ok(if report.ok() {
        crate::exit::OK
    } else {
        crate::exit::FATAL
    })
}

/// Name the damaged snapshots and the way to make them consistent again.
fn print_damaged_snapshots(ids: &[strata_core::Id]) {
    if ids.is_empty() {
        return;
    }
    let names: Vec<String> = ids.iter().map(strata_core::Id::short).collect();
    outln!(
        "{} damaged data: {}\n\
         if that data is lost for good, `strata repair index` followed by \
         `strata repair snapshots --read-data` keeps what survives \
         (without --read-data, only missing data is found, not damaged data)",
        if ids.len() == 1 {
            "1 snapshot reaches".to_string()
        } else {
            format!("{} snapshots reach", ids.len())
        },
        names.join(", ")
    );
}
