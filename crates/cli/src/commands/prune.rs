use anyhow::Result;
use serde_json::json;
use strata_core::maintenance::prune::{self, PruneOptions, PrunePlan, PruneReport, UnusedLimit};

use crate::output;
use crate::repo::{self, GlobalArgs};

#[derive(clap::Args, Debug, Clone)]
pub struct PruneArgs {
    /// Unused data tolerated in kept packs: a share of all data (`5%`), a
    /// size (`100M`), or `unlimited`. Packs are repacked until below it.
    #[arg(long, default_value = "5%", value_name = "LIMIT", value_parser = parse_limit)]
    max_unused: UnusedLimit,
    /// Repack at most this much data in one run (e.g. `2G`).
    #[arg(long, value_name = "SIZE", value_parser = super::backup::parse_size)]
    max_repack_size: Option<u64>,
}

impl PruneArgs {
    pub fn options(&self) -> PruneOptions {
        PruneOptions {
            max_unused: self.max_unused,
            max_repack_size: self.max_repack_size,
            assume_forgotten: Vec::new(),
        }
    }
}

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Prune runs beside backups: packs it finds unused leave the index at once and \
are deleted when every command that held a lock at that moment has finished \
(by this prune if none did, otherwise by the next one).")]
pub struct Args {
    #[command(flatten)]
    prune: PruneArgs,
    /// Print the plan and the space it frees without changing anything.
    #[arg(short = 'n', long)]
    dry_run: bool,
}

fn parse_limit(s: &str) -> Result<UnusedLimit, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("unlimited") {
        return Ok(UnusedLimit::Unlimited);
    }
    if let Some(p) = t.strip_suffix('%') {
        let p: f64 = p
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not a percentage like 5%"))?;
        if !(0.0..=100.0).contains(&p) {
            return Err(format!("{s:?} is not between 0% and 100%"));
        }
        return Ok(UnusedLimit::Percent(p));
    }
    super::backup::parse_size(t).map(UnusedLimit::Bytes)
}

pub fn run(global: &GlobalArgs, args: &Args) -> Result<u8> {
    let repo = std::sync::Arc::new(repo::open(global)?);
    prune_repository(global, &repo, &args.prune.options(), args.dry_run)
}

/// Prune and print the outcome (shared with `forget --prune`).
pub fn prune_repository(
    global: &GlobalArgs,
    repo: &std::sync::Arc<strata_core::repository::Repository>,
    opts: &PruneOptions,
    dry_run: bool,
) -> Result<u8> {
    let (plan, report) = prune::run(repo, opts, dry_run)?;
    if global.json {
        outln!("{}", to_json(&plan, &report, dry_run));
    } else if !global.quiet {
        print_plan(&plan);
        print_report(&plan, &report, dry_run);
    }
    if !global.json {
        print_damage(&plan);
    }
    // Damage found on the way is not prune's failure, but must not pass
    // for a clean run either.
    Ok(if plan.damaged.is_empty() {
        crate::exit::OK
    } else {
        crate::exit::PARTIAL
    })
}

/// Copies of used blobs that failed to verify, and what prune did instead.
fn print_damage(plan: &PrunePlan) {
    for (blob, pack, error) in &plan.damaged {
        let kept = if plan.pinned.contains(pack) {
            "no copy verifies: every pack holding it is kept".to_string()
        } else {
            "an intact copy in another pack is kept instead".to_string()
        };
        errln!(
            "warning: blob {} in pack {}: {error}; {kept}",
            blob.short(),
            pack.short()
        );
    }
    if !plan.pinned.is_empty() {
        errln!(
            "warning: some used blobs have no intact copy; run `strata check --read-data` to see what they affect"
        );
    }
}

fn sum(packs: &[prune::PackUse]) -> u64 {
    packs.iter().map(|p| p.size).sum()
}

fn print_plan(plan: &PrunePlan) {
    let (used, unused) = (plan.used_bytes(), plan.unused_bytes());
    outln!(
        "{} {} {} of packed data; {} is unused",
        strata_core::format::count(plan.snapshots as u64, "snapshot"),
        if plan.snapshots == 1 { "uses" } else { "use" },
        output::bytes(used),
        output::bytes(unused)
    );
    outln!(
        "packs: {} kept, {} to delete ({}), {} to repack ({})",
        plan.keep.len(),
        plan.delete.len(),
        output::bytes(sum(&plan.delete)),
        plan.repack.len(),
        output::bytes(sum(&plan.repack)),
    );
    if !plan.unindexed.is_empty() {
        outln!(
            "{} packs ({}) are in no index: left by interrupted commands, or being written by running backups (then kept)",
            plan.unindexed.len(),
            output::bytes(plan.unindexed_bytes())
        );
    }
    let total = used + plan.unused_after();
    outln!(
        "frees {}; unused data left: {} ({:.1}%)",
        output::bytes(plan.freed_bytes()),
        output::bytes(plan.unused_after()),
        if total == 0 {
            0.0
        } else {
            plan.unused_after() as f64 * 100.0 / total as f64
        }
    );
    for p in &plan.pending {
        outln!(
            "an earlier prune ({}) condemned {} packs ({}); {} of the commands it waits for still run",
            output::local_time(p.time),
            p.packs,
            output::bytes(p.bytes),
            p.waiting_for
        );
    }
}

fn print_report(plan: &PrunePlan, report: &PruneReport, dry_run: bool) {
    if !report.temporaries.is_empty() {
        outln!(
            "{} left by interrupted writes ({}){}",
            strata_core::format::count(report.temporaries.len() as u64, "temporary file"),
            output::bytes(report.temporaries.iter().map(|t| t.size).sum()),
            if dry_run {
                "; would remove them"
            } else {
                ": removed"
            }
        );
    }
    if dry_run {
        outln!("dry run: nothing was changed");
        return;
    }
    let s = &report.sweep;
    if plan.is_empty() && s.deleted_packs == 0 && s.rescued_packs == 0 && s.waiting_packs == 0 {
        outln!("nothing to prune");
        return;
    }
    outln!(
        "repacked {}; deleted {} ({})",
        strata_core::format::count(report.repacked_blobs as u64, "blob"),
        strata_core::format::count(s.deleted_packs as u64, "pack"),
        output::bytes(s.deleted_bytes)
    );
    if s.rescued_packs > 0 {
        outln!(
            "{} condemned packs are needed by snapshots written since and were indexed again",
            s.rescued_packs
        );
    }
    if s.waiting_packs > 0 {
        outln!(
            "{} packs ({}) wait for commands that were running to finish; the next prune deletes them",
            s.waiting_packs,
            output::bytes(s.waiting_bytes)
        );
    }
}

fn to_json(plan: &PrunePlan, report: &PruneReport, dry_run: bool) -> serde_json::Value {
    let s = &report.sweep;
    json!({
        "dry_run": dry_run,
        "snapshots": plan.snapshots,
        "used_bytes": plan.used_bytes(),
        "unused_bytes": plan.unused_bytes(),
        "unused_after_bytes": plan.unused_after(),
        "freed_bytes": plan.freed_bytes(),
        "unindexed_bytes": plan.unindexed_bytes(),
        "packs_kept": plan.keep.len(),
        "packs_to_delete": plan.delete.len(),
        "packs_to_repack": plan.repack.len(),
        "packs_unindexed": plan.unindexed.len(),
        "repacked_blobs": report.repacked_blobs,
        "condemned_packs": report.condemned_packs,
        "deleted_packs": s.deleted_packs,
        "deleted_bytes": s.deleted_bytes,
        "rescued_packs": s.rescued_packs,
        "waiting_packs": s.waiting_packs,
        "waiting_bytes": s.waiting_bytes,
        "temporary_files": report.temporaries.iter().map(|t| &t.name).collect::<Vec<_>>(),
        "damaged_copies": plan.damaged.iter().map(|(b, p, e)| json!({
            "blob": b.to_hex(), "pack": p.to_hex(), "error": e,
            "kept_all_copies": plan.pinned.contains(p)})).collect::<Vec<_>>(),
        "pending": plan.pending.iter().map(|p| json!({
            "list": p.name, "time": p.time.to_string(), "packs": p.packs,
            "bytes": p.bytes, "waiting_for_locks": p.waiting_for})).collect::<Vec<_>>(),
    })
}
