//! Index files: which blobs are in which pack, at which offset.
//! Sealed CBOR; a repository has many, each written after its packs.

use serde::{Deserialize, Serialize};

use super::pack::{BlobKind, PackEntry};
use crate::id::Id;

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct IndexFile {
    pub version: u32,
    pub packs: Vec<IndexPack>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct IndexPack {
    pub id: Id,
    pub blobs: Vec<IndexBlob>,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct IndexBlob {
    pub id: Id,
    pub kind: BlobKind,
    pub offset: u32,
    pub length: u32,
    pub raw_length: u32,
    /// For a data blob stored as a delta (format version 2): its base,
    /// which must be kept as long as this blob is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<Id>,
}

impl From<&PackEntry> for IndexBlob {
    fn from(e: &PackEntry) -> Self {
        IndexBlob {
            id: e.id,
            kind: e.kind,
            offset: e.offset,
            length: e.length,
            raw_length: e.raw_length,
            base: e.base,
        }
    }
}

impl IndexBlob {
    pub fn entry(&self) -> PackEntry {
        PackEntry {
            id: self.id,
            kind: self.kind,
            offset: self.offset,
            length: self.length,
            raw_length: self.raw_length,
            base: self.base,
        }
    }
}
