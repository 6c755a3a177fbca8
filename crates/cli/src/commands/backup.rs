use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{bail, Result};
use serde_json::json;
use strata_core::backup::{self, BackupOptions, FileOutcome, Progress};
use strata_core::format::snapshot::{Snapshot, Summary};
use strata_core::sources::Source;
use strata_core::walk::{read_exclude_file, ExcludeOptions};
use strata_core::Id;

use crate::output::{self, bytes};
use crate::repo::{self, GlobalArgs};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Files and directories to back up; each is stored under its last
    /// path component at the top of the snapshot.
    #[arg(value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Store standard input as the file --stdin-filename of the snapshot.
    #[arg(long, conflicts_with = "stdin_from_command")]
    stdin: bool,
    /// Run the command given after `--` and store its standard output as
    /// --stdin-filename; if it fails, no snapshot is saved.
    #[arg(long)]
    stdin_from_command: bool,
    /// Where --stdin or --stdin-from-command is stored in the snapshot
    /// (may contain `/`, e.g. `mysql/shop.sql`).
    #[arg(long, value_name = "NAME")]
    stdin_filename: Option<String>,
    /// The command of --stdin-from-command and its arguments, after `--`.
    #[arg(last = true, value_name = "COMMAND")]
    command_line: Vec<std::ffi::OsString>,
    /// `NAME=COMMAND`: run COMMAND with /bin/sh and store its standard
    /// output as NAME (repeatable). A command that fails is left out and
    /// the snapshot is partial (exit 3).
    #[arg(long = "command", value_name = "NAME=COMMAND")]
    commands: Vec<String>,
    /// Dump MySQL/MariaDB databases, each as mysql/DATABASE.sql, and
    /// the users and grants as mysql/_grants.sql: `all` or `db1,db2`.
    #[arg(long, value_name = "all|DATABASES")]
    mysql: Option<String>,
    /// MySQL option file to use instead of the default ones (~/.my.cnf…).
    #[arg(long, value_name = "FILE")]
    mysql_defaults_file: Option<PathBuf>,
    /// Option for every MySQL client call, e.g. `--mysql-option=--socket=/run/mysqld/mysqld.sock` (repeatable).
    #[arg(long, value_name = "OPTION", allow_hyphen_values = true)]
    mysql_option: Vec<String>,
    /// Dump PostgreSQL databases, each as postgresql/DATABASE.sql, and
    /// roles and tablespaces as postgresql/_globals.sql: `all` or `db1,db2`.
    #[arg(long, value_name = "all|DATABASES")]
    postgres: Option<String>,
    /// Option for every PostgreSQL client call, e.g. `--postgres-option=--host=/run/postgresql` (repeatable).
    #[arg(long, value_name = "OPTION", allow_hyphen_values = true)]
    postgres_option: Vec<String>,
    /// Files that only grow at the end (gitignore syntax, repeatable): when
    /// one grew since the parent snapshot, its old part is verified and
    /// only the new tail is read.
    #[arg(long, value_name = "PATTERN")]
    append_only: Vec<String>,
    /// How --append-only verifies the old part: `quick` hashes the old
    /// end and samples spread over the file, `full` hashes all of it.
    #[arg(long, value_enum, default_value = "quick", value_name = "HOW")]
    append_verify: AppendVerifyArg,
    /// Store changed files as deltas against their previous version:
    /// `auto` does it for files of 4 MiB or more (until deltas stop paying
    /// for a file), `off` only for --delta-pattern files. Streams and
    /// databases always use deltas (format version 2 repositories).
    #[arg(long, value_enum, default_value = "auto", value_name = "auto|off")]
    delta: DeltaArg,
    /// Files always stored as deltas against their previous version,
    /// whatever their size (gitignore syntax, repeatable): disk images,
    /// SQLite databases, mailboxes.
    #[arg(long, value_name = "PATTERN")]
    delta_pattern: Vec<String>,
    /// Commands and database dumps run at the same time.
    #[arg(long, default_value_t = strata_core::backup::DEFAULT_STREAM_JOBS, value_name = "N", value_parser = super::parse_threads)]
    dump_jobs: usize,
    /// Leave out paths matching this pattern (gitignore syntax, `!` re-includes).
    #[arg(short = 'e', long, value_name = "PATTERN")]
    exclude: Vec<String>,
    /// Like --exclude, ignoring case.
    #[arg(long, value_name = "PATTERN")]
    iexclude: Vec<String>,
    /// Read exclude patterns from a file, one per line (`#` comments).
    #[arg(long, value_name = "FILE")]
    exclude_file: Vec<PathBuf>,
    /// Leave out directories containing a file or directory of this name.
    #[arg(long, value_name = "NAME")]
    exclude_if_present: Vec<String>,
    /// Leave out directories containing a valid CACHEDIR.TAG.
    #[arg(long)]
    exclude_caches: bool,
    /// Leave out files larger than this (e.g. 500K, 20M, 1G).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    exclude_larger_than: Option<u64>,
    /// Do not cross filesystem boundaries.
    #[arg(short = 'x', long)]
    one_file_system: bool,
    /// Host name recorded in the snapshot (default: this machine's).
    #[arg(long, value_name = "HOST")]
    host: Option<String>,
    /// Tag the snapshot (repeatable, or comma-separated).
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// Time recorded in the snapshot instead of now (`2026-11-20 10:00`, RFC 3339).
    #[arg(long, value_name = "TIME")]
    time: Option<String>,
    /// Compare with this snapshot instead of the latest one of the same host and paths.
    #[arg(long, value_name = "SNAPSHOT")]
    parent: Option<String>,
    /// Read every file, even those unchanged since the parent snapshot.
    #[arg(long)]
    force: bool,
    /// Also read the contents of pseudo filesystems (/proc, /sys, cgroup,
    /// debugfs…), which are otherwise stored as empty directories.
    #[arg(long)]
    pseudo_filesystems: bool,
    /// Threads reading files (default: one per core).
    #[arg(long, default_value_t = 0, value_name = "N", value_parser = super::parse_threads)]
    threads: usize,
}

/// Parse `123`, `10K`, `20M`, `1G`, `2T` (binary units, optional `B`/`iB`).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_uppercase();
    let t = t.trim_end_matches("IB").trim_end_matches('B');
    let (num, mult) = match t.chars().last() {
        Some('K') => (&t[..t.len() - 1], 1u64 << 10),
        Some('M') => (&t[..t.len() - 1], 1 << 20),
        Some('G') => (&t[..t.len() - 1], 1 << 30),
        Some('T') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 500K, 20M or 1G"))?;
    if n < 0.0 {
        return Err(format!("{s:?} is negative"));
    }
    Ok((n * mult as f64) as u64)
}

struct CliProgress {
    json: bool,
    quiet: bool,
    files: AtomicU64,
    bytes_read: AtomicU64,
    errors: AtomicU64,
}

impl Progress for CliProgress {
    fn error(&self, path: &Path, message: &str) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        output::report(self.json, "error", path, message);
    }

    fn warning(&self, path: &Path, message: &str) {
        if self.json || !self.quiet {
            output::report(self.json, "warning", path, message);
        }
    }

    fn file_done(&self, _path: &Path, outcome: &FileOutcome) {
        self.files.fetch_add(1, Ordering::Relaxed);
        self.bytes_read
            .fetch_add(outcome.bytes_read, Ordering::Relaxed);
    }
}

impl CliProgress {
    fn status(&self) -> (u64, u64, u64) {
        (
            self.files.load(Ordering::Relaxed),
            self.bytes_read.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
        )
    }
}

pub fn run(global: &GlobalArgs, args: &Args) -> Result<u8> {
    let opts = options(args)?;
    let repo = repo::open_or_create_default(global)?;
    let mut opts = opts;
    if let Some(p) = &args.parent {
        let (id, _) = strata_core::select::find(&repo, p, &Default::default())?;
        opts.parent = Some(id);
    }
    let progress = CliProgress {
        json: global.json,
        quiet: global.quiet,
        files: 0.into(),
        bytes_read: 0.into(),
        errors: 0.into(),
    };
    let done = AtomicBool::new(false);
    let result = std::thread::scope(|s| {
        s.spawn(|| show_progress(&progress, &done, global));
        // Stops the progress thread however the backup ends, panics included.
        let _stop = StopOnDrop(&done);
        backup::run(&repo, &opts, &progress)
    });
    let (id, snap) = result?;
    print_summary(global, &id, &snap);
    let empty_streams = snap.summary.as_ref().is_some_and(|s| s.streams_empty > 0);
    Ok(if snap.partial || empty_streams {
        crate::exit::PARTIAL
    } else {
        crate::exit::OK
    })
}

fn options(args: &Args) -> Result<BackupOptions> {
    let mut exclude = args.exclude.clone();
    for f in &args.exclude_file {
        exclude.extend(read_exclude_file(f)?);
    }
    let time = args
        .time
        .as_deref()
        .map(strata_core::select::parse_time)
        .transpose()?;
    let tags: Vec<String> = args
        .tags
        .iter()
        .flat_map(|t| t.split(','))
        .filter(|t| !t.is_empty())
        .map(String::from)
        .collect();
    let sources = sources(args)?;
    if args.append_only.iter().any(|p| p.trim().is_empty()) {
        bail!(strata_core::Error::invalid(
            "--append-only needs a pattern (gitignore syntax, e.g. `Data.fs` or `*.mbox`)"
        ));
    }
    if args.delta_pattern.iter().any(|p| p.trim().is_empty()) {
        bail!(strata_core::Error::invalid(
            "--delta-pattern needs a pattern (gitignore syntax, e.g. `*.qcow2` or `*.sqlite`)"
        ));
    }
    if args.paths.is_empty() && sources.is_empty() {
        bail!(strata_core::Error::invalid(
            "nothing to back up: give a path, --stdin, --stdin-from-command, --command, --mysql or --postgres"
        ));
    }
    for p in &args.paths {
        if p.symlink_metadata().is_err() {
            bail!(
                "{} does not exist or cannot be accessed; nothing was backed up",
                p.display()
            );
        }
    }
    Ok(BackupOptions {
        paths: args.paths.clone(),
        excludes: ExcludeOptions {
            exclude,
            iexclude: args.iexclude.clone(),
            if_present: args.exclude_if_present.clone(),
            caches: args.exclude_caches,
            larger_than: args.exclude_larger_than,
            one_file_system: args.one_file_system,
            pseudo_filesystems: args.pseudo_filesystems,
        },
        hostname: args.host.clone(),
        tags,
        time,
        parent: None,
        force: args.force,
        threads: args.threads,
        sources,
        stream_jobs: args.dump_jobs,
        append_only: args.append_only.clone(),
        append_verify: match args.append_verify {
            AppendVerifyArg::Quick => backup::AppendVerify::Quick,
            AppendVerifyArg::Full => backup::AppendVerify::Full,
        },
        delta: match args.delta {
            DeltaArg::Auto => backup::DeltaMode::Auto,
            DeltaArg::Off => backup::DeltaMode::Off,
        },
        delta_patterns: args.delta_pattern.clone(),
    })
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum DeltaArg {
    Auto,
    Off,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum AppendVerifyArg {
    Quick,
    Full,
}

/// The streams and databases asked for, checked before anything runs.
fn sources(args: &Args) -> Result<Vec<Source>> {
    use strata_core::sources::{mysql, postgres, CommandSpec, Databases, Stream, StreamName};
    let usage = |m: String| strata_core::Error::invalid(m);
    let mut out = Vec::new();
    let stdin_name = || StreamName::parse(args.stdin_filename.as_deref().unwrap_or("stdin"));
    if args.stdin {
        if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
            bail!(usage(
                "--stdin reads standard input, which is a terminal: pipe the data in (`pg_dump db | strata backup --stdin …`)".into()
            ));
        }
        let mut stream = Stream::reader(stdin_name()?, Box::new(std::io::stdin()));
        stream.required = true;
        out.push(Source::Stream(stream));
    }
    if args.stdin_from_command {
        let Some((program, rest)) = args.command_line.split_first() else {
            bail!(usage(
                "--stdin-from-command needs the command after `--`: `strata backup --stdin-from-command --stdin-filename db.sql -- pg_dump db`".into()
            ));
        };
        let mut stream = Stream::command(stdin_name()?, CommandSpec::new(program, rest.to_vec()));
        stream.required = true;
        out.push(Source::Stream(stream));
    } else if !args.command_line.is_empty() {
        bail!(usage(format!(
            "{:?} after `--` is a command, but --stdin-from-command is not given",
            args.command_line[0]
        )));
    }
    if args.stdin_filename.is_some() && !args.stdin && !args.stdin_from_command {
        bail!(usage(
            "--stdin-filename names what --stdin or --stdin-from-command stores; give one of them"
                .into()
        ));
    }
    for c in &args.commands {
        let Some((name, line)) = c
            .split_once('=')
            .filter(|(n, l)| !n.is_empty() && !l.trim().is_empty())
        else {
            bail!(usage(format!(
                "--command {c:?}: give NAME=COMMAND, e.g. --command 'ldap.ldif=slapcat -n 1'"
            )));
        };
        out.push(Source::Stream(Stream::shell(
            StreamName::parse(name)?,
            line,
        )));
    }
    if let Some(dbs) = &args.mysql {
        let mut o = mysql::Options::new(Databases::parse(dbs)?);
        o.defaults_file = args.mysql_defaults_file.clone();
        o.options = args.mysql_option.clone();
        out.push(Source::Mysql(o));
    } else if args.mysql_defaults_file.is_some() || !args.mysql_option.is_empty() {
        bail!(usage(
            "--mysql-defaults-file and --mysql-option go with --mysql".into()
        ));
    }
    if let Some(dbs) = &args.postgres {
        let mut o = postgres::Options::new(Databases::parse(dbs)?);
        o.options = args.postgres_option.clone();
        out.push(Source::Postgres(o));
    } else if !args.postgres_option.is_empty() {
        bail!(usage("--postgres-option goes with --postgres".into()));
    }
    Ok(out)
}

struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A spinner on a terminal, JSON status lines with --json, else nothing.
fn show_progress(p: &CliProgress, done: &AtomicBool, global: &GlobalArgs) {
    let bar = (!global.json && !global.quiet && output::interactive()).then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    });
    let mut ticks = 0u32;
    while !done.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        ticks += 1;
        let (files, read, errors) = p.status();
        if let Some(bar) = &bar {
            bar.set_message(format!(
                "{files} files, {} read, {errors} errors",
                bytes(read)
            ));
        } else if global.json && ticks.is_multiple_of(10) {
            outln!(
                "{}",
                json!({"message_type": "status", "files_done": files, "bytes_read": read, "errors": errors})
            );
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
}

fn print_summary(global: &GlobalArgs, id: &Id, snap: &Snapshot) {
    let s = snap.summary.clone().unwrap_or_default();
    if global.json {
        outln!(
            "{}",
            json!({"message_type": "summary", "snapshot_id": id.to_hex(), "short_id": id.short(), "partial": snap.partial, "summary": summary_json(&s)})
        );
        return;
    }
    if global.quiet {
        return;
    }
    outln!(
        "Files:      {} new, {} changed, {} unchanged{}",
        s.files_new,
        s.files_changed,
        s.files_unchanged + s.files_reread,
        if s.files_reread > 0 {
            format!(" ({} of them read again to be sure)", s.files_reread)
        } else {
            String::new()
        }
    );
    outln!(
        "Dirs:       {}   symlinks: {}   other (fifos, devices, sockets): {}",
        s.dirs,
        s.symlinks,
        s.other_nodes
    );
    if s.streams > 0 {
        outln!(
            "Streams:    {} saved{}",
            s.streams,
            if s.streams_empty > 0 {
                format!(", {} of them empty", s.streams_empty)
            } else {
                String::new()
            }
        );
    }
    outln!("Read:       {}", bytes(s.bytes_read));
    outln!(
        "Original:   {}  (all files in this snapshot)",
        bytes(s.total_bytes)
    );
    outln!(
        "Added:      {} new data in {}, {} stored after compression and deduplication",
        bytes(s.data_added),
        strata_core::format::count(s.blobs_added, "blob"),
        bytes(s.data_added_stored)
    );
    outln!("Duration:   {:.2}s", s.duration_ms as f64 / 1000.0);
    if snap.partial {
        outln!(
            "snapshot {} saved, but {} could not be read (see errors above)",
            id.short(),
            strata_core::format::count(s.errors, "entry")
        );
    } else if s.streams_empty > 0 {
        outln!(
            "snapshot {} saved, but {} {} empty (see warnings above)",
            id.short(),
            strata_core::format::count(s.streams_empty, "stream"),
            if s.streams_empty == 1 { "was" } else { "were" }
        );
    } else {
        outln!("snapshot {} saved", id.short());
    }
}

pub fn summary_json(s: &Summary) -> serde_json::Value {
    serde_json::to_value(s).unwrap_or_default()
}
