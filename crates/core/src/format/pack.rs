//! Pack files: many sealed blobs followed by a sealed header and its length.
//!
//! ```text
//! blob_1 || … || blob_n || sealed_header || header_length (u32 LE)
//! ```
//! Header plaintext: version byte `1`, then per blob 41 bytes:
//! kind (u8: 0 data, 1 tree), stored length (u32 LE), raw length (u32 LE),
//! id (32 bytes). Offsets are implicit: blobs are contiguous from 0.
//! A pack's name is the plain BLAKE3 of its bytes.

use serde::{Deserialize, Serialize};

use crate::crypto::{MasterKey, OVERHEAD};
use crate::error::{Error, Result};
use crate::id::Id;

const ENTRY_LEN: usize = 41;
const HEADER_VERSION: u8 = 1;
/// Header version 2 (format version 2): entries of kind [`DELTA_CODE`] are
/// followed by their base id.
const HEADER_VERSION_DELTAS: u8 = 2;
/// The kind code of a data blob stored as a delta (header version 2).
const DELTA_CODE: u8 = 2;

/// What a blob holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum BlobKind {
    Data,
    Tree,
}

impl BlobKind {
    pub fn code(self) -> u8 {
        match self {
            BlobKind::Data => 0,
            BlobKind::Tree => 1,
        }
    }

    pub fn from_code(code: u8) -> Result<BlobKind> {
        match code {
            0 => Ok(BlobKind::Data),
            1 => Ok(BlobKind::Tree),
            _ => Err(Error::corrupted(format!("unknown blob kind {code}"))),
        }
    }

    /// Associated data for sealing blobs of this kind.
    pub fn ad(self) -> &'static [u8] {
        match self {
            BlobKind::Data => super::ad::DATA,
            BlobKind::Tree => super::ad::TREE,
        }
    }
}

/// One blob's entry in a pack header (and, with the pack id, in an index).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackEntry {
    pub id: Id,
    pub kind: BlobKind,
    pub offset: u32,
    /// Bytes stored in the pack (sealed).
    pub length: u32,
    /// Bytes of the plaintext blob.
    pub raw_length: u32,
    /// For a data blob stored as a delta (format version 2): its base.
    pub base: Option<Id>,
}

/// Seal the header listing `entries` (in pack order) and append it.
pub fn finish(key: &MasterKey, mut body: Vec<u8>, entries: &[PackEntry]) -> Vec<u8> {
    body.extend_from_slice(&trailer(key, entries));
    body
}

/// The bytes that end a pack: the sealed header listing `entries` (in pack
/// order) and its length.
pub fn trailer(key: &MasterKey, entries: &[PackEntry]) -> Vec<u8> {
    let mut body = Vec::new();
    let mut header = Vec::with_capacity(1 + entries.len() * ENTRY_LEN);
    let deltas = entries.iter().any(|e| e.base.is_some());
    header.push(if deltas {
        HEADER_VERSION_DELTAS
    } else {
        HEADER_VERSION
    });
    for e in entries {
        header.push(if e.base.is_some() {
            DELTA_CODE
        } else {
            e.kind.code()
        });
        header.extend_from_slice(&e.length.to_le_bytes());
        header.extend_from_slice(&e.raw_length.to_le_bytes());
        header.extend_from_slice(&e.id.0);
        if let Some(base) = &e.base {
            header.extend_from_slice(&base.0);
        }
    }
    let sealed = key.seal(super::ad::PACK_HEADER, &header);
    body.extend_from_slice(&sealed);
    body.extend_from_slice(&(sealed.len() as u32).to_le_bytes());
    body
}

/// How many bytes to read from the end of a pack of `pack_size` bytes to get
/// the header, given the 4-byte trailer says `header_len`.
pub fn header_range(pack_size: u64, header_len: u32) -> Result<(u64, u64)> {
    let len = u64::from(header_len);
    if len + 4 > pack_size || (header_len as usize) < OVERHEAD + 1 {
        return Err(Error::corrupted(format!(
            "pack header length {header_len} does not fit a pack of {pack_size} bytes"
        )));
    }
    Ok((pack_size - 4 - len, len))
}

/// Decode a sealed header read from a pack of `pack_size` bytes. Version
/// 2 headers (with delta entries) are read only when `deltas` (the
/// repository's format allows them).
pub fn parse_header(key: &MasterKey, sealed: &[u8], pack_size: u64) -> Result<Vec<PackEntry>> {
    parse_header_of(key, sealed, pack_size, false)
}

/// [`parse_header`], accepting version 2 headers when `deltas`.
pub fn parse_header_of(
    key: &MasterKey,
    sealed: &[u8],
    pack_size: u64,
    deltas: bool,
) -> Result<Vec<PackEntry>> {
    let plain = key.open(super::ad::PACK_HEADER, sealed)?;
    let version = plain.first().copied();
    let v2 = deltas && version == Some(HEADER_VERSION_DELTAS);
    if !(v2 || version == Some(HEADER_VERSION) && (plain.len() - 1) % ENTRY_LEN == 0) {
        return Err(Error::corrupted("pack header has a bad version or length"));
    }
    let mut entries = Vec::with_capacity((plain.len() - 1) / ENTRY_LEN);
    let mut offset: u64 = 0;
    let mut rest = &plain[1..];
    while !rest.is_empty() {
        let bad = || Error::corrupted("pack header ends inside an entry");
        let raw = rest.get(..ENTRY_LEN).ok_or_else(bad)?;
        let length = u32::from_le_bytes([raw[1], raw[2], raw[3], raw[4]]);
        let raw_length = u32::from_le_bytes([raw[5], raw[6], raw[7], raw[8]]);
        let mut id = [0u8; 32];
        id.copy_from_slice(&raw[9..41]);
        let (kind, base) = if v2 && raw[0] == DELTA_CODE {
            let b = rest.get(ENTRY_LEN..ENTRY_LEN + 32).ok_or_else(bad)?;
            let mut base = [0u8; 32];
            base.copy_from_slice(b);
            (BlobKind::Data, Some(Id(base)))
        } else {
            (BlobKind::from_code(raw[0])?, None)
        };
        rest = &rest[ENTRY_LEN + if base.is_some() { 32 } else { 0 }..];
        entries.push(PackEntry {
            id: Id(id),
            kind,
            offset: offset as u32,
            length,
            raw_length,
            base,
        });
        offset += u64::from(length);
    }
    let expected = offset + sealed.len() as u64 + 4;
    if expected != pack_size {
        return Err(Error::corrupted(format!(
            "pack header describes {expected} bytes but the pack has {pack_size}"
        )));
    }
    Ok(entries)
}

/// Split the trailer off a whole pack and parse its header.
pub fn parse_pack(key: &MasterKey, pack: &[u8]) -> Result<Vec<PackEntry>> {
    parse_pack_of(key, pack, false)
}

/// [`parse_pack`], accepting version 2 headers when `deltas`.
pub fn parse_pack_of(key: &MasterKey, pack: &[u8], deltas: bool) -> Result<Vec<PackEntry>> {
    if pack.len() < 4 {
        return Err(Error::corrupted("pack is shorter than its trailer"));
    }
    let tail = &pack[pack.len() - 4..];
    let header_len = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]);
    let (start, len) = header_range(pack.len() as u64, header_len)?;
    parse_header_of(
        key,
        &pack[start as usize..(start + len) as usize],
        pack.len() as u64,
        deltas,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A test blob: kind, payload, id, plaintext length, base.
    type TestBlob<'a> = (BlobKind, &'a [u8], Id, u32, Option<Id>);

    /// A pack of the sealed payloads, and its entries.
    fn pack_of(key: &MasterKey, payloads: &[TestBlob]) -> (Vec<u8>, Vec<PackEntry>) {
        let mut body = Vec::new();
        let mut entries = Vec::new();
        for &(kind, payload, id, raw_length, base) in payloads {
            let sealed = key.seal(kind.ad(), payload);
            entries.push(PackEntry {
                id,
                kind,
                offset: body.len() as u32,
                length: sealed.len() as u32,
                raw_length,
                base,
            });
            body.extend_from_slice(&sealed);
        }
        (finish(key, body, &entries), entries)
    }

    #[test]
    fn header_round_trip_and_damage() {
        let key = MasterKey::random();
        let (pack, entries) = pack_of(
            &key,
            &[
                (BlobKind::Data, b"\0one", key.blob_id(b"one"), 3, None),
                (BlobKind::Tree, b"\0two!", key.blob_id(b"two!"), 4, None),
            ],
        );
        assert_eq!(parse_pack(&key, &pack).unwrap(), entries);
        // header length: version + 2 entries, sealed, plus trailer
        let blobs: usize = entries.iter().map(|e| e.length as usize).sum();
        assert_eq!(pack.len(), blobs + 1 + 2 * ENTRY_LEN + OVERHEAD + 4);

        let mut truncated = pack.clone();
        truncated.remove(0);
        assert!(parse_pack(&key, &truncated).is_err());
        let mut flipped = pack.clone();
        let n = flipped.len();
        flipped[n - 10] ^= 0x40;
        assert!(parse_pack(&key, &flipped).is_err());
    }

    #[test]
    fn delta_entries_need_a_version_2_header_and_a_repository_that_allows_them() {
        let key = MasterKey::random();
        let base = key.blob_id(b"one");
        let (pack, entries) = pack_of(
            &key,
            &[
                (BlobKind::Data, b"\0one", base, 3, None),
                (BlobKind::Data, b"\x02delta", Id([9; 32]), 5, Some(base)),
            ],
        );
        assert_eq!(parse_pack_of(&key, &pack, true).unwrap(), entries);
        // Format version 1 readers take it for damage.
        assert!(parse_pack(&key, &pack).is_err());
        let mut cut = pack.clone();
        cut.truncate(pack.len() - 7);
        assert!(parse_pack_of(&key, &cut, true).is_err());
    }
}
