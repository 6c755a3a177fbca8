//! Saving one file's contents: open without following links and without
//! touching atime, read only data extents of sparse files, chunk, save.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use super::append::AppendPlan;
use super::delta::{ChunkSaver, DeltaPlan};
use super::Progress;
use crate::chunker::{ChunkError, Chunker};
use crate::error::Error;
use crate::format::tree::{Extent, Node};
use crate::id::Id;
use crate::packer::BlobSaver;
use crate::repository::Repository;
use crate::walk::{sparse_extents, ExtentReader};

/// What reading one file did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileOutcome {
    pub size: u64,
    pub bytes_read: u64,
    pub blobs_added: u64,
    pub data_added: u64,
    pub stored_added: u64,
}

impl FileOutcome {
    pub fn unchanged(size: u64) -> FileOutcome {
        FileOutcome {
            size,
            ..FileOutcome::default()
        }
    }
}

/// Why a file was not saved.
#[derive(Debug)]
pub enum FileError {
    /// The file could not be read: it is skipped and the snapshot is partial.
    Unreadable(String),
    /// The repository failed: the backup must stop.
    Repository(Error),
}

/// How much of a file the walker asks the kernel to read ahead while the
/// file waits in the queue for a worker.
const PREFETCH: u64 = 64 << 20;

/// Open a file for a worker and start reading its beginning in the
/// background, so that workers find data in the page cache instead of
/// waiting for the disk one file at a time.
pub(super) fn open_and_prefetch(path: &Path, size: u64) -> io::Result<File> {
    let file = open_for_reading(path)?;
    if size > 0 {
        let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
        // SAFETY: advisory call on a valid descriptor; no memory is touched.
        unsafe {
            libc::posix_fadvise(
                fd,
                0,
                size.min(PREFETCH) as libc::off_t,
                libc::POSIX_FADV_WILLNEED,
            );
            if size > PREFETCH {
                libc::posix_fadvise(fd, 0, 0, libc::POSIX_FADV_SEQUENTIAL);
            }
        }
    }
    Ok(file)
}

/// Open a file to read its data: never through a symlink, and without
/// updating its atime where the kernel allows.
pub fn open_for_reading(path: &Path) -> io::Result<File> {
    let open = |flags| OpenOptions::new().read(true).custom_flags(flags).open(path);
    match open(libc::O_NOFOLLOW | libc::O_NOATIME) {
        // O_NOATIME is refused on files we do not own unless we are root.
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => open(libc::O_NOFOLLOW),
        other => other,
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn save_file(
    saver: &BlobSaver,
    chunker: &Chunker,
    file: io::Result<File>,
    path: &Path,
    mut node: Node,
    append: Option<&AppendPlan>,
    delta: Option<DeltaPlan>,
    buf: &mut Vec<u8>,
    progress: &dyn Progress,
) -> (Node, Result<FileOutcome, FileError>) {
    let result = read_and_save(
        saver, chunker, file, path, &mut node, append, delta, buf, progress,
    );
    if let Ok(outcome) = &result {
        progress.file_done(path, outcome);
    }
    (node, result)
}

#[allow(clippy::too_many_arguments)]
fn read_and_save(
    saver: &BlobSaver,
    chunker: &Chunker,
    file: io::Result<File>,
    path: &Path,
    node: &mut Node,
    append: Option<&AppendPlan>,
    delta: Option<DeltaPlan>,
    buf: &mut Vec<u8>,
    progress: &dyn Progress,
) -> Result<FileOutcome, FileError> {
    let unreadable = |what: &str, e: io::Error| FileError::Unreadable(format!("{what}: {e}"));
    let file = file.map_err(|e| unreadable("cannot open", e))?;
    let before = file.metadata().map_err(|e| unreadable("cannot stat", e))?;
    if before.ino() != node.inode || before.size() != node.size {
        // Replaced or changed between the directory scan and open.
        node.inode = before.ino();
        node.size = before.size();
        node.mtime = crate::walk::mtime(&before);
        node.ctime = crate::walk::ctime(&before);
    }
    let extents = sparse_extents(&file, &before);
    let mut outcome = FileOutcome {
        size: node.size,
        ..FileOutcome::default()
    };
    let mut content = Vec::new();
    // A grown append-only file: keep the old chunks, read from the restart.
    let mut start = 0u64;
    if let Some(plan) = append.filter(|p| extents.is_none() && before.size() > p.old_size) {
        match plan.verify(saver.repo(), &file, buf) {
            Ok(verified) => {
                content.extend(plan.kept_ids());
                start = plan.restart();
                outcome.bytes_read += verified;
            }
            Err(why) => progress.warning(
                path,
                &format!("append-only file changed before its old end ({why}): read in full"),
            ),
        }
    } else if append.is_some() {
        progress.warning(
            path,
            "append-only file did not grow (or is sparse): read in full",
        );
    }
    let keep = delta.is_some();
    let mut chunks = ChunkSaver::new(saver, delta, keep, start);
    let sink = |chunk: &[u8]| -> Result<(), Error> {
        content.push(chunks.save(chunk, &mut outcome)?);
        Ok(())
    };
    let read = match &extents {
        Some(ext) => chunker.chunk(ExtentReader::new(&file, ext.clone()), buf, sink),
        None if start > 0 => chunker.chunk(TailReader::new(&file, start), buf, sink),
        None => chunker.chunk(&file, buf, sink),
    };
    let read = read.map_err(|e| match e {
        ChunkError::Read(e) => unreadable("cannot read", e),
        ChunkError::Sink(e) => FileError::Repository(e),
    })?;
    outcome.bytes_read += read;
    if extents.is_none() {
        node.size = start + read;
    }
    if let Ok(after) = file.metadata() {
        if after.mtime() != before.mtime()
            || after.mtime_nsec() != before.mtime_nsec()
            || after.size() != before.size()
            || after.ctime() != before.ctime()
        {
            progress.warning(
                path,
                "file changed while it was read; the saved copy may be inconsistent",
            );
        }
    }
    node.content = Some(content);
    node.extents = extents;
    Ok(outcome)
}

/// Reads a file from an offset to its end, with positioned reads.
struct TailReader<'f> {
    file: &'f File,
    pos: u64,
}

impl<'f> TailReader<'f> {
    fn new(file: &'f File, pos: u64) -> Self {
        TailReader { file, pos }
    }
}

impl io::Read for TailReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = std::os::unix::fs::FileExt::read_at(self.file, out, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// The blob ids, and the data extents if it is sparse, that a backup would
/// record for the file at `path` as it is now. Nothing is saved.
pub fn content_of(repo: &Repository, path: &Path) -> io::Result<(Vec<Id>, Option<Vec<Extent>>)> {
    let file = open_for_reading(path)?;
    let extents = sparse_extents(&file, &file.metadata()?);
    let ids = chunk_ids(repo, &file, extents.as_deref())?;
    Ok((ids, extents))
}

/// The ids of the chunks of `file`'s data stream: the data `extents`
/// back to back for a sparse file, else all of it.
pub(crate) fn chunk_ids(
    repo: &Repository,
    file: &File,
    extents: Option<&[Extent]>,
) -> io::Result<Vec<Id>> {
    let chunker = Chunker::new(&repo.config().chunker);
    let mut ids = Vec::new();
    let mut buf = Vec::new();
    let sink = |chunk: &[u8]| -> Result<(), std::convert::Infallible> {
        ids.push(repo.key().blob_id(chunk));
        Ok(())
    };
    let read = match extents {
        Some(ext) => chunker.chunk(ExtentReader::new(file, ext.to_vec()), &mut buf, sink),
        None => chunker.chunk(file, &mut buf, sink),
    };
    match read {
        Ok(_) => Ok(ids),
        Err(ChunkError::Read(e)) => Err(e),
        Err(ChunkError::Sink(never)) => match never {},
    }
}
