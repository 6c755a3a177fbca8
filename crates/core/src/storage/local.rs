//! A repository in a local directory.
//!
//! Writes follow the classic atomic-replace recipe: write to a temporary
//! name in the destination directory, fsync the file, rename it into place,
//! then fsync the directory so the rename itself is durable. A crash leaves
//! either no object or the complete one, plus perhaps a `.tmp-*` file that
//! listing ignores. Background: <https://lwn.net/Articles/457667/>

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind as IoKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{check_range, ObjectInfo, ObjectKind, ObjectWriter, Storage};
use crate::error::{Error, ErrorKind, Result};

const TMP_PREFIX: &str = ".tmp-";

#[derive(Debug, Clone)]
pub struct LocalStorage {
    root: PathBuf,
}

impl LocalStorage {
    pub fn new(root: impl Into<PathBuf>) -> LocalStorage {
        LocalStorage { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, kind: ObjectKind, name: &str) -> PathBuf {
        self.root.join(kind.path_of(name))
    }

    fn open(&self, kind: ObjectKind, name: &str) -> Result<File> {
        let path = self.path(kind, name);
        File::open(&path).map_err(|e| not_found_or_io(&path, "cannot open", e))
    }
}

fn not_found_or_io(path: &Path, what: &str, e: std::io::Error) -> Error {
    if e.kind() == IoKind::NotFound {
        Error::with_source(
            ErrorKind::Missing,
            format!("{} does not exist", path.display()),
            e,
        )
    } else {
        Error::io(path, what, e)
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, "cannot sync directory", e))
}

impl Storage for LocalStorage {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn create(&self) -> Result<()> {
        for kind in ObjectKind::ALL {
            let dir = self.root.join(kind.dir());
            fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, "cannot create", e))?;
        }
        for i in 0..=255u8 {
            let dir = self.root.join("data").join(hex::encode([i]));
            fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, "cannot create", e))?;
        }
        sync_dir(&self.root)
    }

    fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectInfo>> {
        let base = self.root.join(kind.dir());
        let mut dirs = vec![base.clone()];
        if kind == ObjectKind::Pack {
            dirs = match fs::read_dir(&base) {
                Ok(rd) => rd
                    .filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .filter(|p| p.is_dir())
                    .collect(),
                Err(e) if e.kind() == IoKind::NotFound => vec![],
                Err(e) => return Err(Error::io(&base, "cannot list", e)),
            };
        }
        let mut out = Vec::new();
        for dir in dirs {
            list_dir(&dir, kind, &mut out)?;
        }
        Ok(out)
    }

    fn read(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>> {
        let path = self.path(kind, name);
        fs::read(&path).map_err(|e| not_found_or_io(&path, "cannot read", e))
    }

    fn read_range(
        &self,
        kind: ObjectKind,
        name: &str,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>> {
        let mut file = self.open(kind, name)?;
        let path = self.path(kind, name);
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| Error::io(&path, "cannot seek", e))?;
        let mut buf = Vec::with_capacity(length as usize);
        file.take(length)
            .read_to_end(&mut buf)
            .map_err(|e| Error::io(&path, "cannot read", e))?;
        check_range(buf.len(), name, offset, length)?;
        Ok(buf)
    }

    fn write(&self, kind: ObjectKind, name: &str, data: &[u8]) -> Result<()> {
        let path = self.path(kind, name);
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        let suffix = hex::encode(crate::crypto::random_bytes::<8>());
        let tmp = dir.join(format!("{TMP_PREFIX}{name}-{suffix}"));
        if !dir.exists() {
            // A kind added after this repository was created.
            fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, "cannot create", e))?;
            sync_dir(dir.parent().unwrap_or(&self.root))?;
        }
        let result = write_durably(&tmp, data).and_then(|()| {
            fs::rename(&tmp, &path).map_err(|e| Error::io(&path, "cannot rename into", e))
        });
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result?;
        sync_dir(&dir)
    }

    fn remove(&self, kind: ObjectKind, name: &str) -> Result<()> {
        let path = self.path(kind, name);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == IoKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(&path, "cannot delete", e)),
        }
    }

    fn create_writer(&self, kind: ObjectKind) -> Result<Box<dyn ObjectWriter>> {
        let dir = self.root.join(kind.dir());
        let suffix = hex::encode(crate::crypto::random_bytes::<8>());
        let tmp = dir.join(format!("{TMP_PREFIX}stream-{suffix}"));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| Error::io(&tmp, "cannot create", e))?;
        Ok(Box::new(LocalWriter {
            storage: self.clone(),
            kind,
            tmp,
            file: Some(file),
        }))
    }
}

/// Streams an object into a temporary file beside its destination; on
/// finish, fsync, rename into place, fsync the directory.
struct LocalWriter {
    storage: LocalStorage,
    kind: ObjectKind,
    tmp: PathBuf,
    file: Option<File>,
}

impl ObjectWriter for LocalWriter {
    fn write_all(&mut self, data: &[u8]) -> Result<()> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| Error::invalid("writer already finished"))?;
        file.write_all(data)
            .map_err(|e| Error::io(&self.tmp, "cannot write", e))
    }

    fn finish(mut self: Box<Self>, name: &str) -> Result<()> {
        let file = self
            .file
            .take()
            .ok_or_else(|| Error::invalid("writer already finished"))?;
        file.sync_all()
            .map_err(|e| Error::io(&self.tmp, "cannot sync", e))?;
        drop(file);
        let path = self.storage.path(self.kind, name);
        fs::rename(&self.tmp, &path).map_err(|e| Error::io(&path, "cannot rename into", e))?;
        self.tmp = PathBuf::new(); // nothing left to clean up
        sync_dir(path.parent().unwrap_or(self.storage.root()))
    }
}

impl Drop for LocalWriter {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

fn write_durably(tmp: &Path, data: &[u8]) -> Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(tmp)
        .map_err(|e| Error::io(tmp, "cannot create", e))?;
    file.write_all(data)
        .map_err(|e| Error::io(tmp, "cannot write", e))?;
    file.sync_all()
        .map_err(|e| Error::io(tmp, "cannot sync", e))
}

fn list_dir(dir: &Path, kind: ObjectKind, out: &mut Vec<ObjectInfo>) -> Result<()> {
    if kind == ObjectKind::Config {
        let path = dir.join("config");
        match fs::metadata(&path) {
            Ok(meta) => out.push(ObjectInfo {
                name: "config".into(),
                size: meta.len(),
            }),
            Err(e) if e.kind() == IoKind::NotFound => {}
            Err(e) => return Err(Error::io(&path, "cannot access", e)),
        }
        return Ok(());
    }
    let entries = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == IoKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(dir, "cannot list", e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, "cannot list", e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(TMP_PREFIX) {
            continue;
        }
        let meta = entry
            .metadata()
            .map_err(|e| Error::io(&entry.path(), "cannot stat", e))?;
        if meta.is_file() {
            out.push(ObjectInfo {
                name,
                size: meta.len(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conformance() {
        let dir = tempfile::tempdir().unwrap();
        let storage = LocalStorage::new(dir.path().join("repo"));
        crate::storage::conformance::run(&storage);
    }

    #[test]
    fn leftover_temporary_files_are_not_listed() {
        let dir = tempfile::tempdir().unwrap();
        let storage = LocalStorage::new(dir.path());
        storage.create().unwrap();
        fs::write(dir.path().join("index/.tmp-abc-123"), b"partial").unwrap();
        storage.write(ObjectKind::Index, "abc", b"x").unwrap();
        let names: Vec<_> = storage
            .list(ObjectKind::Index)
            .unwrap()
            .into_iter()
            .map(|o| o.name)
            .collect();
        assert_eq!(names, vec!["abc".to_string()]);
    }
}
