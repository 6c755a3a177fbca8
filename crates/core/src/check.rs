//! Checking a repository: structure (index ↔ packs ↔ snapshots ↔ trees)
//! and, with `read_data`, every byte of every blob.
//!
//! Every problem is collected, not just the first, and named by the object
//! it concerns, so a damaged repository can be assessed in one run.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use crate::error::Result;
use crate::format::index::IndexBlob;
use crate::format::pack;
use crate::format::tree::NodeKind;
use crate::id::Id;
use crate::repository::Repository;
use crate::storage::ObjectKind;

#[derive(Clone, Debug, Default)]
pub struct CheckOptions {
    pub read_data: bool,
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
    pub trees: usize,
    pub bytes_read: u64,
}

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.errors.is_empty()
    }
}

pub fn run(repo: &Repository, opts: &CheckOptions) -> Result<CheckReport> {
    let _lock = repo.lock(false)?;
    let mut report = CheckReport::default();
    let indexed = load_indexes(repo, &mut report)?;
    let stored: HashMap<String, u64> = repo
        .storage()
        .list(ObjectKind::Pack)?
        .into_iter()
        .map(|o| (o.name, o.size))
        .collect();
    check_packs(repo, &indexed, &stored, &mut report);
    check_snapshots(repo, &mut report)?;
    if opts.read_data {
        read_all_data(repo, &stored, &mut report);
    }
    Ok(report)
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
    repo.replace_index(index);
    Ok(packs)
}

fn check_packs(
    repo: &Repository,
    indexed: &HashMap<Id, Vec<IndexBlob>>,
    stored: &HashMap<String, u64>,
    report: &mut CheckReport,
) {
    report.packs = stored.len();
    for (id, blobs) in indexed {
        let name = id.to_hex();
        let Some(&size) = stored.get(&name) else {
            report.errors.push(format!(
                "pack {name}: listed in the index but missing from storage"
            ));
            continue;
        };
        match read_header(repo, &name, size) {
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
    for name in stored.keys() {
        if Id::from_hex(name).map_or(true, |id| !indexed.contains_key(&id)) {
            report.warnings.push(format!(
                "pack {name}: not listed in any index (left by an interrupted backup; harmless)"
            ));
        }
    }
}

fn read_header(repo: &Repository, name: &str, size: u64) -> Result<Vec<pack::PackEntry>> {
    if size < 4 {
        return Err(crate::Error::corrupted(format!(
            "pack is only {size} bytes"
        )));
    }
    let tail = repo
        .storage()
        .read_range(ObjectKind::Pack, name, size - 4, 4)?;
    let header_len = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]);
    let (start, len) = pack::header_range(size, header_len)?;
    let sealed = repo
        .storage()
        .read_range(ObjectKind::Pack, name, start, len)?;
    pack::parse_header(repo.key(), &sealed, size)
}

fn check_snapshots(repo: &Repository, report: &mut CheckReport) -> Result<()> {
    let (snaps, bad) = repo.snapshots()?;
    report.errors.extend(
        bad.into_iter()
            .map(|(name, e)| format!("snapshot {name}: {e}")),
    );
    report.snapshots = snaps.len();
    let mut seen_trees = HashSet::new();
    let mut missing_reported = HashSet::new();
    for (id, snap) in snaps {
        let mut stack = vec![(snap.tree, String::from("/"))];
        while let Some((tree_id, path)) = stack.pop() {
            if !seen_trees.insert(tree_id) {
                continue;
            }
            let tree = match repo.load_tree(&tree_id) {
                Ok(t) => t,
                Err(e) => {
                    report.errors.push(format!(
                        "snapshot {}: tree {} at {path}: {e}",
                        id.short(),
                        tree_id.short()
                    ));
                    continue;
                }
            };
            report.trees += 1;
            for node in tree.nodes {
                let child = format!("{}{}", path, crate::format::display_bytes(&node.name));
                if !crate::format::tree::Node::valid_name(&node.name) {
                    report.errors.push(format!(
                        "snapshot {}: invalid entry name at {child}",
                        id.short()
                    ));
                }
                match node.kind {
                    NodeKind::Dir => match node.subtree {
                        Some(sub) => stack.push((sub, format!("{child}/"))),
                        None => report.errors.push(format!(
                            "snapshot {}: directory {child} has no tree",
                            id.short()
                        )),
                    },
                    NodeKind::File => {
                        for blob in node.content.iter().flatten() {
                            if !repo.index().contains(blob) && missing_reported.insert(*blob) {
                                report.errors.push(format!(
                                    "snapshot {}: {child}: data blob {} is missing",
                                    id.short(),
                                    blob
                                ));
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(())
}

fn read_all_data(repo: &Repository, stored: &HashMap<String, u64>, report: &mut CheckReport) {
    let names: Vec<&String> = stored.keys().collect();
    let errors = Mutex::new(Vec::new());
    let bytes = std::sync::atomic::AtomicU64::new(0);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(name) = names.get(i) else { break };
                let found = check_pack_data(repo, name);
                bytes.fetch_add(stored[*name], std::sync::atomic::Ordering::Relaxed);
                if let Ok(mut e) = errors.lock() {
                    e.extend(found);
                }
            });
        }
    });
    report
        .errors
        .extend(errors.into_inner().unwrap_or_default());
    report.bytes_read = bytes.into_inner();
}

fn check_pack_data(repo: &Repository, name: &str) -> Vec<String> {
    let data = match repo.storage().read(ObjectKind::Pack, name) {
        Ok(d) => d,
        Err(e) => return vec![format!("pack {name}: {e}")],
    };
    let mut errors = Vec::new();
    if Id::of_object(&data).to_hex() != name {
        errors.push(format!(
            "pack {name}: contents do not match its name (damaged)"
        ));
    }
    match pack::parse_pack(repo.key(), &data) {
        Ok(entries) => {
            for e in entries {
                let sealed = &data[e.offset as usize..(e.offset + e.length) as usize];
                if let Err(err) = repo.open_blob(&e.id, e.kind, sealed, e.raw_length) {
                    errors.push(format!("pack {name}: {err}"));
                }
            }
        }
        Err(e) => errors.push(format!("pack {name}: header: {e}")),
    }
    errors
}
