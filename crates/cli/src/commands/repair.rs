use anyhow::Result;
use serde_json::json;
use strata_core::format::snapshot::Snapshot;
use strata_core::maintenance::repair::{self, snapshots as rs};
use strata_core::repository::{LockKind, Repository};
use strata_core::Id;

use crate::output;
use crate::repo::{self, FilterArgs, GlobalArgs};

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
    /// Remove from snapshots what refers to lost data, so the repository
    /// checks clean again with the data that survives.
    ///
    /// Run `repair index` first. Files with a missing (or, with
    /// --read-data, unreadable) data blob and directories whose tree cannot
    /// be read are removed, never kept incomplete; every removed path is
    /// listed. Each damaged snapshot gets a replacement with the same time,
    /// host and paths, tagged `repaired`; the damaged one is kept unless
    /// --forget is given. Intact snapshots are left alone. Exit code 3 if
    /// some snapshot could not be repaired (its root tree is lost and it was
    /// not forgotten, or its snapshot file is unreadable).
    Snapshots(SnapshotArgs),
}

#[derive(clap::Args, Debug)]
struct SnapshotArgs {
    /// Repair only these snapshots (id prefixes or `latest`); default: all
    /// that match the filters.
    #[arg(value_name = "SNAPSHOT")]
    snapshots: Vec<String>,
    /// Remove each damaged snapshot once its replacement is written (and
    /// those of which nothing could be kept).
    #[arg(long)]
    forget: bool,
    /// Show what would be removed without writing anything.
    #[arg(short = 'n', long)]
    dry_run: bool,
    /// Also read and verify every data blob, and remove files whose data
    /// fails verification (slow: reads all data the snapshots use).
    #[arg(long)]
    read_data: bool,
    #[command(flatten)]
    filter: FilterArgs,
}

pub fn run(global: &GlobalArgs, args: &Args) -> Result<u8> {
    // what the storage holds, not what the cache remembers
    let repo = repo::open_with(global, repo::Cache::Bypass)?;
    match &args.what {
        What::Index => index(global, &repo),
        What::Snapshots(a) => snapshots(global, &repo, a),
    }
}

fn index(global: &GlobalArgs, repo: &Repository) -> Result<u8> {
    let r = repair::rebuild_index(repo)?;
    for (name, e) in &r.unreadable {
        errln!("warning: pack {name}: header unreadable, its blobs are not indexed: {e}");
    }
    if global.json {
        outln!(
            "{}",
            json!({"packs": r.packs, "blobs": r.blobs, "unreadable_packs": r.unreadable.len(),
                   "removed_index_files": r.removed_index_files, "new_index": r.new_index.map(|i| i.to_hex())})
        );
    } else if !global.quiet {
        outln!(
            "indexed {} in {}; replaced {}{}",
            strata_core::format::count(r.blobs as u64, "blob"),
            strata_core::format::count(r.packs as u64, "pack"),
            strata_core::format::count(r.removed_index_files as u64, "index file"),
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

fn snapshots(
    global: &GlobalArgs,
    repo: &std::sync::Arc<Repository>,
    args: &SnapshotArgs,
) -> Result<u8> {
    // A dry run only reads, so it need not wait for backups to finish.
    let _lock = repo.lock(if args.dry_run {
        LockKind::Shared
    } else {
        LockKind::Exclusive
    })?;
    let (chosen, unreadable) = choose(repo, args)?;
    for (name, e) in &unreadable {
        errln!("warning: snapshot {name} is unreadable and cannot be repaired: {e}");
    }
    let plan = rs::plan(
        repo,
        chosen,
        &rs::RepairOptions {
            read_data: args.read_data,
        },
    )?;
    let done = if args.dry_run || !plan.changes_anything() {
        rs::Executed::default()
    } else {
        rs::execute(repo, &plan, args.forget)?
    };
    if global.json {
        print_json(&plan, &done, args.dry_run, &unreadable);
    } else if !global.quiet {
        print_text(&plan, &done, args.dry_run);
    }
    let kept_lost = plan
        .snapshots
        .iter()
        .any(|p| matches!(p.outcome, rs::Outcome::Lost { .. }) && !args.forget);
    Ok(if kept_lost || !unreadable.is_empty() {
        crate::exit::PARTIAL
    } else {
        crate::exit::OK
    })
}

type Chosen = (Vec<(Id, Snapshot)>, Vec<(String, strata_core::Error)>);

/// The snapshots named, or all that match the filters; and, when none are
/// named, the snapshot files that could not be read.
fn choose(repo: &Repository, args: &SnapshotArgs) -> Result<Chosen> {
    let filter = args.filter.filter()?;
    let (snaps, bad) = repo.snapshots()?;
    if args.snapshots.is_empty() {
        let all = snaps.into_iter().filter(|(_, s)| filter.matches(s));
        return Ok((all.collect(), bad));
    }
    let mut chosen: Vec<(Id, Snapshot)> = Vec::new();
    for sel in &args.snapshots {
        let found = strata_core::select::find_listed(snaps.clone(), &bad, sel, &filter)?;
        if !chosen.iter().any(|(id, _)| *id == found.0) {
            chosen.push(found);
        }
    }
    Ok((chosen, Vec::new()))
}

fn print_text(plan: &rs::RepairPlan, done: &rs::Executed, dry_run: bool) {
    for p in &plan.snapshots {
        print_snapshot(p);
        print_fate(p, done, dry_run);
    }
    let count =
        |f: fn(&rs::Outcome) -> bool| plan.snapshots.iter().filter(|p| f(&p.outcome)).count();
    outln!(
        "{}: {} intact, {} {}repaired, {} beyond repair{}",
        strata_core::format::count(plan.snapshots.len() as u64, "snapshot"),
        count(|o| *o == rs::Outcome::Intact),
        count(|o| matches!(o, rs::Outcome::Repaired { .. })),
        if dry_run { "to be " } else { "" },
        count(|o| matches!(o, rs::Outcome::Lost { .. })),
        if dry_run {
            " (dry run: nothing was written)"
        } else {
            ""
        }
    );
}

/// What a damaged snapshot loses; nothing for an intact one.
fn print_snapshot(p: &rs::SnapshotPlan) {
    let head = || {
        format!(
            "snapshot {} ({} {} {})",
            p.id.short(),
            output::local_time(p.snapshot.time),
            p.snapshot.hostname,
            output::snapshot_sources(&p.snapshot)
        )
    };
    match &p.outcome {
        rs::Outcome::Intact => {}
        rs::Outcome::Repaired { removed, .. } => {
            outln!(
                "{}: {} removed",
                head(),
                strata_core::format::count(removed.len() as u64, "entry")
            );
            for r in removed {
                outln!("  - {}: {}", output::path(&r.path), r.reason);
            }
        }
        rs::Outcome::Lost { reason } => outln!("{}: nothing can be kept: {reason}", head()),
    }
}

/// What became of one damaged snapshot.
fn print_fate(p: &rs::SnapshotPlan, done: &rs::Executed, dry_run: bool) {
    if let Some(earlier) = p.replaced_by {
        outln!("  already replaced by snapshot {}", earlier.short());
    }
    if dry_run {
        return;
    }
    let new = done.replacements.iter().find(|(old, _)| *old == p.id);
    if let Some((_, new)) = new.filter(|_| p.replaced_by.is_none()) {
        outln!("  saved as snapshot {}", new.short());
    }
    if done.forgotten.contains(&p.id) {
        outln!("  removed snapshot {}", p.id.short());
    }
}

fn print_json(
    plan: &rs::RepairPlan,
    done: &rs::Executed,
    dry_run: bool,
    unreadable: &[(String, strata_core::Error)],
) {
    let list: Vec<_> = plan
        .snapshots
        .iter()
        .map(|p| {
            let (status, removed, reason) = match &p.outcome {
                rs::Outcome::Intact => ("intact", &[][..], None),
                rs::Outcome::Repaired { removed, .. } => ("repaired", &removed[..], None),
                rs::Outcome::Lost { reason } => ("lost", &[][..], Some(reason)),
            };
            let new = done.replacements.iter().find(|(old, _)| *old == p.id);
            json!({
                "id": p.id.to_hex(),
                "status": status,
                "reason": reason,
                "removed": removed.iter().map(|r| json!({"path": output::path(&r.path), "type": r.kind, "reason": r.reason})).collect::<Vec<_>>(),
                "new_id": new.map(|(_, n)| n.to_hex()),
                "replaced_by_earlier_repair": p.replaced_by.map(|n| n.to_hex()),
                "forgotten": done.forgotten.contains(&p.id),
            })
        })
        .collect();
    let unreadable: Vec<&String> = unreadable.iter().map(|(n, _)| n).collect();
    output::json_line(
        &json!({"dry_run": dry_run, "snapshots": list, "unreadable_snapshots": unreadable}),
    );
}
