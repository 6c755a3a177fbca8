//! Choosing snapshots: filters by host, tag and path; selectors `latest`,
//! an id prefix, and points in time.

use crate::error::{Error, ErrorKind, Result};
use crate::format::snapshot::Snapshot;
use crate::id::Id;
use crate::repository::Repository;

/// Which snapshots a command considers. Empty lists match everything.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub hosts: Vec<String>,
    /// Each entry is a comma-separated group that must all be present; a
    /// snapshot matches if it has every tag of at least one group.
    pub tags: Vec<String>,
    /// The snapshot must include every one of these paths (a backed-up
    /// path, a stream's name such as `mysql/shop.sql`, or a source such as
    /// `mysql:all`).
    pub paths: Vec<String>,
    /// Only snapshots taken at or before this time.
    pub before: Option<jiff::Timestamp>,
    /// Let `latest` pass over snapshots that cannot be read. Without it,
    /// `latest` refuses while any snapshot is unreadable: that one may be
    /// the newest, and an older one must not be taken for it silently.
    pub allow_damaged: bool,
}

impl Filter {
    pub fn matches(&self, s: &Snapshot) -> bool {
        let host_ok = self.hosts.is_empty() || self.hosts.contains(&s.hostname);
        let tags_ok = self.tags.is_empty()
            || self.tags.iter().any(|group| {
                group
                    .split(',')
                    .filter(|t| !t.is_empty())
                    .all(|t| s.tags.iter().any(|have| have == t))
            });
        let paths_ok = self.paths.iter().all(|p| {
            let p = p.trim_end_matches('/');
            s.paths.iter().any(|have| have == p)
                || s.streams
                    .iter()
                    .any(|have| have == p.trim_start_matches('/'))
                || s.sources.iter().any(|have| {
                    // `mysql:all` also names `mysql:all on --socket=…`.
                    have == p
                        || have
                            .strip_prefix(p)
                            .is_some_and(|on| on.starts_with(" on "))
                })
        });
        let time_ok = self.before.is_none_or(|b| s.time <= b);
        host_ok && tags_ok && paths_ok && time_ok
    }
}

/// The newest of `snaps` (sorted oldest first) for which `pred` holds.
pub fn latest_matching(
    snaps: Vec<(Id, Snapshot)>,
    pred: impl Fn(&Snapshot) -> bool,
) -> Option<(Id, Snapshot)> {
    snaps.into_iter().rev().find(|(_, s)| pred(s))
}

/// Resolve a selector: `latest`, or a unique prefix of a snapshot id.
/// `latest` honours every field of `filter`; an id prefix is exact.
pub fn find(repo: &Repository, selector: &str, filter: &Filter) -> Result<(Id, Snapshot)> {
    let (snaps, bad) = repo.snapshots()?;
    find_listed(snaps, &bad, selector, filter)
}

/// [`find`] among snapshots listed already: `snaps` those that loaded,
/// `bad` those that did not (as [`Repository::snapshots`] gives them).
/// `latest` refuses while any snapshot is unreadable, unless the filter
/// allows it: the unreadable one may be the newest.
pub fn find_listed(
    snaps: Vec<(Id, Snapshot)>,
    bad: &[(String, Error)],
    selector: &str,
    filter: &Filter,
) -> Result<(Id, Snapshot)> {
    if selector == "latest" {
        if let Some((name, err)) = bad.first() {
            if !filter.allow_damaged {
                return Err(Error::new(
                    err.kind(),
                    format!(
                        "snapshot {name} cannot be read ({err}), so the latest snapshot is unknown: it may be that one. \
                         Run `strata check`; to take the newest readable snapshot anyway, add --allow-damaged, or name a snapshot by its id"
                    ),
                ));
            }
            let names: Vec<&str> = bad.iter().map(|(n, _)| &n[..n.len().min(8)]).collect();
            tracing::warn!(
                "{} ({}) passed over: `latest` is the newest readable one",
                crate::format::count(bad.len() as u64, "unreadable snapshot"),
                names.join(", ")
            );
        }
    }
    let found = find_in(snaps, selector, filter);
    if let Err(e) = &found {
        // An id prefix that names only a damaged snapshot: say why it is unusable.
        let prefix = selector.to_ascii_lowercase();
        if e.kind() == ErrorKind::Missing && selector != "latest" {
            if let Some((_, err)) = bad.iter().find(|(name, _)| name.starts_with(&prefix)) {
                return Err(Error::new(err.kind(), err.to_string()));
            }
        }
    }
    found
}

pub fn find_in(
    snaps: Vec<(Id, Snapshot)>,
    selector: &str,
    filter: &Filter,
) -> Result<(Id, Snapshot)> {
    if selector == "latest" {
        return latest_matching(snaps, |s| filter.matches(s)).ok_or_else(|| {
            Error::new(
                ErrorKind::Missing,
                "no snapshot matches (check --host, --tag, --path and --before)",
            )
        });
    }
    let prefix = selector.to_ascii_lowercase();
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::invalid(format!(
            "{selector:?} is not a snapshot selector: use `latest` or a hexadecimal id prefix"
        )));
    }
    let mut hits: Vec<_> = snaps
        .into_iter()
        .filter(|(id, _)| id.to_hex().starts_with(&prefix))
        .collect();
    match hits.len() {
        0 => Err(Error::new(
            ErrorKind::Missing,
            format!("no snapshot has an id starting with {selector}"),
        )),
        1 => Ok(hits.remove(0)),
        n => Err(Error::invalid(format!(
            "{n} snapshots have ids starting with {selector}; give more digits"
        ))),
    }
}

/// Parse a point in time: RFC 3339 (`2026-11-20T10:00:00Z`), or a civil
/// date-time in the local time zone (`2026-11-20 10:00`, `2026-11-20T10:00:00`),
/// or a date alone, meaning the end of that day in the local time zone.
pub fn parse_time(text: &str) -> Result<jiff::Timestamp> {
    let text = text.trim();
    if let Ok(ts) = text.parse::<jiff::Timestamp>() {
        return Ok(ts);
    }
    let tz = jiff::tz::TimeZone::system();
    if let Ok(dt) = text.replace(' ', "T").parse::<jiff::civil::DateTime>() {
        if text.contains(':') {
            return dt
                .to_zoned(tz)
                .map(|z| z.timestamp())
                .map_err(|_| out_of_range(text));
        }
    }
    if let Ok(date) = text.parse::<jiff::civil::Date>() {
        let end = date.to_datetime(jiff::civil::time(23, 59, 59, 999_999_999));
        return end
            .to_zoned(tz)
            .map(|z| z.timestamp())
            .map_err(|_| out_of_range(text));
    }
    Err(Error::invalid(format!(
        "cannot read {text:?} as a time: use 2026-11-20, 2026-11-20 10:00 or 2026-11-20T10:00:00Z"
    )))
}

fn out_of_range(text: &str) -> Error {
    Error::invalid(format!(
        "{text:?} is out of range: times from year -9999 to 9999-12-30 can be given"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_out_of_range_printed_the_date_librarys_raw_message() {
        let err = parse_time("9999-12-31").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.to_string().contains("out of range"), "{err}");
        assert!(!err.to_string().contains("overflowed"), "{err}");
    }

    fn snap(secs: i64, host: &str, tags: &[&str]) -> Snapshot {
        Snapshot {
            version: 1,
            time: jiff::Timestamp::from_second(secs).unwrap(),
            tree: Id::default(),
            paths: vec!["/etc".into()],
            streams: Vec::new(),
            sources: Vec::new(),
            hostname: host.into(),
            username: "u".into(),
            uid: 0,
            gid: 0,
            tags: tags.iter().map(|s| s.to_string()).collect(),
            parent: None,
            sequence: 0,
            original: None,
            partial: false,
            summary: None,
            program_version: "t".into(),
        }
    }

    #[test]
    fn latest_prefix_and_filters() {
        let snaps = vec![
            (Id([0xaa; 32]), snap(100, "a", &["x"])),
            (Id([0xab; 32]), snap(200, "b", &["x", "y"])),
            (Id([0xcc; 32]), snap(300, "a", &[])),
        ];
        let all = Filter::default();
        assert_eq!(
            find_in(snaps.clone(), "latest", &all).unwrap().0,
            Id([0xcc; 32])
        );
        let host_b = Filter {
            hosts: vec!["b".into()],
            ..Default::default()
        };
        assert_eq!(
            find_in(snaps.clone(), "latest", &host_b).unwrap().0,
            Id([0xab; 32])
        );
        let tags = Filter {
            tags: vec!["x,y".into()],
            ..Default::default()
        };
        assert_eq!(
            find_in(snaps.clone(), "latest", &tags).unwrap().0,
            Id([0xab; 32])
        );
        let before = Filter {
            before: Some(jiff::Timestamp::from_second(150).unwrap()),
            ..Default::default()
        };
        assert_eq!(
            find_in(snaps.clone(), "latest", &before).unwrap().0,
            Id([0xaa; 32])
        );
        assert_eq!(
            find_in(snaps.clone(), "cc", &all).unwrap().0,
            Id([0xcc; 32])
        );
        assert!(find_in(snaps.clone(), "a", &all).is_err()); // ambiguous
        assert!(find_in(snaps.clone(), "dd", &all).is_err());
        assert!(find_in(snaps, "yesterday", &all).is_err());
    }

    #[test]
    fn times() {
        assert_eq!(
            parse_time("2026-11-20T10:00:00Z").unwrap().as_second(),
            1_795_168_800
        );
        assert!(parse_time("2026-11-20").is_ok());
        assert!(parse_time("2026-11-20 10:00").is_ok());
        assert!(parse_time("last week").is_err());
    }
}
