//! The delta payload encoding (planned format version 2, docs/format.md,
//! "Delta blobs"): a blob stored as a zstd frame compressed with the
//! plaintext of another blob, its *base*, as reference prefix, so that a
//! chunk that differs from its previous version in a few rows costs the
//! differences, not the chunk.
//!
//! ```text
//! 0x02 || base id (32 bytes) || zstd frame (RFC 8878), made with the
//!                                base's plaintext as reference prefix
//! ```
//!
//! The blob's id stays the keyed hash of its own plaintext, so trees,
//! deduplication and everything above the repository do not change. The
//! base id is inside the sealed payload, so the blob says by itself what it
//! needs; index entries repeat it so that prune can keep bases without
//! reading blobs.
//!
//! This module is the codec alone: nothing writes delta blobs yet, and
//! readers of format version 1 reject the `0x02` encoding as damage, as
//! format.md has always required of unknown encodings.

use crate::error::{Error, Result};
use crate::id::Id;

/// The payload's first byte for a delta.
pub const DELTA: u8 = 2;

/// The longest chain of deltas a reader follows; longer is damage.
pub const MAX_CHAIN: usize = 64;

/// Bytes before the zstd frame: the encoding byte and the base id.
const HEADER: usize = 1 + 32;

/// Encode `plain` as a delta against `base` (the plaintext of blob
/// `base_id`) with zstd at `level` (1 if `level` is 0: a delta is only
/// worth it compressed). `None` if zstd fails.
pub fn encode_delta(plain: &[u8], base_id: &Id, base: &[u8], level: i32) -> Option<Vec<u8>> {
    let level = if level == 0 { 1 } else { level };
    let mut cctx = zstd::zstd_safe::CCtx::create();
    cctx.set_parameter(zstd::zstd_safe::CParameter::CompressionLevel(level))
        .ok()?;
    // The window must reach back over the whole prefix to match in it.
    let window_log = window_log(base.len() + plain.len());
    cctx.set_parameter(zstd::zstd_safe::CParameter::WindowLog(window_log))
        .ok()?;
    // Long-distance matching finds the base's long runs however far back
    // they are, as `zstd --patch-from` does; the regular match finder
    // alone, with its level-sized tables, loses most of a large prefix.
    cctx.set_parameter(zstd::zstd_safe::CParameter::EnableLongDistanceMatching(
        true,
    ))
    .ok()?;
    cctx.ref_prefix(base).ok()?;
    let mut out = Vec::with_capacity(HEADER + zstd::zstd_safe::compress_bound(plain.len()));
    out.push(DELTA);
    out.extend_from_slice(&base_id.0);
    let mut frame = vec![0u8; zstd::zstd_safe::compress_bound(plain.len())];
    let n = cctx.compress2(&mut frame[..], plain).ok()?;
    out.extend_from_slice(&frame[..n]);
    Some(out)
}

/// The base a delta payload names, or `None` if `payload` is not a delta.
pub fn delta_base(payload: &[u8]) -> Option<Id> {
    if payload.first() != Some(&DELTA) || payload.len() < HEADER {
        return None;
    }
    let mut id = [0u8; 32];
    id.copy_from_slice(&payload[1..HEADER]);
    Some(Id(id))
}

/// Decode a delta payload of a `size`-byte plaintext, given the plaintext
/// of its base. The caller checks the result against the blob's id.
pub fn decode_delta(payload: &[u8], base: &[u8], size: usize) -> Result<Vec<u8>> {
    if delta_base(payload).is_none() {
        return Err(Error::corrupted("not a delta payload"));
    }
    let mut dctx = zstd::zstd_safe::DCtx::create();
    let window_log = window_log(base.len() + size);
    dctx.set_parameter(zstd::zstd_safe::DParameter::WindowLogMax(window_log))
        .map_err(|_| Error::corrupted("delta: bad window"))?;
    dctx.ref_prefix(base)
        .map_err(|_| Error::corrupted("delta: cannot use the base"))?;
    let mut out = vec![0u8; size];
    let n = dctx
        .decompress(&mut out[..], &payload[HEADER..])
        .map_err(|_| Error::corrupted("delta data is damaged or does not fit its base"))?;
    if n != size {
        return Err(Error::corrupted("delta data has the wrong size"));
    }
    Ok(out)
}

/// The smallest zstd window (log2) that spans `n` bytes, within zstd's
/// limits (chunks are at most 8 MiB, so 24 bits suffice for a chunk and
/// its base).
fn window_log(n: usize) -> u32 {
    let bits = usize::BITS - n.max(1).leading_zeros();
    bits.clamp(10, 27)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_data::pseudo_random;

    #[test]
    fn a_few_changed_bytes_cost_a_few_bytes() {
        let base = pseudo_random(1 << 20, 1);
        let mut new = base.clone();
        for i in 0..20 {
            new[i * 50_000 + 7] ^= 0x5a;
        }
        new.extend_from_slice(b"appended row");
        let id = Id([7; 32]);
        let delta = encode_delta(&new, &id, &base, 3).unwrap();
        assert!(delta.len() < 2_000, "delta of {} bytes", delta.len());
        assert_eq!(delta_base(&delta), Some(id));
        assert_eq!(decode_delta(&delta, &base, new.len()).unwrap(), new);
    }

    #[test]
    fn the_wrong_base_or_damage_is_an_error_not_wrong_data() {
        let base = pseudo_random(300_000, 2);
        let mut new = base.clone();
        new[1234] ^= 1;
        let delta = encode_delta(&new, &Id([1; 32]), &base, 3).unwrap();
        assert!(delta.len() < 1_000, "delta of {} bytes", delta.len());
        let other = pseudo_random(300_000, 20);
        match decode_delta(&delta, &other, new.len()) {
            Ok(got) => assert!(got != new, "decoded against the wrong base"),
            Err(e) => assert_eq!(e.kind(), crate::ErrorKind::Corrupted),
        }
        let mut cut = delta.clone();
        cut.truncate(cut.len() - 3);
        assert!(decode_delta(&cut, &base, new.len()).is_err());
        assert!(decode_delta(&delta, &base, new.len() + 1).is_err());
        assert!(decode_delta(&[DELTA], &base, 0).is_err());
        assert_eq!(delta_base(&[1, 2, 3]), None);
    }
}

#[cfg(test)]
mod vector {
    use super::*;

    /// docs/format.md, "Delta blobs": a delta of `strata delta vector, v2`
    /// against the base `strata delta vector, v1`, base id 0x11…. The bytes
    /// were made by zstd 1.5.7 at level 3; any zstd decoder must read them.
    const VECTOR: &str = concat!(
        "021111111111111111111111111111111111111111111111111111111111111111",
        "28b52ffd20173d000008320100aa4c20",
    );

    #[test]
    fn print_delta_vector() {
        let base = b"strata delta vector, v1";
        let plain = b"strata delta vector, v2";
        let delta = encode_delta(plain, &Id([0x11; 32]), base, 3).unwrap();
        println!("delta vector: {}", hex::encode(&delta));
    }

    #[test]
    fn the_delta_vector_decodes() {
        let payload = hex::decode(VECTOR).unwrap();
        assert_eq!(delta_base(&payload), Some(Id([0x11; 32])));
        let plain = decode_delta(&payload, b"strata delta vector, v1", 23).unwrap();
        assert_eq!(plain, b"strata delta vector, v2");
    }
}
