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
}

pub fn run(global: &GlobalArgs, args: &Args) -> Result<u8> {
    let repo = repo::open(global)?;
    let report = check::run(
        &repo,
        &CheckOptions {
            read_data: args.read_data,
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
                "trees": report.trees,
                "bytes_read": report.bytes_read,
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
                if args.read_data {
                    format!(", read {}", output::bytes(report.bytes_read))
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
            }
        }
    }
    Ok(if report.ok() {
        crate::exit::OK
    } else {
        crate::exit::FATAL
    })
}
