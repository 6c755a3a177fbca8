use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Result;
use serde_json::json;
use strata_core::restore::{self, NoRestoreProgress, Overwrite, RestoreOptions, RestoreProgress};

use crate::repo::{self, FilterArgs, GlobalArgs};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum OverwriteArg {
    Always,
    IfChanged,
    Never,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Snapshot to restore: `latest` or an id prefix, optionally with
    /// `:PATH` to restore one file or directory (`latest:/etc/ssh`).
    #[arg(value_name = "SNAPSHOT[:PATH]")]
    snapshot: std::ffi::OsString,
    /// Directory to restore into (created if missing).
    #[arg(short, long, value_name = "DIR")]
    target: PathBuf,
    /// Restore only paths matching this pattern (gitignore syntax, on snapshot paths).
    #[arg(short, long, value_name = "PATTERN")]
    include: Vec<String>,
    /// Leave out paths matching this pattern.
    #[arg(short, long, value_name = "PATTERN")]
    exclude: Vec<String>,
    /// What to do with files that already exist in the target (default:
    /// if-changed; a single entry that is not a directory, SNAPSHOT:FILE,
    /// never replaces anything that differs unless this is given).
    #[arg(long, value_enum)]
    overwrite: Option<OverwriteArg>,
    /// Delete files in the target that the snapshot does not contain.
    #[arg(long)]
    delete: bool,
    /// Re-read restored files and check them against the snapshot.
    #[arg(long)]
    verify: bool,
    /// Parallel pack readers.
    #[arg(long, default_value_t = 0, value_name = "N", value_parser = super::parse_threads)]
    threads: usize,
    #[command(flatten)]
    filter: FilterArgs,
}

struct Progress {
    json: bool,
    warnings: AtomicU64,
}

impl RestoreProgress for Progress {
    fn warning(&self, path: &Path, message: &str) {
        self.warnings.fetch_add(1, Ordering::Relaxed);
        crate::output::report(self.json, "warning", path, message);
    }
}

pub fn run(global: &GlobalArgs, args: &Args) -> Result<u8> {
    let repo = repo::open(global)?;
    let (selector, subpath) = super::split_selector(&args.snapshot)?;
    let (id, snap) = strata_core::select::find(&repo, &selector, &args.filter.filter()?)?;
    // The path as backed up (`/home/me/src/x`) names the same as the
    // stored one (`/src/x`).
    let subpath = match subpath {
        Some(p) => {
            repo.load_index()?;
            Some(repo.resolve_in_snapshot(&snap, &p)?)
        }
        None => None,
    };
    let single_file = match &subpath {
        Some(p) => repo
            .node_if_present(snap.tree, p)?
            .is_some_and(|n| !n.is_dir()),
        None => false,
    };
    let opts = RestoreOptions {
        target: args.target.clone(),
        subpath,
        include: args.include.clone(),
        exclude: args.exclude.clone(),
        overwrite: match args.overwrite {
            Some(OverwriteArg::Always) => Overwrite::Always,
            Some(OverwriteArg::IfChanged) => Overwrite::IfChanged,
            Some(OverwriteArg::Never) => Overwrite::Never,
            None if single_file => Overwrite::IfAbsentOrSame,
            None => Overwrite::IfChanged,
        },
        delete: args.delete,
        verify: args.verify,
        threads: args.threads,
    };
    let progress = Progress {
        json: global.json,
        warnings: 0.into(),
    };
    let quiet_progress = NoRestoreProgress;
    let p: &dyn RestoreProgress = if global.quiet {
        &quiet_progress
    } else {
        &progress
    };
    let started = std::time::Instant::now();
    let s = restore::run(&repo, snap.tree, &opts, p)?;
    let secs = started.elapsed().as_secs_f64();
    if global.json {
        outln!(
            "{}",
            json!({"message_type": "summary", "snapshot_id": id.to_hex(), "files": s.files, "files_unchanged": s.files_unchanged,
                   "files_skipped": s.files_skipped,
                   "incomplete": s.incomplete.iter().map(|(p, e)| {
                       let mut v = json!({"path": crate::output::json_path(p), "error": e});
                       crate::output::add_bytes(&mut v, "path", p.as_os_str().as_encoded_bytes());
                       v
                   }).collect::<Vec<_>>(),
                   "dirs": s.dirs, "others": s.others, "bytes_written": s.bytes_written, "deleted": s.deleted,
                   "warnings": s.warnings, "failed": s.failed, "verified": s.verified, "verify_failures": s.verify_failures, "seconds": secs})
        );
    } else if !global.quiet {
        outln!(
            "restored snapshot {} to {}: {} ({} unchanged, {} existing left alone), {}, {} other, {} written, {} deleted in {secs:.2}s",
            id.short(),
            crate::output::path(&args.target),
            strata_core::format::count(s.files, "file"),
            s.files_unchanged,
            s.files_skipped,
            strata_core::format::count(s.dirs, "dir"),
            s.others,
            crate::output::bytes(s.bytes_written),
            s.deleted
        );
        if args.verify {
            outln!(
                "verified {}, {} failed",
                strata_core::format::count(s.verified, "file"),
                s.verify_failures
            );
        }
    }
    if !s.incomplete.is_empty() && !global.json {
        errln!(
            "{} could not be restored (damaged or missing data, a write error, or an existing file left alone); what was at their paths before is left as it was:",
            strata_core::format::count(s.incomplete.len() as u64, "entry"),
        );
        for (path, error) in &s.incomplete {
            errln!("  {}: {error}", crate::output::path(path));
        }
    }
    let others = s.failed.saturating_sub(s.incomplete.len() as u64);
    if others > 0 && !global.quiet {
        errln!(
            "{} could not be restored (see the warnings above)",
            strata_core::format::count(others, "more entry"),
        );
    }
    Ok(if s.verify_failures > 0 {
        crate::exit::FATAL
    } else if s.failed > 0 {
        crate::exit::PARTIAL
    } else {
        crate::exit::OK
    })
}
