//! Checking a repository: structure (index ↔ packs ↔ snapshots ↔ trees)
//! and, with `read_data`, every byte of every blob.
//!
//! Every problem is collected, not just the first, and named by the object
//! it concerns, so a damaged repository can be assessed in one run.

mod snapshots;

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use crate::error::Result;
use crate::format::index::IndexBlob;
use crate::format::pack;
use crate::id::Id;
use crate::repository::Repository;
use crate::storage::ObjectKind;

#[derive(Clone, Debug, Default)]
pub struct CheckOptions {
    pub read_data: bool,
    /// Read only part of the packs (implies reading data).
    pub subset: Option<Subset>,
}

/// Which packs `--read-data-subset` reads.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Subset {
    /// Part `n` of `m` (1-based): packs whose name, as a number, is `n-1`
    /// modulo `m`. Running 1/m … m/m in turn reads every pack once.
    Part(u32, u32),
    /// A random fraction of the packs, different each run.
    Percent(f64),
}

impl Subset {
    /// Parse `n/m` or `p%`.
    pub fn parse(text: &str) -> Result<Subset> {
        let bad = || {
            crate::Error::invalid(format!(
                "{text:?} is not a subset: use n/m (like 2/7) or a percentage (like 10%)"
            ))
        };
        if let Some(p) = text.strip_suffix('%') {
            let p: f64 = p.trim().parse().map_err(|_| bad())?;
            if !(p > 0.0 && p <= 100.0) {
                return Err(bad());
            }
            return Ok(Subset::Percent(p));
        }
        let (n, m) = text.split_once('/').ok_or_else(bad)?;
        let (n, m): (u32, u32) = (
            n.trim().parse().map_err(|_| bad())?,
            m.trim().parse().map_err(|_| bad())?,
        );
        if m == 0 || n == 0 || n > m {
            return Err(bad());
        }
        Ok(Subset::Part(n, m))
    }

    fn selects(&self, name: &str) -> bool {
        match *self {
            Subset::Part(n, m) => {
                let head = name
                    .get(..16)
                    .and_then(|h| u64::from_str_radix(h, 16).ok())
                    .unwrap_or(0);
                head % u64::from(m) == u64::from(n - 1)
            }
            Subset::Percent(p) => rand::random::<f64>() * 100.0 < p,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct CheckReport {
    /// Damage: the repository cannot restore everything it claims.
    pub errors: Vec<String>,
    /// Harmless findings, such as packs no index lists yet.
    pub warnings: Vec<String>,
    pub packs: usize,
    pub blobs: usize,
    pub snapshots: usize,
    /// Snapshots that reach any damage (oldest first): each is named in
    /// the errors of every problem it shares with others.
    pub damaged_snapshots: Vec<Id>,
    pub trees: usize,
    pub bytes_read: u64,
    /// Packs whose data was read and verified.
    pub packs_read: usize,
}

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.errors.is_empty()
    }
}

pub fn run(repo: &Repository, opts: &CheckOptions) -> Result<CheckReport> {
    let _lock = repo.read_lock()?;
    let mut report = CheckReport::default();
    let indexed = load_indexes(repo, &mut report)?;
    let stored: HashMap<String, u64> = repo
        .storage()
        .list(ObjectKind::Pack)?
        .into_iter()
        .map(|o| (o.name, o.size))
        .collect();
    let mut lost = Lost {
        packs: check_packs(repo, &indexed, &stored, &mut report),
        ..Lost::default()
    };
    check_temporaries(repo, &mut report)?;
    // Data first, so that a damaged blob is reported with the snapshots
    // and paths it affects, as a missing one is.
    if opts.read_data || opts.subset.is_some() {
        let chosen: HashMap<String, u64> = stored
            .iter()
            .filter(|(name, _)| opts.subset.is_none_or(|s| s.selects(name)))
            .map(|(n, s)| (n.clone(), *s))
            .collect();
        report.packs_read = chosen.len();
        lost.copies = read_all_data(repo, &chosen, &mut report);
        note_intact_copies(repo, &lost, &mut report);
    }
    snapshots::check(repo, &lost, &mut report)?;
    Ok(report)
}

/// What the check found gone: packs the index lists that storage lacks,
/// and copies of blobs (`(blob, pack)`) that failed to verify.
#[derive(Default)]
pub(crate) struct Lost {
    pub packs: HashSet<Id>,
    pub copies: HashSet<(Id, Id)>,
}

impl Lost {
    /// Why no copy of the blob can be read (`"missing"`, `"damaged"`), or
    /// `None` if one is intact as far as this check knows.
    pub fn blob(&self, index: &crate::repository::Index, id: &Id) -> Option<&'static str> {
        self.blob_in_chain(index, id, 0)
    }

    /// [`Lost::blob`] for a blob `depth` steps down a chain of deltas: a
    /// copy stored as a delta is intact only if its base is.
    fn blob_in_chain(
        &self,
        index: &crate::repository::Index,
        id: &Id,
        depth: usize,
    ) -> Option<&'static str> {
        if depth > crate::format::delta::MAX_CHAIN {
            return Some("damaged (its chain of deltas is too long)");
        }
        let copies = index.locations(id);
        let damaged = |l: &crate::repository::BlobLocation| self.copies.contains(&(*id, l.pack));
        let base_intact = |l: &crate::repository::BlobLocation| {
            l.base
                .is_none_or(|b| self.blob_in_chain(index, &b, depth + 1).is_none())
        };
        if copies
            .iter()
            .any(|l| !self.packs.contains(&l.pack) && !damaged(l) && base_intact(l))
        {
            None
        } else if copies.iter().any(damaged) {
            Some("damaged")
        } else if copies.iter().any(|l| l.base.is_some()) {
            Some("unreadable: the base it is a delta of is missing or damaged")
        } else {
            Some("missing")
        }
    }
}

/// Damaged copies that another intact copy makes harmless are still
/// errors (the pack is damaged), but say so.
fn note_intact_copies(repo: &Repository, lost: &Lost, report: &mut CheckReport) {
    let index = repo.index();
    let spared = lost
        .copies
        .iter()
        .filter(|(blob, _)| lost.blob(&index, blob).is_none())
        .count();
    if spared > 0 {
        report.warnings.push(format!(
            "{spared} damaged blob copies have an intact copy in another pack: snapshots still restore, and `strata prune` keeps the intact copy and drops the damaged one"
        ));
    }
}

/// Temporary files left by writes that were interrupted: harmless, and
/// removed by the next prune that runs alone.
fn check_temporaries(repo: &Repository, report: &mut CheckReport) -> Result<()> {
    let found = repo
        .storage()
        .stale_temporaries(repo.lock_timing().stale_after, false)?;
    if !found.is_empty() {
        let bytes: u64 = found.iter().map(|t| t.size).sum();
        report.warnings.push(format!(
            "{} temporary files ({bytes} bytes) left by interrupted writes, such as {}; the next `strata prune` removes them",
            found.len(),
            found[0].name
        ));
    }
    Ok(())
}

/// Read every index file, report damaged ones, and build the in-memory index
/// from the good ones. Returns each pack's entries as the index lists them.
fn load_indexes(
    repo: &Repository,
    report: &mut CheckReport,
) -> Result<HashMap<Id, Vec<IndexBlob>>> {
    let mut packs: HashMap<Id, Vec<IndexBlob>> = HashMap::new();
    let mut index = crate::repository::Index::default();
    for info in repo.storage().list(ObjectKind::Index)? {
        match repo.read_index_file(&info.name) {
            Ok(file) => {
                index.add_file(&file);
                for p in file.packs {
                    packs.entry(p.id).or_insert(p.blobs);
                }
            }
            Err(e) => report.errors.push(format!("index {}: {e}", info.name)),
        }
    }
    report.blobs = index.len();
    repo.add_condemned(&mut index)?;
    if index.fallback_len() > 0 {
        report.warnings.push(format!(
            "{} blobs are only in packs a prune condemned while backups ran; they stay readable, and the next prune indexes again those that snapshots need",
            index.fallback_len()
        ));
    }
    repo.replace_index(index);
    Ok(packs)
}

/// Compare each indexed pack's header with the index. Returns the packs
/// the index lists that storage does not hold.
fn check_packs(
    repo: &Repository,
    indexed: &HashMap<Id, Vec<IndexBlob>>,
    stored: &HashMap<String, u64>,
    report: &mut CheckReport,
) -> HashSet<Id> {
    report.packs = stored.len();
    let mut lost = HashSet::new();
    for (id, blobs) in indexed {
        let name = id.to_hex();
        let Some(&size) = stored.get(&name) else {
            report.errors.push(format!(
                "pack {name}: listed in the index but missing from storage"
            ));
            lost.insert(*id);
            continue;
        };
        match repo.read_pack_header(&name, size) {
            Ok(entries) => {
                let listed: HashSet<_> = blobs
                    .iter()
                    .map(IndexBlob::entry)
                    .map(|e| (e.id, e.kind, e.offset, e.length, e.raw_length))
                    .collect();
                let actual: HashSet<_> = entries
                    .iter()
                    .map(|e| (e.id, e.kind, e.offset, e.length, e.raw_length))
                    .collect();
                if listed != actual {
                    report.errors.push(format!(
                        "pack {name}: its header does not agree with the index"
                    ));
                }
            }
            Err(e) => report.errors.push(format!("pack {name}: {e}")),
        }
    }
    // Packs a prune condemned may still hold what a snapshot needs.
    let condemned: HashSet<Id> = repo
        .condemned_lists()
        .unwrap_or_default()
        .iter()
        .flat_map(|(_, list)| list.packs.iter().map(|p| p.id))
        .collect();
    for name in stored.keys() {
        let id = Id::from_hex(name).ok();
        if id.is_some_and(|id| indexed.contains_key(&id)) {
            continue;
        }
        report.warnings.push(if id.is_some_and(|id| condemned.contains(&id)) {
            format!(
                "pack {name}: condemned by a prune while backups ran; the next prune deletes it or, if a snapshot needs it, indexes it again (never delete it by hand)"
            )
        } else {
            format!(
                "pack {name}: not listed in any index (left by an interrupted backup or being written by a running one; the next prune deletes it)"
            )
        });
    }
    lost
}

/// Read and verify every blob of the packs `stored`; returns the copies
/// that failed, as `(blob, pack)`.
fn read_all_data(
    repo: &Repository,
    stored: &HashMap<String, u64>,
    report: &mut CheckReport,
) -> HashSet<(Id, Id)> {
    let names: Vec<&String> = stored.keys().collect();
    let errors = Mutex::new(Vec::new());
    let damaged = Mutex::new(HashSet::new());
    let bytes = std::sync::atomic::AtomicU64::new(0);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(name) = names.get(i) else { break };
                let (found, bad) = check_pack_data(repo, name);
                bytes.fetch_add(stored[*name], std::sync::atomic::Ordering::Relaxed);
                if let Ok(mut e) = errors.lock() {
                    e.extend(found);
                }
                if let Ok(mut d) = damaged.lock() {
                    d.extend(bad);
                }
            });
        }
    });
    report
        .errors
        .extend(errors.into_inner().unwrap_or_default());
    report.bytes_read = bytes.into_inner();
    damaged.into_inner().unwrap_or_default()
}

/// Verify one pack: the errors found, and the copies of blobs it holds
/// that failed (all those the index lists in it, if it cannot be read).
fn check_pack_data(repo: &Repository, name: &str) -> (Vec<String>, Vec<(Id, Id)>) {
    let Ok(pack) = Id::from_hex(name) else {
        return (vec![format!("pack {name}: not a pack name")], Vec::new());
    };
    let listed = || -> Vec<(Id, Id)> {
        repo.index()
            .iter_pack(&pack)
            .into_iter()
            .map(|b| (b, pack))
            .collect()
    };
    let data = match repo.storage().read(ObjectKind::Pack, name) {
        Ok(d) => d,
        Err(e) => return (vec![format!("pack {name}: {e}")], listed()),
    };
    let mut errors = Vec::new();
    let mut damaged = Vec::new();
    if Id::of_object(&data).to_hex() != name {
        errors.push(format!(
            "pack {name}: contents do not match its name (damaged)"
        ));
    }
    match pack::parse_pack_of(repo.key(), &data, repo.deltas()) {
        Ok(entries) => {
            for e in entries {
                let sealed = &data[e.offset as usize..(e.offset + e.length) as usize];
                match repo.open_blob(&e.id, e.kind, sealed, e.raw_length) {
                    // A delta whose base no index lists any more: garbage
                    // a prune left in a kept pack, or, if a snapshot needs
                    // it, reported with that snapshot (its chain is broken).
                    Err(err) if e.base.is_some() && err.kind() == crate::ErrorKind::Missing => {}
                    Err(err) => {
                        errors.push(format!("pack {name}: {err}"));
                        damaged.push((e.id, pack));
                    }
                    Ok(_) => {}
                }
            }
        }
        Err(e) => {
            errors.push(format!("pack {name}: header: {e}"));
            damaged = listed();
        }
    }
    (errors, damaged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_every_pack_exactly_once() {
        let names: Vec<String> = (0..200u32)
            .map(|i| crate::Id::of_object(&i.to_le_bytes()).to_hex())
            .collect();
        for name in &names {
            let hits = (1..=7)
                .filter(|n| Subset::Part(*n, 7).selects(name))
                .count();
            assert_eq!(hits, 1);
        }
        assert_eq!(Subset::parse("2/7").unwrap(), Subset::Part(2, 7));
        assert_eq!(Subset::parse("10%").unwrap(), Subset::Percent(10.0));
        for bad in ["0/3", "4/3", "1/0", "x", "0%", "150%"] {
            assert!(Subset::parse(bad).is_err(), "{bad}");
        }
    }
}
