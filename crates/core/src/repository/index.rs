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
    /// The base of a blob stored as a delta (format version 2).
    pub base: Option<Id>,
}

#[derive(Default, Debug)]
pub struct Index {
    blobs: HashMap<Id, BlobLocation>,
    /// Further copies of blobs stored more than once (backups running at
    /// the same time may each store a blob): rare, so kept apart. Readers
    /// fall back to them when the first copy fails to verify.
    copies: HashMap<Id, Vec<BlobLocation>>,
    /// Pack id → number of blobs index files list in it, duplicates included:
    /// a pack whose blobs all have other copies is still listed (and prune
    /// must not delete a pack an index file lists).
    packs: HashMap<Id, u32>,
    /// Blobs in packs a prune condemned: readable until swept, never used
    /// for deduplication (docs/design.md, "Prune").
    fallback: HashMap<Id, BlobLocation>,
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
            base: blob.base,
        };
        *self.packs.entry(pack).or_default() += 1;
        match self.blobs.entry(blob.id) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(loc);
            }
            std::collections::hash_map::Entry::Occupied(first) => {
                let copies = self.copies.entry(blob.id).or_default();
                if *first.get() != loc && !copies.contains(&loc) {
                    copies.push(loc);
                }
            }
        }
    }

    /// Add a blob of a condemned pack, found by reads only.
    pub fn add_fallback(&mut self, pack: Id, blob: &IndexBlob) {
        self.fallback.entry(blob.id).or_insert(BlobLocation {
            pack,
            kind: blob.kind,
            offset: blob.offset,
            length: blob.length,
            raw_length: blob.raw_length,
            base: blob.base,
        });
    }

    /// Where to read a blob: an index file's location, or else one in a
    /// condemned pack. A snapshot written by a backup that ran beside a
    /// prune may need the latter until the next prune indexes it again.
    pub fn get(&self, id: &Id) -> Option<&BlobLocation> {
        self.blobs.get(id).or_else(|| self.fallback.get(id))
    }

    /// Every known copy of a blob: the index files' locations first, then
    /// one in a condemned pack. Readers try them in turn until one verifies.
    pub fn locations(&self, id: &Id) -> Vec<BlobLocation> {
        let mut out: Vec<BlobLocation> = self.blobs.get(id).into_iter().copied().collect();
        out.extend(self.copies.get(id).into_iter().flatten().copied());
        if let Some(f) = self.fallback.get(id).filter(|f| !out.contains(f)) {
            out.push(*f);
        }
        out
    }

    /// Whether an index file lists the blob, and for a delta every base
    /// down to a whole blob: only such blobs may be referenced by new
    /// snapshots (a delta whose base is gone cannot be read).
    pub fn contains(&self, id: &Id) -> bool {
        self.chain(id, 0, false)
    }

    /// Whether some copy of the blob can be read as far as the index
    /// knows: listed (condemned packs included), and for a delta its bases
    /// down to a whole blob.
    pub fn chain_listed(&self, id: &Id) -> bool {
        self.chain(id, 0, true)
    }

    fn chain(&self, id: &Id, depth: usize, fallback: bool) -> bool {
        if depth > crate::format::delta::MAX_CHAIN {
            return false;
        }
        let ok = |l: &BlobLocation| l.base.is_none_or(|b| self.chain(&b, depth + 1, fallback));
        self.blobs.get(id).is_some_and(ok)
            || self.copies.get(id).is_some_and(|c| c.iter().any(ok))
            || (fallback && self.fallback.get(id).is_some_and(ok))
    }

    /// Blobs found only in condemned packs.
    pub fn fallback_len(&self) -> usize {
        self.fallback
            .keys()
            .filter(|id| !self.blobs.contains_key(id))
            .count()
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

    /// The blobs the index lists in `pack` (a scan: for the rare damaged
    /// pack, not for hot paths).
    pub fn iter_pack(&self, pack: &Id) -> Vec<Id> {
        let firsts = self.blobs.iter();
        let others = self
            .copies
            .iter()
            .flat_map(|(id, ls)| ls.iter().map(move |l| (id, l)));
        firsts
            .chain(others)
            .filter(|(_, l)| l.pack == *pack)
            .map(|(id, _)| *id)
            .collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Id, &BlobLocation)> {
        self.blobs.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(pack: u8, blob: u8) -> IndexFile {
        IndexFile {
            version: 1,
            packs: vec![crate::format::index::IndexPack {
                id: Id([pack; 32]),
                blobs: vec![IndexBlob {
                    id: Id([blob; 32]),
                    kind: BlobKind::Data,
                    offset: 0,
                    length: 10,
                    raw_length: 10,
                    base: None,
                }],
            }],
        }
    }

    /// Regression: a pack holding only copies of blobs indexed elsewhere
    /// was missing from `packs()`, and prune's sweep deleted it although an
    /// index file listed it.
    #[test]
    fn a_pack_of_duplicates_is_still_listed() {
        let mut index = Index::default();
        index.add_file(&file(1, 9));
        index.add_file(&file(2, 9));
        let mut packs: Vec<u8> = index.packs().map(|p| p.0[0]).collect();
        packs.sort();
        assert_eq!(packs, [1, 2]);
        assert_eq!(index.get(&Id([9; 32])).unwrap().pack, Id([1; 32]));
        assert_eq!(index.len(), 1);
        let packs: Vec<u8> = index
            .locations(&Id([9; 32]))
            .iter()
            .map(|l| l.pack.0[0])
            .collect();
        assert_eq!(packs, [1, 2]);
    }
}
