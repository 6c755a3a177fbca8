//! Prune: delete what no snapshot needs, safely beside running backups.
//!
//! Backups hold shared locks and never wait for prune, so a pack cannot be
//! deleted the moment it is found unused: a running backup may have loaded
//! an index that lists the pack's blobs and be about to reference them.
//! Deletion takes two steps (the argument is in docs/design.md, "Prune"):
//!
//! 1. *Condemn*: write the new index without the packs to delete, delete the
//!    old index files, then note the locks held at that moment in a
//!    condemned list (`condemned/`).
//! 2. *Sweep*: once none of those locks remains, every process that could
//!    have seen the packs in an index has finished, and the snapshots of
//!    those that were backups are visible. A pack is then deleted unless an
//!    index lists it again, or a snapshot needs one of its blobs that no
//!    index lists (then the pack is indexed again).
//!
//! Backups that start after step 1 reference only blobs their index lists
//! (`BlobSaver::known`), and that index never lists a condemned pack.
//! Sweeping happens at the end of the prune that condemned (when no other
//! lock was held, at once) or at the start of a later one.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format::condemned::{Condemned, CondemnedPack};
use crate::format::index::{IndexBlob, IndexFile, IndexPack};
use crate::format::{ad, seal_object, VERSION};
use crate::id::Id;
use crate::packer::BlobSaver;
use crate::repository::{LockGuard, LockKind, Repository};
use crate::storage::{ObjectInfo, ObjectKind};

/// How much unused data may stay in packs that are kept.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnusedLimit {
    /// A share of all stored data, in percent.
    Percent(f64),
    Bytes(u64),
    Unlimited,
}

impl UnusedLimit {
    /// The unused bytes allowed beside `used` bytes of used data.
    fn bytes(self, used: u64) -> u64 {
        match self {
            UnusedLimit::Percent(p) if p >= 100.0 => u64::MAX,
            // unused / (used + unused) <= p%
            UnusedLimit::Percent(p) => (p / (100.0 - p) * used as f64) as u64,
            UnusedLimit::Bytes(b) => b,
            UnusedLimit::Unlimited => u64::MAX,
        }
    }
}

#[derive(Clone, Debug)]
pub struct PruneOptions {
    pub max_unused: UnusedLimit,
    /// Stop choosing packs to repack once their sizes add up to this.
    pub max_repack_size: Option<u64>,
    /// Plan as if these snapshots were gone (`forget --prune --dry-run`).
    pub assume_forgotten: Vec<Id>,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            max_unused: UnusedLimit::Percent(5.0),
            max_repack_size: None,
            assume_forgotten: Vec::new(),
        }
    }
}

/// How much of one pack the snapshots use.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PackUse {
    pub id: Id,
    pub size: u64,
    pub used_blobs: usize,
    pub unused_blobs: usize,
    pub used_bytes: u64,
    pub unused_bytes: u64,
}

/// A condemned list written by an earlier prune, still waiting.
#[derive(Clone, Debug)]
pub struct Pending {
    pub name: String,
    pub time: jiff::Timestamp,
    pub packs: usize,
    pub bytes: u64,
    /// Locks noted by that prune that are still held.
    pub waiting_for: usize,
}

/// What a prune would do: printable (`--dry-run`) and testable.
#[derive(Debug, Default)]
pub struct PrunePlan {
    pub snapshots: usize,
    /// Packs no snapshot uses a blob of.
    pub delete: Vec<PackUse>,
    /// Packs whose used blobs are copied to new packs before deletion.
    pub repack: Vec<PackUse>,
    pub keep: Vec<PackUse>,
    /// Packs no index lists (left by interrupted backups or prunes, or
    /// being written by running backups), with the blobs their headers
    /// list: deleted at the sweep unless listed or needed by then.
    pub unindexed: Vec<CondemnedPack>,
    /// Lists of earlier prunes that wait for locks.
    pub pending: Vec<Pending>,
    /// Index files the plan was made from; replaced by one new file.
    index_files: Vec<String>,
    indexed: HashMap<Id, IndexPack>,
    /// Used blob → the pack whose copy is kept.
    keep_in: HashMap<Id, Id>,
    /// Copies of used blobs that failed to verify: `(blob, pack, error)`.
    /// Another copy that verifies is kept instead; without one, every pack
    /// holding the blob is kept (see [`PrunePlan::pinned`]).
    pub damaged: Vec<(Id, Id, String)>,
    /// Packs kept whole because they hold a used blob none of whose copies
    /// verifies: prune never removes what might still be recovered.
    pub pinned: HashSet<Id>,
}

impl PrunePlan {
    pub fn used_bytes(&self) -> u64 {
        self.all_indexed().map(|p| p.used_bytes).sum()
    }

    pub fn unused_bytes(&self) -> u64 {
        self.all_indexed().map(|p| p.unused_bytes).sum()
    }

    /// Unused bytes left in kept packs after this prune.
    pub fn unused_after(&self) -> u64 {
        self.keep.iter().map(|p| p.unused_bytes).sum()
    }

    /// Bytes of storage this prune frees once its packs are deleted, not
    /// counting packs no index lists (see [`PrunePlan::unindexed_bytes`]).
    pub fn freed_bytes(&self) -> u64 {
        let deleted: u64 = self.delete.iter().map(|p| p.size).sum();
        let repacked: u64 = self
            .repack
            .iter()
            .map(|p| p.size.saturating_sub(p.used_bytes))
            .sum();
        deleted + repacked
    }

    /// Packs no index lists: freed too, unless running backups list them.
    pub fn unindexed_bytes(&self) -> u64 {
        self.unindexed.iter().map(|p| p.size).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.delete.is_empty() && self.repack.is_empty() && self.unindexed.is_empty()
    }

    fn all_indexed(&self) -> impl Iterator<Item = &PackUse> {
        self.delete.iter().chain(&self.repack).chain(&self.keep)
    }
}

/// What running a prune did.
#[derive(Clone, Debug, Default)]
pub struct PruneReport {
    /// Temporary files of interrupted writes removed (or, on a dry run,
    /// found): only when no other command held a lock, and only those
    /// older than the lock staleness limit.
    pub temporaries: Vec<ObjectInfo>,
    /// Blobs copied out of packs being repacked.
    pub repacked_blobs: usize,
    /// Packs condemned by this prune.
    pub condemned_packs: usize,
    pub sweep: SweepReport,
}

/// What sweeping condemned lists did.
#[derive(Clone, Debug, Default)]
pub struct SweepReport {
    pub deleted_packs: usize,
    pub deleted_bytes: u64,
    /// Condemned packs indexed again because a snapshot came to need them.
    pub rescued_packs: usize,
    /// Packs still condemned, waiting for locks held by running commands.
    pub waiting_packs: usize,
    pub waiting_bytes: u64,
}

impl SweepReport {
    fn add(&mut self, other: &SweepReport) {
        self.deleted_packs += other.deleted_packs;
        self.deleted_bytes += other.deleted_bytes;
        self.rescued_packs += other.rescued_packs;
        self.waiting_packs = other.waiting_packs;
        self.waiting_bytes = other.waiting_bytes;
    }
}

/// Blobs reachable from snapshots, grown one snapshot at a time. A snapshot
/// forgotten after it was counted stays counted, which only keeps more.
#[derive(Default)]
struct Refs {
    used: HashSet<Id>,
    /// Trees walked; apart from `used`, since a file's chunk may have the
    /// same bytes (and id) as a tree, which must still be walked.
    trees: HashSet<Id>,
    snapshots: HashSet<Id>,
}

impl Refs {
    /// Count the snapshots not counted yet. Any unreadable snapshot or tree
    /// stops prune: what it references cannot be known.
    fn update(&mut self, repo: &Repository, snaps: Snapshots) -> Result<usize> {
        let count = snaps.len();
        for (id, snap) in snaps {
            if self.snapshots.insert(id) {
                self.walk(repo, snap.tree).map_err(|e| {
                    e.context(format!(
                        "snapshot {}: prune cannot know what it needs; run `strata check`",
                        id.short()
                    ))
                })?;
            }
        }
        Ok(count)
    }

    fn walk(&mut self, repo: &Repository, root: Id) -> Result<()> {
        let mut stack = vec![root];
        while let Some(id) = stack.pop() {
            if !self.trees.insert(id) {
                continue;
            }
            self.used.insert(id);
            // The loaded index also reads condemned packs: a snapshot of a
            // backup that ran beside the prune that condemned them may need them.
            let tree = repo.load_tree(&id)?;
            for node in tree.nodes {
                for blob in node.content.into_iter().flatten() {
                    self.use_blob(repo, blob);
                }
                stack.extend(node.subtree);
            }
        }
        Ok(())
    }

    /// Count `id` as used and, unless a copy of it is stored whole, the
    /// bases of its copies stored as deltas, down their chains: a kept
    /// delta needs its base kept, as a snapshot needs its blobs
    /// (docs/design.md, "Delta storage"). Only copies whose chain the index
    /// lists count, unless none does; a copy whose base is not used is
    /// never the one kept ([`may_keep`]).
    fn use_blob(&mut self, repo: &Repository, id: Id) {
        let mut pending = vec![id];
        while let Some(id) = pending.pop() {
            if !self.used.insert(id) || !repo.deltas() {
                continue;
            }
            let index = repo.index();
            let copies = index.locations(&id);
            if copies.iter().any(|l| l.base.is_none()) {
                continue;
            }
            let bases: Vec<Id> = copies.iter().filter_map(|l| l.base).collect();
            let readable: Vec<Id> = bases
                .iter()
                .copied()
                .filter(|b| index.chain_listed(b))
                .collect();
            pending.extend(if readable.is_empty() { bases } else { readable });
        }
    }
}

type Snapshots = Vec<(Id, crate::format::snapshot::Snapshot)>;

/// Every snapshot, listed *before* the index is loaded: a snapshot is
/// written after the index files listing its blobs, so those files are then
/// sure to be read too.
fn list_snapshots(repo: &Repository) -> Result<Snapshots> {
    let (snaps, bad) = repo.snapshots()?;
    if let Some((name, e)) = bad.into_iter().next() {
        return Err(e.context(format!(
            "snapshot {name} is unreadable, so prune cannot know what it needs; run `strata check` (and `strata forget {name}` if it is damaged beyond use)"
        )));
    }
    Ok(snaps)
}

/// The condemned lists in the repository, and which blobs they hold.
#[derive(Default)]
struct Lists {
    lists: Vec<(String, Condemned)>,
    blobs: HashSet<Id>,
}

impl Lists {
    fn load(repo: &Repository) -> Result<Lists> {
        let lists = repo.condemned_lists()?;
        let blobs = lists
            .iter()
            .flat_map(|(_, l)| &l.packs)
            .flat_map(|p| p.blobs.iter().map(|b| b.id))
            .collect();
        Ok(Lists { lists, blobs })
    }

    fn packs(&self) -> HashSet<Id> {
        self.lists
            .iter()
            .flat_map(|(_, l)| l.packs.iter().map(|p| p.id))
            .collect()
    }
}

/// Run a prune: sweep what earlier prunes condemned, plan, condemn, sweep.
/// With `dry_run`, only plan. Takes a maintenance lock (forget and prune
/// exclude each other; backups, restores and checks go on).
pub fn run(
    repo: &Arc<Repository>,
    opts: &PruneOptions,
    dry_run: bool,
) -> Result<(PrunePlan, PruneReport)> {
    if !dry_run && !opts.assume_forgotten.is_empty() {
        return Err(Error::invalid(
            "assume_forgotten is for planning only: forget the snapshots first",
        ));
    }
    let kind = if dry_run {
        LockKind::Shared
    } else {
        LockKind::Maintenance
    };
    let lock = repo.lock(kind)?;
    let mut refs = Refs::default();
    let mut report = PruneReport::default();
    // Every writer holds a lock: with none but ours, no temporary file
    // can belong to a live write. The age limit is a second guard.
    if held_origins(repo, &lock)?.is_empty() {
        report.temporaries = repo
            .storage()
            .stale_temporaries(repo.lock_timing().stale_after, !dry_run)?;
    }
    if !dry_run {
        report.sweep = sweep(repo, &lock, &mut refs)?;
    }
    let lists = Lists::load(repo)?;
    let mut plan = plan(repo, opts, &mut refs, &lists)?;
    plan.pending = pending(repo, &lists, &lock)?;
    if dry_run || plan.is_empty() {
        return Ok((plan, report));
    }
    report.repacked_blobs = repack(repo, &plan, &lock)?;
    report.condemned_packs = condemn(repo, &plan, &lock)?;
    let second = sweep(repo, &lock, &mut refs)?;
    report.sweep.add(&second);
    Ok((plan, report))
}

/// Decide which packs to delete and which to repack. Needs the index loaded.
fn plan(
    repo: &Repository,
    opts: &PruneOptions,
    refs: &mut Refs,
    lists: &Lists,
) -> Result<PrunePlan> {
    let mut plan = PrunePlan::default();
    let snaps = list_snapshots(repo)?;
    let mut index = crate::repository::Index::default();
    for info in repo.storage().list(ObjectKind::Index)? {
        let file = repo.read_index_file(&info.name)?;
        index.add_file(&file);
        for pack in file.packs {
            plan.indexed.insert(pack.id, pack);
        }
        plan.index_files.push(info.name);
    }
    repo.add_condemned(&mut index)?;
    repo.replace_index(index);
    let snaps = snaps
        .into_iter()
        .filter(|(id, _)| !opts.assume_forgotten.contains(id))
        .collect();
    plan.snapshots = refs.update(repo, snaps)?;
    let stored: HashMap<Id, u64> = pack_sizes(repo)?;
    if let Some(missing) = plan.indexed.keys().find(|p| !stored.contains_key(p)) {
        return Err(Error::missing(format!(
            "pack {missing} is listed in the index but missing from the repository; run `strata check`, then `strata repair index` and `strata repair snapshots` before pruning"
        )));
    }
    let condemned = lists.packs();
    for info in repo.storage().list(ObjectKind::Pack)? {
        let Ok(id) = Id::from_hex(&info.name) else {
            continue;
        };
        if !plan.indexed.contains_key(&id) && !condemned.contains(&id) {
            plan.unindexed.push(unindexed_pack(repo, &info)?);
        }
    }
    assign(&mut plan, refs, &stored);
    verify_duplicates(repo, &mut plan, refs)?;
    let uses = assign(&mut plan, refs, &stored);
    check_complete(&plan, refs, lists)?;
    choose(&mut plan, uses, opts);
    Ok(plan)
}

/// Whether this copy of a used blob may be the one kept: stored whole, or
/// a delta whose base is used too (so kept as well).
fn may_keep(refs: &Refs, blob: &IndexBlob) -> bool {
    blob.base.is_none_or(|b| refs.used.contains(&b))
}

fn pack_sizes(repo: &Repository) -> Result<HashMap<Id, u64>> {
    Ok(repo
        .storage()
        .list(ObjectKind::Pack)?
        .into_iter()
        .filter_map(|o| Some((Id::from_hex(&o.name).ok()?, o.size)))
        .collect())
}

/// Choose one copy of every used blob (preferring packs mostly used; a
/// choice already made stays) and measure each pack's use.
fn assign(plan: &mut PrunePlan, refs: &Refs, stored: &HashMap<Id, u64>) -> Vec<PackUse> {
    let share = |p: &IndexPack| {
        let used = p.blobs.iter().filter(|b| refs.used.contains(&b.id)).count();
        used as f64 / p.blobs.len().max(1) as f64
    };
    let mut packs: Vec<&IndexPack> = plan.indexed.values().collect();
    packs.sort_by(|a, b| share(b).total_cmp(&share(a)).then(a.id.cmp(&b.id)));
    let mut uses = Vec::new();
    for pack in packs {
        let mut u = PackUse {
            id: pack.id,
            size: stored.get(&pack.id).copied().unwrap_or(0),
            ..PackUse::default()
        };
        for blob in &pack.blobs {
            let kept_here = refs.used.contains(&blob.id)
                && may_keep(refs, blob)
                && *plan.keep_in.entry(blob.id).or_insert(pack.id) == pack.id;
            if kept_here {
                u.used_blobs += 1;
                u.used_bytes += u64::from(blob.length);
            } else {
                u.unused_blobs += 1;
                u.unused_bytes += u64::from(blob.length);
            }
        }
        uses.push(u);
    }
    uses
}

/// A used blob stored more than once loses all copies but one: make sure
/// the one kept verifies (read, authenticated, hashed), or keep another
/// that does, or, if none does, keep every pack holding one. Otherwise a
/// prune could delete the only intact copy and keep a damaged one.
fn verify_duplicates(repo: &Repository, plan: &mut PrunePlan, refs: &Refs) -> Result<()> {
    let mut copies: HashMap<Id, Vec<(Id, IndexBlob)>> = HashMap::new();
    for pack in plan.indexed.values() {
        for blob in pack.blobs.iter().filter(|b| refs.used.contains(&b.id)) {
            copies.entry(blob.id).or_default().push((pack.id, *blob));
        }
    }
    copies.retain(|_, c| c.len() > 1);
    if copies.is_empty() {
        return Ok(());
    }
    // The chosen copies first, read pack by pack in runs.
    let mut chosen: HashMap<Id, Vec<IndexBlob>> = HashMap::new();
    for (id, list) in &copies {
        if let Some((pack, blob)) = list.iter().find(|(p, _)| plan.keep_in.get(id) == Some(p)) {
            chosen.entry(*pack).or_default().push(*blob);
        }
    }
    let mut failed: Vec<(Id, Id, String)> = Vec::new();
    for (pack, mut blobs) in chosen {
        blobs.sort_by_key(|b| b.offset);
        for (blob, result) in verify_in_pack(repo, &pack, &blobs)? {
            if let Err(e) = result {
                failed.push((blob, pack, e));
            }
        }
    }
    for (blob, bad_pack, error) in failed {
        plan.damaged.push((blob, bad_pack, error));
        let mut found = None;
        let others: Vec<&(Id, IndexBlob)> = copies[&blob]
            .iter()
            .filter(|(p, b)| *p != bad_pack && may_keep(refs, b))
            .collect();
        for (pack, entry) in others {
            match verify_in_pack(repo, pack, std::slice::from_ref(entry))?.pop() {
                Some((_, Ok(()))) => {
                    found = Some(*pack);
                    break;
                }
                Some((_, Err(e))) => plan.damaged.push((blob, *pack, e)),
                None => {}
            }
        }
        match found {
            Some(pack) => {
                plan.keep_in.insert(blob, pack);
            }
            None => plan.pinned.extend(copies[&blob].iter().map(|(p, _)| *p)),
        }
    }
    Ok(())
}

/// Read and verify `blobs` (sorted by offset) of one pack; damage is a
/// result per blob, other storage errors stop prune.
fn verify_in_pack(
    repo: &Repository,
    pack: &Id,
    blobs: &[IndexBlob],
) -> Result<Vec<(Id, std::result::Result<(), String>)>> {
    let name = pack.to_hex();
    let mut out = Vec::new();
    let spans = blobs
        .iter()
        .map(|b| (u64::from(b.offset), u64::from(b.length)));
    for (range, start, end) in crate::repository::merge_runs(spans, 1 << 20, 8 << 20) {
        let run = match repo
            .storage()
            .read_range(ObjectKind::Pack, &name, start, end - start)
        {
            Ok(run) => run,
            Err(e) if e.kind() == crate::ErrorKind::Io => return Err(e),
            Err(e) => {
                out.extend(blobs[range].iter().map(|b| (b.id, Err(e.to_string()))));
                continue;
            }
        };
        for b in &blobs[range] {
            let from = (u64::from(b.offset) - start) as usize;
            let sealed = &run[from..from + b.length as usize];
            let verified = repo
                .open_blob(&b.id, b.kind, sealed, b.raw_length)
                .map(|_| ())
                .map_err(|e| format!("pack {name}: {e}"));
            out.push((b.id, verified));
        }
    }
    Ok(out)
}

/// Every used blob must be stored somewhere: prune never works on a
/// repository whose snapshots already miss data (it could not tell what a
/// repair would need).
fn check_complete(plan: &PrunePlan, refs: &Refs, lists: &Lists) -> Result<()> {
    // A pack that left the index just before a prune was killed holds
    // blobs a snapshot may need; the sweep indexes such a pack again.
    let unindexed: HashSet<Id> = plan
        .unindexed
        .iter()
        .flat_map(|p| p.blobs.iter().map(|b| b.id))
        .collect();
    let missing = refs
        .used
        .iter()
        .filter(|b| {
            !plan.keep_in.contains_key(b) && !lists.blobs.contains(b) && !unindexed.contains(b)
        })
        .count();
    if missing > 0 {
        return Err(Error::missing(format!(
            "{missing} blobs that snapshots need are in no index; run `strata check`, then `strata repair index` (and `strata repair snapshots` if data is lost) before pruning"
        )));
    }
    Ok(())
}

/// Sort packs into delete, repack and keep.
fn choose(plan: &mut PrunePlan, uses: Vec<PackUse>, opts: &PruneOptions) {
    let used: u64 = uses.iter().map(|u| u.used_bytes).sum();
    let mut candidates = Vec::new();
    for u in uses {
        if plan.pinned.contains(&u.id) {
            plan.keep.push(u);
        } else if u.used_blobs == 0 {
            plan.delete.push(u);
        } else if u.unused_blobs == 0 {
            plan.keep.push(u);
        } else {
            candidates.push(u);
        }
    }
    let limit = opts.max_unused.bytes(used);
    let mut unused: u64 = candidates.iter().map(|u| u.unused_bytes).sum();
    let mut budget = opts.max_repack_size.unwrap_or(u64::MAX);
    // Most unused first: the least copying for the most space.
    candidates.sort_by(|a, b| {
        let share = |u: &PackUse| u.unused_bytes as f64 / u.size.max(1) as f64;
        share(b).total_cmp(&share(a))
    });
    for u in candidates {
        if unused > limit && u.size <= budget {
            unused -= u.unused_bytes;
            budget -= u.size;
            plan.repack.push(u);
        } else {
            plan.keep.push(u);
        }
    }
}

fn pending(repo: &Repository, lists: &Lists, lock: &LockGuard) -> Result<Vec<Pending>> {
    let held = held_origins(repo, lock)?;
    Ok(lists
        .lists
        .iter()
        .map(|(name, l)| Pending {
            name: name.clone(),
            time: l.time,
            packs: l.packs.len(),
            bytes: l.packs.iter().map(|p| p.size).sum(),
            waiting_for: l
                .locks
                .iter()
                .flatten()
                .filter(|o| held.contains(o))
                .count(),
        })
        .collect())
}

/// Origins of the locks held now, except ours.
fn held_origins(repo: &Repository, lock: &LockGuard) -> Result<HashSet<Id>> {
    let ours = lock.origin();
    Ok(repo
        .live_locks()?
        .iter()
        .map(|l| l.origin())
        .filter(|o| Some(*o) != ours)
        .collect())
}

/// Copy the used blobs of packs to repack into new packs, verifying each,
/// and index them. Returns the number of blobs copied.
fn repack(repo: &Arc<Repository>, plan: &PrunePlan, lock: &LockGuard) -> Result<usize> {
    if plan.repack.is_empty() {
        return Ok(0);
    }
    let saver = BlobSaver::new(repo.clone());
    let mut copied = 0;
    for u in &plan.repack {
        let name = u.id.to_hex();
        let data = repo.storage().read(ObjectKind::Pack, &name)?;
        let Some(pack) = plan.indexed.get(&u.id) else {
            continue;
        };
        for blob in pack
            .blobs
            .iter()
            .filter(|b| plan.keep_in.get(&b.id) == Some(&u.id))
        {
            let range = blob.offset as usize..(blob.offset as usize + blob.length as usize);
            let sealed = data.get(range).ok_or_else(|| {
                Error::corrupted(format!("pack {name} is shorter than its index says"))
            })?;
            repo.open_blob(&blob.id, blob.kind, sealed, blob.raw_length)
                .map_err(|e| {
                    e.context(format!(
                        "pack {name}: a used blob is damaged, prune stops; run `strata check --read-data`"
                    ))
                })?;
            saver.copy_sealed(blob.kind, blob.id, blob.raw_length, sealed, blob.base)?;
            copied += 1;
        }
    }
    saver.flush()?;
    lock.check()?;
    saver.finish()?;
    Ok(copied)
}

/// Step 1: index without the condemned packs, then note the locks held.
fn condemn(repo: &Repository, plan: &PrunePlan, lock: &LockGuard) -> Result<usize> {
    let gone: HashSet<Id> = plan
        .delete
        .iter()
        .chain(&plan.repack)
        .map(|u| u.id)
        .collect();
    let kept: Vec<IndexPack> = plan
        .indexed
        .values()
        .filter(|p| !gone.contains(&p.id))
        .cloned()
        .collect();
    let sizes: HashMap<Id, u64> = plan.all_indexed().map(|u| (u.id, u.size)).collect();
    let mut packs: Vec<CondemnedPack> = gone
        .iter()
        .filter_map(|id| plan.indexed.get(id))
        .map(|p| CondemnedPack {
            id: p.id,
            size: sizes.get(&p.id).copied().unwrap_or(0),
            blobs: p.blobs.clone(),
        })
        .collect();
    packs.extend(plan.unindexed.iter().cloned());
    let count = packs.len();
    lock.check()?;
    let new_name = if kept.is_empty() {
        None
    } else {
        let file = IndexFile {
            version: VERSION,
            packs: kept,
        };
        Some(repo.save_index(&file)?.to_hex())
    };
    // Written before the old index files go, so that readers find the
    // packs at every instant; it waits for no lock yet, so it is never
    // ready until completed.
    let draft = write_list(repo, None, packs)?;
    lock.check()?;
    for name in plan
        .index_files
        .iter()
        .filter(|n| Some(*n) != new_name.as_ref())
    {
        repo.storage().remove(ObjectKind::Index, name)?;
    }
    complete(repo, lock, draft)?;
    Ok(count)
}

/// Note the locks held now in a list that has none yet. Only once the old
/// index files are gone: whoever holds a lock at this point may have seen
/// the packs in an index, whoever locks later cannot.
fn complete(repo: &Repository, lock: &LockGuard, (name, list): (String, Condemned)) -> Result<()> {
    let locks = held_origins(repo, lock)?.into_iter().collect();
    lock.check()?;
    write_list(repo, Some(locks), list.packs)?;
    repo.storage().remove(ObjectKind::Condemned, &name)
}

fn write_list(
    repo: &Repository,
    locks: Option<Vec<Id>>,
    packs: Vec<CondemnedPack>,
) -> Result<(String, Condemned)> {
    let list = Condemned {
        version: VERSION,
        time: jiff::Timestamp::now(),
        hostname: crate::hostname(),
        locks,
        packs,
    };
    let sealed = seal_object(repo.key(), ad::CONDEMNED, &list, repo.config().compression);
    let name = Id::of_object(&sealed).to_hex();
    repo.storage()
        .write(ObjectKind::Condemned, &name, &sealed)?;
    Ok((name, list))
}

/// An unindexed pack's blobs come from its header; one whose header cannot
/// be read holds nothing usable.
fn unindexed_pack(repo: &Repository, info: &ObjectInfo) -> Result<CondemnedPack> {
    let id = Id::from_hex(&info.name)?;
    let blobs = match repo.read_pack_header(&info.name, info.size) {
        Ok(entries) => entries.iter().map(IndexBlob::from).collect(),
        Err(e) if e.kind() == crate::ErrorKind::Io => return Err(e),
        Err(e) => {
            tracing::warn!(
                "pack {}: header unreadable ({e}); it holds nothing usable",
                info.name
            );
            Vec::new()
        }
    };
    Ok(CondemnedPack {
        id,
        size: info.size,
        blobs,
    })
}

/// Step 2: delete the packs of condemned lists whose locks are all gone.
fn sweep(repo: &Repository, lock: &LockGuard, refs: &mut Refs) -> Result<SweepReport> {
    let mut lists = Lists::load(repo)?;
    // A damaged list (skipped by readers) goes; its packs look unindexed
    // now, and this prune's plan condemns them again.
    for info in repo.storage().list(ObjectKind::Condemned)? {
        if !lists.lists.iter().any(|(n, _)| *n == info.name) {
            lock.check()?;
            repo.storage().remove(ObjectKind::Condemned, &info.name)?;
        }
    }
    // A prune killed between its two writes left a draft: complete it now
    // (noting locks later than it would have is only more cautious).
    if lists.lists.iter().any(|(_, l)| l.locks.is_none()) {
        for draft in std::mem::take(&mut lists.lists)
            .into_iter()
            .filter(|(_, l)| l.locks.is_none())
        {
            complete(repo, lock, draft)?;
        }
        lists = Lists::load(repo)?;
    }
    let held = held_origins(repo, lock)?;
    let ready_now = |l: &Condemned| {
        l.locks
            .as_ref()
            .is_some_and(|locks| locks.iter().all(|o| !held.contains(o)))
    };
    let (ready, waiting): (Vec<_>, Vec<_>) =
        lists.lists.into_iter().partition(|(_, l)| ready_now(l));
    let mut report = SweepReport {
        waiting_packs: waiting.iter().map(|(_, l)| l.packs.len()).sum(),
        waiting_bytes: waiting
            .iter()
            .flat_map(|(_, l)| &l.packs)
            .map(|p| p.size)
            .sum(),
        ..SweepReport::default()
    };
    if ready.is_empty() {
        return Ok(report);
    }
    // A pack condemned again by a later prune waits for that list's locks
    // too: a backup that loaded an index listing it in between is only on
    // the later list.
    let still_waiting: HashSet<Id> = waiting
        .iter()
        .flat_map(|(_, l)| l.packs.iter().map(|p| p.id))
        .collect();
    // Every backup that may have seen these packs in an index is done, and
    // its snapshot is visible now: it was written before its lock went.
    let snaps = list_snapshots(repo)?;
    repo.load_index()?;
    refs.update(repo, snaps)?;
    let stored = pack_sizes(repo)?;
    let indexed: HashSet<Id> = repo.index().packs().copied().collect();
    let mut rescued = Vec::new();
    let mut rescued_blobs: HashSet<Id> = HashSet::new();
    let mut delete = Vec::new();
    // Several ready lists may name the same pack: decide for it once.
    let mut decided: HashSet<Id> = HashSet::new();
    for pack in ready.iter().flat_map(|(_, l)| &l.packs) {
        if !decided.insert(pack.id) {
            continue;
        }
        let Some(&size) = stored.get(&pack.id) else {
            continue; // deleted by an interrupted sweep
        };
        if indexed.contains(&pack.id) || still_waiting.contains(&pack.id) {
            continue; // listed again (by a backup, `repair index`), or waiting
        }
        let needed = pack.blobs.iter().map(|b| &b.id).any(|b| {
            refs.used.contains(b) && !repo.index().contains(b) && !rescued_blobs.contains(b)
        });
        if needed {
            rescued_blobs.extend(pack.blobs.iter().map(|b| b.id));
            rescued.push(IndexPack {
                id: pack.id,
                blobs: pack.blobs.clone(),
            });
        } else {
            delete.push((pack.id, size));
        }
    }
    lock.check()?;
    report.rescued_packs = rescued.len();
    if !rescued.is_empty() {
        repo.save_index(&IndexFile {
            version: VERSION,
            packs: rescued,
        })?;
    }
    for (id, size) in delete {
        repo.storage().remove(ObjectKind::Pack, &id.to_hex())?;
        report.deleted_packs += 1;
        report.deleted_bytes += size;
    }
    for (name, _) in &ready {
        repo.storage().remove(ObjectKind::Condemned, name)?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack_use(id: u8, size: u64, used: u64, unused: u64) -> PackUse {
        PackUse {
            id: Id([id; 32]),
            size,
            used_blobs: usize::from(used > 0),
            unused_blobs: usize::from(unused > 0),
            used_bytes: used,
            unused_bytes: unused,
        }
    }

    #[test]
    fn percent_limit_is_a_share_of_all_data() {
        // 5% unused of (used + unused): 5/95 of the used bytes
        assert_eq!(UnusedLimit::Percent(5.0).bytes(950), 50);
        assert_eq!(UnusedLimit::Percent(0.0).bytes(950), 0);
        assert_eq!(UnusedLimit::Percent(100.0).bytes(1), u64::MAX);
        assert_eq!(UnusedLimit::Bytes(7).bytes(1000), 7);
    }

    #[test]
    fn choose_sorts_packs_and_repacks_until_under_the_limit() {
        let mut plan = PrunePlan::default();
        let uses = vec![
            pack_use(1, 100, 0, 100), // nothing used: delete
            pack_use(2, 100, 100, 0), // all used: keep
            pack_use(3, 100, 10, 90), // mostly unused: repack first
            pack_use(4, 100, 80, 20),
            pack_use(5, 100, 95, 5),
        ];
        let opts = PruneOptions {
            max_unused: UnusedLimit::Bytes(25),
            max_repack_size: None,
            ..PruneOptions::default()
        };
        choose(&mut plan, uses, &opts);
        let ids = |v: &[PackUse]| v.iter().map(|u| u.id.0[0]).collect::<Vec<_>>();
        assert_eq!(ids(&plan.delete), [1]);
        assert_eq!(ids(&plan.repack), [3]);
        assert_eq!(plan.unused_after(), 25);
        assert_eq!(plan.freed_bytes(), 100 + 90);
        assert_eq!(plan.unindexed_bytes(), 0);
    }

    #[test]
    fn repack_size_limit_is_respected() {
        let mut plan = PrunePlan::default();
        let uses = vec![pack_use(3, 100, 10, 90), pack_use(4, 100, 50, 50)];
        let opts = PruneOptions {
            max_unused: UnusedLimit::Bytes(0),
            max_repack_size: Some(150),
            ..PruneOptions::default()
        };
        choose(&mut plan, uses, &opts);
        assert_eq!(plan.repack.len(), 1);
        assert_eq!(plan.keep.len(), 1);
    }
}
