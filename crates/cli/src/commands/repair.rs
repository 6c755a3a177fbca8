use anyhow::Result;
use serde_json::json;
use strata_core::maintenance::repair;

use crate::repo::{self, GlobalArgs};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(clap::Subcommand, Debug)]
enum What {
    /// Rebuild the index from the headers of all packs, replacing every
    /// index file (for a lost or damaged index).
    Index,
}

pub fn run(global: &GlobalArgs, args: &Args) -> Result<u8> {
    let repo = repo::open(global)?;
    match args.what {
        What::Index => {
            let r = repair::rebuild_index(&repo)?;
            for (name, e) in &r.unreadable {
                eprintln!(
                    "warning: pack {name}: header unreadable, its blobs are not indexed: {e}"
                );
            }
            if global.json {
                println!(
                    "{}",
                    json!({"packs": r.packs, "blobs": r.blobs, "unreadable_packs": r.unreadable.len(),
                           "removed_index_files": r.removed_index_files, "new_index": r.new_index.map(|i| i.to_hex())})
                );
            } else if !global.quiet {
                println!(
                    "indexed {} blobs in {} packs; replaced {} index files{}",
                    r.blobs,
                    r.packs,
                    r.removed_index_files,
                    if r.unreadable.is_empty() {
                        String::new()
                    } else {
                        format!("; {} packs unreadable", r.unreadable.len())
                    }
                );
            }
            Ok(if r.unreadable.is_empty() {
                crate::exit::OK
            } else {
                crate::exit::PARTIAL
            })
        }
    }
}
