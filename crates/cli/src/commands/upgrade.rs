use anyhow::Result;

use crate::repo::{self, GlobalArgs};

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(global: &GlobalArgs, _args: &Args) -> Result<u8> {
    let repo = repo::open(global)?;
    let was = repo.upgrade()?;
    let now = strata_core::format::VERSION_DELTAS;
    if global.json {
        crate::output::json_line(&serde_json::json!({
            "message_type": "upgraded",
            "from_version": was,
            "version": was.max(now),
        }));
    } else if !global.quiet {
        if was >= now {
            outln!("the repository is already format version {was}: nothing to do");
        } else {
            outln!(
                "upgraded the repository from format version {was} to {now}: backups now store \
                 changed chunks as deltas, and strata from before version {now} can no longer open it"
            );
        }
    }
    Ok(crate::exit::OK)
}
