//! Snapshot files: one per backup, naming the root tree. Sealed CBOR.

use std::os::unix::ffi::OsStrExt;

use serde::{Deserialize, Serialize};

use crate::id::Id;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Snapshot {
    pub version: u32,
    pub time: jiff::Timestamp,
    pub tree: Id,
    /// The paths given to `backup`, absolute, as text.
    pub paths: Vec<String>,
    /// Streams stored beside the paths (standard input, command output,
    /// database dumps): their paths inside the snapshot, relative.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub streams: Vec<String>,
    /// The other sources given to `backup` (`mysql:all`, `stream:db.sql`):
    /// with the paths, what makes snapshots comparable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<String>,
    pub hostname: String,
    pub username: String,
    pub uid: u32,
    pub gid: u32,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Id>,
    /// How many backups came before this one, following parents: the
    /// parent's sequence plus one (0 without a parent). Chooses the bases
    /// of deltas (docs/design.md, "Delta storage").
    #[serde(default, skip_serializing_if = "is_zero")]
    pub sequence: u64,
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
    /// Files read again although their metadata matched the parent (too
    /// recent to trust, or `--force`) whose contents turned out unchanged.
    #[serde(default)]
    pub files_reread: u64,
    pub dirs: u64,
    /// Streams saved as files (standard input, commands, database dumps).
    #[serde(default)]
    pub streams: u64,
    /// Streams saved empty (a command that printed nothing and succeeded):
    /// stored as they are, and worth a look.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub streams_empty: u64,
    /// Symbolic links.
    #[serde(default)]
    pub symlinks: u64,
    /// Fifos, devices and sockets.
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

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Snapshot {
    /// The paths and other sources of the backup, sorted: snapshots with
    /// the same ones are versions of the same thing.
    pub fn source_key(&self) -> Vec<String> {
        let mut key: Vec<String> = self.paths.iter().chain(&self.sources).cloned().collect();
        key.sort();
        key
    }

    /// A path inside this snapshot as it is stored. Backup stores each of
    /// its paths under its last component (`/home/me/src` as `/src`, `/` as
    /// `/root`), while `snapshots` shows the paths as given. A path whose
    /// first component is one of the stored names is taken as stored (as
    /// `ls` prints it); else one equal to or under one of
    /// [`Snapshot::paths`] is mapped to the stored one.
    pub fn stored_path(&self, path: &[u8]) -> Vec<u8> {
        let trimmed = trim_slashes(path);
        let first = trimmed.split(|&b| b == b'/').find(|c| !c.is_empty());
        let stored_names = self.paths.iter().map(|p| {
            let p = super::path_bytes(p);
            let p = trim_slashes(&p);
            crate::backup::stored_name(std::path::Path::new(std::ffi::OsStr::from_bytes(
                if p.is_empty() { b"/" } else { p },
            )))
        });
        let stream_tops = self
            .streams
            .iter()
            .map(|s| s.split('/').next().unwrap_or("").as_bytes().to_vec());
        if first.is_none_or(|f| stored_names.chain(stream_tops).any(|n| n == f)) {
            return path.to_vec();
        }
        self.original_to_stored(path)
            .unwrap_or_else(|| path.to_vec())
    }

    /// A path as backed up (on disk) as it is stored in this snapshot, if
    /// it is equal to or under one of [`Snapshot::paths`].
    pub fn original_to_stored(&self, path: &[u8]) -> Option<Vec<u8>> {
        let trimmed = trim_slashes(path);
        let paths: Vec<Vec<u8>> = self.paths.iter().map(|p| super::path_bytes(p)).collect();
        let best = paths
            .iter()
            .map(|p| trim_slashes(p))
            .filter(|p| {
                trimmed == *p
                    || (trimmed.starts_with(p)
                        && (p.is_empty() || trimmed.get(p.len()) == Some(&b'/')))
            })
            .max_by_key(|p| p.len())?;
        let name = crate::backup::stored_name(std::path::Path::new(std::ffi::OsStr::from_bytes(
            if best.is_empty() { b"/" } else { best },
        )));
        Some([b"/".as_slice(), &name, &trimmed[best.len()..]].concat())
    }
}

/// `path` without trailing slashes (`/` becomes empty).
fn trim_slashes(path: &[u8]) -> &[u8] {
    let mut end = path.len();
    while end > 0 && path[end - 1] == b'/' {
        end -= 1;
    }
    &path[..end]
}

#[cfg(test)]
mod stored_path_tests {
    use super::*;

    fn snap(paths: &[&str]) -> Snapshot {
        Snapshot {
            version: 1,
            time: jiff::Timestamp::UNIX_EPOCH,
            tree: crate::Id::default(),
            paths: paths.iter().map(|p| p.to_string()).collect(),
            streams: Vec::new(),
            sources: Vec::new(),
            hostname: String::new(),
            username: String::new(),
            uid: 0,
            gid: 0,
            tags: vec![],
            parent: None,
            sequence: 0,
            original: None,
            partial: false,
            summary: None,
            program_version: String::new(),
        }
    }

    #[test]
    fn paths_as_backed_up_did_not_match_the_stored_ones() {
        let s = snap(&["/home/me/src", "/etc"]);
        assert_eq!(s.stored_path(b"/home/me/src/a.txt"), b"/src/a.txt");
        assert_eq!(s.stored_path(b"/home/me/src"), b"/src");
        assert_eq!(s.stored_path(b"/home/me/src/"), b"/src");
        assert_eq!(s.stored_path(b"/etc/hosts"), b"/etc/hosts");
        assert_eq!(s.stored_path(b"/src/a.txt"), b"/src/a.txt");
        assert_eq!(s.stored_path(b"/home/me/srcx/a"), b"/home/me/srcx/a");
        let root = snap(&["/"]);
        assert_eq!(root.stored_path(b"/etc/hosts"), b"/root/etc/hosts");
        // As `ls` prints it, and the root itself.
        assert_eq!(root.stored_path(b"/root/etc/hosts"), b"/root/etc/hosts");
        assert_eq!(root.stored_path(b"/"), b"/");
    }
}
