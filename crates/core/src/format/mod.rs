//! Everything that is written to a repository, byte for byte.
//!
//! docs/format.md is the contract; this module is its implementation. Each
//! sealed object's plaintext starts with one byte that says how the rest is
//! encoded (`0` stored, `1` zstd), so compression is chosen per object.

pub mod condemned;
pub mod config;
pub mod delta;
#[doc(hidden)]
pub mod fuzz;
pub mod index;
pub mod key;
pub mod pack;
pub mod snapshot;
pub mod tree;
#[cfg(test)]
mod vectors;

use std::cell::RefCell;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::crypto::MasterKey;
use crate::error::{Error, Result};

/// The version of the objects this program writes (index files, snapshots),
/// and the first repository format version, without delta blobs.
pub const VERSION: u32 = 1;
/// The repository format version that allows delta blobs (docs/format.md,
/// "Delta blobs"): what `init` makes unless asked for version 1.
pub const VERSION_DELTAS: u32 = 2;

const STORED: u8 = 0;
const ZSTD: u8 = 1;

/// Associated data binding a sealed object to its role.
pub mod ad {
    pub const CONFIG: &[u8] = b"strata config";
    pub const KEY: &[u8] = b"strata key";
    pub const INDEX: &[u8] = b"strata index";
    pub const SNAPSHOT: &[u8] = b"strata snapshot";
    pub const LOCK: &[u8] = b"strata lock";
    pub const CONDEMNED: &[u8] = b"strata condemned";
    pub const PACK_HEADER: &[u8] = b"strata pack header";
    pub const DATA: &[u8] = b"strata data";
    pub const TREE: &[u8] = b"strata tree";
}

thread_local! {
    /// A fast compressor for sampling compressibility.
    static PROBE: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
    /// A decompression context per thread: creating one per blob was a
    /// tenth of the time of a backup with nothing to read.
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
}

fn zstd_compress(data: &[u8], level: i32) -> Option<Vec<u8>> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|(l, _)| *l != level) {
            *slot = Some((level, zstd::bulk::Compressor::new(level).ok()?));
        }
        let (_, compressor) = slot.as_mut()?;
        compressor.compress(data).ok()
    })
}

/// Append the encoded payload of `data` to `out`, compressing straight
/// into it. Same encoding as [`encode_payload`], without intermediate copies.
pub fn encode_payload_into(data: &[u8], level: i32, out: &mut Vec<u8>) {
    let start = out.len();
    if level != 0 && data.len() >= 64 && !looks_incompressible(data) {
        let bound = zstd::zstd_safe::compress_bound(data.len());
        out.resize(start + 1 + bound, 0);
        let written = COMPRESSOR.with(|cell| {
            let mut slot = cell.borrow_mut();
            if slot.as_ref().is_none_or(|(l, _)| *l != level) {
                *slot = Some((level, zstd::bulk::Compressor::new(level).ok()?));
            }
            let (_, compressor) = slot.as_mut()?;
            compressor
                .compress_to_buffer(data, &mut out[start + 1..])
                .ok()
        });
        match written {
            Some(n) if n < data.len() - data.len() / 32 => {
                out[start] = ZSTD;
                out.truncate(start + 1 + n);
                return;
            }
            _ => out.truncate(start),
        }
    }
    out.push(STORED);
    out.extend_from_slice(data);
}

/// Whether a large input is (almost certainly) not worth compressing: four
/// 8 KiB samples spread over it gain under 3% at zstd level 1. Random,
/// encrypted and already-compressed data then costs a few samples instead of
/// a full compression pass (which was most of the CPU time of a backup).
fn looks_incompressible(data: &[u8]) -> bool {
    const SAMPLE: usize = 8 << 10;
    if data.len() < 256 << 10 {
        return false;
    }
    let step = (data.len() - SAMPLE) / 3;
    let (mut raw, mut packed) = (0usize, 0usize);
    let mut buf = [0u8; SAMPLE + 512];
    let sampled = PROBE.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = zstd::bulk::Compressor::new(1).ok();
        }
        let probe = slot.as_mut()?;
        for i in 0..4 {
            let sample = &data[i * step..i * step + SAMPLE];
            raw += sample.len();
            packed += probe.compress_to_buffer(sample, &mut buf[..]).ok()?;
        }
        Some(())
    });
    sampled.is_some() && packed * 100 >= raw * 97
}

/// Encode a plaintext payload: compressed with zstd at `level` when that
/// saves at least 1/32 of the size, stored otherwise. `level == 0` stores.
pub fn encode_payload(data: &[u8], level: i32) -> Vec<u8> {
    if level != 0 && data.len() >= 64 {
        if let Some(z) = zstd_compress(data, level) {
            if z.len() < data.len() - data.len() / 32 {
                let mut out = Vec::with_capacity(z.len() + 1);
                out.push(ZSTD);
                out.extend_from_slice(&z);
                return out;
            }
        }
    }
    let mut out = Vec::with_capacity(data.len() + 1);
    out.push(STORED);
    out.extend_from_slice(data);
    out
}

/// Decode a payload whose plaintext is known to be `size` bytes (from an
/// index or pack header): decompression allocates exactly once.
pub fn decode_payload_sized(payload: Vec<u8>, size: usize) -> Result<Vec<u8>> {
    if payload.first() == Some(&ZSTD) {
        let out = DECOMPRESSOR.with(|cell| {
            let mut slot = cell.borrow_mut();
            if slot.is_none() {
                *slot = zstd::bulk::Decompressor::new().ok();
            }
            slot.as_mut()?.decompress(&payload[1..], size).ok()
        });
        if let Some(out) = out.filter(|o| o.len() == size) {
            return Ok(out);
        }
    }
    decode_payload(payload)
}

/// Decode a payload of known plaintext `size` into the reusable `out`.
pub fn decode_payload_into(payload: &[u8], size: usize, out: &mut Vec<u8>) -> Result<()> {
    out.clear();
    match payload.first() {
        Some(&STORED) => out.extend_from_slice(&payload[1..]),
        Some(&ZSTD) => {
            out.reserve(size);
            let n = DECOMPRESSOR.with(|cell| {
                let mut slot = cell.borrow_mut();
                if slot.is_none() {
                    *slot = zstd::bulk::Decompressor::new().ok();
                }
                slot.as_mut()?.decompress_to_buffer(&payload[1..], out).ok()
            });
            if n != Some(size) {
                return Err(Error::corrupted(
                    "zstd data is damaged or has the wrong size",
                ));
            }
        }
        Some(other) => {
            return Err(Error::corrupted(format!(
                "unknown payload encoding {other}"
            )))
        }
        None => return Err(Error::corrupted("empty payload")),
    }
    Ok(())
}

/// Decode what [`encode_payload`] produced.
pub fn decode_payload(mut payload: Vec<u8>) -> Result<Vec<u8>> {
    match payload.first() {
        Some(&STORED) => {
            payload.remove(0);
            Ok(payload)
        }
        Some(&ZSTD) => zstd::stream::decode_all(&payload[1..])
            .map_err(|e| Error::corrupted(format!("zstd data is damaged: {e}"))),
        Some(other) => Err(Error::corrupted(format!(
            "unknown payload encoding {other}"
        ))),
        None => Err(Error::corrupted("empty payload")),
    }
}

/// Serialize as CBOR (RFC 8949).
pub fn to_cbor<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing CBOR into a Vec fails only for types serde cannot express,
    // which none of ours are.
    let _ = ciborium::into_writer(value, &mut out);
    out
}

pub fn from_cbor<T: DeserializeOwned>(data: &[u8], what: &str) -> Result<T> {
    ciborium::from_reader(data).map_err(|e| Error::corrupted(format!("{what} is not valid: {e}")))
}

/// Seal a structured object: CBOR, then payload encoding, then encryption.
pub fn seal_object<T: Serialize>(key: &MasterKey, ad: &[u8], value: &T, level: i32) -> Vec<u8> {
    key.seal(ad, &encode_payload(&to_cbor(value), level))
}

pub fn open_object<T: DeserializeOwned>(
    key: &MasterKey,
    ad: &[u8],
    sealed: &[u8],
    what: &str,
) -> Result<T> {
    let plain = key.open(ad, sealed).map_err(|e| e.context(what))?;
    from_cbor(&decode_payload(plain).map_err(|e| e.context(what))?, what)
}

/// Bytes as text for people: UTF-8 where valid, `\xNN` escapes elsewhere.
pub fn display_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Bytes (a file name or path) as text that names them unambiguously, in
/// the shell's quoting as GNU `ls` writes it: as they are when every
/// character is plain (letters, digits, `-_./,:@+%=`, printable non-ASCII);
/// else in single quotes when that is enough; else as `$'…'` with `\n`,
/// `\t`, `\\`, `\'` and `\xNN` for control characters and bytes that are
/// not UTF-8. A newline can then never split an entry, an escape sequence
/// never reaches the terminal, and the byte 0xff (`$'\xff'`) differs from
/// a name written `\xff` (`'\xff'`).
pub fn quote_bytes(bytes: &[u8]) -> String {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return dollar_quote(bytes);
    };
    let plain = |c: char| {
        c.is_ascii_alphanumeric()
            || "-_./,:@+%=".contains(c)
            || (!c.is_ascii() && !c.is_control() && !invisible(c))
    };
    if !text.is_empty() && text.chars().all(plain) && !text.starts_with('-') {
        return text.to_string();
    }
    if text
        .chars()
        .any(|c| c.is_control() || invisible(c) || c == '\'')
    {
        return dollar_quote(bytes);
    }
    format!("'{text}'")
}

/// Characters that change how a line looks without being seen: line and
/// paragraph separators, zero-width and direction marks and overrides, the
/// byte order mark. Shown as `\u{…}` so a name cannot pose as another.
fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{ad}'
            | '\u{61c}'
            | '\u{180e}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{2069}'
            | '\u{feff}'
    )
}

fn dollar_quote(bytes: &[u8]) -> String {
    let mut out = String::from("$'");
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                '\\' => out.push_str("\\\\"),
                '\'' => out.push_str("\\'"),
                c if invisible(c) => out.push_str(&format!("\\u{:04x}", u32::from(c))),
                c if c.is_control() => {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        out.push_str(&format!("\\x{b:02x}"));
                    }
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out.push('\'');
    out
}

/// A backed-up path as the text a snapshot records (`Snapshot::paths`):
/// itself when it is UTF-8, else its `$'…'` quoting. Absolute paths begin
/// with `/`, so a quoted one never equals one that is UTF-8: snapshots of
/// `nu\xff` and `nu\xfe` stay apart (a lossy U+FFFD would merge them).
pub fn path_text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_string(),
        Err(_) => quote_bytes(bytes),
    }
}

/// The bytes of a path recorded by [`path_text`].
pub fn path_bytes(text: &str) -> Vec<u8> {
    let Some(body) = text.strip_prefix("$'").and_then(|t| t.strip_suffix('\'')) else {
        return text.as_bytes().to_vec();
    };
    let mut out = Vec::with_capacity(body.len());
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        match chars.next() {
            Some('n') => out.push(b'\n'),
            Some('t') => out.push(b'\t'),
            Some('r') => out.push(b'\r'),
            Some('x') => {
                let hex: String = chars.by_ref().take(2).collect();
                out.push(u8::from_str_radix(&hex, 16).unwrap_or(b'?'));
            }
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                let c = u32::from_str_radix(&hex, 16)
                    .ok()
                    .and_then(char::from_u32)
                    .unwrap_or('?');
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
            Some(other) => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(other.encode_utf8(&mut buf).as_bytes());
            }
            None => out.push(b'\\'),
        }
    }
    out
}

/// `n` and a noun, in the plural unless `n` is 1: "1 snapshot",
/// "2 snapshots", "3 entries".
pub fn count(n: impl Into<u64>, singular: &str) -> String {
    let n: u64 = n.into();
    if n == 1 {
        return format!("1 {singular}");
    }
    match singular.strip_suffix('y') {
        Some(stem) if !stem.ends_with(['a', 'e', 'o', 'u']) => format!("{n} {stem}ies"),
        _ => format!("{n} {singular}s"),
    }
}

/// Bytes as base64 (standard alphabet, padded): the lossless form of a
/// name that is not UTF-8, for JSON.
pub fn base64_bytes(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_quoted_unambiguously() {
        assert_eq!(quote_bytes(b"etc/hosts"), "etc/hosts");
        assert_eq!(quote_bytes("caf\u{e9}.txt".as_bytes()), "caf\u{e9}.txt");
        assert_eq!(quote_bytes(b"my file"), "'my file'");
        assert_eq!(quote_bytes(b"a\nb"), "$'a\\nb'");
        assert_eq!(quote_bytes(b"\x1b[31mred"), "$'\\x1b[31mred'");
        assert_eq!(quote_bytes(b"\xff"), "$'\\xff'");
        assert_eq!(quote_bytes(b"\\xff"), "'\\xff'");
        assert_eq!(quote_bytes(b"it's"), "$'it\\'s'");
        assert_eq!(quote_bytes(b"$'x'"), "$'$\\'x\\''");
        assert_eq!(quote_bytes(b""), "''");
        assert_eq!(quote_bytes(b"-rf"), "'-rf'");
        assert_eq!(quote_bytes("a\u{2028}b".as_bytes()), "$'a\\u2028b'");
        for raw in [
            &b"/tmp/nu\xff"[..],
            b"/a\nb\\c'd\x1b",
            "/e\u{202e}f".as_bytes(),
            b"/plain",
        ] {
            assert_eq!(path_bytes(&path_text(raw)), raw, "{raw:?}");
        }
        assert_ne!(path_text(b"/nu\xff"), path_text(b"/nu\xfe"));
        assert_eq!(
            quote_bytes("evil\u{202e}txt.exe".as_bytes()),
            "$'evil\\u202etxt.exe'"
        );
        // Every distinct name gets a distinct quoting.
        let names: [&[u8]; 6] = [
            b"\xff",
            b"\\xff",
            b"$'\\xff'",
            b"'\\xff'",
            b"a\nb",
            b"a\\nb",
        ];
        let quoted: std::collections::HashSet<String> =
            names.iter().map(|n| quote_bytes(n)).collect();
        assert_eq!(quoted.len(), names.len());
    }

    #[test]
    fn payload_round_trip_and_choice() {
        let text = b"abcabcabc".repeat(100);
        let enc = encode_payload(&text, 3);
        assert_eq!(enc[0], ZSTD);
        assert!(enc.len() < text.len() / 4);
        assert_eq!(decode_payload(enc).unwrap(), text);

        let random: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let enc = encode_payload(&random, 3);
        assert_eq!(decode_payload(enc.clone()).unwrap(), random);

        let mut out = Vec::new();
        encode_payload_into(&text, 3, &mut out);
        assert_eq!(out, encode_payload(&text, 3));
        out.clear();
        encode_payload_into(&random, 3, &mut out);
        assert_eq!(decode_payload(out).unwrap(), random);

        let small = encode_payload(b"hi", 3);
        assert_eq!(small, vec![STORED, b'h', b'i']);
        assert!(decode_payload(vec![9, 1]).is_err());
        assert!(decode_payload(vec![]).is_err());
    }

    #[test]
    fn incompressible_data_is_stored_without_a_full_compression() {
        let mut x: u64 = 7;
        let random: Vec<u8> = (0..1 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert!(looks_incompressible(&random));
        assert_eq!(encode_payload(&random, 3)[0], STORED);
        let text = b"the quick brown fox jumps over the lazy dog\n".repeat(30_000);
        assert!(!looks_incompressible(&text));
        // compressible in places only: still compressed
        let mut mixed = random.clone();
        mixed.extend_from_slice(&text);
        assert!(!looks_incompressible(&mixed));
        assert_eq!(encode_payload(&mixed, 3)[0], ZSTD);
    }

    #[test]
    fn display_escapes_invalid_utf8() {
        assert_eq!(display_bytes(b"caf\xc3\xa9"), "café");
        assert_eq!(display_bytes(b"a\xffb"), "a\\xffb");
    }
}
