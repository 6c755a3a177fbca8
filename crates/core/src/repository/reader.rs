//! Reading a file of a snapshot as a byte stream (`dump`, restoring a
//! database): one blob at a time, zeros for the holes of sparse files.

use std::io::{self, Read};
use std::sync::Arc;

use crate::format::tree::Node;
use crate::id::Id;
use crate::repository::Repository;

impl Repository {
    /// A reader of the contents of the file `node`. Read errors carry the
    /// repository's [`crate::Error`] (`io::Error::downcast` gives it back).
    pub fn file_reader(self: &Arc<Self>, node: &Node) -> FileReader {
        FileReader::new(self.clone(), node)
    }
}

/// Reads a file node's bytes, fetching one blob at a time and producing
/// zeros for the holes of sparse files.
pub struct FileReader {
    repo: Arc<Repository>,
    blobs: std::vec::IntoIter<Id>,
    /// (file offset, length) of each data extent; dense files have one.
    extents: std::vec::IntoIter<(u64, u64)>,
    current: Vec<u8>,
    pos_in_current: usize,
    file_pos: u64,
    size: u64,
    extent: Option<(u64, u64)>,
}

impl FileReader {
    fn new(repo: Arc<Repository>, n: &Node) -> FileReader {
        let extents: Vec<(u64, u64)> = match &n.extents {
            Some(e) => e.iter().map(|x| (x.offset, x.length)).collect(),
            None => vec![(0, u64::MAX)],
        };
        FileReader {
            repo,
            blobs: n.content.clone().unwrap_or_default().into_iter(),
            extents: extents.into_iter(),
            current: Vec::new(),
            pos_in_current: 0,
            file_pos: 0,
            size: n.size,
            extent: None,
        }
    }

    fn next_data(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos_in_current == self.current.len() {
            match self.blobs.next() {
                Some(id) => {
                    self.current = self.repo.read_blob(&id).map_err(io::Error::other)?;
                    self.pos_in_current = 0;
                }
                None => return Ok(0),
            }
        }
        let n = (self.current.len() - self.pos_in_current).min(out.len());
        out[..n].copy_from_slice(&self.current[self.pos_in_current..self.pos_in_current + n]);
        self.pos_in_current += n;
        Ok(n)
    }
}

impl Read for FileReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() || self.file_pos >= self.size {
            return Ok(0);
        }
        let max = ((self.size - self.file_pos).min(out.len() as u64)) as usize;
        loop {
            if self
                .extent
                .is_none_or(|(off, len)| self.file_pos >= off.saturating_add(len))
            {
                self.extent = self.extents.next();
            }
            let Some((off, len)) = self.extent else {
                // after the last extent: a trailing hole
                out[..max].fill(0);
                self.file_pos += max as u64;
                return Ok(max);
            };
            if self.file_pos < off {
                let n = ((off - self.file_pos) as usize).min(max);
                out[..n].fill(0);
                self.file_pos += n as u64;
                return Ok(n);
            }
            let n = ((off.saturating_add(len) - self.file_pos) as usize).min(max);
            if n == 0 {
                continue;
            }
            let got = self.next_data(&mut out[..n])?;
            if got == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file data ends before its size",
                ));
            }
            self.file_pos += got as u64;
            return Ok(got);
        }
    }
}
