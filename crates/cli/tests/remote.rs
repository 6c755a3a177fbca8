//! The command line end to end against real servers on loopback (started by
//! `scripts/servers.sh`, run by `scripts/test.sh`): init, backup, restore,
//! check, forget --prune, on S3 and on SFTP. Without the servers the tests
//! say so and pass, unless `STRATA_REQUIRE_SERVERS` is set.
#![allow(clippy::unwrap_used)]

mod common;

use common::{pseudo_random, tree_files, write, Env};

fn remote(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(base) => Some(format!(
            "{base}/cli-{:x}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
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

/// The environment the server variables need (credentials, region, the
/// ssh configuration is system-wide).
fn pass_through(cmd: &mut assert_cmd::Command) {
    for var in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_DEFAULT_REGION",
        "AWS_EC2_METADATA_DISABLED",
        "STRATA_SFTP_KEY",
    ] {
        if let Some(v) = std::env::var_os(var) {
            cmd.env(var, v);
        }
    }
}

fn round_trip(var: &str) {
    let Some(url) = remote(var) else { return };
    let env = Env::new();
    let run = |args: &[&str]| {
        let mut c = env.cmd();
        c.env("STRATA_REPOSITORY", &url);
        pass_through(&mut c);
        c.args(args);
        c
    };
    run(&["init", "--kdf-memory", "1", "--kdf-iterations", "1"])
        .assert()
        .success();
    let src = env.path("data");
    write(&src.join("a.txt"), b"alpha\n");
    write(&src.join("sub/big.bin"), &pseudo_random(3 << 20, 7));
    run(&["backup", src.to_str().unwrap()]).assert().success();
    write(&src.join("sub/big.bin"), &pseudo_random(2 << 20, 8));
    run(&["backup", src.to_str().unwrap()]).assert().success();
    let target = env.path("restored");
    run(&["restore", "latest", "--target", target.to_str().unwrap()])
        .assert()
        .success();
    assert_eq!(tree_files(&target.join("data")), tree_files(&src));
    // metadata is cached locally, and a damaged cache is never trusted
    let cache = env.home().join(".cache/strata");
    let cached = cache_files(&cache);
    assert!(
        cached
            .iter()
            .any(|p| p.to_string_lossy().contains("/snapshots/")),
        "nothing cached in {}: {cached:?}",
        cache.display()
    );
    for f in &cached {
        std::fs::write(f, b"damaged").unwrap();
    }
    let listed = run(&["ls", "latest"]).output().unwrap();
    assert!(listed.status.success());
    assert!(String::from_utf8_lossy(&listed.stdout).contains("big.bin"));
    run(&["forget", "--keep-last", "1", "--prune"])
        .assert()
        .success();
    run(&["check", "--read-data"]).assert().success();
    let again = env.path("again");
    run(&["restore", "latest", "--target", again.to_str().unwrap()])
        .assert()
        .success();
    assert_eq!(tree_files(&again.join("data")), tree_files(&src));
}

fn cache_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

#[test]
fn s3_repository_round_trip() {
    round_trip("STRATA_TEST_S3");
}

#[test]
fn sftp_repository_round_trip() {
    round_trip("STRATA_TEST_SFTP");
}
