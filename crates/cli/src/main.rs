//! `strata`: the command-line program over the strata engine.
//!
//! Parsing and validation live in the argument structs; each command's body
//! is in `commands/<name>.rs`. Errors become exit codes in one place,
//! [`exit_code`], documented in the README.

#[macro_use]
mod output;
mod commands;
mod interrupt;
mod repo;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use strata_core::ErrorKind;

/// Exit codes, documented in the README.
pub mod exit {
    pub const OK: u8 = 0;
    pub const FATAL: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const PARTIAL: u8 = 3;
    pub const NO_REPOSITORY: u8 = 10;
    pub const LOCKED: u8 = 11;
    pub const WRONG_PASSWORD: u8 = 12;
    /// Stopped by Ctrl-C (SIGINT) or SIGTERM, as shells report it.
    pub const INTERRUPTED: u8 = 130;
}

#[derive(Parser, Debug)]
#[command(
    name = "strata",
    version,
    about = "Incremental, deduplicating, encrypted backups",
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    global: repo::GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a new repository.
    Init(commands::init::Args),
    /// Save a snapshot of files and directories.
    Backup(commands::backup::Args),
    /// List snapshots.
    Snapshots(commands::snapshots::Args),
    /// List the files in a snapshot.
    Ls(commands::ls::Args),
    /// Find files by name in snapshots.
    Find(commands::find::Args),
    /// Write a file (or a directory as tar) from a snapshot to standard output.
    Dump(commands::dump::Args),
    /// Print a repository object, decrypted, for debugging.
    Cat(commands::cat::Args),
    /// Restore a snapshot, or part of it, into a directory.
    Restore(commands::restore::Args),
    /// Restore one database from its dump in a snapshot, through the server's client.
    #[command(name = "restore-db")]
    RestoreDb(commands::restore_db::Args),
    /// Verify the repository's structure and, optionally, all data.
    Check(commands::check::Args),
    /// Show what changed between two snapshots, or since a snapshot on disk.
    Diff(commands::diff::Args),
    /// Remove snapshots by a retention policy or by id (data stays until prune).
    Forget(commands::forget::Args),
    /// Delete data no snapshot needs; safe while backups run.
    Prune(commands::prune::Args),
    /// Manage the repository's keys (passwords).
    Key(commands::key::Args),
    /// Sizes: restore size, unique and stored data, what each backup added.
    Stats(commands::stats::Args),
    /// Rebuild damaged repository structures.
    Repair(commands::repair::Args),
    /// Remove stale locks (of processes of this host that are gone).
    Unlock(commands::unlock::Args),
    /// Upgrade a format version 1 repository to version 2 (delta storage).
    Upgrade(commands::upgrade::Args),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(commands::completions::Args),
    /// Write man pages (strata.1 and one per command) into a directory.
    Man(commands::man::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    output::init_logging(cli.global.verbose, cli.global.quiet);
    output::set_read_only(cli.command.read_only());
    interrupt::install(cli.command.stops_cleanly(), cli.command.name());
    let result = match &cli.command {
        Command::Init(a) => commands::init::run(&cli.global, a),
        Command::Backup(a) => commands::backup::run(&cli.global, a),
        Command::Snapshots(a) => commands::snapshots::run(&cli.global, a),
        Command::Ls(a) => commands::ls::run(&cli.global, a),
        Command::Find(a) => commands::find::run(&cli.global, a),
        Command::Dump(a) => commands::dump::run(&cli.global, a),
        Command::Cat(a) => commands::cat::run(&cli.global, a),
        Command::Restore(a) => commands::restore::run(&cli.global, a),
        Command::RestoreDb(a) => commands::restore_db::run(&cli.global, a),
        Command::Check(a) => commands::check::run(&cli.global, a),
        Command::Diff(a) => commands::diff::run(&cli.global, a),
        Command::Forget(a) => commands::forget::run(&cli.global, a),
        Command::Key(a) => commands::key::run(&cli.global, a),
        Command::Stats(a) => commands::stats::run(&cli.global, a),
        Command::Repair(a) => commands::repair::run(&cli.global, a),
        Command::Unlock(a) => commands::unlock::run(&cli.global, a),
        Command::Upgrade(a) => commands::upgrade::run(&cli.global, a),
        Command::Completions(a) => commands::completions::run(&cli.global, a),
        Command::Man(a) => commands::man::run(&cli.global, a),
        Command::Prune(a) => commands::prune::run(&cli.global, a),
    };
    match result {
        // The output of a reading command is its result: losing it fails.
        Ok(code) if cli.command.read_only() && output::stdout_broken() => {
            ExitCode::from(code.max(exit::FATAL))
        }
        Ok(code) => ExitCode::from(code),
        Err(err) if is_broken_pipe(&err) && cli.command.read_only() => output::die_of_sigpipe(),
        Err(err) if kind_of(&err) == Some(ErrorKind::Interrupted) => {
            errln!("strata: interrupted: {}", cli.command.after_interrupt());
            ExitCode::from(exit::INTERRUPTED)
        }
        Err(err) => {
            if !is_broken_pipe(&err) {
                errln!("strata: error: {}", message(&err));
            }
            ExitCode::from(exit_code(&err))
        }
    }
}

impl Command {
    /// Commands that stop at a consistent point when interrupted (see
    /// `strata_core::interrupt`); the others simply end.
    fn stops_cleanly(&self) -> bool {
        matches!(
            self,
            Command::Backup(_) | Command::Restore(_) | Command::RestoreDb(_)
        )
    }

    fn name(&self) -> &'static str {
        match self {
            Command::Backup(_) => "backup",
            Command::Restore(_) => "restore",
            Command::RestoreDb(_) => "restore-db",
            _ => "",
        }
    }

    /// What an interrupted command leaves behind.
    fn after_interrupt(&self) -> &'static str {
        match self {
            Command::Backup(_) => {
                "no snapshot was saved (the data already stored is reused by the next backup)"
            }
            Command::Restore(_) => {
                "files completed so far are in place; the others were left as they were"
            }
            Command::RestoreDb(_) => {
                "the database client was stopped before the end of the dump; the database may be partly restored"
            }
            _ => "stopped",
        }
    }

    /// Commands that change nothing: when their reader goes away they
    /// stop at once (see `output`).
    fn read_only(&self) -> bool {
        matches!(
            self,
            Command::Snapshots(_)
                | Command::Ls(_)
                | Command::Find(_)
                | Command::Dump(_)
                | Command::Cat(_)
                | Command::Check(_)
                | Command::Diff(_)
                | Command::Stats(_)
                | Command::Completions(_)
        ) || matches!(self, Command::Key(k) if k.read_only())
    }
}

/// The error and its causes, each said once: a cause whose text the
/// message already holds (an I/O error the engine named with its path)
/// is not repeated.
fn message(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let part = cause.to_string();
        if !text.contains(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
    }
    text
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn kind_of(err: &anyhow::Error) -> Option<ErrorKind> {
    err.chain()
        .find_map(|e| e.downcast_ref::<strata_core::Error>())
        .map(|e| e.kind())
}

/// Map an error to the documented exit code.
fn exit_code(err: &anyhow::Error) -> u8 {
    match kind_of(err) {
        Some(ErrorKind::RepositoryNotFound) => exit::NO_REPOSITORY,
        Some(ErrorKind::Locked) => exit::LOCKED,
        Some(ErrorKind::WrongPassword) => exit::WRONG_PASSWORD,
        Some(ErrorKind::InvalidInput) => exit::USAGE,
        Some(ErrorKind::Interrupted) => exit::INTERRUPTED,
        _ => exit::FATAL,
    }
}
