//! Files that only grow at the end (`--append-only`): a database like
//! ZODB's `Data.fs`, a log, an mbox. When such a file grew since the
//! parent snapshot, its old part is verified cheaply and only the bytes
//! from the last *stable* cut point on are read and chunked.
//!
//! Why the result equals a full read (docs/design.md, "Growing files"):
//! every cut of the old file but its end is found again in the grown file
//! ([`stable_prefix`]), so chunking restarted at the start of the old last
//! chunk yields the cuts a full read gives, provided the old part is
//! unchanged. That is what the verification checks: the keyed hashes of
//! the old last chunk and the one before it (those bytes are read anyway),
//! plus a few chunks spread over the rest (`quick`), or of every old chunk
//! (`full`).

use std::fs::File;
use std::os::unix::fs::FileExt;

use crate::format::config::ChunkerParams;
use crate::id::Id;
use crate::repository::Repository;

/// How much of a grown file's old part is verified before only its tail
/// is read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AppendVerify {
    /// The old last chunk and the one before it, and a few chunks spread
    /// over the file.
    #[default]
    Quick,
    /// Every old chunk (read and hashed, not stored).
    Full,
}

/// Kept chunks sampled by a quick verification besides the last one.
const SAMPLES: usize = 4;

/// The plan for a grown file: which old chunks are kept and where reading
/// starts again.
#[derive(Clone, Debug)]
pub(super) struct AppendPlan {
    /// Every chunk of the old file: offset, length, id.
    old: Vec<(u64, u64, Id)>,
    /// Old chunks `..kept` are kept; reading restarts at the offset of
    /// chunk `kept` (or the old end when all are kept).
    kept: usize,
    restart: u64,
    pub old_size: u64,
    verify: AppendVerify,
}

impl AppendPlan {
    /// A plan for a file whose parent version had `content` and `size`,
    /// if the lengths of its chunks are known from the index.
    pub(super) fn new(
        repo: &Repository,
        params: &ChunkerParams,
        content: &[Id],
        size: u64,
        verify: AppendVerify,
    ) -> Option<AppendPlan> {
        let index = repo.index();
        let mut old = Vec::with_capacity(content.len());
        let mut offset = 0u64;
        for id in content {
            let len = u64::from(index.get(id)?.raw_length);
            old.push((offset, len, *id));
            offset += len;
        }
        if offset != size || old.is_empty() {
            return None;
        }
        let lens: Vec<u64> = old.iter().map(|c| c.1).collect();
        let kept = stable_prefix(&lens, params);
        let restart = old.get(kept).map_or(size, |c| c.0);
        Some(AppendPlan {
            old,
            kept,
            restart,
            old_size: size,
            verify,
        })
    }

    /// What reading the file of `new_size` bytes this way costs: the
    /// verified chunks and the tail from the restart (they overlap in the
    /// old last chunk, counted twice as it is read twice).
    pub(super) fn cost(&self, new_size: u64) -> u64 {
        let verified: u64 = self.to_verify().iter().map(|&i| self.old[i].1).sum();
        verified + new_size.saturating_sub(self.restart)
    }

    pub(super) fn restart(&self) -> u64 {
        self.restart
    }

    /// The ids of the kept chunks, in order.
    pub(super) fn kept_ids(&self) -> impl Iterator<Item = Id> + '_ {
        self.old[..self.kept].iter().map(|c| c.2)
    }

    /// The old chunks to hash: from the last kept one to the old end,
    /// plus samples (quick) or all of them (full).
    fn to_verify(&self) -> Vec<usize> {
        let n = self.old.len();
        let mut idx: Vec<usize> = match self.verify {
            AppendVerify::Full => (0..n).collect(),
            AppendVerify::Quick => {
                let last_kept = self.kept.saturating_sub(1);
                let mut v: Vec<usize> = (last_kept..n).collect();
                v.extend((0..SAMPLES).map(|i| i * last_kept / SAMPLES));
                v
            }
        };
        idx.sort_unstable();
        idx.dedup();
        idx
    }

    /// Hash the chunks to verify; `Ok(bytes read)` if they all match.
    pub(super) fn verify(
        &self,
        repo: &Repository,
        file: &File,
        buf: &mut Vec<u8>,
    ) -> Result<u64, String> {
        let mut read = 0u64;
        for i in self.to_verify() {
            crate::interrupt::check().map_err(|e| e.to_string())?;
            let (offset, len, id) = self.old[i];
            buf.resize(len as usize, 0);
            file.read_exact_at(buf, offset)
                .map_err(|e| format!("cannot read bytes {offset}..{}: {e}", offset + len))?;
            read += len;
            if repo.key().blob_id(buf) != id {
                return Err(format!(
                    "bytes {offset}..{} differ from the parent snapshot's",
                    offset + len
                ));
            }
        }
        Ok(read)
    }
}

/// How many of the chunks (by length) of a stream are cut where a longer
/// stream with the same beginning is cut too. FastCDC looks for a cut in
/// at most `max` bytes from the chunk's start, testing each position with
/// the hash of the bytes before it and a mask chosen by the position
/// alone (a shorter window only ends the search earlier). So a cut found
/// before the end of the stream, or at `max`, is found in any longer
/// stream too: every chunk is stable but a last one shorter than `max`,
/// which the end of the stream cut.
fn stable_prefix(lens: &[u64], params: &ChunkerParams) -> usize {
    let max = u64::from(params.max_size);
    match lens.split_last() {
        Some((&last, _)) if last >= max => lens.len(),
        Some(_) => lens.len() - 1,
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> ChunkerParams {
        ChunkerParams {
            seed: 5,
            min_size: 4,
            avg_size: 16,
            max_size: 64,
        }
    }

    fn plan(lens: &[u64], verify: AppendVerify) -> AppendPlan {
        let size: u64 = lens.iter().sum();
        let mut old = Vec::new();
        let mut off = 0;
        for (i, &l) in lens.iter().enumerate() {
            old.push((off, l, Id([i as u8; 32])));
            off += l;
        }
        let kept = stable_prefix(lens, &params());
        AppendPlan {
            restart: old.get(kept).map_or(size, |c| c.0),
            old,
            kept,
            old_size: size,
            verify,
        }
    }

    /// The property the whole scheme rests on, on the real chunker: cut a
    /// prefix of a stream, restart at its last stable cut, and the cuts
    /// equal those of the whole stream.
    #[test]
    fn restarting_at_the_stable_prefix_gives_the_cuts_of_a_full_read() {
        let p = ChunkerParams {
            seed: 11,
            min_size: 256,
            avg_size: 1024,
            max_size: 4096,
        };
        let chunker = crate::chunker::Chunker::new(&p);
        let cuts = |data: &[u8]| {
            let mut lens = Vec::new();
            let mut buf = Vec::new();
            chunker
                .chunk::<_, ()>(data, &mut buf, |c| {
                    lens.push(c.len() as u64);
                    Ok(())
                })
                .unwrap();
            lens
        };
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut data = Vec::new();
        for _ in 0..40_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Runs of zeros now and then: cuts at max and at the window end.
            data.push(if (x >> 20) % 50 < 3 { 0 } else { x as u8 });
        }
        let full = cuts(&data);
        for old_len in (1..data.len()).step_by(97) {
            let old = cuts(&data[..old_len]);
            let kept = stable_prefix(&old, &p);
            let restart: u64 = old[..kept].iter().sum();
            let mut again = old[..kept].to_vec();
            again.extend(cuts(&data[restart as usize..]));
            assert_eq!(again, full, "old length {old_len}");
        }
    }

    #[test]
    fn only_the_last_chunk_is_read_again() {
        let p = plan(&[30, 30, 20, 15, 5], AppendVerify::Quick);
        assert_eq!((p.kept, p.restart), (4, 95));
        // A last chunk cut at the maximum was not cut by the end.
        let p = plan(&[40, 50, 64], AppendVerify::Quick);
        assert_eq!((p.kept, p.restart), (3, 154));
    }

    #[test]
    fn quick_verification_covers_the_old_end_and_samples() {
        let lens = vec![20u64; 50];
        let p = plan(&lens, AppendVerify::Quick);
        let v = p.to_verify();
        assert!(v.contains(&(p.kept - 1)), "the last kept chunk");
        assert!(v.contains(&49), "the old last chunk");
        assert!(v.contains(&0));
        assert!(v.len() < 12, "{v:?}");
        assert_eq!(plan(&lens, AppendVerify::Full).to_verify().len(), 50);
    }
}
