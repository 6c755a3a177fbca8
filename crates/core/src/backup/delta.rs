//! Delta storage at backup time (docs/design.md, "Delta storage"): a new
//! chunk of a stream, or of a big file that changed, is stored against the
//! chunk of its previous version that it overlaps most, or against an older
//! version of that chunk, chosen so that chains stay short (skip deltas).

use super::file::FileOutcome;
use crate::error::Result;
use crate::format::pack::BlobKind;
use crate::id::Id;
use crate::packer::{BlobSaver, Saved};
use crate::repository::Repository;

/// Files at least this big that changed are stored with deltas by
/// `--delta auto`; smaller ones only when a `--delta-pattern` names them.
pub const FILE_THRESHOLD: u64 = 4 << 20;

/// With `--delta auto`, a file stops trying deltas after this many new
/// chunks in a row that no delta made much smaller (new content, or content
/// that compresses badly): trying costs a base read and an encoding.
const AUTO_MISSES: u32 = 8;

/// The deepest chain a backup makes, whatever the sequence number says
/// (the format allows [`crate::format::delta::MAX_CHAIN`]).
const WRITE_LIMIT: usize = 32;

/// The previous version of some content (a stream of the parent snapshot,
/// or a file's node there): where its chunks were.
pub(super) struct Previous {
    /// Offset, length and id of each old chunk, in order.
    chunks: Vec<(u64, u64, Id)>,
}

impl Previous {
    /// The previous version of content that was `content`, if every chunk
    /// is in the index.
    pub(super) fn new(repo: &Repository, content: &[Id]) -> Option<Previous> {
        let index = repo.index();
        let mut offset = 0;
        let mut chunks = Vec::with_capacity(content.len());
        for id in content {
            let len = u64::from(index.get(id)?.raw_length);
            chunks.push((offset, len, *id));
            offset += len;
        }
        Some(Previous { chunks })
    }

    /// The old chunk overlapping most the `len` bytes at `offset`: edits
    /// before a chunk shift it a little, so its old version is there.
    fn base_for(&self, offset: u64, len: u64) -> Option<Id> {
        let first = self.chunks.partition_point(|(o, l, _)| o + l <= offset);
        self.chunks[first..]
            .iter()
            .take_while(|(o, _, _)| *o < offset + len)
            .max_by_key(|(o, l, _)| (o + l).min(offset + len) - (*o).max(offset))
            .map(|c| c.2)
    }
}

/// How a content's new chunks may be stored as deltas.
pub(super) struct DeltaPlan<'p> {
    pub previous: &'p Previous,
    /// The new snapshot's sequence number (docs/format.md, "Snapshots").
    pub sequence: u64,
    /// Stop trying after [`AUTO_MISSES`] chunks in a row that gained
    /// nothing (`--delta auto` on files), or never (streams, patterns).
    pub give_up: bool,
}

/// The depth of the base a chunk of the backup numbered `sequence` is
/// stored against: `popcount(sequence) - 1`. Version *n* of a chunk is a
/// delta against version *n* with its lowest set bit cleared, so a chain
/// is at most `popcount(n)` deltas long, and most deltas span one version.
fn base_depth(sequence: u64) -> Option<usize> {
    (sequence > 0).then(|| (sequence.count_ones() as usize - 1).min(WRITE_LIMIT - 1))
}

/// Note the chunks of unchanged content stored with deltas, and their
/// chains, as wanted by the next backup (for storage that keeps blobs).
pub(super) fn note_unchanged(saver: &BlobSaver, content: &[Id]) {
    let repo = saver.repo();
    if !repo.deltas() || !repo.storage().keeps_blobs() {
        return;
    }
    for id in content {
        saver.note_kept(chain(repo, id).unwrap_or_else(|| vec![*id]));
    }
}

/// `id` and its bases, down to the whole blob, from the index; `None` if
/// the chain is broken or too long.
fn chain(repo: &Repository, id: &Id) -> Option<Vec<Id>> {
    let index = repo.index();
    let mut out = vec![*id];
    let mut at = *id;
    loop {
        match index.get(&at)?.base {
            None => return Some(out),
            Some(base) => {
                if out.len() > crate::format::delta::MAX_CHAIN {
                    return None;
                }
                out.push(base);
                at = base;
            }
        }
    }
}

/// Saves one content's chunks in order, as deltas where a plan allows and
/// a delta is much smaller, and counts what was added in `outcome`.
pub(super) struct ChunkSaver<'a> {
    saver: &'a BlobSaver,
    plan: Option<DeltaPlan<'a>>,
    /// New chunks are kept in the local cache of a remote repository, as
    /// bases for the next version.
    keep: bool,
    /// Where the next chunk starts in the content.
    offset: u64,
    /// Consecutive new chunks often share a base: read it once.
    base_read: Option<(Id, Vec<u8>)>,
    misses: u32,
}

impl<'a> ChunkSaver<'a> {
    /// Chunks from `offset` on (a grown file's tail starts past its old
    /// end); `keep`: content whose next version will want these chunks as
    /// bases (streams: always; files: once they changed).
    pub(super) fn new(
        saver: &'a BlobSaver,
        plan: Option<DeltaPlan<'a>>,
        keep: bool,
        offset: u64,
    ) -> Self {
        let deltas = saver.repo().deltas();
        ChunkSaver {
            saver,
            keep: keep && deltas,
            plan: plan.filter(|_| deltas),
            offset,
            base_read: None,
            misses: 0,
        }
    }

    /// Save the next chunk.
    pub(super) fn save(&mut self, chunk: &[u8], outcome: &mut FileOutcome) -> Result<Id> {
        crate::interrupt::check()?;
        let repo = self.saver.repo();
        let id = repo.key().blob_id(chunk);
        let base = match self.saver.known(&id) {
            false => self.base(chunk.len() as u64),
            true => None,
        };
        let with_base = base.and_then(|b| self.base_read.as_ref().filter(|(have, _)| *have == b));
        let saved: Saved = match with_base {
            Some((b, plain)) => {
                let saved = self.saver.save_delta(chunk, *b, plain)?;
                if saved.delta {
                    self.misses = 0;
                } else {
                    self.misses += 1;
                }
                saved
            }
            None if self.keep => self.saver.save_kept(id, chunk)?,
            None => self.saver.save_with_id(BlobKind::Data, id, chunk)?,
        };
        if self.keep && repo.storage().keeps_blobs() {
            let chain = match (saved.delta, base) {
                (true, Some(b)) => chain(repo, &b).map(|c| [id].into_iter().chain(c).collect()),
                _ => chain(repo, &id),
            };
            self.saver.note_kept(chain.unwrap_or_else(|| vec![id]));
        }
        self.offset += chunk.len() as u64;
        if saved.added {
            outcome.blobs_added += 1;
            outcome.data_added += chunk.len() as u64;
            outcome.stored_added += saved.stored;
        }
        Ok(saved.id)
    }

    /// The base for a new chunk of `len` bytes at the current offset, its
    /// plaintext read into `base_read`; `None` to store the chunk whole.
    fn base(&mut self, len: u64) -> Option<Id> {
        let plan = self.plan.as_ref()?;
        if plan.give_up && self.misses >= AUTO_MISSES {
            return None;
        }
        let repo = self.saver.repo();
        let old = plan.previous.base_for(self.offset, len)?;
        let chain = chain(repo, &old)?;
        let depth = chain.len() - 1;
        let base = chain[depth - depth.min(base_depth(plan.sequence)?)];
        if self
            .base_read
            .as_ref()
            .is_none_or(|(have, _)| *have != base)
        {
            // A base that cannot be had costs the saving, not the backup.
            self.base_read = repo.read_base(&base).map(|plain| (base, plain));
        }
        self.base_read
            .as_ref()
            .filter(|(have, _)| *have == base)
            .map(|_| base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_delta_chains_stay_logarithmic() {
        // One chunk that changes at every backup: the chain of each version
        // (newest first, whole version 0 last), built the way `base` picks.
        let mut chains: Vec<Vec<u64>> = vec![vec![0]];
        for n in 1u64..=4096 {
            let prev = &chains[(n - 1) as usize];
            let depth = prev.len() - 1;
            let base = prev[depth - depth.min(base_depth(n).unwrap())];
            // The classic skip delta: n's lowest set bit cleared.
            assert_eq!(base, n & (n - 1), "version {n}");
            let mut chain = vec![n];
            chain.extend(chains[base as usize].iter());
            assert_eq!(chain.len() - 1, n.count_ones() as usize);
            chains.push(chain);
        }
        assert!(chains.iter().all(|c| c.len() <= 13));
        assert_eq!(base_depth(0), None);
        assert_eq!(base_depth(u64::MAX), Some(WRITE_LIMIT - 1));
    }
}
