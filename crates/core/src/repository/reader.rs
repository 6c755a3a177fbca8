//! Reading a file of a snapshot as a byte stream (`dump`, restoring a
//! database): blobs in order, read a few ahead by worker threads (a delta
//! costs its chain's decoding, which then runs on every core), zeros for
//! the holes of sparse files.

use std::io::{self, Read};
use std::sync::Arc;

use crossbeam_channel::{bounded, Receiver};

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

/// Blobs read ahead and not yet consumed, at most: with chunks of at most
/// 4 MiB (and a delta's chain decoded one base at a time), tens of MiB.
const AHEAD: usize = 4;

/// Each blob's result, in file order.
type Ahead = Receiver<Receiver<crate::Result<Vec<u8>>>>;

/// Read `blobs` in order with worker threads, [`AHEAD`] at most in flight.
/// Dropping the receiver stops the threads after the blobs in hand.
fn read_ahead(repo: Arc<Repository>, blobs: Vec<Id>) -> Ahead {
    let (order_tx, order_rx) = bounded(AHEAD);
    let (job_tx, job_rx) = bounded::<(Id, crossbeam_channel::Sender<_>)>(AHEAD);
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(4);
    for _ in 0..workers {
        let (repo, job_rx) = (repo.clone(), job_rx.clone());
        std::thread::spawn(move || {
            for (id, reply) in job_rx {
                let _ = reply.send(repo.read_blob(&id));
            }
        });
    }
    std::thread::spawn(move || {
        for id in blobs {
            let (tx, rx) = bounded(1);
            if job_tx.send((id, tx)).is_err() || order_tx.send(rx).is_err() {
                return; // the reader was dropped
            }
        }
    });
    order_rx
}

/// Reads a file node's bytes, blobs read ahead in order, producing zeros
/// for the holes of sparse files.
pub struct FileReader {
    repo: Arc<Repository>,
    blobs: Vec<Id>,
    /// Started at the first read.
    ahead: Option<Ahead>,
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
            blobs: n.content.clone().unwrap_or_default(),
            ahead: None,
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
            let (repo, blobs) = (&self.repo, &mut self.blobs);
            let ahead = self
                .ahead
                .get_or_insert_with(|| read_ahead(repo.clone(), std::mem::take(blobs)));
            match ahead.recv() {
                Ok(blob) => {
                    self.current = blob
                        .recv()
                        .unwrap_or_else(|_| {
                            Err(crate::Error::invalid(
                                "a reading thread stopped unexpectedly",
                            ))
                        })
                        .map_err(io::Error::other)?;
                    self.pos_in_current = 0;
                }
                // every blob was read
                Err(_) => return Ok(0),
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
