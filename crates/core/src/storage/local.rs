//! A repository in a local directory.
//!
//! Writes follow the classic atomic-replace recipe: write to a temporary
//! name in the destination directory, fsync the file, rename it into place,
//! then fsync the directory so the rename itself is durable. A crash leaves
//! either no object or the complete one, plus perhaps a `.tmp-*` file that
//! listing ignores and prune sweeps once it is older than a lock can live.
//! Background: <https://lwn.net/Articles/457667/>
//!
//! The repository's own directories are never followed through a symlink,
//! and an object that is not a regular file (a symlink, a FIFO, a device)
//! is damage: it is never opened in a way that could block, and a listing
//! shows it so that readers and `check` report it. Otherwise a hostile or
//! careless `data/ab -> /etc` would let prune delete files outside the
//! repository, and a FIFO named like a pack would hang every reader.
//!
//! Files are created private (0600, directories 0700) unless the
//! repository's top directory was made group-readable on purpose (readable
//! by its group but not by others, such as 0750): then the group may read
//! too (0640, 0750), as with a shared backup group.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind as IoKind, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use super::{check_range, ObjectInfo, ObjectKind, ObjectWriter, Storage};
use crate::error::{Error, ErrorKind, Result};

const TMP_PREFIX: &str = ".tmp-";

#[derive(Debug, Clone)]
pub struct LocalStorage {
    root: PathBuf,
    /// File and directory modes, from the top directory's (see above).
    modes: OnceLock<(u32, u32)>,
}

impl LocalStorage {
    pub fn new(root: impl Into<PathBuf>) -> LocalStorage {
        LocalStorage {
            root: root.into(),
            modes: OnceLock::new(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path of an object, after checking that no directory of the
    /// repository on the way is a symlink or anything but a directory.
    fn path(&self, kind: ObjectKind, name: &str) -> Result<PathBuf> {
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(Error::invalid(format!("{name:?} is not an object name")));
        }
        let rel = kind.path_of(name);
        let mut dir = self.root.clone();
        let parts: Vec<&str> = rel.split('/').collect();
        for part in &parts[..parts.len() - 1] {
            dir.push(part);
            check_real_dir(&dir)?;
        }
        Ok(self.root.join(rel))
    }

    /// Open an object for reading: never through a symlink, never blocking
    /// (a FIFO), and only if it is a regular file.
    fn open(&self, kind: ObjectKind, name: &str) -> Result<(File, PathBuf)> {
        let path = self.path(kind, name)?;
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ELOOP) => not_regular(&path, "a symlink"),
                // A socket (or a device without a driver) cannot be opened.
                Some(libc::ENXIO | libc::ENODEV) => not_regular(&path, "a socket or device"),
                _ => not_found_or_io(&path, "cannot open", e),
            })?;
        let meta = file
            .metadata()
            .map_err(|e| Error::io(&path, "cannot stat", e))?;
        if !meta.is_file() {
            return Err(not_regular(&path, describe(meta.file_type())));
        }
        Ok((file, path))
    }

    /// `(file mode, directory mode)` for new objects and directories.
    fn modes(&self) -> (u32, u32) {
        *self.modes.get_or_init(|| {
            // Group-readable but not world-readable (0750, 0770): made so on
            // purpose, unlike the 0755 a usual umask gives.
            let group = fs::metadata(&self.root)
                .map(|m| m.permissions().mode() & 0o044 == 0o040)
                .unwrap_or(false);
            if group {
                (0o640, 0o750)
            } else {
                (0o600, 0o700)
            }
        })
    }

    fn create_dir(&self, dir: &Path) -> Result<()> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(self.modes().1)
            .create(dir)
            .map_err(|e| Error::io(dir, "cannot create", e))
    }

    fn new_file(&self, path: &Path) -> Result<File> {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(self.modes().0)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| Error::io(path, "cannot create", e))
    }

    /// The directories that hold objects (each pack subdirectory apart).
    fn object_dirs(&self, kind: ObjectKind) -> Result<Vec<PathBuf>> {
        let base = self.root.join(kind.dir());
        if kind != ObjectKind::Pack {
            return Ok(vec![base]);
        }
        check_real_dir(&base)?;
        let entries = match fs::read_dir(&base) {
            Ok(rd) => rd,
            Err(e) if e.kind() == IoKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(Error::io(&base, "cannot list", e)),
        };
        let mut dirs = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&base, "cannot list", e))?;
            // The type of the entry itself: a symlink is not followed.
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(entry.path());
            } else if entry.file_type().is_ok_and(|t| t.is_symlink()) {
                tracing::warn!(
                    "{} is a symlink inside the repository; it is not followed (remove it)",
                    entry.path().display()
                );
            }
        }
        Ok(dirs)
    }
}

/// A directory of the repository must be a directory, not a symlink to one.
fn check_real_dir(dir: &Path) -> Result<()> {
    match fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(m) => Err(Error::corrupted(format!(
            "{} is {}, not a directory: strata never follows symlinks inside a repository. \
             If the repository was moved, give its real location with -r; otherwise put the directory back",
            dir.display(),
            describe(m.file_type())
        ))),
        Err(e) if e.kind() == IoKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(dir, "cannot access", e)),
    }
}

fn describe(t: fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_symlink() {
        "a symlink"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

fn not_regular(path: &Path, what: &str) -> Error {
    Error::corrupted(format!(
        "{} is {what}, not a regular file: the repository is damaged or was tampered with (remove it, then run `strata check`)",
        path.display()
    ))
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
        self.create_dir(&self.root)?;
        for kind in ObjectKind::ALL {
            let dir = self.root.join(kind.dir());
            check_real_dir(&dir)?;
            self.create_dir(&dir)?;
        }
        for i in 0..=255u8 {
            let dir = self.root.join("data").join(hex::encode([i]));
            check_real_dir(&dir)?;
            self.create_dir(&dir)?;
        }
        sync_dir(&self.root)
    }

    fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectInfo>> {
        let mut out = Vec::new();
        for dir in self.object_dirs(kind)? {
            list_dir(&dir, kind, &mut out)?;
        }
        Ok(out)
    }

    fn read(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>> {
        let (mut file, path) = self.open(kind, name)?;
        let mut buf = Vec::new();
        file.read_to_end(&mut buf)
            .map_err(|e| Error::io(&path, "cannot read", e))?;
        Ok(buf)
    }

    fn read_range(
        &self,
        kind: ObjectKind,
        name: &str,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>> {
        let (mut file, path) = self.open(kind, name)?;
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| Error::io(&path, "cannot seek", e))?;
        let mut buf = Vec::with_capacity(length.min(1 << 30) as usize);
        file.take(length)
            .read_to_end(&mut buf)
            .map_err(|e| Error::io(&path, "cannot read", e))?;
        check_range(buf.len(), name, offset, length)?;
        Ok(buf)
    }

    fn write(&self, kind: ObjectKind, name: &str, data: &[u8]) -> Result<()> {
        let path = self.path(kind, name)?;
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        let suffix = hex::encode(crate::crypto::random_bytes::<8>());
        let tmp = dir.join(format!("{TMP_PREFIX}{name}-{suffix}"));
        if !dir.exists() {
            // A kind added after this repository was created.
            self.create_dir(&dir)?;
            sync_dir(dir.parent().unwrap_or(&self.root))?;
        }
        let result = self.write_durably(&tmp, data).and_then(|()| {
            fs::rename(&tmp, &path).map_err(|e| Error::io(&path, "cannot rename into", e))
        });
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result?;
        sync_dir(&dir)
    }

    fn remove(&self, kind: ObjectKind, name: &str) -> Result<()> {
        // `path` refuses symlinked directories; the object itself, whatever
        // its type, is unlinked, never followed.
        let path = self.path(kind, name)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == IoKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(&path, "cannot delete", e)),
        }
    }

    fn create_writer(&self, kind: ObjectKind) -> Result<Box<dyn ObjectWriter>> {
        let dir = self.root.join(kind.dir());
        check_real_dir(&dir)?;
        let suffix = hex::encode(crate::crypto::random_bytes::<8>());
        let tmp = dir.join(format!("{TMP_PREFIX}stream-{suffix}"));
        let file = self.new_file(&tmp)?;
        Ok(Box::new(LocalWriter {
            storage: self.clone(),
            kind,
            tmp,
            file: Some(file),
        }))
    }

    fn stale_temporaries(&self, older_than: Duration, remove: bool) -> Result<Vec<ObjectInfo>> {
        let now = SystemTime::now();
        let mut found = Vec::new();
        let mut dirs = vec![self.root.clone()];
        for kind in ObjectKind::ALL
            .into_iter()
            .filter(|k| *k != ObjectKind::Config)
        {
            dirs.push(self.root.join(kind.dir()));
        }
        dirs.extend(self.object_dirs(ObjectKind::Pack)?);
        for dir in dirs {
            // Never through a symlink: it would sweep files elsewhere.
            if !fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
                continue;
            }
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.filter_map(|e| e.ok()) {
                let name = entry.file_name().to_string_lossy().into_owned();
                let Ok(meta) = entry.metadata() else { continue };
                let age = meta
                    .modified()
                    .ok()
                    .and_then(|t| now.duration_since(t).ok())
                    .unwrap_or_default();
                if !name.starts_with(TMP_PREFIX) || meta.is_dir() || age < older_than {
                    continue;
                }
                if remove {
                    match fs::remove_file(entry.path()) {
                        Ok(()) => {}
                        Err(e) if e.kind() == IoKind::NotFound => continue,
                        Err(e) => return Err(Error::io(&entry.path(), "cannot delete", e)),
                    }
                }
                let rel = entry.path();
                let rel = rel.strip_prefix(&self.root).unwrap_or(&rel);
                found.push(ObjectInfo {
                    name: rel.display().to_string(),
                    size: meta.len(),
                });
            }
        }
        Ok(found)
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
        let path = self.storage.path(self.kind, name)?;
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

impl LocalStorage {
    fn write_durably(&self, tmp: &Path, data: &[u8]) -> Result<()> {
        let mut file = self.new_file(tmp)?;
        file.write_all(data)
            .map_err(|e| Error::io(tmp, "cannot write", e))?;
        file.sync_all()
            .map_err(|e| Error::io(tmp, "cannot sync", e))
    }
}

/// List the objects in `dir`. Entries that are not regular files (symlinks,
/// FIFOs, directories…) are listed too, with size 0: reading them fails as
/// damage, so `check` and the commands that read them say so.
fn list_dir(dir: &Path, kind: ObjectKind, out: &mut Vec<ObjectInfo>) -> Result<()> {
    check_real_dir(dir)?;
    if kind == ObjectKind::Config {
        let path = dir.join("config");
        match fs::symlink_metadata(&path) {
            Ok(meta) if !meta.is_dir() => out.push(ObjectInfo {
                name: "config".into(),
                size: meta.len(),
            }),
            Ok(_) => {}
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
        // Objects are named by 64 hex digits: anything else (a temporary
        // file, notes someone left) is not an object and never listed.
        if name.len() != 64 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        // `DirEntry::metadata` does not follow symlinks.
        let meta = match entry.metadata() {
            Ok(m) => m,
            Err(e) if e.kind() == IoKind::NotFound => continue,
            Err(e) => return Err(Error::io(&entry.path(), "cannot stat", e)),
        };
        out.push(ObjectInfo {
            name,
            size: if meta.is_file() { meta.size() } else { 0 },
        });
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
        let name = "ab".repeat(32);
        storage.write(ObjectKind::Index, &name, b"x").unwrap();
        let names: Vec<_> = storage
            .list(ObjectKind::Index)
            .unwrap()
            .into_iter()
            .map(|o| o.name)
            .collect();
        assert_eq!(names, vec![name]);
    }
}
