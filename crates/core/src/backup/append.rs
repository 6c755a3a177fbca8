//! Files that only grow at the end (`--append-only`): a database like
//! ZODB's `Data.fs`, a log, an mbox. When such a file grew since the
//! parent snapshot, its old part is verified cheaply and only the bytes
//! from the last *stable* cut point on are read and chunked.
//!
//! Why the result equals a full read (docs/design.md, "Growing files"):
//! FastCDC decides each cut from the bytes between the previous cut and
//! the cut itself. A cut of the old file is *stable* when the chunker
//! decided it with as much data as it would have had in a longer file:
//! a whole maximal window was there (`max` bytes), or the window held at
//! least `avg` bytes and the cut fell inside it rather than at its end.
//! The cuts up to the first unstable one are therefore the cuts of any
//! file that starts with the same bytes, and chunking restarted there
//! yields the cuts a full read gives. What must hold is that the old part
//! is unchanged, which is what the verification checks: the keyed hash of
//! every old chunk from the last kept one to the old end (these bytes are
//! read anyway), plus a few kept chunks spread over the rest (`quick`),
//! or every old chunk (`full`).

use std::fs::File;
use std::os::unix::fs::FileExt;

use crate::format::config::ChunkerParams;
use crate::id::Id;
use crate::repository::Repository;

/// How much of a grown file's old part is verified before only its tail
/// is read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AppendVerify {
    /// The old chunks from the last kept one to the old end, and a few
    /// kept chunks spread over the file.
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
        let (avg, max) = (u64::from(params.avg_size), u64::from(params.max_size));
        let stable = |&(start, len, _): &(u64, u64, Id)| {
            let window = size - start;
            window >= max || (window >= avg && start + len < size)
        };
        let kept = old.iter().take_while(|c| stable(c)).count();
        let restart = old.get(kept).map_or(size, |c| c.0);
        Some(AppendPlan {
            old,
            kept,
            restart,
            old_size: size,
            verify,
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(lens: &[u64], verify: AppendVerify) -> AppendPlan {
        let size: u64 = lens.iter().sum();
        let mut old = Vec::new();
        let mut off = 0;
        for (i, &l) in lens.iter().enumerate() {
            old.push((off, l, Id([i as u8; 32])));
            off += l;
        }
        let (avg, max) = (16u64, 64u64);
        let kept = old
            .iter()
            .take_while(|&&(s, l, _)| size - s >= max || (size - s >= avg && s + l < size))
            .count();
        AppendPlan {
            restart: old.get(kept).map_or(size, |c| c.0),
            old,
            kept,
            old_size: size,
            verify,
        }
    }

    #[test]
    fn the_last_chunk_and_short_tails_are_read_again() {
        // 100 bytes: cuts at 30, 60, 80 (window 40 >= avg 16, cut inside),
        // then 95 (window 20, cut inside: stable), then the end.
        let p = plan(&[30, 30, 20, 15, 5], AppendVerify::Quick);
        assert_eq!(p.kept, 4);
        assert_eq!(p.restart, 95);
        // A cut found in a window under avg is not stable.
        let p = plan(&[40, 50, 4, 6], AppendVerify::Quick);
        assert_eq!(p.kept, 2);
        assert_eq!(p.restart, 90);
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
