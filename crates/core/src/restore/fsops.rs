//! Creating filesystem objects and applying metadata, never following a
//! symlink that is already in the target or that restore just created.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::format::tree::{Node, NodeKind, Time};

fn cpath(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Remove whatever is at `path` without following symlinks; directories
/// are removed with their contents.
pub fn remove_any(path: &Path) -> io::Result<()> {
    match path.symlink_metadata() {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Prefix of the temporary files restore writes before renaming them.
pub const TEMPORARY_PREFIX: &str = ".strata-restore-";

/// A new name, in the directory of `path`, for a file on its way there.
fn temporary_name(path: &Path) -> PathBuf {
    let suffix = hex::encode(crate::crypto::random_bytes::<8>());
    path.with_file_name(format!("{TEMPORARY_PREFIX}{suffix}"))
}

/// Create a new regular file of `size` bytes (holes) for the data of
/// `path`, under a temporary name in the same directory; returns the name.
pub fn create_temporary(path: &Path, size: u64) -> io::Result<PathBuf> {
    let tmp = temporary_name(path);
    let file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    if let Err(e) = file.set_len(size) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(tmp)
}

/// Whether what is at `path` (`meta`, not followed) is already the
/// symlink, fifo or device `node` describes: same type, same target or
/// device number.
pub fn same_special(path: &Path, meta: &fs::Metadata, node: &Node) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let t = meta.file_type();
    match node.kind {
        NodeKind::Symlink => {
            t.is_symlink()
                && fs::read_link(path).is_ok_and(|target| {
                    Some(target.as_os_str().as_bytes()) == node.target.as_deref()
                })
        }
        NodeKind::Fifo => t.is_fifo(),
        NodeKind::Chardev => t.is_char_device() && Some(meta.rdev()) == node.rdev,
        NodeKind::Blockdev => t.is_block_device() && Some(meta.rdev()) == node.rdev,
        _ => false,
    }
}

/// Rename the complete temporary file `tmp` to `path`; with `sync`, its
/// data is made durable first (it replaces a file: a crash must leave the
/// old or the new contents).
pub fn put_in_place(tmp: &Path, path: &Path, sync: bool) -> io::Result<()> {
    if sync {
        fs::File::open(tmp)?.sync_all()?;
    }
    // What is in the way and is not a file (a directory, or a symlink,
    // which rename would replace anyway) goes only now that the data is
    // complete.
    if path.symlink_metadata().is_ok_and(|m| m.is_dir()) {
        remove_any(path)?;
    }
    fs::rename(tmp, path)
}

/// Make `path` another name of the file `first`, replacing atomically
/// what is at `path` (a directory in its way is removed).
pub fn link_in_place(first: &Path, path: &Path) -> io::Result<()> {
    if path.symlink_metadata().is_ok_and(|m| m.is_dir()) {
        remove_any(path)?;
    }
    let tmp = temporary_name(path);
    fs::hard_link(first, &tmp)?;
    fs::rename(&tmp, path).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

/// Remove the temporary files of a restore that stopped.
pub(crate) fn discard_temporaries(jobs: &[super::FileJob]) {
    for tmp in jobs.iter().filter_map(|j| j.tmp.as_ref()) {
        let _ = fs::remove_file(tmp);
    }
}

/// Open an existing restored file for writing data into it.
pub fn open_for_write(path: &Path) -> io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Create a special file (fifo, character or block device).
pub fn create_special(path: &Path, node: &Node) -> io::Result<()> {
    let c = cpath(path)?;
    let perm = (node.mode & 0o777) as libc::mode_t;
    let (kind, rdev) = match node.kind {
        NodeKind::Fifo => (libc::S_IFIFO, 0),
        NodeKind::Chardev => (libc::S_IFCHR, node.rdev.unwrap_or(0)),
        NodeKind::Blockdev => (libc::S_IFBLK, node.rdev.unwrap_or(0)),
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "not a special file",
            ))
        }
    };
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    check(unsafe { libc::mknod(c.as_ptr(), kind | perm, rdev as libc::dev_t) })
}

pub fn create_symlink(path: &Path, target: &[u8]) -> io::Result<()> {
    std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(target), path)
}

fn timespec(t: Time) -> libc::timespec {
    libc::timespec {
        tv_sec: t.s as libc::time_t,
        tv_nsec: t.ns as _,
    }
}

/// Set atime and mtime with nanoseconds, on the link itself for symlinks.
pub fn set_times(path: &Path, atime: Time, mtime: Time) -> io::Result<()> {
    let c = cpath(path)?;
    let times = [timespec(atime), timespec(mtime)];
    // SAFETY: valid path and a two-element timespec array, as utimensat requires.
    check(unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
}

/// chmod that refuses to act through a symlink (should one have been put
/// in place of what restore created).
fn chmod_nofollow(path: &Path, mode: u32) -> io::Result<()> {
    let c = cpath(path)?;
    // SAFETY: valid NUL-terminated path for the duration of the call.
    check(unsafe {
        libc::fchmodat(
            libc::AT_FDCWD,
            c.as_ptr(),
            mode as libc::mode_t,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
}

/// One metadata field that could not be restored.
pub struct FieldFailure {
    pub field: &'static str,
    pub error: io::Error,
}

/// Apply owner, mode, xattrs and times; returns what failed. Order matters:
/// chown clears setuid bits, so the mode comes after it; times come last
/// because setting xattrs changes nothing but ctime, while mode changes are
/// done before we stamp the times.
pub fn apply_metadata(path: &Path, node: &Node, try_owner: bool) -> Vec<FieldFailure> {
    let mut failures = Vec::new();
    let mut fail = |field, r: io::Result<()>| {
        if let Err(error) = r {
            failures.push(FieldFailure { field, error });
        }
    };
    let owned = try_owner && {
        let chown = std::os::unix::fs::lchown(path, Some(node.uid), Some(node.gid));
        let ok = chown.is_ok();
        fail("owner", chown);
        ok
    };
    for x in &node.xattrs {
        let name = std::ffi::OsStr::from_bytes(&x.name);
        fail("xattr", xattr::set(path, name, &x.value));
    }
    let mut mode = node.mode;
    // A setuid or setgid program owned by whoever restores it would run
    // with their rights: without its owner it loses the bits (as with
    // `cp -p` and `tar`). On directories setgid only means inheritance.
    if !owned && node.kind != NodeKind::Dir && mode & 0o6000 != 0 {
        mode &= !0o6000;
        fail(
            "setuid/setgid bits",
            Err(io::Error::other(
                "cleared, because the file's owner could not be restored",
            )),
        );
    }
    if node.kind != NodeKind::Symlink {
        fail("mode", chmod_nofollow(path, mode));
    }
    fail("times", set_times(path, node.atime, node.mtime));
    failures
}
