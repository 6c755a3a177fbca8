use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::json;
use strata_core::diff::{self, disk, Change, DiffEntry, DiffStats};
use strata_core::format::snapshot::Snapshot;
use strata_core::repository::Repository;
use strata_core::walk::{read_exclude_file, ExcludeOptions};
use strata_core::{Error, Id};

use crate::output;
use crate::repo::{self, FilterArgs, GlobalArgs};

/// Two snapshots: `diff SNAPSHOT1 SNAPSHOT2 [PATH]`. A snapshot and the
/// disk: `diff SNAPSHOT[:PATH] DIR`, where DIR contains a `/` or starts
/// with `.` (`./src`, `/home/me`, `.`), which no snapshot selector does.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Compared with a directory on disk, a file counts as modified when \
its size or mtime differ from the snapshot (like rsync's quick check); --content reads \
and hashes files of unchanged size and compares their data exactly. Without :PATH the \
snapshot's copy of DIR is compared, if DIR is one of the paths it was made of."
)]
pub struct Args {
    /// The older snapshot: an id prefix or `latest`. Against a directory on
    /// disk, `SNAPSHOT:PATH` chooses the snapshot's directory to compare.
    #[arg(value_name = "SNAPSHOT1[:PATH]")]
    first: OsString,
    /// The newer snapshot, or a directory on disk: an argument containing
    /// `/` or starting with `.` is a path on disk.
    #[arg(value_name = "SNAPSHOT2|DIR")]
    second: OsString,
    /// Compare only below this path inside the snapshots (two snapshots).
    #[arg(value_name = "PATH")]
    path: Option<OsString>,
    /// Against a directory on disk: read and hash every file whose size is
    /// unchanged and compare its data with the snapshot's exactly.
    #[arg(long)]
    content: bool,
    /// Against a directory on disk: leave out entries matching this pattern
    /// (gitignore syntax, as in backup).
    #[arg(short = 'e', long, value_name = "PATTERN")]
    exclude: Vec<String>,
    /// Against a directory on disk: read exclude patterns from a file.
    #[arg(long, value_name = "FILE")]
    exclude_file: Vec<PathBuf>,
    #[command(flatten)]
    filter: FilterArgs,
}

/// What the second argument names.
#[derive(Debug, PartialEq, Eq)]
enum Other {
    Snapshot(String),
    Disk(PathBuf),
}

/// Decide by spelling alone, never by what exists: a path on disk contains
/// `/` or starts with `.`; snapshot selectors (`latest`, hexadecimal id
/// prefixes) never do.
fn other(arg: &OsStr) -> Result<Other> {
    let bytes = arg.as_bytes();
    if bytes.contains(&b'/') || bytes.starts_with(b".") {
        return Ok(Other::Disk(PathBuf::from(arg)));
    }
    match arg.to_str() {
        Some(s) if s == "latest" || s.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok(Other::Snapshot(s.to_string()))
        }
        _ => bail!(Error::invalid(format!(
            "{} is not a snapshot (`latest` or an id prefix); for a directory on disk write ./{}",
            arg.to_string_lossy(),
            arg.to_string_lossy()
        ))),
    }
}

/// `+` added, `-` removed, `M` data changed, `U` metadata only, `T` type changed.
fn modifier(change: &Change) -> &'static str {
    match change {
        Change::Added => "+",
        Change::Removed { .. } => "-",
        Change::Modified { .. } => "M",
        Change::Metadata(_) => "U",
        Change::TypeChanged => "T",
    }
}

fn print(global: &GlobalArgs, e: &DiffEntry) {
    let path = output::path(&e.path);
    let slash = if e.kind == strata_core::format::tree::NodeKind::Dir {
        "/"
    } else {
        ""
    };
    if global.json {
        let (fields, files, bytes) = match &e.change {
            Change::Modified { metadata } | Change::Metadata(metadata) => {
                (metadata.clone(), None, None)
            }
            Change::Removed { files, bytes } => (Vec::new(), Some(*files), Some(*bytes)),
            _ => (Vec::new(), None, None),
        };
        let mut value = json!({"message_type": "change", "path": output::json_path(&e.path), "type": e.kind, "modifier": modifier(&e.change),
                              "metadata": fields, "files": files, "bytes": bytes});
        output::add_bytes(&mut value, "path", e.path.as_os_str().as_encoded_bytes());
        output::json_line(&value);
        return;
    }
    let detail = match &e.change {
        Change::Removed { files, bytes } if slash == "/" => {
            format!(
                "  ({}, {})",
                strata_core::format::count(*files, "file"),
                output::bytes(*bytes)
            )
        }
        Change::Modified { metadata } if !metadata.is_empty() => {
            format!("  (and {})", metadata.join(", "))
        }
        Change::Metadata(fields) => format!("  ({})", fields.join(", ")),
        _ => String::new(),
    };
    outln!("{}    {path}{slash}{detail}", modifier(&e.change));
}

pub fn run(global: &GlobalArgs, args: &Args) -> Result<u8> {
    let second = other(&args.second)?;
    let disk_only = args.content || !args.exclude.is_empty() || !args.exclude_file.is_empty();
    match &second {
        Other::Disk(_) if args.path.is_some() => bail!(Error::invalid(
            "against a directory on disk, choose the snapshot's directory as SNAPSHOT:PATH, not as a third argument"
        )),
        Other::Snapshot(_) if disk_only => bail!(Error::invalid(
            "--content and --exclude apply only to a comparison with a directory on disk (DIR must contain `/` or start with `.`)"
        )),
        _ => {}
    }
    let repo = repo::open(global)?;
    repo.load_index()?;
    let filter = args.filter.filter()?;
    let (stats, code) = match second {
        Other::Snapshot(s) => (
            two_snapshots(global, args, &repo, &filter, &s)?,
            crate::exit::OK,
        ),
        Other::Disk(dir) => with_disk(global, args, &repo, &filter, &dir)?,
    };
    print_stats(global, &stats);
    Ok(code)
}

fn two_snapshots(
    global: &GlobalArgs,
    args: &Args,
    repo: &Repository,
    filter: &strata_core::select::Filter,
    second: &str,
) -> Result<DiffStats> {
    let first = args
        .first
        .to_str()
        .context("the first snapshot is not text: give `latest` or an id prefix")?;
    let (id1, s1) = strata_core::select::find(repo, first, filter)?;
    let (id2, s2) = strata_core::select::find(repo, second, filter)?;
    let (mut a, mut b) = (s1.tree, s2.tree);
    let mut prefix = PathBuf::from("/");
    if let Some(p) = args.path.as_deref() {
        let stored = repo.resolve_in_snapshot(&s1, p.as_bytes())?;
        let stored = OsStr::from_bytes(&stored);
        prefix.push(
            Path::new(stored)
                .strip_prefix("/")
                .unwrap_or(Path::new(stored)),
        );
        (a, b) = (dir_tree(repo, &s1, stored)?, dir_tree(repo, &s2, stored)?);
    }
    if !global.json && !global.quiet {
        errln!("comparing snapshot {} with {}", id1.short(), id2.short());
    }
    Ok(diff::run(repo, a, b, &prefix, &mut |e| print(global, e))?)
}

/// The tree of the directory `path` inside the snapshot.
fn dir_tree(repo: &Repository, snap: &Snapshot, path: &OsStr) -> Result<Id> {
    match repo.find_in_snapshot(snap, path.as_bytes())? {
        Some(n) if n.is_dir() => Ok(n.subtree.unwrap_or_default()),
        None => Ok(snap.tree), // the path names the root
        Some(_) => bail!(
            "{} is not a directory in the snapshot",
            output::path(Path::new(path))
        ),
    }
}

fn with_disk(
    global: &GlobalArgs,
    args: &Args,
    repo: &Repository,
    filter: &strata_core::select::Filter,
    dir: &Path,
) -> Result<(DiffStats, u8)> {
    let abs = disk_dir(dir)?;
    let (id, inside, tree) = snapshot_dir(repo, &args.first, filter, &abs)?;
    if !global.json && !global.quiet {
        errln!(
            "comparing snapshot {}:{} with {}",
            id.short(),
            output::path(Path::new(OsStr::from_bytes(&inside))),
            output::path(&abs)
        );
    }
    let opts = disk::DiskOptions {
        content: args.content,
        excludes: excludes(args)?,
    };
    let mut warnings = 0u64;
    let stats = disk::run(
        repo,
        tree,
        &abs,
        &opts,
        &mut |e| print(global, e),
        &mut |path, message| {
            warnings += 1;
            output::report(global.json, "warning", path, message);
        },
    )?;
    let code = if warnings > 0 {
        crate::exit::PARTIAL
    } else {
        crate::exit::OK
    };
    Ok((stats, code))
}

/// `dir` as an absolute path without `.` and `..`, as backup records
/// paths; it must be a directory.
fn disk_dir(dir: &Path) -> Result<PathBuf> {
    let abs =
        std::path::absolute(dir).with_context(|| format!("cannot resolve {}", dir.display()))?;
    let abs = strata_core::backup::normalize(&abs);
    let meta = std::fs::metadata(&abs).with_context(|| format!("cannot read {}", abs.display()))?;
    if !meta.is_dir() {
        bail!(Error::invalid(format!(
            "{} is not a directory: compare a directory of the snapshot with a directory on disk",
            abs.display()
        )));
    }
    Ok(abs)
}

/// The snapshot `SNAPSHOT[:PATH]` names, the path inside it to compare
/// with the directory `abs` on disk, and that directory's tree.
fn snapshot_dir(
    repo: &Repository,
    spec: &OsStr,
    filter: &strata_core::select::Filter,
    abs: &Path,
) -> Result<(Id, Vec<u8>, Id)> {
    let (selector, inside) = super::split_selector(spec)?;
    let (id, snap) = strata_core::select::find(repo, &selector, filter)?;
    let inside = match inside {
        Some(p) => p,
        None => own_copy(&id, &snap, abs)?,
    };
    let inside = repo.resolve_in_snapshot(&snap, &inside)?;
    let tree = dir_tree(repo, &snap, OsStr::from_bytes(&inside))?;
    Ok((id, inside, tree))
}

/// The snapshot path of `dir` when the snapshot was made of it.
fn own_copy(id: &Id, snap: &Snapshot, dir: &Path) -> Result<Vec<u8>> {
    let Some(stored) = snap.original_to_stored(dir.as_os_str().as_bytes()) else {
        bail!(Error::invalid(format!(
            "{} is not one of the paths snapshot {} was made of ({}): say which directory of the snapshot to compare, as {}:PATH",
            dir.display(),
            id.short(),
            snap.paths.join(", "),
            id.short()
        )));
    };
    Ok(stored)
}

fn excludes(args: &Args) -> Result<ExcludeOptions> {
    let mut exclude = args.exclude.clone();
    for file in &args.exclude_file {
        exclude.extend(read_exclude_file(file)?);
    }
    Ok(ExcludeOptions {
        exclude,
        ..Default::default()
    })
}

fn print_stats(global: &GlobalArgs, stats: &DiffStats) {
    if global.json {
        output::json_line(
            &json!({"message_type": "statistics", "added": stats.added, "removed": stats.removed,
            "modified": stats.modified, "metadata_only": stats.metadata_only, "type_changed": stats.type_changed,
            "bytes_added": stats.bytes_added, "bytes_removed": stats.bytes_removed}),
        );
    } else if !global.quiet {
        outln!();
        outln!(
            "Added:    {}, {}",
            strata_core::format::count(stats.added, "entry"),
            output::bytes(stats.bytes_added)
        );
        outln!(
            "Removed:  {}, {}",
            strata_core::format::count(stats.removed, "entry"),
            output::bytes(stats.bytes_removed)
        );
        outln!(
            "Changed:  {} in content, {} in metadata only, {} in type",
            stats.modified,
            stats.metadata_only,
            stats.type_changed
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_argument_with_a_slash_or_leading_dot_is_a_directory() {
        for disk in ["./src", "/home/me", ".", "..", ".config", "a/b", "latest/"] {
            assert_eq!(
                other(OsStr::new(disk)).ok(),
                Some(Other::Disk(PathBuf::from(disk))),
                "{disk}"
            );
        }
        for snap in ["latest", "4f2a91c0", "cafe"] {
            assert_eq!(
                other(OsStr::new(snap)).ok(),
                Some(Other::Snapshot(snap.to_string())),
                "{snap}"
            );
        }
        // Neither: refused with the way to name a directory.
        let err = other(OsStr::new("src")).unwrap_err().to_string();
        assert!(err.contains("./src"), "{err}");
    }
}
