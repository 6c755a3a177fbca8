//! Rebuilding the index from the packs themselves.
//!
//! Every pack carries a sealed header listing its blobs, so the index is
//! redundant and can always be rebuilt: read every pack's header, write one
//! new index file listing all readable packs, then delete the old index
//! files. The new index is written before anything is deleted, so a crash
//! in between leaves both (harmless duplicates), never neither.
//!
//! Removing references to data that is lost for good is in [`snapshots`].

pub mod snapshots;

use crate::error::Result;
use crate::format::index::{IndexBlob, IndexFile, IndexPack};
use crate::format::pack;
use crate::repository::{LockKind, Repository};
use crate::storage::ObjectKind;
use crate::Id;

/// What `rebuild_index` did.
#[derive(Clone, Debug, Default)]
pub struct IndexRepair {
    pub packs: usize,
    pub blobs: usize,
    /// Packs whose header could not be read: their blobs are lost to the index.
    pub unreadable: Vec<(String, String)>,
    pub removed_index_files: usize,
    pub new_index: Option<Id>,
}

/// Rebuild the index from pack headers. Takes an exclusive lock.
pub fn rebuild_index(repo: &Repository) -> Result<IndexRepair> {
    let _lock = repo.lock(LockKind::Exclusive)?;
    let old: Vec<String> = repo
        .storage()
        .list(ObjectKind::Index)?
        .into_iter()
        .map(|o| o.name)
        .collect();
    let mut report = IndexRepair::default();
    let mut packs = Vec::new();
    for info in repo.storage().list(ObjectKind::Pack)? {
        match read_pack_header(repo, &info.name, info.size) {
            Ok((id, entries)) => {
                report.blobs += entries.len();
                packs.push(IndexPack {
                    id,
                    blobs: entries.iter().map(IndexBlob::from).collect(),
                });
            }
            Err(e) => report.unreadable.push((info.name, e.to_string())),
        }
    }
    report.packs = packs.len();
    if !packs.is_empty() {
        let file = IndexFile {
            version: crate::format::VERSION,
            packs,
        };
        report.new_index = Some(repo.save_index(&file)?);
    }
    let new_name = report.new_index.map(|id| id.to_hex());
    for name in old.iter().filter(|n| Some(*n) != new_name.as_ref()) {
        repo.storage().remove(ObjectKind::Index, name)?;
        report.removed_index_files += 1;
    }
    repo.load_index()?;
    Ok(report)
}

fn read_pack_header(
    repo: &Repository,
    name: &str,
    size: u64,
) -> Result<(Id, Vec<pack::PackEntry>)> {
    Ok((Id::from_hex(name)?, repo.read_pack_header(name, size)?))
}
