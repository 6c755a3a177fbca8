//! Test vectors for docs/format.md: fixed inputs and the exact bytes the
//! format requires. A change here is a format change.

use crate::crypto::{seal_with_nonce, KdfParams, MasterKey};
use crate::format::pack::{self, BlobKind, PackEntry};
use crate::format::tree::{Node, NodeKind, Time, Tree};
use crate::format::{ad, encode_payload, to_cbor};
use crate::id::Id;

fn seq(start: u8) -> [u8; 32] {
    std::array::from_fn(|i| start + i as u8)
}

fn key() -> MasterKey {
    MasterKey::from_bytes(seq(0x20), seq(0x00))
}

fn sample_tree() -> Tree {
    Tree {
        nodes: vec![Node {
            name: b"a".to_vec(),
            kind: NodeKind::File,
            mode: 0o644,
            uid: 1000,
            gid: 1000,
            user: None,
            group: None,
            size: 5,
            mtime: Time { s: 1, ns: 2 },
            atime: Time { s: 3, ns: 4 },
            ctime: Time { s: 5, ns: 6 },
            inode: 7,
            device: 8,
            links: 1,
            rdev: None,
            target: None,
            content: Some(vec![Id([0xab; 32])]),
            extents: None,
            subtree: None,
            xattrs: vec![],
        }],
    }
}

/// A snapshot of one stream and no paths, as `backup --mysql shop` makes.
fn sample_stream_snapshot() -> crate::format::snapshot::Snapshot {
    crate::format::snapshot::Snapshot {
        version: 1,
        time: jiff::Timestamp::UNIX_EPOCH,
        tree: Id([0xcd; 32]),
        paths: vec![],
        streams: vec!["mysql/shop.sql".into()],
        sources: vec!["mysql:shop".into()],
        hostname: "h".into(),
        username: "u".into(),
        uid: 0,
        gid: 0,
        tags: vec![],
        parent: None,
        sequence: 0,
        original: None,
        partial: false,
        summary: None,
        program_version: "0".into(),
    }
}

pub(crate) fn vectors() -> Vec<(&'static str, String)> {
    let k = key();
    let nonce: [u8; 24] = std::array::from_fn(|i| 0x40 + i as u8);
    let sealed = seal_with_nonce(&seq(0x20), &nonce, ad::DATA, &encode_payload(b"hello", 3));
    let entries = [PackEntry {
        id: Id([0x11; 32]),
        kind: BlobKind::Tree,
        offset: 0,
        length: 300,
        raw_length: 256,
        base: None,
    }];
    let packed = pack::finish(&k, Vec::new(), &entries);
    let header_plain = packed.len() - 4; // sealed header length is in the trailer
    let kdf = KdfParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    }
    .derive(b"password", b"somesaltsomesalt")
    .map(hex::encode)
    .unwrap_or_default();
    vec![
        ("blob_id(\"strata\")", k.blob_id(b"strata").to_hex()),
        ("object_id(\"strata\")", Id::of_object(b"strata").to_hex()),
        ("sealed data blob \"hello\"", hex::encode(sealed)),
        ("pack trailer", hex::encode(&packed[header_plain..])),
        ("argon2id", kdf),
        ("tree cbor", hex::encode(to_cbor(&sample_tree()))),
        (
            "stream snapshot cbor",
            hex::encode(to_cbor(&sample_stream_snapshot())),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The expected values, also printed in docs/format.md.
    const EXPECTED: &[(&str, &str)] = &[
        ("blob_id(\"strata\")", "290d7ce275b6f29905643935bfc353dd25820d6365320b0a597233638a1856ed"),
        ("object_id(\"strata\")", "5793e5cf8d830833417517f9d360b8dbddc9107dfee04ca05157f24b59c6d162"),
        (
            "sealed data blob \"hello\"",
            "404142434445464748494a4b4c4d4e4f50515253545556573a4908c54a0975d0780c5b1ef8758cd080dbc1cc64e6",
        ),
        ("pack trailer", "52000000"),
        ("argon2id", "e793d64ef75d58f503d4631b2b149f7f80127c5f3993d89b1c9b781e51d0b413"),
        (
            "tree cbor",
            concat!(
                "a1656e6f64657381ad646e616d654161646b696e646466696c65646d6f64651901a4637569641903",
                "e8636769641903e86473697a6505656d74696d65a2617301626e7302656174696d65a2617303626e",
                "7304656374696d65a2617305626e730665696e6f6465076664657669636508656c696e6b73016763",
                "6f6e74656e74815820ababababababababababababababababababababababababababababababab",
                "ab",
            ),
        ),
        (
            "stream snapshot cbor",
            concat!(
                "ad6776657273696f6e016474696d6574313937302d30312d30315430303a30303a30305a64747265",
                "655820cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd6570617468",
                "73806773747265616d73816e6d7973716c2f73686f702e73716c67736f7572636573816a6d797371",
                "6c3a73686f7068686f73746e616d65616868757365726e616d656175637569640063676964006474",
                "61677380677061727469616cf46f70726f6772616d5f76657273696f6e6130",
            ),
        ),
    ];

    #[test]
    fn the_sealed_vector_opens_to_its_payload() {
        let sealed = hex::decode(EXPECTED[2].1).unwrap();
        let plain = key().open(ad::DATA, &sealed).unwrap();
        assert_eq!(plain, b"\0hello");
        let tree: Tree =
            crate::format::from_cbor(&hex::decode(EXPECTED[5].1).unwrap(), "tree").unwrap();
        assert_eq!(tree, sample_tree());
        let snap: crate::format::snapshot::Snapshot =
            crate::format::from_cbor(&hex::decode(EXPECTED[6].1).unwrap(), "snapshot").unwrap();
        assert_eq!(snap, sample_stream_snapshot());
    }

    #[test]
    fn print_vectors() {
        for (name, value) in vectors() {
            println!("{name}: {value}");
        }
    }

    #[test]
    fn vectors_match_the_format() {
        let got = vectors();
        for (name, want) in EXPECTED {
            let value = &got
                .iter()
                .find(|(n, _)| n == name)
                .expect("vector exists")
                .1;
            assert_eq!(value, want, "vector {name}");
        }
    }
}
