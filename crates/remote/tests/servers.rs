//! The storage conformance suite against real servers on loopback, started
//! by `scripts/servers.sh` (which `scripts/test.sh` runs): moto for S3 and
//! OpenSSH for SFTP. Without them the tests say so and pass, unless
//! `STRATA_REQUIRE_SERVERS` is set, as the test script does.
#![allow(clippy::unwrap_used)]

use strata_core::storage::{ObjectKind, Storage};

/// A fresh location under the server's base location, or `None` when the
/// servers are not running.
fn location(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(base) => Some(format!(
            "{base}/t-{}",
            hex::encode(rand::random::<[u8; 6]>())
        )),
        Err(_) if std::env::var_os("STRATA_REQUIRE_SERVERS").is_some() => {
            panic!("{var} is not set: run the tests with scripts/test.sh, which starts the servers")
        }
        Err(_) => {
            eprintln!("{var} is not set: skipped (scripts/test.sh starts the servers)");
            None
        }
    }
}

fn conformance(var: &str) {
    let Some(loc) = location(var) else { return };
    let storage = strata_remote::open(&loc).unwrap();
    strata_core::storage::conformance::run(storage.as_ref());
}

#[test]
fn s3_passes_the_storage_conformance_suite() {
    conformance("STRATA_TEST_S3");
}

#[test]
fn sftp_passes_the_storage_conformance_suite() {
    conformance("STRATA_TEST_SFTP");
}

/// Streamed writers upload on finish and never show a partial object.
fn streamed_pack_is_invisible_until_finished(var: &str) {
    let Some(loc) = location(var) else { return };
    let storage = strata_remote::open(&loc).unwrap();
    storage.create().unwrap();
    let data: Vec<u8> = (0..(20u32 << 20)).map(|i| (i % 253) as u8).collect();
    let mut w = storage.create_writer(ObjectKind::Pack).unwrap();
    for chunk in data.chunks(1 << 20) {
        w.write_all(chunk).unwrap();
    }
    assert!(storage.list(ObjectKind::Pack).unwrap().is_empty());
    w.finish("aa01").unwrap();
    let listed = storage.list(ObjectKind::Pack).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].size, data.len() as u64);
    assert_eq!(
        storage
            .read_range(ObjectKind::Pack, "aa01", 19 << 20, 1000)
            .unwrap(),
        &data[19 << 20..(19 << 20) + 1000]
    );
    // an abandoned writer leaves nothing behind
    let mut w = storage.create_writer(ObjectKind::Pack).unwrap();
    w.write_all(b"partial").unwrap();
    drop(w);
    assert_eq!(storage.list(ObjectKind::Pack).unwrap().len(), 1);
}

#[test]
fn s3_streamed_pack_is_invisible_until_finished() {
    streamed_pack_is_invisible_until_finished("STRATA_TEST_S3");
}

#[test]
fn sftp_streamed_pack_is_invisible_until_finished() {
    streamed_pack_is_invisible_until_finished("STRATA_TEST_SFTP");
}

/// Uploads that start failing part-way through a backup (the connection
/// drops for good): the backup stops with an error and no snapshot; what it
/// stored leaves a repository that checks clean with every byte read, and the
/// next backup and a restore work. Reads that fail make a restore stop with
/// an error rather than write wrong data.
fn faults_mid_transfer(var: &str) {
    use std::sync::Arc;
    use strata_core::backup::{self, BackupOptions, NoProgress};
    use strata_core::check::{self, CheckOptions};
    use strata_core::crypto::KdfParams;
    use strata_core::format::config::{ChunkerParams, Config};
    use strata_core::repository::Repository;
    use strata_core::restore::{self, NoRestoreProgress, RestoreOptions};
    use strata_core::storage::{Faults, FaultyStorage};
    use strata_remote::RemoteStorage;

    let Some(loc) = location(var) else { return };
    let remote = RemoteStorage::new(strata_remote::parse(&loc).unwrap()).unwrap();
    let kdf = KdfParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };
    let mut config = Config::new();
    config.chunker = ChunkerParams {
        min_size: 64 << 10,
        avg_size: 128 << 10,
        max_size: 512 << 10,
        ..config.chunker
    };
    config.pack_size = 256 << 10;
    Repository::init_with(Arc::new(remote.clone()), b"pw", kdf, config).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let mut x = 0x1234_5678_9abc_def1_u64;
    for i in 0..12 {
        let data: Vec<u8> = (0..300_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        std::fs::write(src.join(format!("f{i}")), data).unwrap();
    }
    let opts = BackupOptions::new(vec![src.clone()]);
    let failing = FaultyStorage::new(
        remote.clone(),
        Faults {
            writes_before_failure: Some(4),
            reads_before_failure: None,
            only_kind: Some(ObjectKind::Pack),
        },
    );
    let repo = Arc::new(Repository::open(failing, b"pw").unwrap());
    assert!(backup::run(&repo, &opts, &NoProgress).is_err());
    assert!(remote.list(ObjectKind::Snapshot).unwrap().is_empty());
    let plain = Arc::new(Repository::open(Arc::new(remote.clone()), b"pw").unwrap());
    let read_all = CheckOptions {
        read_data: true,
        subset: None,
    };
    let report = check::run(&plain, &read_all).unwrap();
    assert!(report.ok(), "{:?}", report.errors);
    let (_, snap) = backup::run(&plain, &opts, &NoProgress).unwrap();
    assert!(check::run(&plain, &read_all).unwrap().ok());

    let failing_reads = FaultyStorage::new(
        remote.clone(),
        Faults {
            writes_before_failure: None,
            reads_before_failure: Some(8),
            only_kind: None,
        },
    );
    let reader = Arc::new(Repository::open(failing_reads, b"pw").unwrap());
    let target = dir.path().join("broken");
    let opts = RestoreOptions {
        target: target.clone(),
        ..RestoreOptions::default()
    };
    assert!(restore::run(&reader, snap.tree, &opts, &NoRestoreProgress).is_err());
    let target = dir.path().join("restored");
    let opts = RestoreOptions {
        target: target.clone(),
        ..RestoreOptions::default()
    };
    plain.load_index().unwrap();
    restore::run(&plain, snap.tree, &opts, &NoRestoreProgress).unwrap();
    for i in 0..12 {
        let name = format!("f{i}");
        assert_eq!(
            std::fs::read(target.join("src").join(&name)).unwrap(),
            std::fs::read(src.join(&name)).unwrap()
        );
    }
}

#[test]
fn s3_faults_mid_transfer_lose_nothing() {
    faults_mid_transfer("STRATA_TEST_S3");
}

#[test]
fn sftp_faults_mid_transfer_lose_nothing() {
    faults_mid_transfer("STRATA_TEST_SFTP");
}
