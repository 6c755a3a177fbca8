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
        println!(
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
            eprintln!("warning: {w}");
        }
        for e in &report.errors {
            eprintln!("error: {e}");
        }
        if !global.quiet {
            println!(
                "checked {} snapshots, {} trees, {} blobs in {} packs{}",
                report.snapshots,
                report.trees,
                report.blobs,
                report.packs,
                if args.read_data || subset.is_some() {
                    format!(
                        ", read {} in {} packs",
                        output::bytes(report.bytes_read),
                        report.packs_read
                    )
                } else {
                    String::new()
                }
            );
            if report.ok() {
                println!("no errors were found");
            } else {
                println!(
                    "{} errors were found: the repository is damaged",
                    report.errors.len()
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
    println!(
        "{} snapshots reach damaged data: {}\n\
         if that data is lost for good, `strata repair index` followed by \
         `strata repair snapshots` keeps what survives",
        ids.len(),
        names.join(", ")
    );
}
