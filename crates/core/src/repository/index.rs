//! The in-memory index: where each blob lives. Built from all index files.

use std::collections::HashMap;

use crate::format::index::{IndexBlob, IndexFile};
use crate::format::pack::BlobKind;
use crate::id::Id;

/// Where a blob is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobLocation {
    pub pack: Id,
    pub kind: BlobKind,
    pub offset: u32,
    pub length: u32,
    pub raw_length: u32,
}

#[derive(Default, Debug)]
pub struct Index {
    blobs: HashMap<Id, BlobLocation>,
    /// Pack id → number of blobs listed for it.
    packs: HashMap<Id, u32>,
}

impl Index {
    pub fn add_file(&mut self, file: &IndexFile) {
        for pack in &file.packs {
            for blob in &pack.blobs {
                self.add(pack.id, blob);
            }
        }
    }

    pub fn add(&mut self, pack: Id, blob: &IndexBlob) {
        let loc = BlobLocation {
            pack,
            kind: blob.kind,
            offset: blob.offset,
            length: blob.length,
            raw_length: blob.raw_length,
        };
        if self.blobs.insert(blob.id, loc).is_none() {
            *self.packs.entry(pack).or_default() += 1;
        }
    }

    pub fn get(&self, id: &Id) -> Option<&BlobLocation> {
        self.blobs.get(id)
    }

    pub fn contains(&self, id: &Id) -> bool {
        self.blobs.contains_key(id)
    }

    pub fn len(&self) -> usize {
        self.blobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }

    pub fn packs(&self) -> impl Iterator<Item = &Id> {
        self.packs.keys()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Id, &BlobLocation)> {
        self.blobs.iter()
    }
}
