use anyhow::Result;
use clap::CommandFactory;

use crate::repo::GlobalArgs;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

/// Print the completion script for a shell (README, "Shell completions").
pub fn run(_global: &GlobalArgs, args: &Args) -> Result<u8> {
    let mut script = Vec::new();
    clap_complete::generate(
        args.shell,
        &mut crate::Cli::command(),
        "strata",
        &mut script,
    );
    crate::output::write_out(format_args!("{}", String::from_utf8_lossy(&script)));
    Ok(crate::exit::OK)
}
