//! A local cache in front of remote storage, for what every command reads:
//! index files and snapshots (whole objects), and small ranges of packs
//! (pack headers and tree blobs, read by `snapshots`, `ls`, `diff` and a
//! backup comparing with its parent).
//!
//! Nothing is trusted blindly. Index files and snapshots are named by the
//! hash of their bytes, which a cached copy must match; a cached range is
//! stored after the BLAKE3 hash of its bytes, which it must match. A copy
//! that fails is deleted and read again from the storage. Listings always
//! come from the storage (the cache never decides what exists), and cached
//! objects the storage no longer lists are dropped when it is listed.
//! Deleting the cache directory clears it.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{ObjectInfo, ObjectKind, ObjectWriter, Storage};
use crate::error::Result;
use crate::id::Id;

/// Ranges up to this size are cached: pack headers and tree blobs, and
/// small data blobs (larger restore reads go straight to the storage).
pub const MAX_CACHED_RANGE: u64 = 512 << 10;

pub struct CachedStorage<S> {
    inner: S,
    dir: PathBuf,
}

impl<S: Storage> CachedStorage<S> {
    /// Cache `inner` in `dir` (created when first needed).
    pub fn new(inner: S, dir: impl Into<PathBuf>) -> CachedStorage<S> {
        CachedStorage {
            inner,
            dir: dir.into(),
        }
    }

    fn object_path(&self, kind: ObjectKind, name: &str) -> Option<PathBuf> {
        matches!(kind, ObjectKind::Index | ObjectKind::Snapshot)
            .then(|| self.dir.join(kind.dir()).join(name))
    }

    fn range_path(&self, name: &str, offset: u64, length: u64) -> PathBuf {
        let sub = name.get(..2).unwrap_or("xx");
        self.dir
            .join("ranges")
            .join(sub)
            .join(format!("{name}-{offset}-{length}"))
    }

    /// Store a file in the cache; failures only cost a later download.
    fn put(&self, path: &Path, parts: &[&[u8]]) {
        let Some(dir) = path.parent() else { return };
        let tmp = dir.join(format!(
            ".tmp-{}",
            hex::encode(crate::crypto::random_bytes::<8>())
        ));
        let written = fs::create_dir_all(dir)
            .and_then(|()| fs::File::create(&tmp))
            .and_then(|mut f| parts.iter().try_for_each(|p| f.write_all(p)))
            .and_then(|()| fs::rename(&tmp, path));
        if let Err(e) = written {
            tracing::debug!("cache: cannot store {}: {e}", path.display());
            let _ = fs::remove_file(&tmp);
        }
    }

    /// A cached range whose stored hash matches its bytes.
    fn cached_range(&self, path: &Path, length: u64) -> Option<Vec<u8>> {
        let mut data = fs::read(path).ok()?;
        if data.len() as u64 != 32 + length {
            let _ = fs::remove_file(path);
            return None;
        }
        let bytes = data.split_off(32);
        if blake3::hash(&bytes).as_bytes()[..] != data[..] {
            tracing::warn!("cache: {} is damaged; reading it again", path.display());
            let _ = fs::remove_file(path);
            return None;
        }
        Some(bytes)
    }

    /// Drop cached ranges of packs the storage no longer lists.
    fn forget_unlisted_packs(&self, listed: &[ObjectInfo]) {
        let names: std::collections::HashSet<&str> =
            listed.iter().map(|o| o.name.as_str()).collect();
        let Ok(subs) = fs::read_dir(self.dir.join("ranges")) else {
            return;
        };
        for file in subs
            .flatten()
            .filter_map(|d| fs::read_dir(d.path()).ok())
            .flatten()
            .flatten()
        {
            let name = file.file_name().to_string_lossy().into_owned();
            let pack = name.split('-').next().unwrap_or("");
            if !names.contains(pack) {
                let _ = fs::remove_file(file.path());
            }
        }
    }

    /// Drop cached objects of `kind` the storage no longer lists.
    fn forget_unlisted(&self, kind: ObjectKind, listed: &[ObjectInfo]) {
        if kind == ObjectKind::Pack {
            return self.forget_unlisted_packs(listed);
        }
        let Some(dir) = self
            .object_path(kind, "x")
            .and_then(|p| p.parent().map(Path::to_path_buf))
        else {
            return;
        };
        let Ok(entries) = fs::read_dir(&dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !listed.iter().any(|o| o.name == name) {
                let _ = fs::remove_file(e.path());
            }
        }
    }
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
        let Some(path) = self.object_path(kind, name) else {
            return self.inner.read(kind, name);
        };
        if let Ok(data) = fs::read(&path) {
            if Id::of_object(&data).to_hex() == name {
                return Ok(data);
            }
            tracing::warn!("cache: {} is damaged; reading it again", path.display());
            let _ = fs::remove_file(&path);
        }
        let data = self.inner.read(kind, name)?;
        if Id::of_object(&data).to_hex() == name {
            self.put(&path, &[&data]);
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
        if kind != ObjectKind::Pack || length > MAX_CACHED_RANGE || length == 0 {
            return self.inner.read_range(kind, name, offset, length);
        }
        let path = self.range_path(name, offset, length);
        if let Some(data) = self.cached_range(&path, length) {
            return Ok(data);
        }
        let data = self.inner.read_range(kind, name, offset, length)?;
        self.put(&path, &[blake3::hash(&data).as_bytes(), &data]);
        Ok(data)
    }

    fn write(&self, kind: ObjectKind, name: &str, data: &[u8]) -> Result<()> {
        self.inner.write(kind, name, data)
    }

    fn remove(&self, kind: ObjectKind, name: &str) -> Result<()> {
        self.inner.remove(kind, name)?;
        if let Some(path) = self.object_path(kind, name) {
            let _ = fs::remove_file(path);
        }
        Ok(())
    }

    fn create_writer(&self, kind: ObjectKind) -> Result<Box<dyn ObjectWriter>> {
        self.inner.create_writer(kind)
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
        cache.write(ObjectKind::Index, &name, &data).unwrap();
        assert_eq!(cache.read(ObjectKind::Index, &name).unwrap(), data);
        assert_eq!(cache.read(ObjectKind::Index, &name).unwrap(), data);
        assert_eq!(
            reads.load(Ordering::SeqCst),
            1,
            "the second read was cached"
        );
        // a damaged cached copy is noticed and replaced
        let path = cache.object_path(ObjectKind::Index, &name).unwrap();
        fs::write(&path, b"garbage").unwrap();
        assert_eq!(cache.read(ObjectKind::Index, &name).unwrap(), data);
        assert_eq!(reads.load(Ordering::SeqCst), 2);
        // an object the storage no longer lists leaves the cache
        cache.remove(ObjectKind::Index, &name).unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn small_ranges_are_cached_and_verified() {
        let (_dir, reads, cache) = setup();
        let pack: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        cache.write(ObjectKind::Pack, "abcd", &pack).unwrap();
        let want = &pack[1000..1500];
        assert_eq!(
            cache
                .read_range(ObjectKind::Pack, "abcd", 1000, 500)
                .unwrap(),
            want
        );
        assert_eq!(
            cache
                .read_range(ObjectKind::Pack, "abcd", 1000, 500)
                .unwrap(),
            want
        );
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        let path = cache.range_path("abcd", 1000, 500);
        let mut stored = fs::read(&path).unwrap();
        stored[40] ^= 1;
        fs::write(&path, stored).unwrap();
        assert_eq!(
            cache
                .read_range(ObjectKind::Pack, "abcd", 1000, 500)
                .unwrap(),
            want
        );
        assert_eq!(
            reads.load(Ordering::SeqCst),
            2,
            "the damaged copy was read again"
        );
    }
}
