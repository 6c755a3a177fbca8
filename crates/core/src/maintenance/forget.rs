//! Retention policies: which snapshots `forget` keeps, and why.
//!
//! Snapshots are grouped (by default by host and paths) and each group is
//! judged on its own, newest first, like restic: `--keep-last N` keeps the N
//! newest; `--keep-hourly N` keeps the newest snapshot of each of the N
//! newest hours that have one, and likewise daily, weekly (ISO weeks),
//! monthly and yearly; `--keep-within D` keeps everything taken within D of
//! the group's newest snapshot, and `--keep-within-daily D` (and the other
//! periods) keeps one per day within D; `--keep-tag T` keeps snapshots
//! tagged T. Calendar periods are computed in a time zone passed in (the
//! local one in the CLI), from civil date and time, so a day is a calendar
//! day even when daylight saving time makes it 23 or 25 hours long.

use std::collections::BTreeMap;

use jiff::tz::TimeZone;
use jiff::{Span, Timestamp};

use crate::error::{Error, Result};
use crate::format::snapshot::Snapshot;
use crate::id::Id;

/// A calendar period for bucket rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Period {
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

impl Period {
    pub const ALL: [Period; 5] = [
        Period::Hourly,
        Period::Daily,
        Period::Weekly,
        Period::Monthly,
        Period::Yearly,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Period::Hourly => "hourly",
            Period::Daily => "daily",
            Period::Weekly => "weekly",
            Period::Monthly => "monthly",
            Period::Yearly => "yearly",
        }
    }

    /// The period a time falls in, as a comparable key.
    fn bucket(self, t: Timestamp, tz: &TimeZone) -> (i32, i32, i32, i32) {
        let z = t.to_zoned(tz.clone());
        let (y, m, d, h) = (
            i32::from(z.year()),
            i32::from(z.month()),
            i32::from(z.day()),
            i32::from(z.hour()),
        );
        match self {
            Period::Hourly => (y, m, d, h),
            Period::Daily => (y, m, d, 0),
            Period::Weekly => {
                let w = z.date().iso_week_date();
                (i32::from(w.year()), i32::from(w.week()), 0, 0)
            }
            Period::Monthly => (y, m, 0, 0),
            Period::Yearly => (y, 0, 0, 0),
        }
    }
}

/// What to keep. Empty (all zero/none) keeps nothing: the caller refuses it.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    pub last: usize,
    /// Counts for each period.
    pub periods: BTreeMap<Period, usize>,
    pub within: Option<Span>,
    /// For each period: keep one per period within this span.
    pub within_periods: BTreeMap<Period, Span>,
    pub tags: Vec<String>,
}

impl Policy {
    pub fn is_empty(&self) -> bool {
        self.last == 0
            && self.periods.values().all(|n| *n == 0)
            && self.within.is_none()
            && self.within_periods.is_empty()
            && self.tags.is_empty()
    }
}

/// How snapshots are grouped before the policy is applied.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupBy {
    pub host: bool,
    pub paths: bool,
    pub tags: bool,
}

impl GroupBy {
    /// Parse `host,paths` (any of host, paths, tags; empty for one group).
    pub fn parse(text: &str) -> Result<GroupBy> {
        let mut g = GroupBy::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "host" => g.host = true,
                "paths" => g.paths = true,
                "tags" => g.tags = true,
                other => {
                    return Err(Error::invalid(format!(
                        "cannot group by {other:?}: use host, paths and/or tags"
                    )))
                }
            }
        }
        Ok(g)
    }

    fn key(&self, s: &Snapshot) -> String {
        let mut parts = Vec::new();
        if self.host {
            parts.push(format!("host {}", s.hostname));
        }
        if self.paths {
            let mut p = s.source_key();
            p.sort();
            parts.push(format!("paths {}", p.join("; ")));
        }
        if self.tags {
            let mut t = s.tags.clone();
            t.sort();
            parts.push(format!("tags {}", t.join(",")));
        }
        parts.join(", ")
    }
}

/// One group's verdict.
#[derive(Clone, Debug, Default)]
pub struct GroupPlan {
    pub key: String,
    /// Kept snapshots, newest first, with the rules that keep each.
    pub keep: Vec<(Id, Vec<String>)>,
    /// Snapshots to forget, newest first.
    pub remove: Vec<Id>,
}

/// Apply `policy` to every group of `snapshots` (in any order).
pub fn plan(
    snapshots: &[(Id, Snapshot)],
    policy: &Policy,
    group_by: GroupBy,
    tz: &TimeZone,
) -> Vec<GroupPlan> {
    let mut groups: BTreeMap<String, Vec<&(Id, Snapshot)>> = BTreeMap::new();
    for s in snapshots {
        groups.entry(group_by.key(&s.1)).or_default().push(s);
    }
    groups
        .into_iter()
        .map(|(key, mut snaps)| {
            snaps.sort_by(|a, b| b.1.time.cmp(&a.1.time).then(b.0.cmp(&a.0)));
            judge(key, &snaps, policy, tz)
        })
        .collect()
}

fn judge(key: String, snaps: &[&(Id, Snapshot)], policy: &Policy, tz: &TimeZone) -> GroupPlan {
    let mut reasons: Vec<Vec<String>> = vec![Vec::new(); snaps.len()];
    for (i, r) in reasons.iter_mut().enumerate().take(policy.last) {
        r.push(format!("last {}", i + 1));
    }
    let newest = snaps.first().map(|s| s.1.time);
    for (&period, &count) in &policy.periods {
        mark_buckets(snaps, &mut reasons, period, count, None, tz);
    }
    for (&period, span) in &policy.within_periods {
        let since = newest.and_then(|n| cutoff(n, *span, tz));
        mark_buckets(snaps, &mut reasons, period, usize::MAX, since, tz);
    }
    if let (Some(span), Some(n)) = (policy.within, newest) {
        if let Some(since) = cutoff(n, span, tz) {
            for (i, s) in snaps.iter().enumerate() {
                if s.1.time >= since {
                    reasons[i].push(format!("within {span:#}"));
                }
            }
        }
    }
    for (i, s) in snaps.iter().enumerate() {
        for t in &policy.tags {
            if s.1.tags.contains(t) {
                reasons[i].push(format!("tag {t}"));
            }
        }
    }
    let mut plan = GroupPlan {
        key,
        ..GroupPlan::default()
    };
    for (s, r) in snaps.iter().zip(reasons) {
        if r.is_empty() {
            plan.remove.push(s.0);
        } else {
            plan.keep.push((s.0, r));
        }
    }
    plan
}

/// The time `span` before `newest`, in calendar terms of `tz`.
fn cutoff(newest: Timestamp, span: Span, tz: &TimeZone) -> Option<Timestamp> {
    newest
        .to_zoned(tz.clone())
        .checked_sub(span)
        .ok()
        .map(|z| z.timestamp())
}

/// Keep the newest snapshot of each of the `count` newest periods that have
/// one (only periods starting at or after `since`, if given).
fn mark_buckets(
    snaps: &[&(Id, Snapshot)],
    reasons: &mut [Vec<String>],
    period: Period,
    count: usize,
    since: Option<Timestamp>,
    tz: &TimeZone,
) {
    let mut last = None;
    let mut kept = 0;
    for (i, s) in snaps.iter().enumerate() {
        if kept >= count || since.is_some_and(|t| s.1.time < t) {
            break;
        }
        let b = period.bucket(s.1.time, tz);
        if last != Some(b) {
            last = Some(b);
            kept += 1;
            let label = if since.is_some() {
                format!("within-{} {}", period.name(), kept)
            } else {
                format!("{} {}", period.name(), kept)
            };
            reasons[i].push(label);
        }
    }
}

/// Parse a duration like `1y2m3d4h` (years, months, days, hours), or any
/// span jiff understands (`2 weeks`, `P1Y`).
pub fn parse_duration(text: &str) -> Result<Span> {
    let t = text.trim();
    let bad = || {
        Error::invalid(format!(
            "cannot read {t:?} as a duration: use for example 2y5m7d3h, 30d or 12h"
        ))
    };
    if !t.is_empty() && t.chars().all(|c| c.is_ascii_digit() || "ymwdh".contains(c)) {
        let mut span = Span::new();
        let mut num = String::new();
        for c in t.chars() {
            if c.is_ascii_digit() {
                num.push(c);
                continue;
            }
            let n: i64 = num.parse().map_err(|_| bad())?;
            num.clear();
            span = match c {
                'y' => span.try_years(n),
                'm' => span.try_months(n),
                'w' => span.try_weeks(n),
                'd' => span.try_days(n),
                _ => span.try_hours(n),
            }
            .map_err(|_| bad())?;
        }
        return if num.is_empty() { Ok(span) } else { Err(bad()) };
    }
    t.parse::<Span>().map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(time: &str, tags: &[&str]) -> Snapshot {
        Snapshot {
            version: 1,
            time: time.parse().unwrap(),
            tree: Id::default(),
            paths: vec!["/srv".into()],
            streams: Vec::new(),
            sources: Vec::new(),
            hostname: "h".into(),
            username: "u".into(),
            uid: 0,
            gid: 0,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            parent: None,
            sequence: 0,
            original: None,
            partial: false,
            summary: None,
            program_version: "t".into(),
        }
    }

    fn ids(list: &[&str]) -> Vec<(Id, Snapshot)> {
        list.iter()
            .enumerate()
            .map(|(i, t)| (Id([i as u8; 32]), snap(t, &[])))
            .collect()
    }

    fn kept(snaps: &[(Id, Snapshot)], policy: &Policy, tz: &TimeZone) -> Vec<String> {
        let plans = plan(
            snaps,
            policy,
            GroupBy {
                host: true,
                paths: true,
                tags: false,
            },
            tz,
        );
        assert_eq!(plans.len(), 1);
        let mut times: Vec<String> = plans[0]
            .keep
            .iter()
            .map(|(id, _)| {
                snaps
                    .iter()
                    .find(|s| s.0 == *id)
                    .unwrap()
                    .1
                    .time
                    .to_string()
            })
            .collect();
        times.sort();
        times
    }

    #[test]
    fn daily_keeps_the_newest_of_each_local_day_across_dst() {
        // Europe/Berlin leaves DST on 2026-10-25 (that day has 25 hours).
        let tz = TimeZone::get("Europe/Berlin").unwrap();
        let snaps = ids(&[
            "2026-10-24T21:00:00Z", // 23:00 local on the 24th
            "2026-10-24T22:30:00Z", // 00:30 local on the 25th (CEST)
            "2026-10-25T22:30:00Z", // 23:30 local on the 25th (CET): same day
            "2026-10-25T23:30:00Z", // 00:30 local on the 26th
        ]);
        let policy = Policy {
            periods: [(Period::Daily, 10)].into(),
            ..Policy::default()
        };
        assert_eq!(
            kept(&snaps, &policy, &tz),
            vec![
                "2026-10-24T21:00:00Z",
                "2026-10-25T22:30:00Z",
                "2026-10-25T23:30:00Z"
            ]
        );
        // In UTC the days fall differently.
        assert_eq!(
            kept(&snaps, &policy, &TimeZone::UTC),
            vec!["2026-10-24T22:30:00Z", "2026-10-25T23:30:00Z"]
        );
    }

    #[test]
    fn last_hourly_weekly_monthly_yearly_and_leap_days() {
        let tz = TimeZone::UTC;
        let snaps = ids(&[
            "2023-12-31T23:00:00Z",
            "2024-02-28T10:00:00Z",
            "2024-02-29T10:00:00Z", // leap day
            "2024-02-29T11:00:00Z",
            "2024-03-01T09:00:00Z",
            "2024-03-01T09:30:00Z",
        ]);
        let last2 = Policy {
            last: 2,
            ..Policy::default()
        };
        assert_eq!(
            kept(&snaps, &last2, &tz),
            vec!["2024-03-01T09:00:00Z", "2024-03-01T09:30:00Z"]
        );
        let hourly = Policy {
            periods: [(Period::Hourly, 3)].into(),
            ..Policy::default()
        };
        assert_eq!(
            kept(&snaps, &hourly, &tz),
            vec![
                "2024-02-29T10:00:00Z",
                "2024-02-29T11:00:00Z",
                "2024-03-01T09:30:00Z"
            ]
        );
        let daily = Policy {
            periods: [(Period::Daily, 3)].into(),
            ..Policy::default()
        };
        assert_eq!(
            kept(&snaps, &daily, &tz),
            vec![
                "2024-02-28T10:00:00Z",
                "2024-02-29T11:00:00Z",
                "2024-03-01T09:30:00Z"
            ]
        );
        // 2024-02-26 .. 2024-03-03 is ISO week 9; 2023-12-31 is in week 52 of 2023.
        let weekly = Policy {
            periods: [(Period::Weekly, 5)].into(),
            ..Policy::default()
        };
        assert_eq!(
            kept(&snaps, &weekly, &tz),
            vec!["2023-12-31T23:00:00Z", "2024-03-01T09:30:00Z"]
        );
        let monthly = Policy {
            periods: [(Period::Monthly, 2)].into(),
            ..Policy::default()
        };
        assert_eq!(
            kept(&snaps, &monthly, &tz),
            vec!["2024-02-29T11:00:00Z", "2024-03-01T09:30:00Z"]
        );
        let yearly = Policy {
            periods: [(Period::Yearly, 5)].into(),
            ..Policy::default()
        };
        assert_eq!(
            kept(&snaps, &yearly, &tz),
            vec!["2023-12-31T23:00:00Z", "2024-03-01T09:30:00Z"]
        );
    }

    #[test]
    fn within_and_tags() {
        let tz = TimeZone::UTC;
        let mut snaps = ids(&[
            "2024-01-01T00:00:00Z",
            "2024-02-15T00:00:00Z",
            "2024-03-01T00:00:00Z",
            "2024-03-01T12:00:00Z",
        ]);
        snaps[0].1.tags = vec!["keep".into()];
        let within = Policy {
            within: Some(parse_duration("1m").unwrap()),
            ..Policy::default()
        };
        assert_eq!(
            kept(&snaps, &within, &tz),
            vec![
                "2024-02-15T00:00:00Z",
                "2024-03-01T00:00:00Z",
                "2024-03-01T12:00:00Z"
            ]
        );
        let within_daily = Policy {
            within_periods: [(Period::Daily, parse_duration("20d").unwrap())].into(),
            ..Policy::default()
        };
        assert_eq!(
            kept(&snaps, &within_daily, &tz),
            vec!["2024-02-15T00:00:00Z", "2024-03-01T12:00:00Z"]
        );
        let within_10d = Policy {
            within_periods: [(Period::Daily, parse_duration("10d").unwrap())].into(),
            ..Policy::default()
        };
        assert_eq!(kept(&snaps, &within_10d, &tz), vec!["2024-03-01T12:00:00Z"]);
        let tag = Policy {
            tags: vec!["keep".into()],
            ..Policy::default()
        };
        assert_eq!(kept(&snaps, &tag, &tz), vec!["2024-01-01T00:00:00Z"]);
    }

    #[test]
    fn groups_are_judged_apart() {
        let mut snaps = ids(&["2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z"]);
        snaps[0].1.hostname = "other".into();
        let policy = Policy {
            last: 1,
            ..Policy::default()
        };
        let plans = plan(
            &snaps,
            &policy,
            GroupBy {
                host: true,
                paths: true,
                tags: false,
            },
            &TimeZone::UTC,
        );
        assert_eq!(plans.len(), 2);
        assert!(plans
            .iter()
            .all(|p| p.keep.len() == 1 && p.remove.is_empty()));
        let one = plan(&snaps, &policy, GroupBy::parse("").unwrap(), &TimeZone::UTC);
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].remove.len(), 1);
        assert!(GroupBy::parse("host,color").is_err());
    }

    #[test]
    fn durations() {
        assert!(parse_duration("1y2m3d4h").is_ok());
        assert!(parse_duration("2w").is_ok());
        assert!(parse_duration("P1D").is_ok());
        assert!(parse_duration("7").is_err());
        assert!(parse_duration("soon").is_err());
    }
}
