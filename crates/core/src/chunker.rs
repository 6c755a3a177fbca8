//! Content-defined chunking with FastCDC (2020), seeded per repository.
//!
//! The gear table is XORed with the repository's secret seed, so the same
//! file cut in two repositories gives different boundaries and chunk sizes
//! do not fingerprint known content. We drive `fastcdc::v2020::cut_gear`
//! over our own buffer rather than using its `StreamCDC`, which copies the
//! whole look-ahead buffer after every chunk; here the remainder is moved
//! only when the buffer runs low, and chunks are handed out as slices.

use std::borrow::Cow;
use std::io::{self, Read};

use fastcdc::v2020::{cut_gear, get_gear_with_seed, select_masks, Normalization};

use crate::format::config::ChunkerParams;

pub struct Chunker {
    min: usize,
    avg: usize,
    max: usize,
    mask_s: u64,
    mask_l: u64,
    gear: Cow<'static, [u64]>,
    gear_ls: Cow<'static, [u64]>,
}

/// Why chunking a stream stopped.
#[derive(Debug)]
pub enum ChunkError<E> {
    /// Reading the source failed.
    Read(io::Error),
    /// The chunk consumer failed.
    Sink(E),
}

impl Chunker {
    pub fn new(p: &ChunkerParams) -> Chunker {
        let (mask_s, mask_l) = select_masks(p.avg_size as usize, Normalization::Level1);
        let (gear, gear_ls) = get_gear_with_seed(p.seed);
        Chunker {
            min: p.min_size as usize,
            avg: p.avg_size as usize,
            max: p.max_size as usize,
            mask_s,
            mask_l,
            gear,
            gear_ls,
        }
    }

    /// The size of the reusable buffer [`Chunker::chunk`] wants: one
    /// maximal chunk. Data is moved to its front only when a cut needs more
    /// than what is left, which is a small tail in the common case.
    pub fn buffer_size(&self) -> usize {
        self.max
    }

    /// Length of the next chunk at the start of `data` (`data` holds at
    /// least `max` bytes unless it is the end of the stream).
    pub fn next_cut(&self, data: &[u8]) -> usize {
        let (_, n) = cut_gear(
            data,
            self.min,
            self.avg,
            self.max,
            self.mask_s,
            self.mask_l,
            self.mask_s << 1,
            self.mask_l << 1,
            &self.gear,
            &self.gear_ls,
        );
        n
    }

    /// Cut everything `source` yields into chunks, calling `sink` for each
    /// in order. `buf` is reused across calls to avoid reallocation.
    /// Returns the number of bytes read.
    pub fn chunk<R: Read, E>(
        &self,
        mut source: R,
        buf: &mut Vec<u8>,
        mut sink: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<u64, ChunkError<E>> {
        if buf.len() != self.buffer_size() {
            // vec! of zeros is a calloc: cheap even for a large buffer.
            *buf = vec![0u8; self.buffer_size()];
        }
        let (mut start, mut end, mut eof, mut total) = (0usize, 0usize, false, 0u64);
        let mut need_more = true;
        loop {
            if need_more && !eof {
                buf.copy_within(start..end, 0);
                end -= start;
                start = 0;
                while !eof && end < buf.len() {
                    match source.read(&mut buf[end..]) {
                        Ok(0) => eof = true,
                        Ok(n) => {
                            end += n;
                            total += n as u64;
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(ChunkError::Read(e)),
                    }
                }
            }
            if start == end {
                if eof {
                    return Ok(total);
                }
                need_more = true;
                continue;
            }
            // A cut found inside a window of at least `avg` bytes is the cut
            // a longer window would give (FastCDC scans forward and only
            // shortens its normal-size barrier for windows under `avg`). So
            // more data is needed only when the window is under `avg`, or no
            // cut was found in a window shorter than `max`.
            let window = end - start;
            if !eof && window < self.avg {
                need_more = true;
                continue;
            }
            let n = self.next_cut(&buf[start..end]).max(1);
            if !eof && n == window && window < self.max {
                need_more = true;
                continue;
            }
            need_more = false;
            sink(&buf[start..start + n]).map_err(ChunkError::Sink)?;
            start += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(seed: u64) -> ChunkerParams {
        ChunkerParams {
            seed,
            min_size: 4096,
            avg_size: 16384,
            max_size: 65536,
        }
    }

    use crate::test_data::pseudo_random;

    fn cuts(c: &Chunker, data: &[u8]) -> Vec<usize> {
        let mut out = Vec::new();
        let mut buf = Vec::new();
        c.chunk::<_, ()>(data, &mut buf, |ch| {
            out.push(ch.len());
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn chunks_cover_the_stream_and_respect_bounds() {
        let data = pseudo_random(1_000_000, 42);
        let c = Chunker::new(&params(7));
        let sizes = cuts(&c, &data);
        assert_eq!(sizes.iter().sum::<usize>(), data.len());
        for s in &sizes[..sizes.len() - 1] {
            assert!((4096..=65536).contains(s), "chunk of {s}");
        }
        let avg = data.len() / sizes.len();
        assert!((8_000..40_000).contains(&avg), "average {avg}");
    }

    /// Hands out at most `step` bytes per read, to exercise refills.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(out.len()).min(self.data.len());
            out[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn streaming_cuts_equal_whole_buffer_fastcdc() {
        // Mixed content: random, then long runs without cut points (zeros),
        // so chunks of every size up to the maximum occur.
        let mut data = pseudo_random(700_000, 11);
        data.extend(std::iter::repeat_n(0u8, 300_000));
        data.extend(pseudo_random(400_000, 12));
        let p = params(99);
        let reference: Vec<usize> = fastcdc::v2020::FastCDC::with_level_and_seed(
            &data,
            p.min_size as usize,
            p.avg_size as usize,
            p.max_size as usize,
            Normalization::Level1,
            p.seed,
        )
        .map(|c| c.length)
        .collect();
        let c = Chunker::new(&p);
        assert_eq!(cuts(&c, &data), reference);
        for step in [1000, 4096, 65_536, 100_000] {
            let mut got = Vec::new();
            let mut buf = Vec::new();
            c.chunk::<_, ()>(Trickle { data: &data, step }, &mut buf, |ch| {
                got.push(ch.len());
                Ok(())
            })
            .unwrap();
            assert_eq!(got, reference, "reads of {step} bytes");
        }
    }

    #[test]
    fn boundaries_resynchronise_after_an_insertion() {
        let data = pseudo_random(800_000, 1);
        let mut edited = data[..300_000].to_vec();
        edited.extend_from_slice(b"inserted bytes");
        edited.extend_from_slice(&data[300_000..]);
        let c = Chunker::new(&params(9));
        let (a, b) = (cuts(&c, &data), cuts(&c, &edited));
        let tail_a: Vec<_> = a.iter().rev().take(5).collect();
        let tail_b: Vec<_> = b.iter().rev().take(5).collect();
        assert_eq!(tail_a, tail_b);
    }

    #[test]
    fn the_seed_changes_boundaries() {
        let data = pseudo_random(500_000, 3);
        assert_ne!(
            cuts(&Chunker::new(&params(1)), &data),
            cuts(&Chunker::new(&params(2)), &data)
        );
    }

    #[test]
    fn empty_and_small_inputs() {
        let c = Chunker::new(&params(1));
        assert!(cuts(&c, b"").is_empty());
        assert_eq!(cuts(&c, b"abc"), vec![3]);
    }
}
