//! Opening a repository: keys, config, index, and typed access to objects.

mod index;
pub mod lock;
mod reader;
mod trees;
pub use trees::TreeBatch;

pub use index::{BlobLocation, Index};
pub use lock::{FoundLock, LockGuard, LockInfo, LockKind, LockTiming};
pub use reader::FileReader;

use std::sync::{Arc, RwLock, RwLockReadGuard};

use crate::crypto::{KdfParams, MasterKey};
use crate::error::{Error, ErrorKind, Result};
use crate::format::condemned::Condemned;
use crate::format::config::Config;
use crate::format::index::IndexFile;
use crate::format::key::KeyFile;
use crate::format::pack::BlobKind;
use crate::format::snapshot::Snapshot;
use crate::format::tree::Tree;
use crate::format::{ad, decode_payload_sized, from_cbor, open_object, seal_object, VERSION};
use crate::id::Id;
use crate::storage::{ObjectKind, Storage};

/// Snapshots that loaded (oldest first), and the names and errors of those
/// that did not.
pub type SnapshotList = (Vec<(Id, Snapshot)>, Vec<(String, Error)>);

/// An open repository: the storage, the master key and the config.
/// The index is loaded on demand with [`Repository::load_index`].
pub struct Repository {
    storage: Arc<dyn Storage>,
    key: MasterKey,
    /// Name of the key file the password opened.
    key_name: String,
    config: Config,
    index: RwLock<Index>,
    lock_timing: LockTiming,
}

thread_local! {
    /// How deep in a chain of deltas this thread is decoding: a hostile
    /// repository could make one go round in circles or very deep.
    static DELTA_DEPTH: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    /// Set while this thread reads the base of a new delta from storage
    /// that keeps blobs: only kept blobs may be used, nothing downloaded.
    static KEPT_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl Repository {
    /// Create a new repository in empty storage.
    pub fn init(storage: Arc<dyn Storage>, password: &[u8], kdf: KdfParams) -> Result<Repository> {
        Repository::init_with(storage, password, kdf, Config::new())
    }

    /// Create a new repository with a chosen config (compression level,
    /// pack size, chunk sizes). The chunker seed should stay random.
    pub fn init_with(
        storage: Arc<dyn Storage>,
        password: &[u8],
        kdf: KdfParams,
        config: Config,
    ) -> Result<Repository> {
        if !(-7..=22).contains(&config.compression) {
            return Err(Error::invalid(format!(
                "compression level {} is outside -7..=22",
                config.compression
            )));
        }
        refuse_existing(storage.as_ref())?;
        storage.create()?;
        let key = MasterKey::random();
        let keyfile = KeyFile::wrap(&key, password, kdf, &crate::hostname(), &crate::username())?;
        let json = keyfile.to_json();
        let key_name = Id::of_object(&json).to_hex();
        storage.write(ObjectKind::Key, &key_name, &json)?;
        // The config is written last: its presence is what makes a repository.
        storage.write(
            ObjectKind::Config,
            "config",
            &seal_object(&key, ad::CONFIG, &config, 3),
        )?;
        Ok(Repository {
            storage,
            key,
            key_name,
            config,
            index: RwLock::default(),
            lock_timing: LockTiming::default(),
        })
    }

    /// Rewrite the config as format version 2, which allows delta blobs
    /// (docs/format.md): from then on, backups store deltas and strata from
    /// before version 2 refuse the repository. Takes an exclusive lock, so
    /// that no running command sees the change halfway. Returns the version
    /// the repository had; one already at version 2 is left as it is.
    pub fn upgrade(&self) -> Result<u32> {
        let _lock = self.lock(crate::repository::LockKind::Exclusive)?;
        let was = self.config.version;
        if was >= crate::format::VERSION_DELTAS {
            return Ok(was);
        }
        let config = Config {
            version: crate::format::VERSION_DELTAS,
            ..self.config.clone()
        };
        // One atomic write (every storage writes objects whole): a crash
        // leaves the old config or the new one.
        self.storage.write(
            ObjectKind::Config,
            "config",
            &seal_object(&self.key, ad::CONFIG, &config, 3),
        )?;
        Ok(was)
    }

    /// Whether `storage` holds a repository, without a password: an error
    /// of kind `RepositoryNotFound` if it holds nothing, `Corrupted` if it
    /// holds a repository's objects but no config.
    pub fn ensure_exists(storage: &dyn Storage) -> Result<()> {
        if !storage.list(ObjectKind::Config)?.is_empty() {
            return Ok(());
        }
        match refuse_existing(storage) {
            Ok(()) => Err(Error::new(
                ErrorKind::RepositoryNotFound,
                format!(
                    "there is no repository at {} (create one with `strata init`)",
                    storage.location()
                ),
            )),
            Err(e) => Err(Error::corrupted(format!(
                "{e}. The repository cannot be opened without it"
            ))),
        }
    }

    /// Open an existing repository with a password.
    pub fn open(storage: Arc<dyn Storage>, password: &[u8]) -> Result<Repository> {
        Repository::ensure_exists(storage.as_ref())?;
        let sealed = storage.read(ObjectKind::Config, "config")?;
        let (key, config, key_name) = unwrap_any_key(storage.as_ref(), password, &sealed)?;
        if !(VERSION..=crate::format::VERSION_DELTAS).contains(&config.version) {
            return Err(Error::new(
                ErrorKind::UnsupportedVersion,
                format!(
                    "repository format version {} is not supported by this strata (it knows {VERSION} and {}); use a newer strata",
                    config.version,
                    crate::format::VERSION_DELTAS
                ),
            ));
        }
        Ok(Repository {
            storage,
            key,
            key_name,
            config,
            index: RwLock::default(),
            lock_timing: LockTiming::default(),
        })
    }

    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    pub fn key(&self) -> &MasterKey {
        &self.key
    }

    /// Whether the repository's format allows delta blobs (version 2).
    pub fn deltas(&self) -> bool {
        self.config.version >= crate::format::VERSION_DELTAS
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Take a lock, held (and refreshed) until the guard is dropped.
    pub fn lock(&self, kind: LockKind) -> Result<LockGuard> {
        let guard = lock::acquire(&self.storage, &self.key, kind, self.lock_timing)?;
        self.check_config_version()?;
        Ok(guard)
    }

    /// The config's version is still the one read at open: `upgrade`
    /// (which holds an exclusive lock) may have changed it between this
    /// process's open and its lock, and a command working from the old
    /// version would misread what the new one allows.
    fn check_config_version(&self) -> Result<()> {
        let sealed = self.storage.read(ObjectKind::Config, "config")?;
        let now: Config = open_object(&self.key, ad::CONFIG, &sealed, "config")?;
        if now.version != self.config.version {
            return Err(Error::invalid(format!(
                "the repository was upgraded from format version {} to {} after this command opened it; run the command again",
                self.config.version, now.version
            )));
        }
        Ok(())
    }

    /// A shared lock for a command that only reads (restore, check). On
    /// storage that cannot be written (a read-only mount, an archive made
    /// read-only) the command goes on without one, with a warning: reading
    /// is still exact, but a prune running at the same time is not kept
    /// from deleting what it reads.
    pub fn read_lock(&self) -> Result<Option<LockGuard>> {
        match self.lock(LockKind::Shared) {
            Ok(guard) => Ok(Some(guard)),
            Err(e) if e.is_read_only() => {
                tracing::warn!(
                    "cannot take a lock ({e}): going on without one, as for a read-only repository; make sure no prune runs meanwhile"
                );
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Change how often locks are refreshed and when they are stale
    /// (tests use short times; the defaults suit real use).
    pub fn set_lock_timing(&mut self, timing: LockTiming) {
        self.lock_timing = timing;
    }

    pub fn lock_timing(&self) -> LockTiming {
        self.lock_timing
    }

    /// Remove stale locks, or all locks.
    pub fn unlock(&self, all: bool) -> Result<Vec<String>> {
        lock::remove_stale(&self.storage, &self.key, &self.lock_timing, all)
    }

    /// Every lock held now; stale ones are removed on the way.
    pub fn live_locks(&self) -> Result<Vec<FoundLock>> {
        lock::live_locks(&self.storage, &self.key, &self.lock_timing)
    }

    /// Read every index file into memory, and the condemned lists of prunes
    /// as a fallback for reads (see [`Index::get`]). Damaged index files are
    /// errors.
    pub fn load_index(&self) -> Result<()> {
        // A prune may replace index files between our list and read: the
        // new file is written before the old go, so listing again finds it.
        let mut tries = 0;
        let index = loop {
            match self.read_all_index_files() {
                Err(e) if e.kind() == ErrorKind::Missing && tries < 5 => tries += 1,
                other => break other?,
            }
        };
        *self.index.write().unwrap_or_else(|p| p.into_inner()) = index;
        Ok(())
    }

    fn read_all_index_files(&self) -> Result<Index> {
        let mut index = Index::default();
        for info in self.storage.list(ObjectKind::Index)? {
            let file = self.read_index_file(&info.name)?;
            index.add_file(&file);
        }
        self.add_condemned(&mut index)?;
        Ok(index)
    }

    /// Add the packs prunes condemned to `index` as a fallback for reads.
    pub fn add_condemned(&self, index: &mut Index) -> Result<()> {
        for (_, list) in self.condemned_lists()? {
            for pack in &list.packs {
                for blob in &pack.blobs {
                    index.add_fallback(pack.id, blob);
                }
            }
        }
        Ok(())
    }

    /// The condemned lists of prunes, waiting for their sweep. A damaged
    /// list is skipped with a warning: its packs then look unindexed, and
    /// the next prune condemns them again.
    pub fn condemned_lists(&self) -> Result<Vec<(String, Condemned)>> {
        for _ in 0..5 {
            if let Some(lists) = self.read_condemned_lists()? {
                return Ok(lists);
            }
        }
        Err(Error::new(
            ErrorKind::Locked,
            "condemned lists keep changing while being read; try again",
        ))
    }

    /// `None` if a list vanished while being read (a draft being completed:
    /// its replacement is written first, so listing again finds it).
    fn read_condemned_lists(&self) -> Result<Option<Vec<(String, Condemned)>>> {
        let mut out = Vec::new();
        for info in self.storage.list(ObjectKind::Condemned)? {
            let sealed = match self.storage.read(ObjectKind::Condemned, &info.name) {
                Ok(s) => s,
                Err(e) if e.kind() == ErrorKind::Missing => return Ok(None),
                Err(e) => return Err(e),
            };
            let list = check_name(&sealed, &info.name, "condemned list").and_then(|()| {
                open_object(
                    &self.key,
                    ad::CONDEMNED,
                    &sealed,
                    &format!("condemned list {}", info.name),
                )
            });
            match list {
                Ok(list) => out.push((info.name, list)),
                Err(e) if e.kind() == ErrorKind::Io => return Err(e),
                Err(e) => tracing::warn!("skipping {e}"),
            }
        }
        Ok(Some(out))
    }

    pub fn read_index_file(&self, name: &str) -> Result<IndexFile> {
        let sealed = self.storage.read(ObjectKind::Index, name)?;
        check_name(&sealed, name, "index")?;
        open_object(&self.key, ad::INDEX, &sealed, &format!("index {name}"))
    }

    /// Replace the in-memory index (used by check, which builds its own).
    pub fn replace_index(&self, index: Index) {
        *self.index.write().unwrap_or_else(|p| p.into_inner()) = index;
    }

    pub fn index(&self) -> RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Add entries of freshly written index files to the in-memory index.
    pub fn extend_index(&self, file: &IndexFile) {
        self.index
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .add_file(file);
    }

    /// Write an index file; returns its id.
    pub fn save_index(&self, file: &IndexFile) -> Result<Id> {
        self.save_object(ObjectKind::Index, ad::INDEX, file)
    }

    fn save_object<T: serde::Serialize>(
        &self,
        kind: ObjectKind,
        ad: &[u8],
        value: &T,
    ) -> Result<Id> {
        let sealed = seal_object(&self.key, ad, value, self.config.compression);
        let id = Id::of_object(&sealed);
        self.storage.write(kind, &id.to_hex(), &sealed)?;
        Ok(id)
    }

    pub fn save_snapshot(&self, snap: &Snapshot) -> Result<Id> {
        self.save_object(ObjectKind::Snapshot, ad::SNAPSHOT, snap)
    }

    pub fn load_snapshot(&self, id: &Id) -> Result<Snapshot> {
        let name = id.to_hex();
        let sealed = self.storage.read(ObjectKind::Snapshot, &name)?;
        check_name(&sealed, &name, "snapshot")?;
        open_object(
            &self.key,
            ad::SNAPSHOT,
            &sealed,
            &format!("snapshot {}", id.short()),
        )
    }

    /// All snapshots, oldest first. Unreadable ones are returned as errors
    /// in the second list so callers can report them and go on.
    pub fn snapshots(&self) -> Result<SnapshotList> {
        let mut good = Vec::new();
        let mut bad = Vec::new();
        for info in self.storage.list(ObjectKind::Snapshot)? {
            let loaded = Id::from_hex(&info.name).and_then(|id| Ok((id, self.load_snapshot(&id)?)));
            match loaded {
                Ok(s) => good.push(s),
                // forgotten since it was listed
                Err(e) if e.kind() == ErrorKind::Missing => {}
                Err(e) => bad.push((info.name.clone(), e)),
            }
        }
        good.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
        Ok((good, bad))
    }

    /// Read, decrypt, decompress and verify one blob. A copy that fails to
    /// verify is passed over for the next one the index knows, as is one in
    /// a pack that vanished (a prune deleted it after storing the blob
    /// elsewhere, docs/design.md "Prune": the index is then loaded again).
    pub fn read_blob(&self, id: &Id) -> Result<Vec<u8>> {
        self.read_blob_avoiding(id, None)
    }

    /// The plaintext of a blob a backup would store a delta against, or
    /// `None` when it cannot be read (the chunk is then stored whole).
    /// On storage that keeps blobs locally (a remote repository's cache),
    /// only kept blobs are read: bases are never downloaded.
    pub fn read_base(&self, id: &Id) -> Option<Vec<u8>> {
        if !self.storage.keeps_blobs() {
            return self.read_blob(id).ok();
        }
        KEPT_ONLY.with(|k| k.set(true));
        let plain = self.read_blob(id).ok();
        KEPT_ONLY.with(|k| k.set(false));
        plain
    }

    /// A data blob from the blobs the storage keeps locally, verified like
    /// any blob read; a copy that fails is forgotten.
    fn read_kept(&self, id: &Id) -> Option<Vec<u8>> {
        let (raw_length, length) = self
            .index()
            .get(id)
            .filter(|l| l.kind == BlobKind::Data)
            .map(|l| (l.raw_length, l.length))?;
        let sealed = self.storage.kept_blob(id, length)?;
        match self.open_blob(id, BlobKind::Data, &sealed, raw_length) {
            Ok(plain) => Some(plain),
            // Not a base that is not kept (the caller reads it elsewhere).
            Err(e) if e.kind() == ErrorKind::Corrupted => {
                self.storage.drop_kept_blob(id);
                None
            }
            Err(_) => None,
        }
    }

    /// [`Repository::read_blob`] from any copy but the one in `avoid`, a
    /// pack whose copy the caller already found damaged.
    pub fn read_blob_avoiding(&self, id: &Id, avoid: Option<&Id>) -> Result<Vec<u8>> {
        let mut vanished = false;
        match self.read_any_copy(id, avoid, &mut vanished) {
            // Only a pack that vanished under us says the index is stale;
            // damage does not (reloading for each damaged blob of a pack
            // would read every index file thousands of times).
            Err(e) if e.kind() == ErrorKind::Missing && vanished => {
                self.load_index()?;
                self.read_any_copy(id, avoid, &mut vanished)
            }
            other => other,
        }
    }

    /// Try the copies in turn; `vanished` is set when a pack the index
    /// names was missing from storage.
    fn read_any_copy(&self, id: &Id, avoid: Option<&Id>, vanished: &mut bool) -> Result<Vec<u8>> {
        if self.storage.keeps_blobs() {
            if let Some(plain) = self.read_kept(id) {
                return Ok(plain);
            }
            if KEPT_ONLY.with(|k| k.get()) {
                return Err(Error::invalid(format!("blob {id} is not kept locally")));
            }
        }
        let copies = self.index().locations(id);
        let mut failed: Option<Error> = None;
        let mut others = 0;
        for loc in copies.iter().filter(|l| Some(&l.pack) != avoid) {
            let read = self.read_copy(id, loc);
            *vanished |= read.as_ref().is_err_and(|e| e.kind() == ErrorKind::Missing);
            match read {
                Ok(plain) => {
                    if let Some(e) = &failed {
                        tracing::warn!(
                            "{e}; read an intact copy of blob {id} from pack {}",
                            loc.pack
                        );
                    }
                    return Ok(plain);
                }
                Err(e) if e.is_damage() => {
                    match &failed {
                        // Damage says more than a vanished pack.
                        Some(f) if f.kind() == ErrorKind::Corrupted => others += 1,
                        Some(_) => {
                            others += 1;
                            failed = Some(e);
                        }
                        None => failed = Some(e),
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(match failed {
            Some(e) if others > 0 => e.context(format!("all {} copies failed", others + 1)),
            Some(e) => e,
            None => Error::missing(format!("blob {id} is not in the index")),
        })
    }

    /// Read one copy of a blob.
    fn read_copy(&self, id: &Id, loc: &BlobLocation) -> Result<Vec<u8>> {
        let (pack, offset, length) = (
            loc.pack.to_hex(),
            u64::from(loc.offset),
            u64::from(loc.length),
        );
        let open = |sealed: &[u8]| {
            self.open_blob(id, loc.kind, sealed, loc.raw_length)
                .map_err(|e| e.context(format!("pack {}", loc.pack)))
        };
        match loc.kind {
            BlobKind::Tree => self.read_tree_range(&pack, offset, length, open),
            BlobKind::Data => open(&self.storage.read_range(
                ObjectKind::Pack,
                &pack,
                offset,
                length,
            )?),
        }
    }

    /// Read `length` bytes at `offset` of a pack of trees, the way the
    /// storage reads metadata (from its cache, if it has one), and `open`
    /// them. Bytes that fail to open may be a cached copy damaged after it
    /// was checked: they are read once more from the storage itself.
    pub(crate) fn read_tree_range<T>(
        &self,
        pack: &str,
        offset: u64,
        length: u64,
        open: impl Fn(&[u8]) -> Result<T>,
    ) -> Result<T> {
        let bytes = self
            .storage
            .read_metadata_range(ObjectKind::Pack, pack, offset, length)?;
        match open(&bytes) {
            Err(e) if e.kind() == ErrorKind::Corrupted => open(&self.storage.read_range(
                ObjectKind::Pack,
                pack,
                offset,
                length,
            )?),
            other => other,
        }
    }

    /// Read and decrypt the header of the pack `name`, `size` bytes long.
    pub fn read_pack_header(
        &self,
        name: &str,
        size: u64,
    ) -> Result<Vec<crate::format::pack::PackEntry>> {
        use crate::format::pack;
        if size < 4 {
            return Err(Error::corrupted(format!(
                "pack {name} is only {size} bytes"
            )));
        }
        let tail = self
            .storage
            .read_range(ObjectKind::Pack, name, size - 4, 4)?;
        let header_len = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]);
        let (start, len) = pack::header_range(size, header_len)?;
        let sealed = self
            .storage
            .read_range(ObjectKind::Pack, name, start, len)?;
        pack::parse_header_of(&self.key, &sealed, size, self.deltas())
    }

    /// Decrypt and verify a sealed blob read from a pack.
    /// `raw_length` is the plaintext size the index or pack header gives.
    pub fn open_blob(
        &self,
        id: &Id,
        kind: BlobKind,
        sealed: &[u8],
        raw_length: u32,
    ) -> Result<Vec<u8>> {
        let plain = self
            .key
            .open(kind.ad(), sealed)
            .and_then(|p| self.decode_blob(kind, p, raw_length))
            .map_err(|e| e.context(format!("blob {id}")))?;
        if self.key.blob_id(&plain) != *id {
            return Err(Error::corrupted(format!("blob {id} does not match its id")));
        }
        Ok(plain)
    }

    /// The node at `path` (components separated by `/`, as raw bytes) under
    /// the tree `root`; `None` for an empty path (the root itself).
    pub fn find_node(&self, root: Id, path: &[u8]) -> Result<Option<crate::format::tree::Node>> {
        let shown = crate::format::quote_bytes(path);
        match self.lookup(root, path)? {
            Ok(found) => Ok(found),
            Err(NotThere::AtTop(names)) => Err(Error::missing(format!(
                "{shown} is not in the snapshot; its top level holds {}",
                names.join(", ")
            ))),
            Err(NotThere::Below) => Err(Error::missing(format!("{shown} is not in the snapshot"))),
            Err(NotThere::NotADirectory) => Err(Error::invalid(format!(
                "{shown}: a component on the way is not a directory"
            ))),
        }
    }

    /// The node at `path` under `root` if there is one there; errors are
    /// only failures to read.
    pub fn node_if_present(
        &self,
        root: Id,
        path: &[u8],
    ) -> Result<Option<crate::format::tree::Node>> {
        Ok(self.lookup(root, path)?.ok().flatten())
    }

    /// Walk `path` from the tree `root`: the node (`None` for the root
    /// itself), or why there is none. Errors are only failures to read.
    fn lookup(
        &self,
        root: Id,
        path: &[u8],
    ) -> Result<std::result::Result<Option<crate::format::tree::Node>, NotThere>> {
        let parts: Vec<&[u8]> = path
            .split(|&b| b == b'/')
            .filter(|p| !p.is_empty())
            .collect();
        let mut tree = root;
        let mut found = None;
        for (i, part) in parts.iter().enumerate() {
            let nodes = self.load_tree(&tree)?.nodes;
            let Some(pos) = nodes.iter().position(|n| n.name == *part) else {
                return Ok(Err(if i == 0 {
                    NotThere::AtTop(
                        nodes
                            .iter()
                            .map(|n| {
                                crate::format::quote_bytes(&[b"/", n.name.as_slice()].concat())
                            })
                            .collect(),
                    )
                } else {
                    NotThere::Below
                }));
            };
            let node = nodes.into_iter().nth(pos);
            if i + 1 < parts.len() {
                match node.as_ref().and_then(|n| n.subtree) {
                    Some(sub) => tree = sub,
                    None => return Ok(Err(NotThere::NotADirectory)),
                }
            }
            found = node;
        }
        Ok(Ok(found))
    }

    /// The node at `path` in `snap`, given as backed up (`/home/me/src/x`)
    /// or as stored (`/src/x`); `None` for the root. A path whose first
    /// component is not at the snapshot's top is refused with a list of
    /// what is there.
    pub fn find_in_snapshot(
        &self,
        snap: &crate::format::snapshot::Snapshot,
        path: &[u8],
    ) -> Result<Option<crate::format::tree::Node>> {
        let stored = self.resolve_in_snapshot(snap, path)?;
        self.find_node(snap.tree, &stored)
    }

    /// The stored path that `path` names in `snap`. A path may read both
    /// as stored (`/root/x` in a backup of `/`, as `ls` prints it) and as
    /// backed up (the real `/root/x`): the reading that exists is taken,
    /// and if both exist the path is refused as ambiguous, naming both.
    pub fn resolve_in_snapshot(
        &self,
        snap: &crate::format::snapshot::Snapshot,
        path: &[u8],
    ) -> Result<Vec<u8>> {
        let preferred = snap.stored_path(path);
        let Some(original) = snap.original_to_stored(path).filter(|o| *o != preferred) else {
            return Ok(preferred);
        };
        let exists = |p: &[u8]| self.lookup(snap.tree, p).map(|found| found.is_ok());
        match (exists(&preferred)?, exists(&original)?) {
            (true, true) => Err(Error::invalid(format!(
                "{} is ambiguous in this snapshot: it is {} as stored and {} as backed up; give the stored path you mean (as `strata ls` prints it)",
                crate::format::quote_bytes(path),
                crate::format::quote_bytes(&preferred),
                crate::format::quote_bytes(&original)
            ))),
            (false, true) => Ok(original),
            _ => Ok(preferred),
        }
    }

    /// A blob's plaintext from its payload: decoded, or for a delta (format
    /// version 2 only; version 1 takes the encoding for damage), rebuilt
    /// from its base, read (and verified) first.
    fn decode_blob(&self, kind: BlobKind, payload: Vec<u8>, raw_length: u32) -> Result<Vec<u8>> {
        if self.is_delta(kind, &payload) {
            return self.decode_delta(&payload, raw_length);
        }
        decode_payload_sized(payload, raw_length as usize)
    }

    fn is_delta(&self, kind: BlobKind, payload: &[u8]) -> bool {
        self.deltas()
            && kind == BlobKind::Data
            && payload.first() == Some(&crate::format::delta::DELTA)
    }

    fn decode_delta(&self, payload: &[u8], raw_length: u32) -> Result<Vec<u8>> {
        let base = crate::format::delta::delta_base(payload)
            .ok_or_else(|| Error::corrupted("delta payload is too short"))?;
        let depth = DELTA_DEPTH.with(|d| {
            d.set(d.get() + 1);
            d.get()
        });
        let base_plain = if depth > crate::format::delta::MAX_CHAIN {
            Err(Error::corrupted(format!(
                "a chain of deltas is longer than {} blobs",
                crate::format::delta::MAX_CHAIN
            )))
        } else {
            self.read_blob(&base)
        };
        DELTA_DEPTH.with(|d| d.set(d.get() - 1));
        let base_plain = base_plain.map_err(|e| e.context(format!("base {base}")))?;
        crate::format::delta::decode_delta(payload, &base_plain, raw_length as usize)
    }

    /// Like [`Repository::open_blob`] without allocating: decrypts `sealed`
    /// in place and decodes into the reusable `out`.
    pub fn open_blob_into(
        &self,
        id: &Id,
        kind: BlobKind,
        sealed: &mut [u8],
        raw_length: u32,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let payload = self
            .key
            .open_in_place(kind.ad(), sealed)
            .map_err(|e| e.context(format!("blob {id}")))?;
        if self.is_delta(kind, payload) {
            *out = self
                .decode_delta(payload, raw_length)
                .map_err(|e| e.context(format!("blob {id}")))?;
        } else {
            crate::format::decode_payload_into(payload, raw_length as usize, out)
                .map_err(|e| e.context(format!("blob {id}")))?;
        }
        if self.key.blob_id(out) != *id {
            return Err(Error::corrupted(format!("blob {id} does not match its id")));
        }
        Ok(())
    }

    pub fn load_tree(&self, id: &Id) -> Result<Tree> {
        let data = self.read_blob(id)?;
        from_cbor(&data, &format!("tree {id}"))
    }

    /// The name of the key file this repository was opened with.
    pub fn key_name(&self) -> &str {
        &self.key_name
    }

    /// Every key file, by name. Damaged ones are errors in the list.
    pub fn keys(&self) -> Result<Vec<(String, Result<KeyFile>)>> {
        let mut out = Vec::new();
        for info in self.storage.list(ObjectKind::Key)? {
            let key = self
                .storage
                .read(ObjectKind::Key, &info.name)
                .and_then(|d| KeyFile::from_json(&d));
            out.push((info.name, key));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Remove a key file (a unique prefix of its name is enough). The key in
    /// use and the last key cannot be removed: the repository would be lost.
    pub fn remove_key(&self, prefix: &str) -> Result<String> {
        let names: Vec<String> = self.keys()?.into_iter().map(|(n, _)| n).collect();
        let hits: Vec<&String> = names.iter().filter(|n| n.starts_with(prefix)).collect();
        let name = match hits.as_slice() {
            [one] => (*one).clone(),
            [] => {
                return Err(Error::invalid(format!(
                    "no key has a name starting with {prefix}"
                )))
            }
            _ => {
                return Err(Error::invalid(format!(
                    "several keys start with {prefix}; give more digits"
                )))
            }
        };
        if name == self.key_name {
            return Err(Error::invalid("refusing to remove the key in use: open the repository with another password to remove this one"));
        }
        if names.len() < 2 {
            return Err(Error::invalid(
                "refusing to remove the last key: the repository could never be opened again",
            ));
        }
        self.storage.remove(ObjectKind::Key, &name)?;
        Ok(name)
    }

    /// Replace the key in use by one for a new password: the new key file
    /// is written first, so a failure leaves the old password working.
    pub fn change_password(&self, password: &[u8], kdf: KdfParams) -> Result<Id> {
        let id = self.add_key(password, kdf)?;
        self.storage.remove(ObjectKind::Key, &self.key_name)?;
        Ok(id)
    }

    /// Add another key (password) to the repository.
    pub fn add_key(&self, password: &[u8], kdf: KdfParams) -> Result<Id> {
        let keyfile = KeyFile::wrap(
            &self.key,
            password,
            kdf,
            &crate::hostname(),
            &crate::username(),
        )?;
        let json = keyfile.to_json();
        let id = Id::of_object(&json);
        self.storage.write(ObjectKind::Key, &id.to_hex(), &json)?;
        Ok(id)
    }
}

/// Why [`Repository::find_node`] found nothing: not a failure to read.
enum NotThere {
    /// The first component is not at the top; these names are.
    AtTop(Vec<String>),
    Below,
    NotADirectory,
}

/// `init` must never write a new key beside old data: a repository whose
/// config is lost would get a second master key, and every old snapshot
/// and index would then fail to open. Any repository object refuses it.
fn refuse_existing(storage: &dyn Storage) -> Result<()> {
    if !storage.list(ObjectKind::Config)?.is_empty() {
        return Err(Error::new(
            ErrorKind::RepositoryExists,
            format!("a repository already exists at {}", storage.location()),
        ));
    }
    let mut found = Vec::new();
    for kind in [
        ObjectKind::Key,
        ObjectKind::Pack,
        ObjectKind::Index,
        ObjectKind::Snapshot,
        ObjectKind::Condemned,
    ] {
        let n = storage.list(kind)?.len();
        if n > 0 {
            found.push(format!("{n} in {}/", kind.dir()));
        }
    }
    if found.is_empty() {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::RepositoryExists,
        format!(
            "{} holds the objects of a repository ({}) but no config file: its config was lost or damaged. \
             Refusing to create a new repository there, which would make the old backups unreadable. \
             Put back `config` from a copy of this repository (any copy made with the same keys), \
             or choose an empty location for a new repository",
            storage.location(),
            found.join(", ")
        ),
    ))
}

/// A restic key file: JSON with an scrypt KDF and its parameters. The two
/// layouts are alike (keys/, data/, index/, snapshots/, config), so this
/// is how a restic repository is told apart.
fn is_restic_key(data: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(data).is_ok_and(|v| {
        v.get("kdf").and_then(|k| k.as_str()) == Some("scrypt") && v.get("N").is_some()
    })
}

/// Objects are named by the hash of their bytes: a mismatch means damage
/// or an object put in another's place.
fn check_name(sealed: &[u8], name: &str, what: &str) -> Result<()> {
    if Id::of_object(sealed).to_hex() != name {
        return Err(Error::corrupted(format!(
            "{what} {name}: contents do not match the name (damaged or replaced)"
        )));
    }
    Ok(())
}

/// Find a key file that opens with `password` and whose master key opens
/// the config. A damaged key file, or one left by an interrupted `init`
/// that wraps another master key, is skipped rather than fatal.
fn unwrap_any_key(
    storage: &dyn Storage,
    password: &[u8],
    config: &[u8],
) -> Result<(MasterKey, Config, String)> {
    let mut tried = 0;
    let mut last_error = None;
    for info in storage.list(ObjectKind::Key)? {
        let data = storage.read(ObjectKind::Key, &info.name);
        if data.as_deref().is_ok_and(is_restic_key) {
            return Err(Error::new(
                ErrorKind::UnsupportedVersion,
                format!(
                    "{} is a restic repository, not a strata one: read it with restic",
                    storage.location()
                ),
            ));
        }
        let key = data
            .and_then(|data| KeyFile::from_json(&data))
            .and_then(|k| k.unwrap_key(password));
        tried += 1;
        match key.and_then(|key| {
            Ok((
                key.clone(),
                open_object(&key, ad::CONFIG, config, "config")?,
                info.name.clone(),
            ))
        }) {
            Ok(found) => return Ok(found),
            Err(e) if e.kind() == ErrorKind::WrongPassword => continue,
            Err(e) => {
                tracing::warn!("key file {}: {e}; trying the others", info.name);
                last_error = Some(e);
            }
        }
    }
    if let Some(e) = last_error {
        return Err(e);
    }
    if tried == 0 {
        return Err(Error::corrupted(format!(
            "the repository at {} has no key files (keys/ is empty), so no password can open it: \
             it is damaged. Put back the key files from a copy of this repository",
            storage.location()
        )));
    }
    Err(Error::new(
        ErrorKind::WrongPassword,
        format!(
            "wrong password: {} of {} opens with it",
            if tried == 1 {
                "no key".to_string()
            } else {
                format!("none of the {tried} keys")
            },
            storage.location()
        ),
    ))
}

/// Split blobs sorted by offset in one pack, given as `(offset, length)`,
/// into runs read with one request each: a blob joins the run before it
/// when it starts at most `max_gap` bytes after the run's end and the run
/// stays within `max_run` bytes. Each run is `(first..last+1, start, end)`.
pub(crate) fn merge_runs(
    spans: impl IntoIterator<Item = (u64, u64)>,
    max_gap: u64,
    max_run: u64,
) -> Vec<(std::ops::Range<usize>, u64, u64)> {
    let mut runs: Vec<(std::ops::Range<usize>, u64, u64)> = Vec::new();
    for (i, (offset, length)) in spans.into_iter().enumerate() {
        let end = offset + length;
        match runs.last_mut() {
            Some((range, start, run_end))
                if offset <= *run_end + max_gap && end - *start <= max_run =>
            {
                range.end = i + 1;
                *run_end = (*run_end).max(end);
            }
            _ => runs.push((i..i + 1, offset, end)),
        }
    }
    runs
}
