//! Condemned lists: packs a prune has removed from the index and will delete
//! once every lock held at that moment is gone. Sealed CBOR in `condemned/`.

use serde::{Deserialize, Serialize};

use super::index::IndexBlob;
use crate::id::Id;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Condemned {
    pub version: u32,
    /// When the list was written (for messages only; safety uses `locks`).
    pub time: jiff::Timestamp,
    pub hostname: String,
    /// Origins of the locks that existed after the packs left the index:
    /// their holders may have loaded an index that still listed them.
    /// `None` in a draft written before the old index files are deleted;
    /// a draft is completed (by the prune that wrote it, or the next one)
    /// before it can be swept.
    pub locks: Option<Vec<Id>>,
    pub packs: Vec<CondemnedPack>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CondemnedPack {
    pub id: Id,
    pub size: u64,
    /// The blobs the pack holds, as its header lists them: readers still
    /// find them here until the pack is deleted.
    pub blobs: Vec<IndexBlob>,
}
