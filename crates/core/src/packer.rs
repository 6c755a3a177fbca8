//! Writing blobs: deduplicate, compress, seal, gather into packs, upload.
//!
//! Data and tree blobs go to separate packs so that metadata can later be
//! cached or read without touching file contents. A pack is written as soon
//! as it reaches the configured size; its index entries are kept until the
//! caller writes an index file, which must happen after every pack it lists
//! is stored (write order: packs, index, snapshot).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{Error, Result};
use std::cell::RefCell;

use crate::crypto::NONCE_LEN;
use crate::format::encode_payload_into;

thread_local! {
    /// Per-thread buffer for sealing a blob, reused so large chunks do not
    /// cost fresh allocations (and page faults) each time.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}
use crate::format::index::{IndexBlob, IndexFile, IndexPack};
use crate::format::pack::{self, BlobKind, PackEntry};
use crate::id::Id;
use crate::repository::Repository;
use crate::storage::{ObjectKind, ObjectWriter};

/// A pack being written: streamed to storage as blobs arrive, hashed on
/// the way for its name.
#[derive(Default)]
struct OpenPack {
    writer: Option<Box<dyn ObjectWriter>>,
    hasher: blake3::Hasher,
    size: u64,
    entries: Vec<PackEntry>,
}

/// What saving one blob did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Saved {
    pub id: Id,
    /// False when the blob was already in the repository (deduplicated).
    pub added: bool,
    /// Bytes it takes in its pack (0 when deduplicated).
    pub stored: u64,
    /// Stored as a delta.
    pub delta: bool,
}

/// Saves blobs into a repository, shared by many threads.
///
/// Full packs are handed to finisher threads, which append the header and
/// make the pack durable (fsync and rename, or the upload of remote
/// storage), so the threads that read and compress never wait for that.
pub struct BlobSaver {
    repo: Arc<Repository>,
    /// Blobs added by this saver (the repository index holds the rest).
    seen: Mutex<HashSet<Id>>,
    /// Blobs the next backup will want as delta bases (chunks of streams
    /// and changed files, with their chains): what a local cache keeps.
    kept: Mutex<HashSet<Id>>,
    data: Mutex<OpenPack>,
    /// Deltas go to packs of their own: most of them die with the snapshot
    /// that made them, while whole chunks live on as bases, and a pack
    /// mixing the two would be repacked by every prune.
    deltas: Mutex<OpenPack>,
    tree: Mutex<OpenPack>,
    written: Arc<Mutex<Vec<IndexPack>>>,
    finishers: Mutex<Option<Finishers>>,
    failure: Arc<Mutex<Option<Error>>>,
}

struct Finishers {
    queue: crossbeam_channel::Sender<OpenPack>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// Packs being finished at once: fsyncs of one overlap the next one's data.
const FINISHERS: usize = 2;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl BlobSaver {
    pub fn new(repo: Arc<Repository>) -> BlobSaver {
        let written: Arc<Mutex<Vec<IndexPack>>> = Arc::default();
        let failure: Arc<Mutex<Option<Error>>> = Arc::default();
        let (queue, rx) = crossbeam_channel::bounded::<OpenPack>(FINISHERS);
        let threads = (0..FINISHERS)
            .map(|_| {
                let (rx, repo, written, failure) =
                    (rx.clone(), repo.clone(), written.clone(), failure.clone());
                std::thread::spawn(move || {
                    for open in rx {
                        match finish_pack(&repo, open) {
                            Ok(Some(pack)) => lock(&written).push(pack),
                            Ok(None) => {}
                            Err(e) => {
                                lock(&failure).get_or_insert(e);
                            }
                        }
                    }
                })
            })
            .collect();
        BlobSaver {
            repo,
            seen: Mutex::default(),
            kept: Mutex::default(),
            data: Mutex::default(),
            deltas: Mutex::default(),
            tree: Mutex::default(),
            written,
            finishers: Mutex::new(Some(Finishers { queue, threads })),
            failure,
        }
    }

    pub fn repo(&self) -> &Arc<Repository> {
        &self.repo
    }

    /// Note blobs the next backup will want as delta bases.
    pub fn note_kept(&self, ids: impl IntoIterator<Item = Id>) {
        lock(&self.kept).extend(ids);
    }

    /// The blobs noted by [`BlobSaver::note_kept`].
    pub fn kept(&self) -> Vec<Id> {
        lock(&self.kept).iter().copied().collect()
    }

    /// Whether a blob is already stored or being stored.
    pub fn known(&self, id: &Id) -> bool {
        self.repo.index().contains(id) || lock(&self.seen).contains(id)
    }

    /// Save a blob unless it is already present.
    pub fn save(&self, kind: BlobKind, plain: &[u8]) -> Result<Saved> {
        let id = self.repo.key().blob_id(plain);
        self.save_with_id(kind, id, plain)
    }

    pub fn save_with_id(&self, kind: BlobKind, id: Id, plain: &[u8]) -> Result<Saved> {
        self.save_whole(kind, id, plain, false)
    }

    /// Save a data chunk of content stored with deltas: like
    /// [`BlobSaver::save_with_id`], and kept by storage that keeps blobs
    /// locally, as a base for the next backup.
    pub fn save_kept(&self, id: Id, plain: &[u8]) -> Result<Saved> {
        self.save_whole(BlobKind::Data, id, plain, true)
    }

    fn save_whole(&self, kind: BlobKind, id: Id, plain: &[u8], keep: bool) -> Result<Saved> {
        if self.repo.index().contains(&id) || !lock(&self.seen).insert(id) {
            return Ok(Saved {
                id,
                added: false,
                stored: 0,
                delta: false,
            });
        }
        SCRATCH.with(|cell| {
            let sealed = &mut *cell.borrow_mut();
            sealed.clear();
            sealed.resize(NONCE_LEN, 0);
            encode_payload_into(plain, self.repo.config().compression, sealed);
            self.repo.key().seal_in_place(kind.ad(), sealed);
            let saved = self.append(kind, id, plain.len(), sealed)?;
            if keep {
                self.repo.storage().keep_blob(&id, sealed);
            }
            Ok(saved)
        })
    }

    /// Save a data blob as a delta against `base` (whose plaintext is
    /// `base_plain`) when the repository's format allows it and the delta
    /// is much smaller than the blob compressed alone; else as usual. The
    /// base must be listed by the index this saver's repository loaded (or
    /// written by this saver), like any blob a new snapshot references.
    pub fn save_delta(&self, plain: &[u8], base: Id, base_plain: &[u8]) -> Result<Saved> {
        let id = self.repo.key().blob_id(plain);
        let usable = self.repo.deltas() && base != id && self.known(&base);
        if !usable || self.repo.index().contains(&id) || lock(&self.seen).contains(&id) {
            return self.save_kept(id, plain);
        }
        let level = self.repo.config().compression;
        let delta = crate::format::delta::encode_delta(plain, &base, base_plain, level);
        let alone = crate::format::encode_payload(plain, level).len();
        match delta {
            // Worth a chain only when it saves most of the blob.
            Some(delta) if delta.len() * 4 < alone => {
                if !lock(&self.seen).insert(id) {
                    return Ok(Saved {
                        id,
                        added: false,
                        stored: 0,
                        delta: false,
                    });
                }
                let mut sealed = vec![0u8; NONCE_LEN];
                sealed.extend_from_slice(&delta);
                self.repo
                    .key()
                    .seal_in_place(BlobKind::Data.ad(), &mut sealed);
                let saved =
                    self.append_entry(BlobKind::Data, id, plain.len(), &sealed, Some(base))?;
                self.repo.storage().keep_blob(&id, &sealed);
                Ok(saved)
            }
            _ => self.save_kept(id, plain),
        }
    }

    /// Store another copy of a blob already sealed (by prune, moving blobs
    /// out of mostly unused packs), even though the index lists it.
    /// The caller has verified `sealed` against `id`.
    pub fn copy_sealed(
        &self,
        kind: BlobKind,
        id: Id,
        raw_length: u32,
        sealed: &[u8],
        base: Option<Id>,
    ) -> Result<Saved> {
        if !lock(&self.seen).insert(id) {
            return Ok(Saved {
                id,
                added: false,
                stored: 0,
                delta: false,
            });
        }
        self.append_entry(kind, id, raw_length as usize, sealed, base)
    }

    fn append(&self, kind: BlobKind, id: Id, raw_length: usize, sealed: &[u8]) -> Result<Saved> {
        self.append_entry(kind, id, raw_length, sealed, None)
    }

    fn append_entry(
        &self,
        kind: BlobKind,
        id: Id,
        raw_length: usize,
        sealed: &[u8],
        base: Option<Id>,
    ) -> Result<Saved> {
        let stored = sealed.len() as u64;
        let full = {
            let mut open = lock(self.open_pack(kind, base.is_some()));
            if open.writer.is_none() {
                let storage = self.repo.storage();
                open.writer = Some(match kind {
                    BlobKind::Data => storage.create_writer(ObjectKind::Pack)?,
                    BlobKind::Tree => storage.create_metadata_writer(ObjectKind::Pack)?,
                });
            }
            let entry = PackEntry {
                id,
                kind,
                offset: open.size as u32,
                length: sealed.len() as u32,
                raw_length: raw_length as u32,
                base,
            };
            if let Some(w) = open.writer.as_mut() {
                w.write_all(sealed)?;
            }
            open.hasher.update(sealed);
            open.size += stored;
            open.entries.push(entry);
            if open.size >= u64::from(self.repo.config().pack_size) {
                Some(std::mem::take(&mut *open))
            } else {
                None
            }
        };
        if let Some(full) = full {
            self.write_pack(full)?;
        }
        Ok(Saved {
            id,
            added: true,
            stored,
            delta: base.is_some(),
        })
    }

    fn open_pack(&self, kind: BlobKind, delta: bool) -> &Mutex<OpenPack> {
        match (kind, delta) {
            (BlobKind::Data, false) => &self.data,
            (BlobKind::Data, true) => &self.deltas,
            (BlobKind::Tree, _) => &self.tree,
        }
    }

    /// Append the header, name the pack by its hash and make it visible.
    /// Hand a full pack to the finishers; reports an earlier finisher failure.
    fn write_pack(&self, open: OpenPack) -> Result<()> {
        self.check_failure()?;
        let finishers = lock(&self.finishers);
        let queue = &finishers
            .as_ref()
            .ok_or_else(|| Error::invalid("blob saver already finished"))?
            .queue;
        queue
            .send(open)
            .map_err(|_| Error::invalid("pack finisher threads stopped"))
    }

    fn check_failure(&self) -> Result<()> {
        match lock(&self.failure).take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Write the partly filled packs and wait until every pack is stored.
    /// The saver accepts no more blobs afterwards; flushing again is a no-op.
    pub fn flush(&self) -> Result<()> {
        for (kind, delta) in [
            (BlobKind::Data, false),
            (BlobKind::Data, true),
            (BlobKind::Tree, false),
        ] {
            let open = std::mem::take(&mut *lock(self.open_pack(kind, delta)));
            if open.writer.is_some() {
                self.write_pack(open)?;
            }
        }
        self.stop_finishers();
        self.check_failure()
    }

    fn stop_finishers(&self) {
        if let Some(f) = lock(&self.finishers).take() {
            drop(f.queue);
            for t in f.threads {
                let _ = t.join();
            }
        }
    }

    /// Flush, then write one index file for every pack written and add it
    /// to the repository's in-memory index. Returns the index id, or `None`
    /// when nothing was written. The saver is done afterwards.
    pub fn finish(&self) -> Result<Option<Id>> {
        self.flush()?;
        let packs = std::mem::take(&mut *lock(&self.written));
        if packs.is_empty() {
            return Ok(None);
        }
        let file = IndexFile {
            version: crate::format::VERSION,
            packs,
        };
        let id = self.repo.save_index(&file)?;
        self.repo.extend_index(&file);
        lock(&self.seen).clear();
        Ok(Some(id))
    }
}

impl Drop for BlobSaver {
    fn drop(&mut self) {
        // Do not leave finisher threads writing after an aborted backup.
        self.stop_finishers();
    }
}

/// Append the header, name the pack by its hash and make it durable.
fn finish_pack(repo: &Repository, mut open: OpenPack) -> Result<Option<IndexPack>> {
    let Some(mut writer) = open.writer.take().filter(|_| !open.entries.is_empty()) else {
        return Ok(None);
    };
    let trailer = pack::trailer(repo.key(), &open.entries);
    writer.write_all(&trailer)?;
    open.hasher.update(&trailer);
    let id = Id(*open.hasher.finalize().as_bytes());
    writer.finish(&id.to_hex())?;
    let blobs = open.entries.iter().map(IndexBlob::from).collect();
    Ok(Some(IndexPack { id, blobs }))
}
