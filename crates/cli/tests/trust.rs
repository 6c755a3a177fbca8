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
    // Listing a directory sets its atime once (relatime): list them now,
    // so that both backups see the same times and store the same trees.
    let mut dirs = vec![src.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            }
        }
    }
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

/// `strata ARGS` with standard output a pipe nobody reads.
fn with_closed_stdout(env: &Env, args: &[&str]) -> std::process::Output {
    let (read, write) = nix::unistd::pipe().unwrap();
    drop(read);
    env.std_cmd()
        .args(args)
        .stdout(std::process::Stdio::from(write))
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap()
}

/// A repository with one backup of a small tree; returns the source.
fn one_backup(env: &Env) -> PathBuf {
    let src = env.path("src");
    write(&src.join("a.txt"), b"alpha");
    write(&src.join("sub/b.txt"), &pseudo_random(50_000, 11));
    env.init();
    env.backup(&[src.to_str().unwrap()]);
    src
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// `strata ARGS` in the test's environment, run to its end.
fn run<I: IntoIterator<Item = S>, S: AsRef<std::ffi::OsStr>>(
    env: &Env,
    args: I,
) -> std::process::Output {
    env.cmd().args(args).output().unwrap()
}

/// The command said `text` on standard error.
fn says(out: &std::process::Output, text: &str) {
    let stderr = stderr_of(out);
    assert!(stderr.contains(text), "expected {text:?} in: {stderr}");
}

/// The command ended with `code` and said `text` on standard error.
fn expect(out: &std::process::Output, code: i32, text: &str) {
    assert_eq!(out.status.code(), Some(code), "{}", stderr_of(out));
    says(out, text);
}

#[test]
fn a_closed_stdout_panicked_and_a_saved_backup_exited_101() {
    use std::os::unix::process::ExitStatusExt;
    let env = Env::new();
    let src = one_backup(&env);
    for args in [
        vec!["snapshots"],
        vec!["ls", "latest"],
        vec!["stats"],
        vec!["check"],
        vec!["key", "list"],
        vec!["diff", "latest", "latest"],
        vec!["find", "*.txt"],
    ] {
        let out = with_closed_stdout(&env, &args);
        let stderr = stderr_of(&out);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_ne!(out.status.code(), Some(101), "{args:?}");
        assert!(
            out.status.success() || out.status.signal() == Some(libc::SIGPIPE),
            "{args:?} ends quietly: {:?} {stderr}",
            out.status
        );
    }
    let before = env.snapshots().len();
    let out = with_closed_stdout(&env, &["backup", src.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert_eq!(env.snapshots().len(), before + 1, "the snapshot was saved");
}

#[test]
fn names_were_printed_raw_and_ambiguous() {
    use std::os::unix::ffi::OsStrExt;
    let env = Env::new();
    let src = env.path("src");
    let names: [&[u8]; 4] = [b"a\nb", b"\xff", b"\\xff", b"\x1b[31mred"];
    for n in names {
        write(&src.join(std::ffi::OsStr::from_bytes(n)), b"x");
    }
    env.init();
    env.backup(&[src.to_str().unwrap()]);
    let out = run(&env, ["ls", "latest"]);
    let stdout = out.stdout.clone();
    assert!(
        !stdout.contains(&0x1b),
        "no escape sequence reaches the terminal"
    );
    let text = String::from_utf8(stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1 + names.len(), "one line per entry: {text}");
    for quoted in [
        "$'/src/a\\nb'",
        "$'/src/\\xff'",
        "'/src/\\xff'",
        "$'/src/\\x1b[31mred'",
    ] {
        assert!(lines.contains(&quoted), "{quoted} in {text}");
    }
    let out = run(&env, ["ls", "latest", "--json"]);
    let entries: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let raw = entries
        .iter()
        .find(|e| e["name_bytes"].as_str() == Some("/w=="))
        .expect("the name 0xff has a lossless form");
    assert_eq!(raw["path_bytes"], "L3NyYy//");
    let literal = entries.iter().find(|e| e["name"] == "\\xff");
    assert!(literal.is_some_and(|e| e.get("name_bytes").is_none()));
}

#[test]
fn password_command_output_was_read_without_limit() {
    let env = Env::new();
    one_backup(&env);
    let out = env
        .cmd()
        .env_remove("STRATA_PASSWORD")
        .args(["--password-command", "yes", "snapshots"])
        .timeout(Duration::from_secs(30))
        .output()
        .unwrap();
    expect(&out, 1, "more than 4096 bytes");
}

#[test]
fn an_empty_password_and_zero_keys_were_reported_as_a_wrong_password() {
    let env = Env::new();
    one_backup(&env);
    let out = env
        .cmd()
        .env("STRATA_PASSWORD", "")
        .arg("snapshots")
        .output()
        .unwrap();
    expect(&out, 2, "empty");
    for key in files_under(&env.repo().join("keys")) {
        fs::remove_file(key).unwrap();
    }
    let out = run(&env, ["snapshots"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "damage, not a wrong password (12)"
    );
    says(&out, "no key files");
}

#[test]
fn threads_100000_aborted_and_proc_never_ended() {
    let env = Env::new();
    let src = one_backup(&env);
    let out = run(
        &env,
        ["backup", "--threads", "100000", src.to_str().unwrap()],
    );
    expect(&out, 2, "too many");
    let out = env
        .cmd()
        .args(["backup", "/proc"])
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    expect(&out, 0, "pseudo filesystem");
    let listed = run(&env, ["ls", "latest"]);
    assert_eq!(String::from_utf8_lossy(&listed.stdout).trim(), "/proc");
}

#[test]
fn non_root_restore_kept_setuid_bits_without_the_owner() {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::process::CommandExt;
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to make a setuid file of another owner");
        return;
    }
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("prog"), b"#!/bin/sh\n");
    // chown clears the setuid bit: set the mode after it.
    std::os::unix::fs::chown(src.join("prog"), Some(1234), Some(1234)).unwrap();
    fs::set_permissions(src.join("prog"), fs::Permissions::from_mode(0o4755)).unwrap();
    env.init();
    env.backup(&[src.to_str().unwrap()]);
    let mut all = vec![env.dir.path().to_path_buf(), env.home(), env.repo()];
    let mut stack = vec![env.repo()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            all.push(p);
        }
    }
    for p in all {
        let mode = if p.is_dir() { 0o777 } else { 0o644 };
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    }
    let target = env.path("as-nobody");
    let mut cmd = env.std_cmd();
    cmd.uid(65534).gid(65534);
    let out = cmd
        .args(["restore", "latest", "--target"])
        .arg(&target)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let mode = fs::metadata(target.join("src/prog")).unwrap().mode() & 0o7777;
    assert_eq!(mode, 0o755, "setuid cleared");
    says(&out, "setuid");
}

#[test]
fn a_bad_exclude_pattern_was_accepted_and_a_far_time_printed_a_raw_message() {
    let env = Env::new();
    let src = one_backup(&env);
    let out = run(
        &env,
        ["backup", "--exclude", "[invalid", src.to_str().unwrap()],
    );
    expect(&out, 2, "[invalid");
    let out = env
        .cmd()
        .args(["restore", "latest", "--exclude", "[x", "--target"])
        .arg(env.path("t"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = run(
        &env,
        ["backup", "--time", "9999-12-31", src.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains("out of range") && !stderr.contains("overflowed"),
        "{stderr}"
    );
}

#[test]
fn paths_as_backed_up_were_not_in_the_snapshot() {
    let env = Env::new();
    let src = one_backup(&env);
    let abs = src.to_str().unwrap();
    let out = run(&env, ["dump", "latest", &format!("{abs}/a.txt")]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(out.stdout, b"alpha");
    let target = env.path("t");
    env.cmd()
        .args(["restore", &format!("latest:{abs}/sub"), "--target"])
        .arg(&target)
        .assert()
        .success();
    assert_eq!(
        fs::read(target.join("sub/b.txt")).unwrap(),
        pseudo_random(50_000, 11)
    );
    let out = run(&env, ["dump", "latest", "/elsewhere/a.txt"]);
    expect(&out, 1, "top level holds /src");
}

#[test]
fn a_fresh_machine_said_no_password_given() {
    let env = Env::new();
    let out = env
        .cmd()
        .env_remove("STRATA_REPOSITORY")
        .env_remove("STRATA_PASSWORD")
        .arg("snapshots")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(10));
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains("no repository yet") && stderr.contains("strata backup"),
        "{stderr}"
    );
}

#[test]
fn untouched_files_were_reported_as_changed() {
    let env = Env::new();
    let src = env.path("src");
    env.init();
    write(&src.join("fresh.txt"), b"just written");
    env.backup(&[src.to_str().unwrap()]);
    // At once: the file's times are too recent to trust, so it is read again.
    let again = env.backup(&[src.to_str().unwrap()]);
    assert_eq!(again["summary"]["files_changed"], 0, "{again}");
    assert_eq!(
        again["summary"]["files_reread"].as_u64().unwrap()
            + again["summary"]["files_unchanged"].as_u64().unwrap(),
        1
    );
}

#[test]
fn remote_failures_retried_for_seconds_and_blamed_the_address() {
    let env = Env::new();
    // Nothing listens on this port (bound, then closed).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = std::time::Instant::now();
    let out = env
        .cmd()
        .args([
            "-r",
            &format!("s3:http://127.0.0.1:{port}/bucket"),
            "snapshots",
        ])
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "y")
        .output()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "fails fast");
    let stderr = stderr_of(&out);
    assert!(stderr.contains("connection refused"), "{stderr}");
    assert!(
        !stderr.contains('\x1b'),
        "no colours off a terminal: {stderr}"
    );
    // A server that listens, and no credentials.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let out = env
        .cmd()
        .args([
            "-r",
            &format!("s3:http://127.0.0.1:{port}/bucket"),
            "snapshots",
        ])
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    let stderr = stderr_of(&out);
    assert!(stderr.contains("AWS_ACCESS_KEY_ID"), "{stderr}");
}

#[test]
fn a_restic_repository_was_called_damaged() {
    let env = Env::new();
    let repo = env.repo();
    write(&repo.join("config"), &pseudo_random(200, 1));
    write(
        &repo.join("keys").join("ab".repeat(32)),
        br#"{"created":"2026-01-01T00:00:00Z","username":"u","hostname":"h","kdf":"scrypt","N":32768,"r":8,"p":1,"salt":"AAAA","data":"AAAA"}"#,
    );
    fs::create_dir_all(repo.join("data")).unwrap();
    let out = run(&env, ["snapshots"]);
    says(&out, "restic repository");
}

#[test]
fn dump_of_a_directory_wrote_tar_on_the_terminal() {
    let env = Env::new();
    one_backup(&env);
    let bin = assert_cmd::cargo::cargo_bin("strata");
    // `script` gives the command a terminal.
    let out = std::process::Command::new("script")
        .args([
            "-qec",
            &format!("{} dump latest /src", bin.display()),
            "/dev/null",
        ])
        .env("HOME", env.home())
        .env("STRATA_PASSWORD", "test-password")
        .env("STRATA_REPOSITORY", env.repo())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("terminal"), "{text}");
    assert!(!text.contains("ustar"), "no tar data: {text}");
}

#[test]
fn ctrl_c_printed_nothing_about_the_snapshot() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("big.bin"), &pseudo_random(400 << 20, 12));
    env.init();
    let child = env
        .std_cmd()
        .args(["backup", src.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let locks = env.repo().join("locks");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while files_under(&locks).iter().all(|p| {
        p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(".tmp-")
    }) && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(50));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("no snapshot was saved"), "{stderr}");
    assert!(env.snapshots().is_empty());
    assert!(files_under(&locks).is_empty(), "its lock is gone");
    env.cmd().arg("check").assert().success();
}

#[test]
fn plurals_and_symlinks_counted_as_other_entries() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("a.txt"), b"a");
    std::os::unix::fs::symlink("a.txt", src.join("link")).unwrap();
    env.init();
    let out = run(&env, ["backup", src.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(stdout.contains("symlinks: 1"), "{stdout}");
    let out = run(&env, ["snapshots"]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(stdout.trim_end().ends_with("\n1 snapshot"), "{stdout}");
}

#[test]
fn a_read_only_repository_could_not_be_restored_from() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root for a read-only bind mount");
        return;
    }
    let env = Env::new();
    let src = one_backup(&env);
    let ro = env.path("ro");
    fs::create_dir(&ro).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["--bind", env.repo().to_str().unwrap(), ro.to_str().unwrap()])
        .status()
        .unwrap()
        .success()
        && std::process::Command::new("mount")
            .args(["-o", "remount,ro,bind", ro.to_str().unwrap()])
            .status()
            .unwrap()
            .success();
    if !mounted {
        eprintln!("skipped: bind mounts are not allowed here");
        return;
    }
    let target = env.path("t");
    let restore = env
        .cmd()
        .args(["-r", ro.to_str().unwrap(), "restore", "latest", "--target"])
        .arg(&target)
        .output()
        .unwrap();
    let check = run(&env, ["-r", ro.to_str().unwrap(), "check"]);
    let _ = std::process::Command::new("umount").arg(&ro).status();
    assert!(restore.status.success(), "{}", stderr_of(&restore));
    assert!(stderr_of(&restore).contains("without one"), "warns");
    assert!(check.status.success(), "{}", stderr_of(&check));
    assert_eq!(tree_files(&target.join("src")), tree_files(&src));
}

#[test]
fn restore_gave_up_on_a_damaged_tree_with_an_intact_copy() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("d/inner.txt"), b"inside");
    let (first, second) = duplicated(&env, &src);
    // Damage every pack of one copy (trees and data), in turn.
    for set in [&first, &second] {
        let saved: Vec<Vec<u8>> = set.iter().map(|p| fs::read(p).unwrap()).collect();
        set.iter().for_each(|p| flip_middle(p));
        restore_ok(&env, "x", &src);
        for (p, bytes) in set.iter().zip(saved) {
            fs::write(p, bytes).unwrap();
        }
    }
}

#[test]
fn one_damaged_tree_aborted_the_whole_restore() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("a.txt"), b"top file");
    write(&src.join("d/inner.txt"), b"inside");
    env.init();
    env.backup(&[src.to_str().unwrap()]);
    // Damage only the tree of /src/d: find a byte whose flip makes check
    // name that directory alone.
    let mut hit = false;
    'search: for pack in packs(&env.repo()) {
        let saved = fs::read(&pack).unwrap();
        for pos in (0..saved.len().saturating_sub(100)).step_by(16) {
            let mut bytes = saved.clone();
            bytes[pos] ^= 1;
            fs::write(&pack, &bytes).unwrap();
            let out = run(&env, ["check", "--read-data"]);
            let stderr = stderr_of(&out);
            if stderr.contains("/src/d/:") && !stderr.contains("/src/a.txt") {
                hit = true;
                break 'search;
            }
        }
        fs::write(&pack, &saved).unwrap();
    }
    assert!(hit, "a position that damages only the tree of /src/d");
    let target = env.path("t");
    let out = env
        .cmd()
        .args(["restore", "latest", "--target"])
        .arg(&target)
        .output()
        .unwrap();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("src/d"), "{stderr}");
    assert_eq!(fs::read(target.join("src/a.txt")).unwrap(), b"top file");
    assert!(!target.join("src/d").exists(), "not restored as empty");
}

#[test]
fn forget_latest_deleted_the_wrong_snapshot_when_the_newest_was_unreadable() {
    let env = Env::new();
    let src = one_backup(&env);
    let first = files_under(&env.repo().join("snapshots"));
    env.backup(&[src.to_str().unwrap()]);
    let newest = files_under(&env.repo().join("snapshots"))
        .into_iter()
        .find(|p| !first.contains(p))
        .unwrap();
    flip_middle(&newest);
    let out = run(&env, ["forget", "latest"]);
    assert!(!out.status.success());
    assert!(first[0].exists(), "the older snapshot is still there");
}

#[test]
fn prune_swept_temporary_files_through_a_symlinked_repository_directory() {
    let env = Env::new();
    one_backup(&env);
    let elsewhere = env.path("elsewhere");
    let precious = elsewhere.join(".tmp-precious");
    write(&precious, b"not the repository's");
    fs::File::options()
        .write(true)
        .open(&precious)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(7200))
        .unwrap();
    let snapshots = env.repo().join("snapshots");
    fs::rename(&snapshots, env.path("snapshots-away")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &snapshots).unwrap();
    let _ = run(&env, ["prune"]);
    assert!(precious.exists());
}

#[test]
fn a_directory_in_the_way_was_deleted_although_the_file_failed() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("f"), &pseudo_random(300_000, 13));
    env.init();
    env.backup(&[src.to_str().unwrap()]);
    flip_middle(&largest(&packs(&env.repo())));
    let target = env.path("t");
    write(&target.join("src/f/inner"), b"precious");
    let out = env
        .cmd()
        .args(["restore", "latest", "--target"])
        .arg(&target)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr_of(&out));
    assert_eq!(fs::read(target.join("src/f/inner")).unwrap(), b"precious");
}

#[test]
fn an_unreadable_key_object_locked_out_the_repository() {
    let env = Env::new();
    one_backup(&env);
    // Listing order decides which key is tried first: broken ones under
    // many names make sure one comes before the good key.
    for d in "0123456789abcdef".chars() {
        let name = d.to_string().repeat(64);
        std::os::unix::fs::symlink("/nonexistent", env.repo().join("keys").join(name)).unwrap();
    }
    let out = run(&env, ["snapshots"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
}

#[test]
fn a_directory_named_like_a_snapshot_was_ignored() {
    let env = Env::new();
    one_backup(&env);
    fs::create_dir(env.repo().join("snapshots").join("cd".repeat(32))).unwrap();
    let out = run(&env, ["check"]);
    expect(&out, 1, "directory");
    env.cmd()
        .args(["restore", "latest", "--target"])
        .arg(env.path("t"))
        .assert()
        .failure();
}

#[test]
fn a_socket_named_like_a_pack_stopped_restore() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("big.bin"), &pseudo_random(300_000, 14));
    env.init();
    env.backup(&[src.to_str().unwrap()]);
    let pack = largest(&packs(&env.repo()));
    fs::remove_file(&pack).unwrap();
    let _socket = std::os::unix::net::UnixListener::bind(&pack).unwrap();
    let out = env
        .cmd()
        .args(["restore", "latest", "--target"])
        .arg(env.path("t"))
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    expect(&out, 3, "big.bin");
}

#[test]
fn a_hostile_key_file_made_every_command_allocate_and_compute_for_ever() {
    let env = Env::new();
    one_backup(&env);
    let key = files_under(&env.repo().join("keys")).remove(0);
    let original = fs::read(&key).unwrap();
    // Each parameter within its bound, but together minutes of work.
    let mut json: serde_json::Value = serde_json::from_slice(&original).unwrap();
    json["memory_kib"] = serde_json::json!(4 * 1024 * 1024);
    json["iterations"] = serde_json::json!(64);
    fs::write(&key, serde_json::to_vec(&json).unwrap()).unwrap();
    let out = env
        .cmd()
        .arg("snapshots")
        .timeout(Duration::from_secs(30))
        .output()
        .unwrap();
    expect(&out, 1, "hostile");
    fs::write(&key, &original).unwrap();
    let key = files_under(&env.repo().join("keys")).remove(0);
    let mut json: serde_json::Value = serde_json::from_slice(&fs::read(&key).unwrap()).unwrap();
    json["memory_kib"] = serde_json::json!(u32::MAX);
    json["iterations"] = serde_json::json!(u32::MAX);
    fs::write(&key, serde_json::to_vec(&json).unwrap()).unwrap();
    let out = env
        .cmd()
        .arg("snapshots")
        .timeout(Duration::from_secs(30))
        .output()
        .unwrap();
    expect(&out, 1, "hostile");
    // init refuses what it would refuse to read back (and does not overflow).
    let out = env
        .cmd()
        .args(["-r", env.path("other").to_str().unwrap()])
        .args(["init", "--kdf-memory", "5000000"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
}

fn send(child: &std::process::Child, signal: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal);
}

#[test]
fn a_backup_of_root_could_not_be_addressed_and_excluding_slash_star_saved_nothing() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("a.txt"), b"under root");
    env.init();
    // The restic idiom: everything under / excluded but one directory.
    let top = env.dir.path();
    let parent = top.parent().unwrap();
    let mut args = vec!["backup".to_string(), "/".into()];
    let mut prefix = PathBuf::from("/");
    for part in top.strip_prefix("/").unwrap().components() {
        args.push("--exclude".into());
        args.push(format!("{}/*", prefix.display()).replace("//", "/"));
        prefix.push(part);
        args.push("--exclude".into());
        args.push(format!("!{}", prefix.display()));
    }
    let out = run(&env, &args);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let file = src.join("a.txt");
    let stored = format!("/root{}", file.display());
    for path in [file.to_str().unwrap(), &stored] {
        let out = run(&env, ["dump", "latest", path]);
        assert!(out.status.success(), "{path}: {}", stderr_of(&out));
        assert_eq!(out.stdout, b"under root");
    }
    // diff of a directory on disk against a backup of `/`
    let out = env
        .cmd()
        .args(["diff", "latest"])
        .arg(&src)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let _ = parent;
}

#[test]
fn an_interrupted_restore_deleted_the_files_it_had_completed() {
    let env = Env::new();
    let src = env.path("src");
    for i in 0..300 {
        write(&src.join(format!("f{i:04}")), &pseudo_random(300_000, i));
    }
    env.init();
    env.backup(&[src.to_str().unwrap()]);
    let mut kept_some = false;
    for delay in [20u64, 60, 120, 250, 500, 10, 900] {
        let target = env.path(&format!("t{delay}"));
        let child = env
            .std_cmd()
            .args(["restore", "latest", "--threads", "1", "--target"])
            .arg(&target)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Interrupt once about a third of the data is on disk: the blocks
        // the temporary files hold tell (they are created sparse).
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            let written: u64 = fs::read_dir(target.join("src"))
                .map(|rd| {
                    rd.filter_map(|e| e.ok()?.metadata().ok())
                        .map(|m| std::os::unix::fs::MetadataExt::blocks(&m) * 512)
                        .sum()
                })
                .unwrap_or(0);
            if written > (300 * 300_000) / 3 {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(delay / 20));
        send(&child, nix::sys::signal::Signal::SIGINT);
        let out = child.wait_with_output().unwrap();
        let names: Vec<PathBuf> = files_under(&target);
        assert!(
            names
                .iter()
                .all(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.')),
            "no temporary file is left"
        );
        for p in &names {
            let i: u64 = p.file_name().unwrap().to_str().unwrap()[1..]
                .parse()
                .unwrap();
            assert_eq!(
                fs::read(p).unwrap(),
                pseudo_random(300_000, i),
                "{}",
                p.display()
            );
        }
        if out.status.code() == Some(130) {
            says(&out, "completed so far are in place");
            kept_some |= !names.is_empty() && names.len() < 300;
        }
        if kept_some {
            break;
        }
    }
    assert!(
        kept_some,
        "an interrupted restore keeps the files it completed"
    );
}

#[test]
fn a_second_ctrl_c_left_locks_and_said_nothing_of_the_snapshot() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("big.bin"), &pseudo_random(200 << 20, 15));
    env.init();
    for delay in [100u64, 300, 600] {
        let before = env.snapshots().len();
        let child = env
            .std_cmd()
            .args(["backup", "--force", src.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay));
        send(&child, nix::sys::signal::Signal::SIGINT);
        std::thread::sleep(Duration::from_millis(5));
        send(&child, nix::sys::signal::Signal::SIGINT);
        let out = child.wait_with_output().unwrap();
        let stderr = stderr_of(&out);
        let saved = env.snapshots().len() > before;
        if out.status.code() == Some(130) {
            let says_saved = stderr.contains("the snapshot was saved");
            let says_not = stderr.contains("no snapshot was saved");
            assert!(says_saved || says_not, "{stderr}");
            assert_eq!(saved, says_saved, "{stderr}");
        }
        assert!(
            files_under(&env.repo().join("locks")).is_empty(),
            "{stderr}"
        );
    }
    // One Ctrl-C in a command that does not stop by itself.
    let child = env
        .std_cmd()
        .args(["check", "--read-data"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(150));
    send(&child, nix::sys::signal::Signal::SIGINT);
    let _ = child.wait_with_output().unwrap();
    assert!(files_under(&env.repo().join("locks")).is_empty());
}

#[test]
fn restore_json_gave_a_shell_quoted_path_and_a_full_disk_was_not_an_error() {
    use std::os::unix::ffi::OsStrExt;
    let env = Env::new();
    let src = env.path("src");
    write(
        &src.join(std::ffi::OsStr::from_bytes(b"x\xff")),
        &pseudo_random(300_000, 16),
    );
    env.init();
    env.backup(&[src.to_str().unwrap()]);
    flip_middle(&largest(&packs(&env.repo())));
    let out = env
        .cmd()
        .args(["restore", "latest", "--json", "--target"])
        .arg(env.path("t"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let summary: serde_json::Value = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .find(|v: &serde_json::Value| v["message_type"] == "summary")
        .unwrap();
    let entry = &summary["incomplete"][0];
    assert!(
        !entry["path"].as_str().unwrap().starts_with("$'"),
        "{entry}"
    );
    assert!(entry["path_bytes"].is_string(), "{entry}");
    // A listing that cannot be written is a failed listing.
    let full = fs::File::options().write(true).open("/dev/full").unwrap();
    let out = env
        .std_cmd()
        .args(["ls", "latest"])
        .stdout(full)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    let full = fs::File::options().write(true).open("/dev/full").unwrap();
    let out = env
        .std_cmd()
        .args(["key", "list"])
        .stdout(full)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "key list: {}", stderr_of(&out));
}

#[test]
fn snapshots_of_paths_that_are_not_utf8_were_merged_by_forget() {
    use std::os::unix::ffi::OsStrExt;
    let env = Env::new();
    env.init();
    let a = env.path("d").join(std::ffi::OsStr::from_bytes(b"nu\xff"));
    let b = env.path("d").join(std::ffi::OsStr::from_bytes(b"nu\xfe"));
    write(&a.join("f"), b"1");
    write(&b.join("f"), b"2");
    for p in [&a, &a, &b] {
        let out = env.cmd().arg("backup").arg(p).output().unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
    }
    let out = run(&env, ["forget", "--keep-last", "1", "--dry-run"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let keeps = text
        .lines()
        .filter(|l| l.trim_start().starts_with("keep "))
        .count();
    assert_eq!(keeps, 2, "one kept per path: {text}");
    // The latest snapshot's files are reached by the path as backed up.
    let mut abs = b.as_os_str().as_bytes().to_vec();
    abs.extend_from_slice(b"/f");
    let out = env
        .cmd()
        .args(["dump", "latest"])
        .arg(std::ffi::OsStr::from_bytes(&abs))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(out.stdout, b"2");
}

#[test]
fn the_wrong_password_message_said_the_key_opens() {
    let env = Env::new();
    one_backup(&env);
    let out = env
        .cmd()
        .env("STRATA_PASSWORD", "wrong")
        .arg("snapshots")
        .output()
        .unwrap();
    expect(&out, 12, "no key");
}

#[test]
fn a_path_as_backed_up_under_a_directory_named_like_a_stored_name_was_taken_as_stored() {
    // The snapshot's top level holds `tmp` (the last component of the
    // path backed up), and the path as backed up also begins with /tmp.
    let env = Env::new();
    let dir = env.path("x/tmp");
    write(&dir.join("f"), b"found");
    env.init();
    env.backup(&[dir.to_str().unwrap()]);
    let file = dir.join("f");
    let out = run(&env, ["dump", "latest", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(out.stdout, b"found");
    let out = run(&env, ["dump", "latest", "/tmp/f"]);
    assert_eq!(out.stdout, b"found", "the stored form works too");
}

#[test]
fn verify_after_a_damaged_file_checked_the_wrong_files() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("a.txt"), b"small and intact");
    write(&src.join("b.bin"), &pseudo_random(600_000, 17));
    env.init();
    env.backup(&[src.to_str().unwrap()]);
    flip_middle(&largest(&packs(&env.repo())));
    let out = env
        .cmd()
        .args(["restore", "latest", "--verify", "--target"])
        .arg(env.path("t"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    expect(&out, 3, "b.bin");
    assert!(stdout.contains("verified 1 file, 0 failed"), "{stdout}");
}

#[test]
fn a_truncated_pack_failed_the_files_whose_data_was_still_there() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("a.bin"), &pseudo_random(100_000, 18));
    write(&src.join("b.bin"), &pseudo_random(300_000, 19));
    env.init();
    // One reader: a.bin is stored first, b.bin after it.
    env.backup(&["--threads", "1", src.to_str().unwrap()]);
    // Cut the data pack short, inside the second file's data.
    let pack = largest(&packs(&env.repo()));
    let data = fs::read(&pack).unwrap();
    fs::write(&pack, &data[..250_000]).unwrap();
    let target = env.path("t");
    let out = env
        .cmd()
        .args(["restore", "latest", "--target"])
        .arg(&target)
        .output()
        .unwrap();
    expect(&out, 3, "b.bin");
    assert_eq!(
        fs::read(target.join("src/a.bin")).unwrap(),
        pseudo_random(100_000, 18)
    );
}

#[test]
fn an_interrupted_password_command_was_left_running() {
    let env = Env::new();
    one_backup(&env);
    let marker = "31.4159";
    let child = env
        .std_cmd()
        .env_remove("STRATA_PASSWORD")
        .args([
            "--password-command",
            &format!("exec sleep {marker}"),
            "snapshots",
        ])
        // Not piped: an orphan holding the pipe would delay the wait.
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    send(&child, nix::sys::signal::Signal::SIGTERM);
    let mut child = child;
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    std::thread::sleep(Duration::from_millis(200));
    let running = fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| fs::read(e.ok()?.path().join("cmdline")).ok())
        .any(|cmd| String::from_utf8_lossy(&cmd).contains(marker));
    assert!(!running, "the password command was stopped too");
}
