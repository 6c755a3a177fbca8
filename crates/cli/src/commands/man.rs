use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::repo::GlobalArgs;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Directory to write the pages into (created if missing), e.g.
    /// /usr/local/share/man/man1.
    dir: PathBuf,
}

/// Write a man page for strata and one per command (`strata-backup.1`,
/// `strata-key-add.1`, …) into a directory.
pub fn run(global: &GlobalArgs, args: &Args) -> Result<u8> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let mut written = Vec::new();
    let root = crate::Cli::command();
    write_pages(&args.dir, root, &["strata"], &mut written)?;
    if !global.quiet {
        outln!(
            "wrote {} to {}",
            strata_core::format::count(written.len() as u64, "man page"),
            args.dir.display()
        );
    }
    Ok(crate::exit::OK)
}

/// The page of `cmd` (reached by the words `path`, `strata` first), then
/// those of its subcommands.
fn write_pages(
    dir: &Path,
    cmd: clap::Command,
    path: &[&str],
    written: &mut Vec<PathBuf>,
) -> Result<()> {
    let name = path.join("-");
    let cmd = cmd.bin_name(path.join(" "));
    let file = dir.join(format!("{name}.1"));
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .title(name.clone())
        .render(&mut page)?;
    std::fs::write(&file, page).with_context(|| format!("cannot write {}", file.display()))?;
    written.push(file);
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let mut sub_path = path.to_vec();
        sub_path.push(sub.get_name());
        write_pages(dir, sub.clone(), &sub_path, written)?;
    }
    Ok(())
}
