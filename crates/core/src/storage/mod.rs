//! The storage seam: named, immutable objects in a flat namespace per kind.
//!
//! This is the only layer that touches the outside world. A backend stores
//! bytes under `(kind, name)`; it knows nothing of encryption or formats.
//! Cross-cutting behaviour (fault injection now; retries and caching for
//! remote backends) is added by wrapping a backend, never by flags inside it.
//!
//! Contract shared by every method:
//! - All methods are safe to call concurrently from several threads.
//! - A missing object is reported with [`ErrorKind::Missing`](crate::ErrorKind::Missing); other
//!   failures with [`ErrorKind::Io`](crate::ErrorKind::Io). Callers may retry `Io` failures of
//!   reads, lists and writes: every method is idempotent.

mod cache;
mod fault;
mod local;
mod memory;

pub use cache::CachedStorage;
pub use fault::{Faults, FaultyStorage};
pub use local::LocalStorage;

pub use memory::MemoryStorage;

use crate::error::Result;
use crate::id::Id;

/// The kinds of objects a repository holds; each is its own namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectKind {
    /// The single `config` object.
    Config,
    /// Key files, each wrapping the master key with one password.
    Key,
    /// Pack files holding blobs.
    Pack,
    Index,
    Snapshot,
    Lock,
    /// Prune's lists of packs waiting to be deleted (see docs/design.md).
    Condemned,
}

impl ObjectKind {
    pub const ALL: [ObjectKind; 7] = [
        ObjectKind::Config,
        ObjectKind::Key,
        ObjectKind::Pack,
        ObjectKind::Index,
        ObjectKind::Snapshot,
        ObjectKind::Lock,
        ObjectKind::Condemned,
    ];

    /// The directory (or key prefix) of this kind in a repository.
    pub fn dir(self) -> &'static str {
        match self {
            ObjectKind::Config => "",
            ObjectKind::Key => "keys",
            ObjectKind::Pack => "data",
            ObjectKind::Index => "index",
            ObjectKind::Snapshot => "snapshots",
            ObjectKind::Lock => "locks",
            ObjectKind::Condemned => "condemned",
        }
    }

    /// The relative path of an object: packs are spread over 256
    /// subdirectories by the first two hex digits of their name.
    pub fn path_of(self, name: &str) -> String {
        match self {
            ObjectKind::Config => name.to_string(),
            ObjectKind::Pack => match name.get(..2) {
                Some(prefix) => format!("data/{prefix}/{name}"),
                None => format!("data/{name}"),
            },
            _ => format!("{}/{name}", self.dir()),
        }
    }
}

/// An object as listed: its name and size in bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    pub name: String,
    pub size: u64,
}

/// A place that stores a repository's objects.
pub trait Storage: Send + Sync {
    /// Where this storage is, for messages (a path or URL, no secrets).
    fn location(&self) -> String;

    /// Prepare an empty repository location (directories, bucket prefix).
    /// Succeeds if it is already prepared. Must not delete anything.
    fn create(&self) -> Result<()>;

    /// All objects of `kind`, in no particular order. Objects being written
    /// (temporary names) are never listed. A kind with no objects yields an
    /// empty list, not an error.
    fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectInfo>>;

    /// The whole object. `Missing` if it does not exist.
    fn read(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>>;

    /// `length` bytes from `offset`. A range that extends past the end of the
    /// object is an error of kind `Corrupted`: callers know the sizes they
    /// ask for from an index or header, so a short object is damage.
    fn read_range(&self, kind: ObjectKind, name: &str, offset: u64, length: u64)
        -> Result<Vec<u8>>;

    /// Store `data` under `name` atomically: after success the object is
    /// durable and complete; after failure or a crash it is either absent or
    /// complete, never partial. Writing the same name twice with the same
    /// bytes is allowed (names are content addresses or unique).
    fn write(&self, kind: ObjectKind, name: &str, data: &[u8]) -> Result<()>;

    /// Delete an object. Deleting a missing object succeeds (idempotent).
    fn remove(&self, kind: ObjectKind, name: &str) -> Result<()>;

    /// Start writing an object whose name is known only when it is complete
    /// (packs, named by the hash of their bytes), without holding it all in
    /// memory. Nothing is visible until [`ObjectWriter::finish`] succeeds;
    /// dropping an unfinished writer discards what was written. The same
    /// atomicity and durability as [`Storage::write`] apply on finish.
    fn create_writer(&self, kind: ObjectKind) -> Result<Box<dyn ObjectWriter>>;

    /// Whether this storage keeps blobs in a local cache
    /// ([`Storage::keep_blob`]): a backup then takes the bases of deltas
    /// only from there and never downloads them.
    fn keeps_blobs(&self) -> bool {
        false
    }

    /// The sealed bytes of a blob kept by [`Storage::keep_blob`], if they
    /// are `length` bytes long (the index says how long the blob is), not
    /// verified: the caller opens them with the key and checks the id.
    fn kept_blob(&self, _id: &Id, _length: u32) -> Option<Vec<u8>> {
        None
    }

    /// Keep a data blob's sealed bytes locally, as a base for the next
    /// backup's deltas. Failures cost only that saving.
    fn keep_blob(&self, _id: &Id, _sealed: &[u8]) {}

    /// Forget a kept blob that failed to verify.
    fn drop_kept_blob(&self, _id: &Id) {}

    /// After a backup of the series `series` (a short name: host and
    /// sources), the blobs its next backup wants: kept blobs that neither
    /// this series nor another one wants are deleted.
    fn keep_only(&self, _series: &str, _ids: &[Id]) {}

    /// [`Storage::read_range`] of an object holding repository metadata
    /// (a pack of trees) that most commands read again: a caching storage
    /// keeps a whole copy of the object.
    fn read_metadata_range(
        &self,
        kind: ObjectKind,
        name: &str,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>> {
        self.read_range(kind, name, offset, length)
    }

    /// [`Storage::create_writer`] for an object holding repository metadata
    /// (a pack of trees): a caching storage keeps a copy as it is written.
    fn create_metadata_writer(&self, kind: ObjectKind) -> Result<Box<dyn ObjectWriter>> {
        self.create_writer(kind)
    }

    /// Temporary files of writes that never finished (a killed process)
    /// and were last changed more than `older_than` ago, named by their
    /// path in the repository; with `remove`, they are deleted. Callers
    /// choose an age no live writer can reach (the lock staleness limit).
    /// Storage whose writes leave nothing behind (S3 uploads are atomic)
    /// returns an empty list: the default. Wrappers must forward it.
    fn stale_temporaries(
        &self,
        older_than: std::time::Duration,
        remove: bool,
    ) -> Result<Vec<ObjectInfo>> {
        let _ = (older_than, remove);
        Ok(Vec::new())
    }
}

/// An object being written piece by piece; see [`Storage::create_writer`].
pub trait ObjectWriter: Send {
    /// Append bytes. May buffer; errors may also surface only at `finish`.
    fn write_all(&mut self, data: &[u8]) -> Result<()>;
    /// Make the object durable and visible under `name`.
    fn finish(self: Box<Self>, name: &str) -> Result<()>;
}

/// A writer that collects bytes in memory and hands them over, without a
/// copy, to a callback that stores them, for backends where an object is
/// uploaded in one piece.
pub struct BufferWriter<F: FnOnce(&str, Vec<u8>) -> Result<()> + Send> {
    data: Vec<u8>,
    store: F,
}

impl<F: FnOnce(&str, Vec<u8>) -> Result<()> + Send> BufferWriter<F> {
    pub fn new(store: F) -> Self {
        BufferWriter {
            data: Vec::new(),
            store,
        }
    }
}

impl<F: FnOnce(&str, Vec<u8>) -> Result<()> + Send> ObjectWriter for BufferWriter<F> {
    fn write_all(&mut self, data: &[u8]) -> Result<()> {
        self.data.extend_from_slice(data);
        Ok(())
    }

    fn finish(self: Box<Self>, name: &str) -> Result<()> {
        (self.store)(name, self.data)
    }
}

/// Check a ranged read's result length, the shared rule of `read_range`.
pub(crate) fn check_range(got: usize, name: &str, offset: u64, length: u64) -> Result<()> {
    if got as u64 != length {
        return Err(crate::error::Error::corrupted(format!(
            "object {name} is too short: wanted {length} bytes at offset {offset}, got {got}"
        )));
    }
    Ok(())
}

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
