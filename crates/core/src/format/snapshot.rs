//! Snapshot files: one per backup, naming the root tree. Sealed CBOR.

use serde::{Deserialize, Serialize};

use crate::id::Id;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Snapshot {
    pub version: u32,
    pub time: jiff::Timestamp,
    pub tree: Id,
    /// The paths given to `backup`, absolute, as text.
    pub paths: Vec<String>,
    pub hostname: String,
    pub username: String,
    pub uid: u32,
    pub gid: u32,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Id>,
    /// Set by `repair snapshots`: the damaged snapshot this one replaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<Id>,
    /// True if some files could not be read and are missing.
    #[serde(default)]
    pub partial: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<Summary>,
    pub program_version: String,
}

/// What a backup did, as stored in its snapshot and printed at its end.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Summary {
    pub files_new: u64,
    pub files_changed: u64,
    pub files_unchanged: u64,
    pub dirs: u64,
    pub other_nodes: u64,
    pub errors: u64,
    /// Bytes read from files (not counting unchanged files).
    pub bytes_read: u64,
    /// Total size of all files in the snapshot.
    pub total_bytes: u64,
    pub blobs_added: u64,
    /// Plaintext bytes of new blobs.
    pub data_added: u64,
    /// Bytes written to the repository for new blobs (after compression and encryption).
    pub data_added_stored: u64,
    pub duration_ms: u64,
    /// When the backup started reading (not `--time`): files whose ctime is
    /// not clearly before it may have changed within the same clock tick and
    /// are re-read by the next backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_start: Option<jiff::Timestamp>,
}
