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
