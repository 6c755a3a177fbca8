//! A local cache in front of remote storage, for what every command reads:
//! index files, snapshots and packs of trees (read by `snapshots`, `ls`,
//! `diff`, restore and a backup comparing with its parent). Packs of trees
//! are kept whole, as they are written or first read; data is never cached.
//!
//! Nothing is trusted blindly. Every cached object is named by the BLAKE3
//! hash of its bytes, which the cached copy must match: index files and
//! snapshots on every read, packs once per process before their first use
//! (a pack is read many times, and every blob in it is authenticated again
//! when it is opened). A copy that fails is deleted and read again from the
//! storage. Listings always come from the storage (the cache never decides
//! what exists), and cached objects the storage no longer lists are
//! dropped when it is listed. Deleting the cache directory clears it.

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::{check_range, ObjectInfo, ObjectKind, ObjectWriter, Storage};
use crate::error::Result;
use crate::id::Id;

/// Temporary files older than this were left by a process that died.
const STALE_TEMPORARY: std::time::Duration = std::time::Duration::from_secs(3600);

/// A kept blob no series wants is deleted once it is this old (younger
/// ones may belong to a backup still running).
const KEPT_BLOB_GRACE: std::time::Duration = std::time::Duration::from_secs(3600);

/// A series not backed up for this long no longer holds its kept blobs.
const SERIES_LIFE: std::time::Duration = std::time::Duration::from_secs(90 * 24 * 3600);

pub struct CachedStorage<S> {
    inner: S,
    dir: PathBuf,
    /// Cached packs whose bytes matched their name in this process.
    verified: Mutex<HashSet<String>>,
    /// Set when a pack could not be stored: packs are then read in ranges
    /// like any other object, not downloaded whole again and again.
    unusable: AtomicBool,
    /// Held while a pack is fetched, so that readers of the same pack wait
    /// for one download instead of starting their own.
    fetching: [Mutex<()>; 16],
}

impl<S: Storage> CachedStorage<S> {
    /// Cache `inner` in `dir` (created when first needed).
    pub fn new(inner: S, dir: impl Into<PathBuf>) -> CachedStorage<S> {
        CachedStorage {
            inner,
            dir: dir.into(),
            verified: Mutex::default(),
            unusable: AtomicBool::new(false),
            fetching: Default::default(),
        }
    }

    fn blob_path(&self, id: &Id) -> PathBuf {
        let hex = id.to_hex();
        self.dir.join("blobs").join(&hex[..2]).join(hex)
    }

    /// The blobs every series wants (`blobs/series/*`: one file per series,
    /// the hex ids one per line), dropping series gone for [`SERIES_LIFE`].
    fn wanted_blobs(&self) -> HashSet<String> {
        let mut wanted = HashSet::new();
        let dir = self.dir.join("blobs/series");
        for file in fs::read_dir(dir).into_iter().flatten().flatten() {
            let gone = file
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > SERIES_LIFE));
            if gone {
                let _ = fs::remove_file(file.path());
                continue;
            }
            if let Some(text) = read_regular(&file.path(), MAX_SERIES_LIST) {
                wanted.extend(String::from_utf8_lossy(&text).lines().map(str::to_string));
            }
        }
        wanted
    }

    fn path(&self, kind: ObjectKind, name: &str) -> PathBuf {
        self.dir.join(kind.path_of(name))
    }

    fn cached_kind(kind: ObjectKind) -> bool {
        matches!(kind, ObjectKind::Index | ObjectKind::Snapshot)
    }

    fn is_verified(&self, name: &str) -> bool {
        self.verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(name)
    }

    fn set_verified(&self, name: &str, ok: bool) {
        let mut set = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if ok {
            set.insert(name.to_string());
        } else {
            set.remove(name);
        }
    }

    /// Store a file in the cache; failures only cost a later download.
    /// Returns whether it was stored.
    fn put(&self, path: &Path, data: &[u8]) -> bool {
        let written = temp_file(path).and_then(|(tmp, mut f)| {
            f.write_all(data)
                .and_then(|()| fs::rename(&tmp, path))
                .inspect_err(|_| {
                    let _ = fs::remove_file(&tmp);
                })
        });
        if let Err(e) = &written {
            tracing::debug!("cache: cannot store {}: {e}", path.display());
        }
        written.is_ok()
    }

    /// A cached whole object whose bytes match its name, or `None`.
    fn cached_object(&self, path: &Path, name: &str) -> Option<Vec<u8>> {
        let data = fs::read(path).ok()?;
        if Id::of_object(&data).to_hex() == name {
            return Some(data);
        }
        tracing::warn!("cache: {} is damaged; reading it again", path.display());
        let _ = fs::remove_file(path);
        None
    }

    /// A range of a verified cached pack, or `None`.
    fn cached_range(&self, path: &Path, offset: u64, length: u64) -> Option<Vec<u8>> {
        let file = fs::File::open(path).ok()?;
        if file.metadata().ok()?.len() < offset.checked_add(length)? {
            return None;
        }
        let mut buf = vec![0; usize::try_from(length).ok()?];
        file.read_exact_at(&mut buf, offset).ok()?;
        Some(buf)
    }

    /// Drop cached objects of `kind` the storage no longer lists.
    fn forget_unlisted(&self, kind: ObjectKind, listed: &[ObjectInfo]) {
        let names: HashSet<&str> = listed.iter().map(|o| o.name.as_str()).collect();
        let dir = self.dir.join(kind.dir());
        // A link in the cache would lead deletion outside it.
        if !fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
            return;
        }
        let files: Vec<fs::DirEntry> = match kind {
            ObjectKind::Pack => {
                // ranges of packs, kept by an earlier version of the cache
                let _ = fs::remove_dir_all(self.dir.join("ranges"));
                let top: Vec<fs::DirEntry> =
                    fs::read_dir(&dir).into_iter().flatten().flatten().collect();
                let inner = top
                    .iter()
                    .filter(|d| d.file_type().is_ok_and(|t| t.is_dir()))
                    .filter_map(|d| fs::read_dir(d.path()).ok())
                    .flatten()
                    .flatten()
                    .collect::<Vec<_>>();
                top.into_iter()
                    .filter(|d| d.file_type().is_ok_and(|t| t.is_file()))
                    .chain(inner)
                    .collect()
            }
            _ if Self::cached_kind(kind) => {
                fs::read_dir(&dir).into_iter().flatten().flatten().collect()
            }
            _ => return,
        };
        for file in files {
            let name = file.file_name().to_string_lossy().into_owned();
            // Another process may be writing a temporary file right now;
            // one left by a process that was killed goes after an hour.
            let young = || {
                file.metadata()
                    .and_then(|m| m.modified())
                    // a time in the future (the clock went back) is young
                    .is_ok_and(|t| t.elapsed().map_or(true, |age| age < STALE_TEMPORARY))
            };
            let keep = names.contains(name.as_str()) || (name.starts_with(".tmp-") && young());
            if !keep {
                let _ = fs::remove_file(file.path());
            }
        }
    }
}

/// A series list longer than this is damage (a million ids).
const MAX_SERIES_LIST: u64 = 65 << 20;

/// The bytes of a regular file at `path` of at most `max` bytes: never
/// through a link, nor from a FIFO or device someone put in the cache.
fn read_regular(path: &Path, max: u64) -> Option<Vec<u8>> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.len() > max {
        return None;
    }
    let mut data = vec![0; meta.len() as usize];
    file.read_exact_at(&mut data, 0).ok()?;
    Some(data)
}

/// A new temporary file beside `path`, its directory created if needed.
fn temp_file(path: &Path) -> std::io::Result<(PathBuf, fs::File)> {
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("cache path without a directory"))?;
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".tmp-{}",
        hex::encode(crate::crypto::random_bytes::<8>())
    ));
    let file = fs::File::create(&tmp)?;
    Ok((tmp, file))
}

impl<S: Storage> Storage for CachedStorage<S> {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn create(&self) -> Result<()> {
        self.inner.create()
    }

    fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectInfo>> {
        let listed = self.inner.list(kind)?;
        self.forget_unlisted(kind, &listed);
        Ok(listed)
    }

    fn read(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>> {
        if !Self::cached_kind(kind) {
            return self.inner.read(kind, name);
        }
        let path = self.path(kind, name);
        if let Some(data) = self.cached_object(&path, name) {
            return Ok(data);
        }
        let data = self.inner.read(kind, name)?;
        if Id::of_object(&data).to_hex() == name {
            self.put(&path, &data);
        }
        Ok(data)
    }

    fn read_range(
        &self,
        kind: ObjectKind,
        name: &str,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>> {
        self.inner.read_range(kind, name, offset, length)
    }

    fn read_metadata_range(
        &self,
        kind: ObjectKind,
        name: &str,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>> {
        let path = self.path(kind, name);
        if self.is_verified(name) {
            if let Some(data) = self.cached_range(&path, offset, length) {
                return Ok(data);
            }
            self.set_verified(name, false);
        }
        if self.unusable.load(Ordering::Relaxed) {
            return self.inner.read_range(kind, name, offset, length);
        }
        let slot = name
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31) + usize::from(b));
        let _fetching = self.fetching[slot % self.fetching.len()]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let data = match self.cached_object(&path, name) {
            Some(data) => data,
            None => {
                let data = self.inner.read(kind, name)?;
                if Id::of_object(&data).to_hex() != name {
                    // damaged in the storage: the caller reports what it finds
                    return self.inner.read_range(kind, name, offset, length);
                }
                if !self.put(&path, &data) {
                    self.unusable.store(true, Ordering::Relaxed);
                }
                data
            }
        };
        self.set_verified(name, !self.unusable.load(Ordering::Relaxed));
        let range = usize::try_from(offset)
            .ok()
            .zip(
                offset
                    .checked_add(length)
                    .and_then(|e| usize::try_from(e).ok()),
            )
            .and_then(|(from, to)| data.get(from..to));
        check_range(range.map_or(0, <[u8]>::len), name, offset, length)?;
        Ok(range.unwrap_or_default().to_vec())
    }

    fn write(&self, kind: ObjectKind, name: &str, data: &[u8]) -> Result<()> {
        self.inner.write(kind, name, data)?;
        // what this process writes, the next one reads: keep a copy
        if Self::cached_kind(kind) && Id::of_object(data).to_hex() == name {
            self.put(&self.path(kind, name), data);
        }
        Ok(())
    }

    fn remove(&self, kind: ObjectKind, name: &str) -> Result<()> {
        self.inner.remove(kind, name)?;
        if kind == ObjectKind::Pack || Self::cached_kind(kind) {
            let _ = fs::remove_file(self.path(kind, name));
            self.set_verified(name, false);
        }
        Ok(())
    }

    fn create_writer(&self, kind: ObjectKind) -> Result<Box<dyn ObjectWriter>> {
        self.inner.create_writer(kind)
    }

    fn stale_temporaries(
        &self,
        older_than: std::time::Duration,
        remove: bool,
    ) -> Result<Vec<ObjectInfo>> {
        self.inner.stale_temporaries(older_than, remove)
    }

    fn keeps_blobs(&self) -> bool {
        true
    }

    fn kept_blob(&self, id: &Id, length: u32) -> Option<Vec<u8>> {
        // Only a regular file of the right size (see `read_regular`).
        read_regular(&self.blob_path(id), u64::from(length))
            .filter(|data| data.len() == length as usize)
    }

    fn keep_blob(&self, id: &Id, sealed: &[u8]) {
        self.put(&self.blob_path(id), sealed);
    }

    fn keep_only(&self, series: &str, ids: &[Id]) {
        let mut list = String::with_capacity(ids.len() * 65);
        for id in ids {
            list.push_str(&id.to_hex());
            list.push('\n');
        }
        if !self.put(&self.dir.join("blobs/series").join(series), list.as_bytes()) {
            return; // without its list, this series' blobs could go
        }
        let wanted = self.wanted_blobs();
        let dirs = fs::read_dir(self.dir.join("blobs")).into_iter().flatten();
        // Real directories only: a link would lead the sweep outside.
        let real_dir = |d: &fs::DirEntry| d.file_type().is_ok_and(|t| t.is_dir());
        for dir in dirs
            .flatten()
            .filter(|d| d.file_name().len() == 2 && real_dir(d))
        {
            for file in fs::read_dir(dir.path()).into_iter().flatten().flatten() {
                let name = file.file_name().to_string_lossy().into_owned();
                let young = file
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t.elapsed().map_or(true, |age| age < KEPT_BLOB_GRACE));
                if !wanted.contains(&name) && !young {
                    let _ = fs::remove_file(file.path());
                }
            }
        }
    }

    fn drop_kept_blob(&self, id: &Id) {
        tracing::warn!("cache: kept blob {id} is damaged; not used");
        let _ = fs::remove_file(self.blob_path(id));
    }

    fn create_metadata_writer(&self, kind: ObjectKind) -> Result<Box<dyn ObjectWriter>> {
        let inner = self.inner.create_metadata_writer(kind)?;
        let copy = temp_file(&self.path(kind, "x")).ok();
        Ok(Box::new(CopyingWriter {
            inner,
            copy,
            hasher: blake3::Hasher::new(),
            dir: self.dir.clone(),
            kind,
        }))
    }
}

/// Writes an object to the storage and a copy of it to the cache, which
/// is kept once the object is stored and its bytes match its name.
struct CopyingWriter {
    inner: Box<dyn ObjectWriter>,
    /// The temporary copy; dropped (and deleted) on the first local error.
    copy: Option<(PathBuf, fs::File)>,
    hasher: blake3::Hasher,
    dir: PathBuf,
    kind: ObjectKind,
}

impl CopyingWriter {
    fn drop_copy(&mut self) {
        if let Some((tmp, _)) = self.copy.take() {
            let _ = fs::remove_file(tmp);
        }
    }
}

impl ObjectWriter for CopyingWriter {
    fn write_all(&mut self, data: &[u8]) -> Result<()> {
        self.inner.write_all(data)?;
        self.hasher.update(data);
        if let Some((_, file)) = &mut self.copy {
            if file.write_all(data).is_err() {
                self.drop_copy();
            }
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>, name: &str) -> Result<()> {
        let inner = std::mem::replace(&mut self.inner, Box::new(Discard));
        inner.finish(name)?;
        let path = self.dir.join(self.kind.path_of(name));
        match self.copy.take() {
            Some((tmp, _))
                if self.hasher.finalize().to_hex().as_str() != name
                    || fs::create_dir_all(path.parent().unwrap_or(&self.dir))
                        .and_then(|()| fs::rename(&tmp, &path))
                        .is_err() =>
            {
                let _ = fs::remove_file(tmp);
            }
            _ => {}
        }
        Ok(())
    }
}

impl Drop for CopyingWriter {
    fn drop(&mut self) {
        self.drop_copy();
    }
}

/// Stands in for a writer already finished.
struct Discard;

impl ObjectWriter for Discard {
    fn write_all(&mut self, _: &[u8]) -> Result<()> {
        Ok(())
    }
    fn finish(self: Box<Self>, _: &str) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryStorage;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// Memory storage counting the reads that reach it.
    struct Counting {
        inner: MemoryStorage,
        reads: Arc<AtomicUsize>,
    }

    impl Storage for Counting {
        fn location(&self) -> String {
            self.inner.location()
        }
        fn create(&self) -> Result<()> {
            self.inner.create()
        }
        fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectInfo>> {
            self.inner.list(kind)
        }
        fn read(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            self.inner.read(kind, name)
        }
        fn read_range(&self, kind: ObjectKind, name: &str, o: u64, l: u64) -> Result<Vec<u8>> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            self.inner.read_range(kind, name, o, l)
        }
        fn write(&self, kind: ObjectKind, name: &str, data: &[u8]) -> Result<()> {
            self.inner.write(kind, name, data)
        }
        fn remove(&self, kind: ObjectKind, name: &str) -> Result<()> {
            self.inner.remove(kind, name)
        }
        fn create_writer(&self, kind: ObjectKind) -> Result<Box<dyn ObjectWriter>> {
            self.inner.create_writer(kind)
        }
    }

    // Found by attacking delta storage, second round (2026-11-30): a link
    // among the kept blobs' directories made a backup delete the old files
    // it led to, outside the cache; a series list that was a FIFO hung the
    // backup after its snapshot was saved, and one linked to /dev/zero ate
    // memory until allocation failed.
    #[test]
    fn links_and_fifos_in_the_cache_of_kept_blobs_were_followed() {
        let dir = tempfile::tempdir().unwrap();
        let cache_dir = dir.path().join("cache");
        let cache = CachedStorage::new(MemoryStorage::new(), &cache_dir);
        cache.keep_blob(&Id([1; 32]), b"kept");
        let victim = dir.path().join("victim");
        fs::create_dir(&victim).unwrap();
        let notes = victim.join("notes.txt");
        fs::write(&notes, b"mine").unwrap();
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3 * 3600);
        fs::File::options()
            .write(true)
            .open(&notes)
            .unwrap()
            .set_modified(old)
            .unwrap();
        std::os::unix::fs::symlink(&victim, cache_dir.join("blobs/zz")).unwrap();
        let series = cache_dir.join("blobs/series");
        fs::create_dir_all(&series).unwrap();
        let fifo =
            std::ffi::CString::new(series.join("fifo").as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        std::os::unix::fs::symlink("/dev/zero", series.join("zero")).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            cache.keep_only("mine", &[Id([1; 32])]);
            let _ = tx.send(cache.kept_blob(&Id([1; 32]), 4));
        });
        let kept = rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("keep_only hung");
        assert_eq!(kept.as_deref(), Some(&b"kept"[..]));
        assert!(notes.exists(), "a file outside the cache was deleted");
    }

    // Found by attacking delta storage (2026-11-30): a kept blob replaced
    // by a FIFO hung the backup that read it; by a symlink to /dev/zero,
    // it read until the machine ran out of memory.
    #[test]
    fn a_kept_blob_that_is_a_fifo_or_a_link_to_an_endless_file_is_passed_over() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CachedStorage::new(MemoryStorage::new(), dir.path());
        let (fifo, link, good) = (Id([1; 32]), Id([2; 32]), Id([3; 32]));
        cache.keep_blob(&good, b"sealed bytes");
        for id in [fifo, link] {
            fs::create_dir_all(cache.blob_path(&id).parent().unwrap()).unwrap();
        }
        let path =
            std::ffi::CString::new(cache.blob_path(&fifo).as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
        std::os::unix::fs::symlink("/dev/zero", cache.blob_path(&link)).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let got = (cache.kept_blob(&fifo, 12), cache.kept_blob(&link, 12));
            let _ = tx.send((got, cache.kept_blob(&good, 12), cache.kept_blob(&good, 13)));
        });
        let (bad, good, wrong_length) = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("reading kept blobs hung");
        assert_eq!(bad, (None, None));
        assert_eq!(good.as_deref(), Some(&b"sealed bytes"[..]));
        assert_eq!(wrong_length, None);
    }

    fn setup() -> (tempfile::TempDir, Arc<AtomicUsize>, CachedStorage<Counting>) {
        let dir = tempfile::tempdir().unwrap();
        let reads = Arc::new(AtomicUsize::new(0));
        let inner = Counting {
            inner: MemoryStorage::new(),
            reads: reads.clone(),
        };
        let cache = CachedStorage::new(inner, dir.path().join("cache"));
        (dir, reads, cache)
    }

    #[test]
    fn cache_passes_the_conformance_suite() {
        let (_dir, _, cache) = setup();
        crate::storage::conformance::run(&cache);
    }

    #[test]
    fn objects_are_read_once_and_damage_in_the_cache_is_repaired() {
        let (_dir, reads, cache) = setup();
        let data = b"an index file".to_vec();
        let name = Id::of_object(&data).to_hex();
        cache
            .inner
            .inner
            .write(ObjectKind::Index, &name, &data)
            .unwrap();
        assert_eq!(cache.read(ObjectKind::Index, &name).unwrap(), data);
        assert_eq!(cache.read(ObjectKind::Index, &name).unwrap(), data);
        assert_eq!(
            reads.load(Ordering::SeqCst),
            1,
            "the second read was cached"
        );
        // a damaged cached copy is noticed and replaced
        let path = cache.path(ObjectKind::Index, &name);
        fs::write(&path, b"garbage").unwrap();
        assert_eq!(cache.read(ObjectKind::Index, &name).unwrap(), data);
        assert_eq!(reads.load(Ordering::SeqCst), 2);
        // an object the storage no longer lists leaves the cache
        cache.remove(ObjectKind::Index, &name).unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn written_objects_are_kept() {
        let (_dir, reads, cache) = setup();
        let data = b"a snapshot".to_vec();
        let name = Id::of_object(&data).to_hex();
        cache.write(ObjectKind::Snapshot, &name, &data).unwrap();
        assert_eq!(cache.read(ObjectKind::Snapshot, &name).unwrap(), data);
        assert_eq!(reads.load(Ordering::SeqCst), 0);
    }

    fn pack(seed: u32) -> (String, Vec<u8>) {
        let data: Vec<u8> = (0..100_000u32).map(|i| ((i + seed) % 251) as u8).collect();
        (Id::of_object(&data).to_hex(), data)
    }

    #[test]
    fn tree_packs_are_kept_whole_and_checked_data_is_not_cached() {
        let (dir, reads, cache) = setup();
        let (name, data) = pack(0);
        let mut w = cache.create_metadata_writer(ObjectKind::Pack).unwrap();
        w.write_all(&data[..500]).unwrap();
        w.write_all(&data[500..]).unwrap();
        w.finish(&name).unwrap();
        let path = cache.path(ObjectKind::Pack, &name);
        assert_eq!(fs::read(&path).unwrap(), data, "kept as it was written");
        let range = |c: &CachedStorage<Counting>| {
            c.read_metadata_range(ObjectKind::Pack, &name, 1000, 500)
                .unwrap()
        };
        assert_eq!(range(&cache), &data[1000..1500]);
        assert_eq!(range(&cache), &data[1000..1500]);
        assert_eq!(reads.load(Ordering::SeqCst), 0, "served from the copy");
        let err = cache
            .read_metadata_range(ObjectKind::Pack, &name, 99_900, 500)
            .unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Corrupted);

        // data ranges always go to the storage
        cache.read_range(ObjectKind::Pack, &name, 0, 10).unwrap();
        cache.read_range(ObjectKind::Pack, &name, 0, 10).unwrap();
        assert_eq!(reads.load(Ordering::SeqCst), 2);

        // a damaged copy is noticed by the next process and fetched again
        let mut stored = fs::read(&path).unwrap();
        stored[1200] ^= 1;
        fs::write(&path, stored).unwrap();
        let inner = Counting {
            inner: cache.inner.inner.clone(),
            reads: reads.clone(),
        };
        let again = CachedStorage::new(inner, dir.path().join("cache"));
        assert_eq!(range(&again), &data[1000..1500]);
        assert_eq!(reads.load(Ordering::SeqCst), 3, "fetched again, whole");
        assert_eq!(fs::read(&path).unwrap(), data, "and stored again");
        assert_eq!(range(&again), &data[1000..1500]);
        assert_eq!(reads.load(Ordering::SeqCst), 3);

        // a pack the storage no longer lists leaves the cache
        again.inner.inner.remove(ObjectKind::Pack, &name).unwrap();
        again.list(ObjectKind::Pack).unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn a_tree_pack_written_elsewhere_is_fetched_once() {
        let (_dir, reads, cache) = setup();
        let (name, data) = pack(7);
        cache
            .inner
            .inner
            .write(ObjectKind::Pack, &name, &data)
            .unwrap();
        // as the repository holds it
        let shared: Arc<dyn Storage> = Arc::new(cache);
        for offset in [0u64, 5000, 90_000] {
            let got = <Arc<dyn Storage> as Storage>::read_metadata_range(
                &shared,
                ObjectKind::Pack,
                &name,
                offset,
                100,
            )
            .unwrap();
            assert_eq!(got, &data[offset as usize..offset as usize + 100]);
        }
        assert_eq!(reads.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn an_unwritable_cache_falls_back_to_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let reads = Arc::new(AtomicUsize::new(0));
        let inner = Counting {
            inner: MemoryStorage::new(),
            reads: reads.clone(),
        };
        // a file where the cache directory should be
        fs::write(dir.path().join("cache"), b"").unwrap();
        let cache = CachedStorage::new(inner, dir.path().join("cache"));
        let (name, data) = pack(3);
        cache
            .inner
            .inner
            .write(ObjectKind::Pack, &name, &data)
            .unwrap();
        for _ in 0..3 {
            let got = cache
                .read_metadata_range(ObjectKind::Pack, &name, 10, 10)
                .unwrap();
            assert_eq!(got, &data[10..20]);
        }
        assert_eq!(
            reads.load(Ordering::SeqCst),
            3,
            "one whole read, then ranges"
        );
    }
}
