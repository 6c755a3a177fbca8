//! The fuzzers' findings as regression tests: every input in
//! `fuzz/corpus/<target>/` (seeds and what cargo fuzz kept) goes through
//! the same entry points as the fuzzers (`strata_core::format::fuzz`),
//! on every test run, without nightly Rust. A decoder that panics on one
//! of them fails the suite.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata_core::crypto::KdfParams;
use strata_core::format::fuzz;
use strata_core::repository::Repository;
use strata_core::storage::{MemoryStorage, ObjectKind, Storage};

fn corpus(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

fn replay(target: &str, run: fn(&[u8])) -> usize {
    let Ok(entries) = std::fs::read_dir(corpus(target)) else {
        return 0;
    };
    let mut n = 0;
    for e in entries {
        let path = e.unwrap().path();
        run(&std::fs::read(&path).unwrap());
        n += 1;
    }
    n
}

#[test]
fn the_fuzz_corpus_decodes_without_panics() {
    let n = replay("objects", fuzz::objects)
        + replay("pack", fuzz::pack)
        + replay("key_file", fuzz::key_file)
        + replay("quoting", fuzz::quoting);
    assert!(n > 0, "the corpus is in fuzz/corpus");
}

/// Write the seeds the fuzzers start from: decrypted objects of a real
/// repository. `cargo test --test fuzz_corpus -- --ignored` to renew them.
#[test]
#[ignore]
fn write_seeds() {
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("a.txt"), b"hello").unwrap();
    std::fs::create_dir(src.path().join("d")).unwrap();
    std::fs::write(src.path().join("d/b"), vec![7u8; 100_000]).unwrap();
    std::os::unix::fs::symlink("a.txt", src.path().join("link")).unwrap();
    let storage = Arc::new(MemoryStorage::new());
    let kdf = KdfParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };
    let repo = Arc::new(Repository::init(storage.clone(), b"password", kdf).unwrap());
    let opts = strata_core::backup::BackupOptions::new(vec![src.path().to_path_buf()]);
    strata_core::backup::run(&repo, &opts, &strata_core::backup::NoProgress).unwrap();
    let write = |target: &str, name: &str, data: &[u8]| {
        std::fs::create_dir_all(corpus(target)).unwrap();
        std::fs::write(corpus(target).join(name), data).unwrap();
    };
    let ads: [(ObjectKind, &[u8]); 3] = [
        (ObjectKind::Index, strata_core::format::ad::INDEX),
        (ObjectKind::Snapshot, strata_core::format::ad::SNAPSHOT),
        (ObjectKind::Config, strata_core::format::ad::CONFIG),
    ];
    for (kind, ad) in ads {
        for info in storage.list(kind).unwrap() {
            let sealed = storage.read(kind, &info.name).unwrap();
            let payload = repo.key().open(ad, &sealed).unwrap();
            write(
                "objects",
                &format!("{kind:?}-{}", &info.name[..info.name.len().min(8)]),
                &payload,
            );
        }
    }
    for info in storage.list(ObjectKind::Pack).unwrap() {
        let pack = storage.read(ObjectKind::Pack, &info.name).unwrap();
        let n = pack.len();
        let len = u32::from_le_bytes(pack[n - 4..].try_into().unwrap()) as usize;
        let header = repo
            .key()
            .open(
                strata_core::format::ad::PACK_HEADER,
                &pack[n - 4 - len..n - 4],
            )
            .unwrap();
        write("pack", &format!("header-{}", &info.name[..8]), &header);
        for e in strata_core::format::pack::parse_pack(repo.key(), &pack).unwrap() {
            let sealed = &pack[e.offset as usize..(e.offset + e.length) as usize];
            let plain = repo.key().open(e.kind.ad(), sealed).unwrap();
            write("objects", &format!("blob-{}", &e.id.to_hex()[..8]), &plain);
        }
    }
    for info in storage.list(ObjectKind::Key).unwrap() {
        write(
            "key_file",
            "key",
            &storage.read(ObjectKind::Key, &info.name).unwrap(),
        );
    }
    write("quoting", "names", b"a\nb\xff\\xff$'x'caf\xc3\xa9 \x1b[31m");
}
