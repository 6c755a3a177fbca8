//! Regression tests for the trust and data-loss defects found by attacking
//! strata as an adversary and as a new user (issue 9). Each test is named
//! after the defect it once showed.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{pseudo_random, tree_files, write, Env};

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.symlink_metadata().unwrap().is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn packs(repo: &Path) -> Vec<PathBuf> {
    files_under(&repo.join("data"))
        .into_iter()
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect()
}

/// Flip one byte in the middle of a file.
fn flip_middle(path: &Path) {
    let mut data = fs::read(path).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0x55;
    fs::write(path, data).unwrap();
}

fn largest(paths: &[PathBuf]) -> PathBuf {
    paths
        .iter()
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap()
        .clone()
}

/// A repository where every blob of `src` is stored twice, in two sets of
/// packs, by backups of hosts `x` and `y` that did not see each other's
/// index (as two backups running at once do). Returns both sets of packs.
fn duplicated(env: &Env, src: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    env.init();
    env.backup(&["--host", "x", src.to_str().unwrap()]);
    let first = packs(&env.repo());
    let hidden = env.path("hidden-index");
    fs::rename(env.repo().join("index"), &hidden).unwrap();
    fs::create_dir(env.repo().join("index")).unwrap();
    env.backup(&["--host", "y", src.to_str().unwrap()]);
    for f in files_under(&hidden) {
        fs::rename(&f, env.repo().join("index").join(f.file_name().unwrap())).unwrap();
    }
    let second: Vec<PathBuf> = packs(&env.repo())
        .into_iter()
        .filter(|p| !first.contains(p))
        .collect();
    assert!(
        !second.is_empty(),
        "the second backup stored its own copies"
    );
    (first, second)
}

fn restore_ok(env: &Env, host: &str, src: &Path) {
    let target = env.path(&format!("restored-{host}-{}", rand_suffix()));
    env.cmd()
        .args(["restore", "latest", "--host", host, "--target"])
        .arg(&target)
        .assert()
        .success();
    let inner = target.join(src.file_name().unwrap());
    assert_eq!(tree_files(&inner), tree_files(src));
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

#[test]
fn prune_deleted_the_intact_copy_of_a_duplicated_blob_and_kept_the_damaged_one() {
    // Whichever copy is damaged, readers fall back to the other, and
    // prune keeps the one that verifies. Which copy the index names first
    // and which one prune prefers depends on random pack names: several
    // rounds make sure both orders are met.
    for damage_first in [true, false, true, false] {
        let env = Env::new();
        let src = env.path("src");
        write(&src.join("big.bin"), &pseudo_random(600_000, 7));
        write(&src.join("small.txt"), b"hello");
        let (first, second) = duplicated(&env, &src);
        let victim = largest(if damage_first { &first } else { &second });
        flip_middle(&victim);

        restore_ok(&env, "x", &src);
        restore_ok(&env, "y", &src);
        // Exit 3 with a warning when the copy it meant to keep was the
        // damaged one; 0 when the copy it keeps verified anyway.
        let out = env.cmd().arg("prune").assert();
        let code = out.get_output().status.code();
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
        assert!(
            code == Some(0) || (code == Some(3) && stderr.contains("intact copy")),
            "{code:?} {stderr}"
        );
        restore_ok(&env, "x", &src);
        restore_ok(&env, "y", &src);
        // The damaged copy is the one that went.
        assert!(!victim.exists(), "the damaged pack was dropped");
        env.cmd().args(["check", "--read-data"]).assert().success();
    }
}

#[test]
fn readers_failed_when_the_first_indexed_copy_was_damaged() {
    // One of the two copies is the one the index names first.
    for damage_first in [true, false] {
        let env = Env::new();
        let src = env.path("src");
        write(&src.join("big.bin"), &pseudo_random(600_000, 8));
        let (first, second) = duplicated(&env, &src);
        flip_middle(&largest(if damage_first { &first } else { &second }));
        let out = env
            .cmd()
            .args(["dump", "latest", "/src/big.bin"])
            .assert()
            .success();
        assert_eq!(out.get_output().stdout, pseudo_random(600_000, 8));
        restore_ok(&env, "x", &src);
        env.cmd().args(["ls", "-l", "latest"]).assert().success();
    }
}

#[test]
fn prune_keeps_every_copy_when_none_verifies() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("big.bin"), &pseudo_random(600_000, 9));
    let (first, second) = duplicated(&env, &src);
    let (a, b) = (largest(&first), largest(&second));
    flip_middle(&a);
    flip_middle(&b);
    let out = env.cmd().arg("prune").assert().code(3);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(stderr.contains("no copy verifies"), "{stderr}");
    assert!(a.exists() && b.exists(), "both damaged copies are kept");
}

#[test]
fn init_over_a_repository_whose_config_is_missing_destroyed_it() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("a.txt"), b"precious");
    env.init();
    env.backup(&[src.to_str().unwrap()]);
    let keys_before = files_under(&env.repo().join("keys")).len();
    fs::remove_file(env.repo().join("config")).unwrap();
    let out = env
        .cmd()
        .args(["init", "--kdf-memory", "1", "--kdf-iterations", "1"])
        .assert()
        .failure();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(stderr.contains("config"), "{stderr}");
    assert!(stderr.contains("copy"), "says how to recover: {stderr}");
    assert_eq!(files_under(&env.repo().join("keys")).len(), keys_before);
    assert!(!env.repo().join("config").exists());
}

#[test]
fn a_restore_over_an_existing_file_that_fails_destroyed_the_old_contents() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("doc.bin"), &pseudo_random(300_000, 1));
    env.init();
    env.backup(&[src.to_str().unwrap()]);
    let target = env.path("target");
    let old = b"the old contents, which must survive".to_vec();
    write(&target.join("src/doc.bin"), &old);
    // The only copy of the new contents is damaged.
    flip_middle(&largest(&packs(&env.repo())));
    let out = env
        .cmd()
        .args(["restore", "latest", "--overwrite", "always", "--target"])
        .arg(&target)
        .assert()
        .code(3);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(stderr.contains("doc.bin"), "the file is named: {stderr}");
    assert_eq!(fs::read(target.join("src/doc.bin")).unwrap(), old);
    let leftovers: Vec<PathBuf> = files_under(&target)
        .into_iter()
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // A re-run that leaves existing files alone says so, and --verify
    // checks them against the snapshot rather than verifying nothing.
    let out = env
        .cmd()
        .args([
            "restore",
            "latest",
            "--overwrite",
            "never",
            "--verify",
            "--target",
        ])
        .arg(&target)
        .assert()
        .failure();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert!(stdout.contains("1 existing left alone"), "{stdout}");
    assert!(stdout.contains("1 failed"), "{stdout}");
}

#[test]
fn a_killed_restore_over_an_existing_file_left_it_half_written() {
    let env = Env::new();
    let src = env.path("src");
    let new = pseudo_random(24 << 20, 2);
    write(&src.join("big.bin"), &new);
    env.init();
    env.backup(&[src.to_str().unwrap()]);
    let old = pseudo_random(24 << 20, 3);
    for delay_ms in [5u64, 20, 40, 80, 150] {
        let target = env.path(&format!("t{delay_ms}"));
        write(&target.join("src/big.bin"), &old);
        let mut child = env
            .std_cmd()
            .args(["restore", "latest", "--overwrite", "always", "--target"])
            .arg(&target)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        let now = fs::read(target.join("src/big.bin")).unwrap();
        assert!(
            now == old || now == new,
            "killed after {delay_ms} ms: a mix"
        );
    }
}

#[test]
fn one_damaged_blob_made_restore_give_up_on_every_file() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("a-big.bin"), &pseudo_random(3 << 20, 4));
    write(&src.join("b-small.txt"), b"intact and small");
    write(&src.join("c/d.txt"), b"also intact");
    env.init();
    env.backup(&[src.to_str().unwrap()]);
    // The middle of the data pack lies in the big file's data.
    flip_middle(&largest(&packs(&env.repo())));
    let target = env.path("target");
    let out = env
        .cmd()
        .args(["restore", "latest", "--target"])
        .arg(&target)
        .assert()
        .code(3);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(stderr.contains("a-big.bin"), "{stderr}");
    assert!(
        !target.join("src/a-big.bin").exists(),
        "no placeholder left"
    );
    assert_eq!(
        fs::read(target.join("src/b-small.txt")).unwrap(),
        b"intact and small"
    );
    assert_eq!(
        fs::read(target.join("src/c/d.txt")).unwrap(),
        b"also intact"
    );

    // check names the snapshot and the path the damaged blob affects.
    let out = env.cmd().args(["check", "--read-data"]).assert().failure();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(
        stderr.contains("/src/a-big.bin: data blob") && stderr.contains("damaged"),
        "{stderr}"
    );
}

#[test]
fn restore_latest_silently_picked_an_older_snapshot_when_the_newest_was_damaged() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("a.txt"), b"version 1");
    env.init();
    env.backup(&[src.to_str().unwrap()]);
    let first: Vec<PathBuf> = files_under(&env.repo().join("snapshots"));
    write(&src.join("a.txt"), b"version 2");
    env.backup(&[src.to_str().unwrap()]);
    let newest = files_under(&env.repo().join("snapshots"))
        .into_iter()
        .find(|p| !first.contains(p))
        .unwrap();
    flip_middle(&newest);
    let target = env.path("target");
    let out = env
        .cmd()
        .args(["restore", "latest", "--target"])
        .arg(&target)
        .assert()
        .failure();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(stderr.contains("--allow-damaged"), "{stderr}");
    assert!(!target.join("src/a.txt").exists());
    let out = env
        .cmd()
        .args(["restore", "latest", "--allow-damaged", "--target"])
        .arg(&target)
        .assert()
        .success();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(stderr.contains("unreadable"), "warns: {stderr}");
    assert_eq!(fs::read(target.join("src/a.txt")).unwrap(), b"version 1");
}

#[test]
fn prune_followed_a_directory_symlink_inside_data_and_deleted_files_outside() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("a.txt"), b"data");
    env.init();
    env.backup(&[src.to_str().unwrap()]);
    let outside = env.path("outside");
    let victim_name = "ab".repeat(32);
    write(&outside.join(&victim_name), b"not the repository's");
    let ab = env.repo().join("data/ab");
    for f in files_under(&ab) {
        fs::remove_file(f).unwrap();
    }
    fs::remove_dir(&ab).unwrap();
    std::os::unix::fs::symlink(&outside, &ab).unwrap();
    let out = env
        .cmd()
        .arg("prune")
        .timeout(Duration::from_secs(60))
        .assert();
    assert_ne!(out.get_output().status.code(), Some(101), "no panic");
    assert!(outside.join(&victim_name).exists(), "prune deleted outside");
}

#[test]
fn a_fifo_in_place_of_an_object_hung_every_reader() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("a.txt"), &pseudo_random(10_000, 5));
    env.init();
    env.backup(&[src.to_str().unwrap()]);
    let pack = largest(&packs(&env.repo()));
    fs::remove_file(&pack).unwrap();
    nix::unistd::mkfifo(&pack, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let limit = Duration::from_secs(30);
    let target = env.path("target");
    for args in [
        vec!["check", "--read-data"],
        vec!["restore", "latest", "--target", target.to_str().unwrap()],
    ] {
        let out = env.cmd().args(&args).timeout(limit).assert().failure();
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
        assert!(stderr.contains("FIFO"), "{args:?}: {stderr}");
    }
    let config = env.repo().join("config");
    fs::remove_file(&config).unwrap();
    nix::unistd::mkfifo(&config, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    for args in [vec!["snapshots"], vec!["ls", "latest"], vec!["check"]] {
        let out = env.cmd().args(&args).timeout(limit).assert().failure();
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
        assert!(stderr.contains("FIFO"), "{args:?}: {stderr}");
    }
}

#[test]
fn interrupted_writes_left_temporary_files_forever() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("a.txt"), b"data");
    env.init();
    env.backup(&[src.to_str().unwrap()]);
    let stale = env.repo().join("data/.tmp-stream-0123456789abcdef");
    let fresh = env.repo().join("data/.tmp-stream-fedcba9876543210");
    write(&stale, &[1u8; 1000]);
    write(&fresh, &[2u8; 1000]);
    let old = std::time::SystemTime::now() - Duration::from_secs(2 * 3600);
    fs::File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let out = env.cmd().arg("check").assert().success();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(stderr.contains("1 temporary files"), "{stderr}");
    let out = env.cmd().arg("prune").assert().success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert!(stdout.contains("1 temporary file left"), "{stdout}");
    assert!(!stale.exists(), "the stale one is swept");
    assert!(fresh.exists(), "a recent one may belong to a live write");
}

#[test]
fn keys_and_repository_files_were_created_world_readable() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("a.txt"), b"data");
    env.init();
    env.backup(&[src.to_str().unwrap()]);
    let mode = |p: &Path| fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&env.repo()), 0o700);
    for f in files_under(&env.repo()) {
        assert_eq!(mode(&f) & 0o077, 0, "{} is private", f.display());
    }
    for d in ["keys", "data", "data/00", "index", "snapshots"] {
        assert_eq!(mode(&env.repo().join(d)), 0o700, "{d}");
    }

    // A repository directory made group-readable on purpose stays so.
    let shared = env.path("shared");
    fs::create_dir(&shared).unwrap();
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o750)).unwrap();
    env.cmd()
        .args(["-r", shared.to_str().unwrap()])
        .args(["init", "--kdf-memory", "1", "--kdf-iterations", "1"])
        .assert()
        .success();
    for f in files_under(&shared) {
        assert_eq!(mode(&f), 0o640, "{}", f.display());
    }
    assert_eq!(mode(&shared.join("keys")), 0o750);
}
