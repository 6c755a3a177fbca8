use anyhow::Result;

use crate::repo::{self, GlobalArgs};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Remove every lock, including those of other hosts and of running
    /// processes: only when you know no strata process uses the repository.
    #[arg(long)]
    remove_all: bool,
}

pub fn run(global: &GlobalArgs, args: &Args) -> Result<u8> {
    let repo = repo::open(global)?;
    let removed = repo.unlock(args.remove_all)?;
    if !global.quiet {
        outln!(
            "removed {}",
            strata_core::format::count(removed.len() as u64, "lock")
        );
    }
    Ok(crate::exit::OK)
}
