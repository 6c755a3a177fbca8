//! Entry points for the fuzzers (`fuzz/`) and for the test that replays
//! their corpus on every CI run (`tests/fuzz_corpus.rs`): every decoder of
//! repository content, fed bytes an attacker controls. None may panic,
//! hang or allocate without bound; all must return errors instead.

use super::condemned::Condemned;
use super::config::Config;
use super::index::IndexFile;
use super::key::KeyFile;
use super::snapshot::Snapshot;
use super::tree::Tree;
use super::{decode_payload, decode_payload_sized, from_cbor, quote_bytes};
use crate::crypto::MasterKey;
use crate::repository::LockInfo;

/// A fixed key, so that sealed inputs can be built and opened.
fn key() -> MasterKey {
    MasterKey::from_bytes([7; 32], [9; 32])
}

/// Every structured object, from CBOR and from an encoded payload.
pub fn objects(data: &[u8]) {
    decode_all(data);
    if let Ok(plain) = decode_payload(data.to_vec()) {
        decode_all(&plain);
    }
    if let Some((&n, rest)) = data.split_first() {
        let _ = decode_payload_sized(rest.to_vec(), usize::from(n) * 1024);
    }
}

fn decode_all(data: &[u8]) {
    let _ = from_cbor::<Tree>(data, "tree");
    let _ = from_cbor::<Snapshot>(data, "snapshot");
    let _ = from_cbor::<IndexFile>(data, "index");
    let _ = from_cbor::<Config>(data, "config");
    let _ = from_cbor::<Condemned>(data, "condemned list");
    let _ = from_cbor::<LockInfo>(data, "lock");
    if let Ok(snap) = from_cbor::<Snapshot>(data, "snapshot") {
        let _ = snap.stored_path(b"/a/b/c");
    }
}

/// Pack headers: sealed with the fixed key (the decoding behind the
/// authentication), and whole packs as stored.
pub fn pack(data: &[u8]) {
    let key = key();
    let _ = super::pack::parse_pack(&key, data);
    let sealed = key.seal(super::ad::PACK_HEADER, data);
    for size in [0, sealed.len() as u64 + 4, data.len() as u64 * 40] {
        let _ = super::pack::parse_header(&key, &sealed, size);
        let _ = super::pack::parse_header_of(&key, &sealed, size, true);
    }
}

/// Key files: JSON, then unwrapping with parameters a fuzzer can afford
/// (the bounds themselves are what `KdfParams::derive` checks).
pub fn key_file(data: &[u8]) {
    if let Ok(file) = KeyFile::from_json(data) {
        if file.params.memory_kib <= 64 && file.params.iterations <= 2 {
            let _ = file.unwrap_key(b"password");
        }
    }
}

/// Quoting of names: distinct names never look alike.
pub fn quoting(data: &[u8]) {
    let (a, b) = data.split_at(data.len() / 2);
    if a != b {
        assert_ne!(
            quote_bytes(a),
            quote_bytes(b),
            "{a:?} and {b:?} quoted alike"
        );
    }
}
