use std::collections::BTreeMap;

use anyhow::Result;
use serde_json::json;
use strata_core::maintenance::forget::{self, GroupBy, Period, Policy};
use strata_core::storage::ObjectKind;
use strata_core::Id;

use crate::output;
use crate::repo::{self, GlobalArgs};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Forget these snapshots (id prefixes) instead of applying a policy.
    #[arg(value_name = "SNAPSHOT")]
    snapshots: Vec<String>,
    /// With `latest`: pass over snapshots that cannot be read (damaged).
    #[arg(long)]
    allow_damaged: bool,
    /// Keep the N newest snapshots.
    #[arg(long, default_value_t = 0, value_name = "N")]
    keep_last: usize,
    /// Keep the newest snapshot of each of the N newest hours.
    #[arg(long, default_value_t = 0, value_name = "N")]
    keep_hourly: usize,
    /// Keep the newest snapshot of each of the N newest days (local time).
    #[arg(long, default_value_t = 0, value_name = "N")]
    keep_daily: usize,
    /// Keep the newest snapshot of each of the N newest ISO weeks.
    #[arg(long, default_value_t = 0, value_name = "N")]
    keep_weekly: usize,
    /// Keep the newest snapshot of each of the N newest months.
    #[arg(long, default_value_t = 0, value_name = "N")]
    keep_monthly: usize,
    /// Keep the newest snapshot of each of the N newest years.
    #[arg(long, default_value_t = 0, value_name = "N")]
    keep_yearly: usize,
    /// Keep every snapshot within this duration of the newest (`2y5m7d3h`).
    #[arg(long, value_name = "DURATION")]
    keep_within: Option<String>,
    /// Keep one snapshot per hour within this duration of the newest.
    #[arg(long, value_name = "DURATION")]
    keep_within_hourly: Option<String>,
    /// Keep one snapshot per day within this duration of the newest.
    #[arg(long, value_name = "DURATION")]
    keep_within_daily: Option<String>,
    /// Keep one snapshot per week within this duration of the newest.
    #[arg(long, value_name = "DURATION")]
    keep_within_weekly: Option<String>,
    /// Keep one snapshot per month within this duration of the newest.
    #[arg(long, value_name = "DURATION")]
    keep_within_monthly: Option<String>,
    /// Keep one snapshot per year within this duration of the newest.
    #[arg(long, value_name = "DURATION")]
    keep_within_yearly: Option<String>,
    /// Keep snapshots with this tag (repeatable).
    #[arg(long, value_name = "TAG")]
    keep_tag: Vec<String>,
    /// Group snapshots by any of host, paths, tags before applying the policy.
    #[arg(long, default_value = "host,paths", value_name = "FIELDS")]
    group_by: String,
    /// Only these hosts' snapshots are considered (repeatable).
    #[arg(long = "host", value_name = "HOST")]
    hosts: Vec<String>,
    /// Only snapshots with these tags are considered (`a,b` needs both).
    #[arg(long = "tag", value_name = "TAG[,TAG]")]
    tags: Vec<String>,
    /// Only snapshots of this path are considered (repeatable).
    #[arg(long = "path", value_name = "PATH")]
    paths: Vec<String>,
    /// Print the plan (what is kept, by which rule) without removing anything.
    #[arg(short = 'n', long)]
    dry_run: bool,
    /// Run prune afterwards, deleting the data no snapshot needs any more.
    #[arg(long)]
    prune: bool,
    #[command(flatten)]
    prune_args: super::prune::PruneArgs,
}

fn policy(args: &Args) -> Result<Policy> {
    let mut periods = BTreeMap::new();
    let mut within_periods = BTreeMap::new();
    let counts = [
        args.keep_hourly,
        args.keep_daily,
        args.keep_weekly,
        args.keep_monthly,
        args.keep_yearly,
    ];
    let withins = [
        &args.keep_within_hourly,
        &args.keep_within_daily,
        &args.keep_within_weekly,
        &args.keep_within_monthly,
        &args.keep_within_yearly,
    ];
    for ((period, count), within) in Period::ALL.into_iter().zip(counts).zip(withins) {
        if count > 0 {
            periods.insert(period, count);
        }
        if let Some(w) = within {
            within_periods.insert(period, forget::parse_duration(w)?);
        }
    }
    Ok(Policy {
        last: args.keep_last,
        periods,
        within: args
            .keep_within
            .as_deref()
            .map(forget::parse_duration)
            .transpose()?,
        within_periods,
        tags: args.keep_tag.clone(),
    })
}

pub fn run(global: &GlobalArgs, args: &Args) -> Result<u8> {
    let policy = policy(args)?;
    let group_by = GroupBy::parse(&args.group_by)?;
    if policy.is_empty() && args.snapshots.is_empty() {
        return Err(strata_core::Error::invalid(
            "no policy given: it would forget every snapshot; use --keep-last, --keep-daily, … or name the snapshots to forget",
        )
        .into());
    }
    let repo = std::sync::Arc::new(repo::open(global)?);
    let lock = if args.dry_run {
        None
    } else {
        Some(repo.lock(strata_core::repository::LockKind::Maintenance)?)
    };
    let (snaps, bad) = repo.snapshots()?;
    let remove: Vec<Id> = if args.snapshots.is_empty() {
        let filter = strata_core::select::Filter {
            hosts: args.hosts.clone(),
            tags: args.tags.clone(),
            paths: args.paths.clone(),
            ..Default::default()
        };
        let chosen: Vec<_> = snaps
            .iter()
            .filter(|(_, s)| filter.matches(s))
            .cloned()
            .collect();
        let plans = forget::plan(&chosen, &policy, group_by, &jiff::tz::TimeZone::system());
        print_plan(global, &plans, &chosen);
        plans.into_iter().flat_map(|p| p.remove).collect()
    } else {
        let mut ids = Vec::new();
        for sel in &args.snapshots {
            let found = strata_core::select::find_listed(
                snaps.clone(),
                &bad,
                sel,
                &strata_core::select::Filter {
                    allow_damaged: args.allow_damaged,
                    ..Default::default()
                },
            )?;
            ids.push(found.0);
        }
        ids
    };
    let Some(lock) = lock else {
        if !global.json && !global.quiet {
            outln!(
                "would forget {} (dry run: nothing was removed)",
                strata_core::format::count(remove.len() as u64, "snapshot")
            );
        }
        if args.prune {
            let mut opts = args.prune_args.options();
            opts.assume_forgotten = remove;
            return super::prune::prune_repository(global, &repo, &opts, true);
        }
        return Ok(crate::exit::OK);
    };
    lock.check()?;
    for id in &remove {
        repo.storage().remove(ObjectKind::Snapshot, &id.to_hex())?;
    }
    drop(lock);
    if !global.json && !global.quiet {
        outln!(
            "forgot {}{}",
            strata_core::format::count(remove.len() as u64, "snapshot"),
            if args.prune {
                ""
            } else {
                "; their data stays until prune removes what no snapshot needs"
            }
        );
    }
    if args.prune {
        return super::prune::prune_repository(global, &repo, &args.prune_args.options(), false);
    }
    Ok(crate::exit::OK)
}

fn print_plan(
    global: &GlobalArgs,
    plans: &[forget::GroupPlan],
    snaps: &[(Id, strata_core::format::snapshot::Snapshot)],
) {
    let time = |id: &Id| snaps.iter().find(|s| s.0 == *id).map(|s| s.1.time);
    if global.json {
        let groups: Vec<_> = plans
            .iter()
            .map(|p| {
                json!({
                    "group": p.key,
                    "keep": p.keep.iter().map(|(id, r)| json!({"id": id.to_hex(), "time": time(id).map(|t| t.to_string()), "reasons": r})).collect::<Vec<_>>(),
                    "remove": p.remove.iter().map(|id| json!({"id": id.to_hex(), "time": time(id).map(|t| t.to_string())})).collect::<Vec<_>>(),
                })
            })
            .collect();
        outln!("{}", serde_json::Value::Array(groups));
        return;
    }
    if global.quiet {
        return;
    }
    for p in plans {
        outln!(
            "{}: keep {}, forget {}",
            if p.key.is_empty() {
                "all snapshots".to_string()
            } else {
                strata_core::format::quote_bytes(p.key.as_bytes())
            },
            p.keep.len(),
            p.remove.len()
        );
        for (id, reasons) in &p.keep {
            outln!(
                "  keep    {}  {}  {}",
                id.short(),
                time(id).map(output::local_time).unwrap_or_default(),
                reasons.join(", ")
            );
        }
        for id in &p.remove {
            outln!(
                "  forget  {}  {}",
                id.short(),
                time(id).map(output::local_time).unwrap_or_default()
            );
        }
    }
}
