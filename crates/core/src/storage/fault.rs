//! A wrapper that makes another storage fail on purpose, for tests of what
//! the engine does when writes or reads fail part-way.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::{ObjectInfo, ObjectKind, ObjectWriter, Storage};
use crate::error::{Error, ErrorKind, Result};

/// When to fail. Counters count calls of each operation since creation.
#[derive(Debug, Default, Clone)]
pub struct Faults {
    /// Fail every write after this many successful ones.
    pub writes_before_failure: Option<u64>,
    /// Fail every read (whole or ranged) after this many successful ones.
    pub reads_before_failure: Option<u64>,
    /// Only count and fail writes of this kind.
    pub only_kind: Option<ObjectKind>,
}

pub struct FaultyStorage<S> {
    inner: S,
    faults: Faults,
    writes: AtomicU64,
    reads: AtomicU64,
}

impl<S: Storage> FaultyStorage<S> {
    pub fn new(inner: S, faults: Faults) -> Arc<Self> {
        Arc::new(FaultyStorage {
            inner,
            faults,
            writes: AtomicU64::new(0),
            reads: AtomicU64::new(0),
        })
    }

    fn applies(&self, kind: ObjectKind) -> bool {
        self.faults.only_kind.is_none_or(|k| k == kind)
    }

    fn trip(
        &self,
        counter: &AtomicU64,
        limit: Option<u64>,
        kind: ObjectKind,
        what: &str,
    ) -> Result<()> {
        let Some(limit) = limit else { return Ok(()) };
        if !self.applies(kind) {
            return Ok(());
        }
        if counter.fetch_add(1, Ordering::SeqCst) >= limit {
            return Err(Error::new(
                ErrorKind::Io,
                format!("injected fault: {what} failed"),
            ));
        }
        Ok(())
    }
}

impl<S: Storage> Storage for FaultyStorage<S> {
    fn location(&self) -> String {
        format!("faulty({})", self.inner.location())
    }

    fn create(&self) -> Result<()> {
        self.inner.create()
    }

    fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectInfo>> {
        self.inner.list(kind)
    }

    fn read(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>> {
        self.trip(&self.reads, self.faults.reads_before_failure, kind, "read")?;
        self.inner.read(kind, name)
    }

    fn read_range(
        &self,
        kind: ObjectKind,
        name: &str,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>> {
        self.trip(&self.reads, self.faults.reads_before_failure, kind, "read")?;
        self.inner.read_range(kind, name, offset, length)
    }

    fn read_metadata_range(
        &self,
        kind: ObjectKind,
        name: &str,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>> {
        self.trip(&self.reads, self.faults.reads_before_failure, kind, "read")?;
        self.inner.read_metadata_range(kind, name, offset, length)
    }

    fn write(&self, kind: ObjectKind, name: &str, data: &[u8]) -> Result<()> {
        self.trip(
            &self.writes,
            self.faults.writes_before_failure,
            kind,
            "write",
        )?;
        self.inner.write(kind, name, data)
    }

    fn remove(&self, kind: ObjectKind, name: &str) -> Result<()> {
        self.inner.remove(kind, name)
    }

    /// A streamed object counts as one write; if it is to fail, it fails at
    /// `finish`, after its data was sent, like an upload cut off at the end.
    fn create_writer(&self, kind: ObjectKind) -> Result<Box<dyn ObjectWriter>> {
        self.writer(kind, self.inner.create_writer(kind))
    }

    fn create_metadata_writer(&self, kind: ObjectKind) -> Result<Box<dyn ObjectWriter>> {
        self.writer(kind, self.inner.create_metadata_writer(kind))
    }

    fn stale_temporaries(
        &self,
        older_than: std::time::Duration,
        remove: bool,
    ) -> Result<Vec<ObjectInfo>> {
        self.inner.stale_temporaries(older_than, remove)
    }
}

impl<S: Storage> FaultyStorage<S> {
    fn writer(
        &self,
        kind: ObjectKind,
        inner: Result<Box<dyn ObjectWriter>>,
    ) -> Result<Box<dyn ObjectWriter>> {
        let fail = self
            .trip(
                &self.writes,
                self.faults.writes_before_failure,
                kind,
                "write",
            )
            .is_err();
        Ok(Box::new(FaultyWriter {
            inner: inner?,
            fail,
        }))
    }
}

struct FaultyWriter {
    inner: Box<dyn ObjectWriter>,
    fail: bool,
}

impl ObjectWriter for FaultyWriter {
    fn write_all(&mut self, data: &[u8]) -> Result<()> {
        self.inner.write_all(data)
    }

    fn finish(self: Box<Self>, name: &str) -> Result<()> {
        if self.fail {
            return Err(Error::new(ErrorKind::Io, "injected fault: write failed"));
        }
        self.inner.finish(name)
    }
}

impl<S: Storage + ?Sized> Storage for Arc<S> {
    fn location(&self) -> String {
        (**self).location()
    }
    fn create(&self) -> Result<()> {
        (**self).create()
    }
    fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectInfo>> {
        (**self).list(kind)
    }
    fn read(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>> {
        (**self).read(kind, name)
    }
    fn read_range(
        &self,
        kind: ObjectKind,
        name: &str,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>> {
        (**self).read_range(kind, name, offset, length)
    }
    fn write(&self, kind: ObjectKind, name: &str, data: &[u8]) -> Result<()> {
        (**self).write(kind, name, data)
    }
    fn remove(&self, kind: ObjectKind, name: &str) -> Result<()> {
        (**self).remove(kind, name)
    }
    fn create_writer(&self, kind: ObjectKind) -> Result<Box<dyn ObjectWriter>> {
        (**self).create_writer(kind)
    }
    fn read_metadata_range(
        &self,
        kind: ObjectKind,
        name: &str,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>> {
        (**self).read_metadata_range(kind, name, offset, length)
    }
    fn create_metadata_writer(&self, kind: ObjectKind) -> Result<Box<dyn ObjectWriter>> {
        (**self).create_metadata_writer(kind)
    }
    fn keeps_blobs(&self) -> bool {
        (**self).keeps_blobs()
    }
    fn kept_blob(&self, id: &crate::id::Id, length: u32) -> Option<Vec<u8>> {
        (**self).kept_blob(id, length)
    }
    fn keep_blob(&self, id: &crate::id::Id, sealed: &[u8]) {
        (**self).keep_blob(id, sealed)
    }
    fn drop_kept_blob(&self, id: &crate::id::Id) {
        (**self).drop_kept_blob(id)
    }
    fn keep_only(&self, series: &str, ids: &[crate::id::Id]) {
        (**self).keep_only(series, ids)
    }
    fn stale_temporaries(
        &self,
        older_than: std::time::Duration,
        remove: bool,
    ) -> Result<Vec<ObjectInfo>> {
        (**self).stale_temporaries(older_than, remove)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryStorage;

    #[test]
    fn fails_after_the_given_number_of_writes() {
        let s = FaultyStorage::new(
            MemoryStorage::new(),
            Faults {
                writes_before_failure: Some(2),
                ..Faults::default()
            },
        );
        s.write(ObjectKind::Pack, "a", b"1").unwrap();
        s.write(ObjectKind::Pack, "b", b"2").unwrap();
        let err = s.write(ObjectKind::Pack, "c", b"3").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Io);
        assert_eq!(s.list(ObjectKind::Pack).unwrap().len(), 2);
    }
}
