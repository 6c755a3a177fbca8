//! End-to-end tests of the `strata` command: what a user types and sees,
//! exit codes, and damage detection.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use common::{json_array, last_json, pseudo_random, tree_files, write, Env};
use serde_json::Value;

/// Run a command that must exit with `code` and print one JSON value a line.
fn json_lines(cmd: &mut Command, code: i32) -> Vec<Value> {
    let out = cmd.output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(code),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The (modifier, path) of each change `diff --json` printed.
fn diff_changes(lines: &[Value]) -> Vec<(String, String)> {
    lines
        .iter()
        .filter(|l| l["message_type"] == "change")
        .map(|l| {
            (
                l["modifier"].as_str().unwrap().to_string(),
                l["path"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn sample_tree(root: &Path) {
    write(&root.join("a.txt"), b"alpha\n");
    write(&root.join("sub/b.txt"), b"bravo\n");
    write(&root.join("sub/deep/c.log"), b"charlie\n");
    write(&root.join("big.bin"), &pseudo_random(3 << 20, 5));
    fs::create_dir_all(root.join("empty")).unwrap();
}

#[test]
fn backup_restore_round_trip_and_listing() {
    let env = Env::new();
    env.init();
    let src = env.path("data");
    sample_tree(&src);
    let summary = env.backup(&[src.to_str().unwrap()]);
    assert_eq!(summary["message_type"], "summary");
    assert_eq!(summary["summary"]["files_new"], 4);
    assert_eq!(summary["partial"], false);

    let snaps = env.snapshots();
    assert_eq!(snaps.len(), 1);
    let s = &snaps[0];
    assert_eq!(s["paths"][0], src.display().to_string());
    assert_eq!(s["short_id"].as_str().unwrap().len(), 8);
    assert!(s["id"]
        .as_str()
        .unwrap()
        .starts_with(s["short_id"].as_str().unwrap()));
    jiff::Timestamp::from_str_checked(s["time"].as_str().unwrap());

    let out = env.cmd().args(["ls", "latest"]).output().unwrap();
    let listing = String::from_utf8(out.stdout).unwrap();
    assert!(
        listing.lines().any(|l| l == "/data/sub/deep/c.log"),
        "{listing}"
    );
    assert!(listing.lines().any(|l| l == "/data/empty"), "{listing}");

    let out = env
        .cmd()
        .args(["find", "*.log", "--json"])
        .output()
        .unwrap();
    let hits: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(hits.as_array().unwrap().len(), 1);
    assert_eq!(hits[0]["node"]["path"], "/data/sub/deep/c.log");

    let out = env
        .cmd()
        .args(["dump", "latest", "/data/sub/b.txt"])
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"bravo\n");

    let target = env.path("restore");
    env.cmd()
        .args(["restore", "latest", "--verify", "--target"])
        .arg(&target)
        .assert()
        .success();
    assert_eq!(tree_files(&src), tree_files(&target.join("data")));

    env.cmd().args(["check", "--read-data"]).assert().success();
}

trait TimestampCheck {
    fn from_str_checked(s: &str);
}

impl TimestampCheck for jiff::Timestamp {
    fn from_str_checked(s: &str) {
        s.parse::<jiff::Timestamp>()
            .unwrap_or_else(|e| panic!("{s:?} is not RFC 3339: {e}"));
    }
}

#[test]
fn dump_of_a_directory_is_a_tar_stream() {
    let env = Env::new();
    env.init();
    let src = env.path("data");
    sample_tree(&src);
    env.backup(&[src.to_str().unwrap()]);
    let out = env
        .cmd()
        .args(["dump", "latest", "/data/sub"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut archive = tar::Archive::new(out.stdout.as_slice());
    let mut names: Vec<String> = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec!["sub", "sub/b.txt", "sub/deep", "sub/deep/c.log"]
    );
}

#[test]
fn second_backup_skips_unchanged_files_and_stores_only_changes() {
    let env = Env::new();
    env.init();
    let src = env.path("data");
    sample_tree(&src);
    // Files changed less than a second before a backup are re-read by the
    // next one (they may change again within one timestamp tick).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    env.backup(&[src.to_str().unwrap()]);
    let second = env.backup(&[src.to_str().unwrap()]);
    assert_eq!(second["summary"]["files_unchanged"], 4);
    assert_eq!(second["summary"]["bytes_read"], 0);

    write(&src.join("a.txt"), b"alpha, edited\n");
    write(&src.join("new.txt"), b"new file\n");
    let third = env.backup(&[src.to_str().unwrap()]);
    assert_eq!(third["summary"]["files_changed"], 1);
    assert_eq!(third["summary"]["files_new"], 1);
    assert_eq!(third["summary"]["files_unchanged"], 3);
    assert!(third["summary"]["data_added"].as_u64().unwrap() < 10_000);

    let snaps = env.snapshots();
    assert_eq!(snaps.len(), 3);
    assert_eq!(snaps[2]["parent"], snaps[1]["id"]);

    // --force reads everything again but adds no data.
    let forced = env.backup(&["--force", src.to_str().unwrap()]);
    assert_eq!(forced["summary"]["files_unchanged"], 0);
    assert!(forced["summary"]["bytes_read"].as_u64().unwrap() > 3 << 20);
    assert!(forced["summary"]["data_added_stored"].as_u64().unwrap() < 10_000);

    // The first snapshot still restores exactly as it was.
    let first = snaps[0]["short_id"].as_str().unwrap();
    let target = env.path("old");
    env.cmd()
        .args(["restore", first, "--target"])
        .arg(&target)
        .assert()
        .success();
    assert_eq!(fs::read(target.join("data/a.txt")).unwrap(), b"alpha\n");
    assert!(!target.join("data/new.txt").exists());
}

#[test]
fn excludes_follow_gitignore_rules() {
    let env = Env::new();
    env.init();
    let src = env.path("data");
    sample_tree(&src);
    write(&src.join("keep.log"), b"kept");
    write(
        &src.join("cache/CACHEDIR.TAG"),
        b"Signature: 8a477f597d28d172789f06886806bc55\n",
    );
    write(&src.join("cache/junk"), b"junk");
    write(&src.join("skipme/.nobackup"), b"");
    write(&src.join("skipme/file"), b"x");
    write(&src.join("UPPER.TMP"), b"x");
    let exclude_file = env.path("excludes");
    fs::write(&exclude_file, "# comment\n*.log\n!keep.log\n").unwrap();
    env.backup(&[
        "--exclude-file",
        exclude_file.to_str().unwrap(),
        "--iexclude",
        "*.tmp",
        "--exclude-caches",
        "--exclude-if-present",
        ".nobackup",
        "--exclude-larger-than",
        "1M",
        src.to_str().unwrap(),
    ]);
    let out = env.cmd().args(["ls", "latest"]).output().unwrap();
    let listing = String::from_utf8(out.stdout).unwrap();
    let names: Vec<&str> = listing.lines().collect();
    assert!(names.contains(&"/data/keep.log"), "{listing}");
    assert!(names.contains(&"/data/a.txt"));
    for gone in [
        "/data/sub/deep/c.log",
        "/data/cache/junk",
        "/data/skipme/file",
        "/data/UPPER.TMP",
        "/data/big.bin",
    ] {
        assert!(
            !names.contains(&gone),
            "{gone} should be excluded:\n{listing}"
        );
    }
}

#[test]
fn restore_mirror_with_delete_and_overwrite_modes() {
    let env = Env::new();
    env.init();
    let src = env.path("data");
    sample_tree(&src);
    env.backup(&[src.to_str().unwrap()]);
    let target = env.path("mirror");
    env.cmd()
        .args(["restore", "latest", "--target"])
        .arg(&target)
        .assert()
        .success();

    // Damage the mirror: edit a file, add strays.
    write(&target.join("data/a.txt"), b"local edit\n");
    write(&target.join("data/stray.txt"), b"not in snapshot");
    write(&target.join("data/straydir/x"), b"x");

    env.cmd()
        .args(["restore", "latest", "--overwrite", "never", "--target"])
        .arg(&target)
        .assert()
        .success();
    assert_eq!(
        fs::read(target.join("data/a.txt")).unwrap(),
        b"local edit\n"
    );

    let out = env
        .cmd()
        .args(["restore", "latest", "--delete", "--json", "--target"])
        .arg(&target)
        .output()
        .unwrap();
    assert!(out.status.success());
    let summary = last_json(&out.stdout);
    assert_eq!(
        summary["files"], 1,
        "only the edited file is rewritten: {summary}"
    );
    assert_eq!(summary["files_unchanged"], 3);
    assert_eq!(summary["deleted"], 2);
    assert_eq!(tree_files(&src), tree_files(&target.join("data")));
}

#[test]
fn snapshot_selection_by_time_host_and_tag() {
    let env = Env::new();
    env.init();
    let src = env.path("data");
    sample_tree(&src);
    env.backup(&[
        "--time",
        "2026-01-01T10:00:00Z",
        "--tag",
        "daily",
        "--host",
        "alpha",
        src.to_str().unwrap(),
    ]);
    write(&src.join("a.txt"), b"second version\n");
    env.backup(&[
        "--time",
        "2026-02-01T10:00:00Z",
        "--host",
        "beta",
        src.to_str().unwrap(),
    ]);

    let dump = |args: &[&str]| {
        let out = env.cmd().arg("dump").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    assert_eq!(dump(&["latest", "/data/a.txt"]), b"second version\n");
    assert_eq!(
        dump(&["latest", "/data/a.txt", "--before", "2026-01-15"]),
        b"alpha\n"
    );
    assert_eq!(
        dump(&["latest", "/data/a.txt", "--host", "alpha"]),
        b"alpha\n"
    );
    assert_eq!(
        dump(&["latest", "/data/a.txt", "--tag", "daily"]),
        b"alpha\n"
    );
    env.cmd()
        .args(["dump", "latest", "/data/a.txt", "--before", "2025-01-01"])
        .assert()
        .code(1);
    // a malformed selector is a usage error
    env.cmd()
        .args(["dump", "nonsense!", "/data/a.txt"])
        .assert()
        .code(2);
    env.cmd()
        .args(["dump", "latest", "/data/a.txt", "--before", "last week"])
        .assert()
        .code(2);
}

#[test]
fn wrong_password_and_missing_repository_have_their_exit_codes() {
    let env = Env::new();
    env.cmd().args(["snapshots"]).assert().code(10);
    env.init();
    let out = env
        .cmd()
        .env("STRATA_PASSWORD", "not it")
        .args(["snapshots"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(12));
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong password"));
    // init over an existing repository refuses and leaves it intact
    env.cmd()
        .args(["init", "--kdf-memory", "1"])
        .assert()
        .code(1);
    env.cmd().args(["snapshots"]).assert().success();
    // password from a file and from a command
    let pwfile = env.path("pw");
    fs::write(&pwfile, "test-password\n").unwrap();
    env.cmd()
        .env_remove("STRATA_PASSWORD")
        .arg("--password-file")
        .arg(&pwfile)
        .arg("snapshots")
        .assert()
        .success();
    env.cmd()
        .env_remove("STRATA_PASSWORD")
        .args(["--password-command", "echo test-password", "snapshots"])
        .assert()
        .success();
    env.cmd()
        .env_remove("STRATA_PASSWORD")
        .arg("snapshots")
        .assert()
        .code(1);
}

#[test]
fn unreadable_file_gives_a_partial_snapshot_and_exit_3() {
    let env = Env::new();
    env.init();
    let src = env.path("data");
    sample_tree(&src);
    write(&src.join("secret"), b"no access");
    write(&src.join("closed/inside"), b"no access either");
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(src.join("secret"), fs::Permissions::from_mode(0o000)).unwrap();
    fs::set_permissions(src.join("closed"), fs::Permissions::from_mode(0o000)).unwrap();
    let mut backup = env.cmd();
    if nix::unistd::geteuid().is_root() {
        // Root reads everything: run the backup as nobody instead.
        for p in [env.dir.path().to_path_buf(), env.home()]
            .into_iter()
            .chain(walk_all(&env.repo()))
        {
            let mode = if p.is_dir() { 0o777 } else { 0o666 };
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        }
        for entry in walk_all(&src) {
            if entry != src.join("secret") && !entry.starts_with(src.join("closed")) {
                let mode = if entry.is_dir() { 0o755 } else { 0o644 };
                fs::set_permissions(&entry, fs::Permissions::from_mode(mode)).unwrap();
            }
        }
        use std::os::unix::process::CommandExt;
        let mut std_cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("strata"));
        std_cmd.uid(65534).gid(65534);
        backup = Command::from_std(std_cmd);
        backup
            .env_clear()
            .env("HOME", env.home())
            .env("STRATA_PASSWORD", "test-password")
            .env("STRATA_REPOSITORY", env.repo());
    }
    let out = backup
        .args(["backup", "--json"])
        .arg(&src)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "stderr: {stderr}");
    assert!(
        stderr.contains("secret"),
        "the unreadable path is named: {stderr}"
    );
    assert!(
        stderr.contains("closed"),
        "the unreadable directory is named: {stderr}"
    );
    let summary = last_json(&out.stdout);
    assert_eq!(summary["partial"], true);
    assert_eq!(summary["summary"]["errors"], 2);
    let snaps = env.snapshots();
    assert_eq!(snaps[0]["partial"], true);
    let target = env.path("out");
    env.cmd()
        .args(["restore", "latest", "--target"])
        .arg(&target)
        .assert()
        .success();
    assert_eq!(fs::read(target.join("data/a.txt")).unwrap(), b"alpha\n");
    assert!(!target.join("data/secret").exists());
    // An unlistable directory is left out, not stored as an empty one.
    assert!(!target.join("data/closed").exists());
}

fn walk_all(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![root.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        if out[i].is_dir() {
            for e in fs::read_dir(&out[i]).unwrap() {
                out.push(e.unwrap().path());
            }
        }
        i += 1;
    }
    out
}

fn objects(dir: &Path) -> Vec<PathBuf> {
    walk_all(dir).into_iter().filter(|p| p.is_file()).collect()
}

#[test]
fn a_flipped_byte_in_a_pack_is_detected_and_named() {
    let env = Env::new();
    env.init();
    let src = env.path("data");
    sample_tree(&src);
    env.backup(&[src.to_str().unwrap()]);
    env.cmd().args(["check", "--read-data"]).assert().success();
    let biggest = objects(&env.repo().join("data"))
        .into_iter()
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = fs::read(&biggest).unwrap();
    bytes[1000] ^= 0x01;
    fs::write(&biggest, &bytes).unwrap();
    let name = biggest.file_name().unwrap().to_str().unwrap().to_string();

    // The structure is intact, so only reading the data finds it.
    env.cmd().args(["check"]).assert().success();
    let out = env.cmd().args(["check", "--read-data"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&name),
        "damaged pack {name} is named: {stderr}"
    );
    // Exactly one part of a subset check reads the damaged pack.
    let failing = (1..=3)
        .filter(|n| {
            let out = env
                .cmd()
                .args(["check", "--read-data-subset", &format!("{n}/3")])
                .output()
                .unwrap();
            out.status.code() == Some(1)
        })
        .count();
    assert_eq!(failing, 1);
    env.cmd()
        .args(["check", "--read-data-subset", "100%"])
        .assert()
        .code(1);
    env.cmd()
        .args(["check", "--read-data-subset", "5/3"])
        .assert()
        .code(2);
    // A restore that needs the damaged blob restores the rest, writes no
    // garbage, and exits 3 naming what it could not restore.
    let out = env
        .cmd()
        .args(["restore", "latest", "--target"])
        .arg(env.path("r"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("could not be restored"));
}

#[test]
fn a_truncated_index_is_detected() {
    let env = Env::new();
    env.init();
    let src = env.path("data");
    sample_tree(&src);
    env.backup(&[src.to_str().unwrap()]);
    let index = objects(&env.repo().join("index")).pop().unwrap();
    let bytes = fs::read(&index).unwrap();
    fs::write(&index, &bytes[..bytes.len() / 2]).unwrap();
    let out = env.cmd().args(["check"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(index.file_name().unwrap().to_str().unwrap()),
        "{stderr}"
    );
    // blobs the index listed are now missing from the snapshot's point of view
    assert!(
        stderr.contains("missing") || stderr.contains("not listed"),
        "{stderr}"
    );
}

#[test]
fn first_backup_without_configuration_creates_the_default_repository() {
    let env = Env::new();
    let src = env.path("data");
    sample_tree(&src);
    let run = || {
        let mut c = Command::cargo_bin("strata").unwrap();
        c.env_clear()
            .env("HOME", env.home())
            .env("PATH", std::env::var_os("PATH").unwrap());
        c
    };
    let out = run().arg("backup").arg(&src).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let repo = env.home().join(".local/share/strata/repository");
    assert!(
        stderr.contains(&repo.display().to_string()),
        "announces the path: {stderr}"
    );
    assert!(repo.join("config").exists());
    let pwfile = env
        .home()
        .join(".config/strata/default-repository.password");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(&pwfile).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Later commands find it without configuration, and a second backup reuses it.
    run().arg("backup").arg(&src).assert().success();
    let out = run().args(["snapshots", "--json"]).output().unwrap();
    let snaps: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(snaps.as_array().unwrap().len(), 2);
}

#[test]
fn bad_input_is_refused_clearly() {
    let env = Env::new();
    env.init();
    let out = env
        .cmd()
        .args(["backup"])
        .arg(env.path("does-not-exist"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
    assert!(env.snapshots().is_empty());
    let out = env
        .cmd()
        .args(["backup", "--exclude-larger-than", "lots"])
        .arg(env.path("x"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = env
        .cmd()
        .args(["restore", "latest", "--target"])
        .arg(env.path("t"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no snapshot"));
}

#[test]
fn overwrite_never_leaves_skipped_paths_and_what_is_behind_them_alone() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    env.init();
    let src = env.path("data");
    sample_tree(&src);
    env.backup(&[src.to_str().unwrap()]);
    // The target's `data` is a symlink to a directory outside the target.
    let outside = env.path("outside");
    write(&outside.join("a.txt"), b"precious\n");
    fs::set_permissions(outside.join("a.txt"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::set_permissions(&outside, fs::Permissions::from_mode(0o700)).unwrap();
    let before = fs::metadata(outside.join("a.txt"))
        .unwrap()
        .modified()
        .unwrap();
    let target = env.path("target");
    fs::create_dir_all(&target).unwrap();
    std::os::unix::fs::symlink(&outside, target.join("data")).unwrap();

    env.cmd()
        .args(["restore", "latest", "--overwrite", "never", "--target"])
        .arg(&target)
        .assert()
        .success();
    assert!(fs::symlink_metadata(target.join("data"))
        .unwrap()
        .file_type()
        .is_symlink());
    let meta = fs::metadata(outside.join("a.txt")).unwrap();
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o600,
        "mode of a file behind a skipped symlink changed"
    );
    assert_eq!(meta.modified().unwrap(), before);
    assert_eq!(fs::read(outside.join("a.txt")).unwrap(), b"precious\n");
    assert_eq!(
        fs::metadata(&outside).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert!(!outside.join("sub").exists());
}

#[test]
fn a_snapshot_file_put_in_place_of_another_is_detected() {
    let env = Env::new();
    env.init();
    let src = env.path("data");
    sample_tree(&src);
    env.backup(&[src.to_str().unwrap()]);
    write(&src.join("a.txt"), b"newer\n");
    env.backup(&[src.to_str().unwrap()]);
    let snaps = env.snapshots();
    let (old, new) = (
        snaps[0]["id"].as_str().unwrap(),
        snaps[1]["id"].as_str().unwrap(),
    );
    // Storage rolls the newer snapshot back to the older one's contents.
    fs::copy(
        env.repo().join("snapshots").join(old),
        env.repo().join("snapshots").join(new),
    )
    .unwrap();
    let out = env
        .cmd()
        .args(["dump", &new[..8], "/data/a.txt"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("replaced"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = env.cmd().args(["check"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(new));
}

#[test]
fn restore_as_an_ordinary_user_warns_about_owners_and_restores_the_rest() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to create files of other owners and to switch to nobody");
        return;
    }
    let env = Env::new();
    env.init();
    let src = env.path("data");
    sample_tree(&src);
    fs::set_permissions(src.join("a.txt"), fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::chown(src.join("sub/b.txt"), Some(1234), Some(5678)).unwrap();
    write(&src.join("ro/inner.txt"), b"inside a read-only directory\n");
    fs::set_permissions(src.join("ro"), fs::Permissions::from_mode(0o555)).unwrap();
    env.backup(&[src.to_str().unwrap()]);
    // nobody may read the repository and take a lock in it
    for p in [env.dir.path().to_path_buf(), env.home()]
        .into_iter()
        .chain(walk_all(&env.repo()))
    {
        let mode = if p.is_dir() { 0o777 } else { 0o644 };
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    }
    let target = env.path("as-nobody");
    let restore_as_nobody = || {
        use std::os::unix::process::CommandExt;
        let mut std_cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("strata"));
        std_cmd.uid(65534).gid(65534);
        Command::from_std(std_cmd)
            .env_clear()
            .env("HOME", env.home())
            .env("STRATA_PASSWORD", "test-password")
            .env("STRATA_REPOSITORY", env.repo())
            .args(["restore", "latest", "--target"])
            .arg(&target)
            .output()
            .unwrap()
    };
    let out = restore_as_nobody();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("owner 1234:5678"),
        "a warning names the owner that could not be set: {stderr}"
    );
    assert_eq!(tree_files(&src), tree_files(&target.join("data")));
    let (a, b) = (
        fs::metadata(src.join("a.txt")).unwrap(),
        fs::metadata(target.join("data/a.txt")).unwrap(),
    );
    assert_eq!(b.mode() & 0o7777, 0o640);
    assert_eq!((b.mtime(), b.mtime_nsec()), (a.mtime(), a.mtime_nsec()));
    assert_eq!(b.uid(), 65534, "files belong to the user who restored them");

    // Restoring again over a changed file inside a read-only directory works.
    let inner = target.join("data/ro/inner.txt");
    fs::write(&inner, b"changed since\n").unwrap();
    let out = restore_as_nobody();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(fs::read(&inner).unwrap(), b"inside a read-only directory\n");
    assert_eq!(
        fs::metadata(target.join("data/ro")).unwrap().mode() & 0o777,
        0o555
    );
}

#[test]
fn concurrent_backups_into_one_repository_both_succeed() {
    let env = Env::new();
    env.init();
    let (a, b) = (env.path("host-a/data"), env.path("host-b/data2"));
    sample_tree(&a);
    sample_tree(&b);
    // the same big file on both: both backups may store its blobs at once
    fs::copy(a.join("big.bin"), b.join("big.bin")).unwrap();
    let spawn = |dir: &Path, host: &str| {
        let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("strata"));
        c.env_clear()
            .env("HOME", env.home())
            .env("STRATA_PASSWORD", "test-password")
            .env("STRATA_REPOSITORY", env.repo())
            .args(["backup", "--host", host])
            .arg(dir);
        c.spawn().unwrap()
    };
    let (mut p1, mut p2) = (spawn(&a, "a"), spawn(&b, "b"));
    assert!(p1.wait().unwrap().success());
    assert!(p2.wait().unwrap().success());
    assert_eq!(env.snapshots().len(), 2);
    env.cmd().args(["check", "--read-data"]).assert().success();
    for (host, dir, name) in [("a", &a, "data"), ("b", &b, "data2")] {
        let target = env.path(&format!("restore-{host}"));
        env.cmd()
            .args(["restore", "latest", "--host", host, "--target"])
            .arg(&target)
            .assert()
            .success();
        assert_eq!(tree_files(dir), tree_files(&target.join(name)));
    }
}

#[test]
fn cat_and_long_listings_show_the_objects() {
    let env = Env::new();
    env.init();
    let src = env.path("data");
    sample_tree(&src);
    env.backup(&[src.to_str().unwrap()]);
    let json = |args: &[&str]| -> Value {
        let out = env.cmd().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let config = json(&["cat", "config"]);
    assert_eq!(config["version"], 2);
    assert_eq!(config["chunker"]["avg_size"], 1 << 20);
    let snap = json(&["cat", "snapshot", "latest"]);
    let tree = json(&["cat", "tree", "latest"]);
    assert_eq!(tree["nodes"][0]["name"], "data");
    assert_eq!(snap["tree"], Value::String(tree_id_of(&env, "latest")));
    let sub = json(&["cat", "tree", "latest:/data/sub"]);
    let b = sub["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "b.txt")
        .unwrap()
        .clone();
    let blob = b["content"][0].as_str().unwrap();
    let out = env.cmd().args(["cat", "blob", blob]).output().unwrap();
    assert_eq!(out.stdout, b"bravo\n");
    let index_name = objects(&env.repo().join("index")).pop().unwrap();
    let index = json(&[
        "cat",
        "index",
        index_name.file_name().unwrap().to_str().unwrap(),
    ]);
    let listed: Vec<&str> = index["packs"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["blobs"].as_array().unwrap())
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert!(listed.contains(&blob));

    let out = env
        .cmd()
        .args(["ls", "-l", "latest", "/data/sub"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("-rw-") && l.ends_with("/data/sub/b.txt") && l.contains(" 6 ")),
        "{text}"
    );
    let out = env.cmd().args(["ls", "--json", "latest"]).output().unwrap();
    let entries: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let big = entries
        .iter()
        .find(|e| e["path"] == "/data/big.bin")
        .unwrap();
    assert_eq!(big["size"], 3 << 20);
    assert_eq!(big["type"], "file");
}

fn tree_id_of(env: &Env, snap: &str) -> String {
    let out = env.cmd().args(["snapshots", "--json"]).output().unwrap();
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(snap, "latest");
    list.as_array().unwrap().last().unwrap()["tree"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The sample tree and a directory `gone/` of two files (6 bytes), with
/// what `more` adds, backed up once.
fn diff_fixture(env: &Env, more: impl FnOnce(&Path)) -> PathBuf {
    env.init();
    let src = env.path("data");
    sample_tree(&src);
    write(&src.join("gone/one"), b"1111");
    write(&src.join("gone/deeper/two"), b"22");
    more(&src);
    env.backup(&[src.to_str().unwrap()]);
    src
}

/// What the diff tests look for: `a.txt` modified, `sub/b.txt` made mode
/// 0600, `gone/` deleted, `fresh.txt` added.
fn diff_edits(src: &Path) {
    use std::os::unix::fs::PermissionsExt;
    write(&src.join("a.txt"), b"alpha, edited\n");
    fs::set_permissions(src.join("sub/b.txt"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::remove_dir_all(src.join("gone")).unwrap();
    write(&src.join("fresh.txt"), b"new\n");
}

#[test]
fn diff_shows_added_removed_changed_and_metadata_only() {
    let env = Env::new();
    let src = diff_fixture(&env, |src| write(&src.join("morph"), b"a file first"));
    diff_edits(&src);
    fs::remove_file(src.join("morph")).unwrap();
    fs::create_dir(src.join("morph")).unwrap();
    env.backup(&[src.to_str().unwrap()]);

    let snaps = env.snapshots();
    let (old, new) = (
        snaps[0]["short_id"].as_str().unwrap(),
        snaps[1]["short_id"].as_str().unwrap(),
    );
    let lines = json_lines(env.cmd().args(["diff", "--json", old, new]), 0);
    let changes = diff_changes(&lines);
    let has = |m: &str, p: &str| changes.contains(&(m.to_string(), p.to_string()));
    assert!(has("M", "/data/a.txt"), "{changes:?}");
    assert!(has("U", "/data/sub/b.txt"), "{changes:?}");
    assert!(has("-", "/data/gone"), "{changes:?}");
    assert!(
        !changes.iter().any(|(_, p)| p.starts_with("/data/gone/")),
        "a removed directory is listed once: {changes:?}"
    );
    assert!(has("T", "/data/morph"), "{changes:?}");
    assert!(has("+", "/data/fresh.txt"), "{changes:?}");
    assert!(
        !changes.iter().any(|(_, p)| p == "/data/big.bin"),
        "unchanged files are not listed"
    );
    let gone = lines.iter().find(|l| l["path"] == "/data/gone").unwrap();
    assert_eq!(gone["files"], 2);
    assert_eq!(gone["bytes"], 6);
    let u = lines
        .iter()
        .find(|l| l["path"] == "/data/sub/b.txt")
        .unwrap();
    assert_eq!(u["metadata"], serde_json::json!(["mode"]));
    let stats = lines.last().unwrap();
    assert_eq!(stats["message_type"], "statistics");
    assert_eq!(stats["added"], 1);
    assert!(stats["bytes_removed"].as_u64().unwrap() >= 6 + 12);

    // the same snapshot twice: nothing
    let out = env
        .cmd()
        .args(["diff", "--json", new, new])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    // restricted to a path
    let out = env
        .cmd()
        .args(["diff", old, new, "/data/sub"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("U    /data/sub/b.txt  (mode)"), "{text}");
    assert!(!text.contains("a.txt"), "{text}");
}

#[test]
fn forget_applies_a_retention_policy_and_shows_its_plan() {
    let env = Env::new();
    env.init();
    let src = env.path("data");
    sample_tree(&src);
    for t in [
        "2026-01-01T10:00:00Z",
        "2026-01-01T20:00:00Z",
        "2026-01-02T10:00:00Z",
        "2026-01-03T10:00:00Z",
        "2026-01-03T11:00:00Z",
    ] {
        env.backup(&["--time", t, src.to_str().unwrap()]);
    }
    let out = env
        .cmd()
        .env("TZ", "UTC")
        .args([
            "forget",
            "--keep-daily",
            "2",
            "--keep-last",
            "1",
            "--dry-run",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    let keep: Vec<&str> = plan[0]["keep"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["time"].as_str().unwrap())
        .collect();
    assert_eq!(keep, vec!["2026-01-03T11:00:00Z", "2026-01-02T10:00:00Z"]);
    assert_eq!(
        plan[0]["keep"][0]["reasons"],
        serde_json::json!(["last 1", "daily 1"])
    );
    assert_eq!(plan[0]["remove"].as_array().unwrap().len(), 3);
    assert_eq!(env.snapshots().len(), 5, "a dry run removes nothing");

    env.cmd()
        .env("TZ", "UTC")
        .args(["forget", "--keep-daily", "2"])
        .assert()
        .success();
    let left: Vec<String> = env
        .snapshots()
        .iter()
        .map(|s| s["time"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(left, vec!["2026-01-02T10:00:00Z", "2026-01-03T11:00:00Z"]);
    // what is left still restores and checks
    env.cmd().args(["check", "--read-data"]).assert().success();
    // no policy at all is refused instead of forgetting everything
    env.cmd().args(["forget"]).assert().code(2);
    assert_eq!(env.snapshots().len(), 2);
    // by id
    let first = env.snapshots()[0]["short_id"].as_str().unwrap().to_string();
    env.cmd().args(["forget", &first]).assert().success();
    assert_eq!(env.snapshots().len(), 1);
}

#[test]
fn a_lock_left_by_a_killed_backup_does_not_block_the_repository() {
    let env = Env::new();
    env.init();
    let src = env.path("data");
    sample_tree(&src);
    write(&src.join("large.bin"), &pseudo_random(60 << 20, 9));
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("strata"));
    child
        .env_clear()
        .env("HOME", env.home())
        .env("STRATA_PASSWORD", "test-password")
        .env("STRATA_REPOSITORY", env.repo())
        .arg("backup")
        .arg(&src);
    let mut child = child.spawn().unwrap();
    // wait until it holds its lock (renamed into place, not a temporary
    // file being written), then kill it
    let holds_lock = || {
        fs::read_dir(env.repo().join("locks")).unwrap().any(|e| {
            !e.unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".tmp-")
        })
    };
    for _ in 0..200 {
        if holds_lock() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(holds_lock(), "the killed backup left its lock");
    // unlock removes it (its process is gone) and leaves live locks alone
    let out = env.cmd().args(["unlock"]).output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "removed 1 lock"
    );
    assert!(fs::read_dir(env.repo().join("locks"))
        .unwrap()
        .next()
        .is_none());
    // an exclusive command goes ahead: the lock's process is gone
    env.cmd()
        .args(["forget", "--keep-last", "1"])
        .assert()
        .success();
    assert!(fs::read_dir(env.repo().join("locks"))
        .unwrap()
        .next()
        .is_none());
}

#[test]
fn keys_can_be_added_listed_removed_and_passwords_changed() {
    let env = Env::new();
    env.init();
    let pw2 = env.path("pw2");
    fs::write(&pw2, "second password\n").unwrap();
    env.cmd()
        .args(["key", "add", "--new-password-file"])
        .arg(&pw2)
        .assert()
        .success();
    let list = |password: &str| -> Vec<Value> {
        json_array(
            env.cmd()
                .env("STRATA_PASSWORD", password)
                .args(["key", "list", "--json"]),
        )
    };
    let keys = list("second password");
    assert_eq!(keys.len(), 2);
    let current: Vec<&Value> = keys.iter().filter(|k| k["current"] == true).collect();
    assert_eq!(current.len(), 1);
    let second = current[0]["id"].as_str().unwrap().to_string();
    let first = keys.iter().find(|k| k["current"] == false).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    // the key in use cannot be removed; another one can
    env.cmd()
        .env("STRATA_PASSWORD", "second password")
        .args(["key", "remove", &second[..8]])
        .assert()
        .code(2);
    env.cmd()
        .env("STRATA_PASSWORD", "second password")
        .args(["key", "remove", &first[..8]])
        .assert()
        .success();
    env.cmd().args(["snapshots"]).assert().code(12); // the first password is gone
                                                     // the last key cannot be removed either
    env.cmd()
        .env("STRATA_PASSWORD", "second password")
        .args(["key", "remove", &second[..8]])
        .assert()
        .code(2);

    let pw3 = env.path("pw3");
    fs::write(&pw3, "third password\n").unwrap();
    env.cmd()
        .env("STRATA_PASSWORD", "second password")
        .args(["key", "passwd", "--new-password-file"])
        .arg(&pw3)
        .assert()
        .success();
    env.cmd()
        .env("STRATA_PASSWORD", "second password")
        .args(["snapshots"])
        .assert()
        .code(12);
    env.cmd()
        .env("STRATA_PASSWORD", "third password")
        .args(["snapshots"])
        .assert()
        .success();
    assert_eq!(list("third password").len(), 1);
}

#[test]
fn stats_account_for_deduplication_and_what_each_backup_added() {
    let env = Env::new();
    env.init();
    let src = env.path("data");
    sample_tree(&src);
    env.backup(&[src.to_str().unwrap()]);
    write(
        &src.join("copy.bin"),
        &fs::read(src.join("big.bin")).unwrap(),
    ); // a duplicate: adds nothing
    write(&src.join("new.txt"), &pseudo_random(100_000, 3));
    env.backup(&[src.to_str().unwrap()]);
    let out = env
        .cmd()
        .args(["stats", "--mode", "added", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    let first_size = (3 << 20) + 6 + 6 + 8; // big.bin and three small files
    assert_eq!(s["snapshots"], 2);
    assert_eq!(s["restore_size"], 2 * first_size + (3 << 20) + 100_000);
    let per = s["per_snapshot"].as_array().unwrap();
    let data_added = |i: usize| per[i]["added_size"].as_u64().unwrap();
    assert!(data_added(0) >= first_size as u64, "{s}");
    // the second backup added the new file (and new trees), not the copy
    assert!(
        data_added(1) >= 100_000 && data_added(1) < 100_000 + 10_000,
        "{s}"
    );
    assert!(s["dedup_ratio"].as_f64().unwrap() > 1.9, "{s}");
    assert_eq!(
        s["unique_size"].as_u64().unwrap(),
        data_added(0) + data_added(1)
    );
}

#[test]
fn repair_index_rebuilds_a_lost_index_from_the_packs() {
    let env = Env::new();
    env.init();
    let src = env.path("data");
    sample_tree(&src);
    env.backup(&[src.to_str().unwrap()]);
    write(&src.join("more.txt"), b"second backup\n");
    env.backup(&[src.to_str().unwrap()]);
    for index in objects(&env.repo().join("index")) {
        fs::remove_file(index).unwrap();
    }
    env.cmd().args(["check"]).assert().code(1);
    let out = env
        .cmd()
        .args(["repair", "index", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["unreadable_packs"], 0);
    assert_eq!(objects(&env.repo().join("index")).len(), 1);
    env.cmd().args(["check", "--read-data"]).assert().success();
    let target = env.path("restored");
    env.cmd()
        .args(["restore", "latest", "--verify", "--target"])
        .arg(&target)
        .assert()
        .success();
    assert_eq!(tree_files(&src), tree_files(&target.join("data")));
}

/// Pack files written since `before` was listed, biggest first.
fn packs_since(env: &Env, before: &[PathBuf]) -> Vec<PathBuf> {
    let mut new: Vec<PathBuf> = objects(&env.repo().join("data"))
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    new.sort_by_key(|p| std::cmp::Reverse(fs::metadata(p).unwrap().len()));
    new
}

/// Back up the sample tree, change it with `edit`, back it up again.
/// Returns the source, the first backup's packs (biggest first) and the
/// two snapshot ids.
fn two_backups(env: &Env, edit: impl FnOnce(&Path)) -> (PathBuf, Vec<PathBuf>, [String; 2]) {
    env.init();
    let src = env.path("data");
    sample_tree(&src);
    env.backup(&[src.to_str().unwrap()]);
    let first_packs = packs_since(env, &[]);
    edit(&src);
    env.backup(&[src.to_str().unwrap()]);
    let snaps = env.snapshots();
    let ids = [0, 1].map(|i| snaps[i]["id"].as_str().unwrap().to_string());
    (src, first_packs, ids)
}

/// Restore `snapshot` with `--verify` into a fresh directory.
fn restore_verified(env: &Env, snapshot: &str) -> PathBuf {
    let target = env.path("restored");
    env.cmd()
        .args(["restore", snapshot, "--verify", "--target"])
        .arg(&target)
        .assert()
        .success();
    target
}

fn ids(snaps: &[Value]) -> Vec<&str> {
    snaps.iter().map(|s| s["id"].as_str().unwrap()).collect()
}

/// The entry of `repair snapshots --json` output about snapshot `id`.
fn repair_entry<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap()
}

fn removed_paths(entry: &Value) -> Vec<String> {
    let mut paths: Vec<String> = entry["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["path"].as_str().unwrap().to_string())
        .collect();
    paths.sort();
    paths
}

#[test]
fn repair_snapshots_removes_files_whose_data_is_lost_and_keeps_the_rest() {
    let env = Env::new();
    let (src, first_packs, [intact, damaged]) = two_backups(&env, |src| {
        write(&src.join("a.txt"), b"alpha, edited\n");
        write(&src.join("lost/one.bin"), &pseudo_random(300_000, 7));
        write(&src.join("sub/two.bin"), &pseudo_random(200_000, 8));
    });
    // The second backup wrote the new contents in one data pack and its
    // trees in a much smaller one; the data pack is lost.
    let new = packs_since(&env, &first_packs);
    assert_eq!(new.len(), 2);
    fs::remove_file(&new[0]).unwrap();
    env.cmd().args(["repair", "index"]).assert().success();
    let check = json_lines(env.cmd().args(["check", "--json"]), 1);
    assert_eq!(check[0]["damaged_snapshots"], serde_json::json!([damaged]));

    let dry = json_lines(
        env.cmd()
            .args(["repair", "snapshots", "--dry-run", "--json"]),
        0,
    );
    assert_eq!(repair_entry(&dry[0], &damaged)["status"], "repaired");
    assert_eq!(env.snapshots().len(), 2, "a dry run writes nothing");

    let report = json_lines(env.cmd().args(["repair", "snapshots", "--json"]), 0);
    assert_eq!(repair_entry(&report[0], &intact)["status"], "intact");
    assert_eq!(repair_entry(&report[0], &intact)["new_id"], Value::Null);
    let entry = repair_entry(&report[0], &damaged);
    assert_eq!(entry["status"], "repaired");
    assert_eq!(
        removed_paths(entry),
        ["/data/a.txt", "/data/lost/one.bin", "/data/sub/two.bin"]
    );
    let repaired = entry["new_id"].as_str().unwrap().to_string();

    // The damaged snapshot stays beside its replacement, which is sound.
    let snaps = env.snapshots();
    assert_eq!(snaps.len(), 3);
    let new_snap = snaps.iter().find(|s| s["id"] == repaired.as_str()).unwrap();
    let old_snap = snaps.iter().find(|s| s["id"] == damaged.as_str()).unwrap();
    assert_eq!(new_snap["original"], damaged.as_str());
    assert_eq!(new_snap["tags"], serde_json::json!(["repaired"]));
    assert_eq!(new_snap["time"], old_snap["time"]);
    assert_eq!(new_snap["partial"], true);
    let check = json_lines(env.cmd().args(["check", "--json"]), 1);
    assert_eq!(check[0]["damaged_snapshots"], serde_json::json!([damaged]));

    let target = restore_verified(&env, &repaired);
    let restored = target.join("data");
    for kept in ["big.bin", "sub/b.txt", "sub/deep/c.log"] {
        assert_eq!(
            fs::read(restored.join(kept)).unwrap(),
            fs::read(src.join(kept)).unwrap(),
            "{kept}"
        );
    }
    for lost in ["a.txt", "lost/one.bin", "sub/two.bin"] {
        assert!(!restored.join(lost).exists(), "{lost} should be gone");
    }

    // Again with --forget: the replacement is not written twice, and the
    // damaged snapshot goes.
    let report = json_lines(
        env.cmd()
            .args(["repair", "snapshots", "--forget", "--json"]),
        0,
    );
    let entry = repair_entry(&report[0], &damaged);
    assert_eq!(entry["new_id"], repaired.as_str());
    assert_eq!(entry["forgotten"], true);
    assert_eq!(ids(&env.snapshots()), [intact.as_str(), repaired.as_str()]);
    env.cmd().args(["check", "--read-data"]).assert().success();
}

#[test]
fn repair_snapshots_removes_unreadable_directories_and_gives_up_on_a_lost_root() {
    let env = Env::new();
    let (src, first_packs, [first, second]) = two_backups(&env, |src| {
        write(&src.join("fresh.txt"), b"fresh\n");
    });
    // The first backup's tree pack: its root tree, and the tree of the empty
    // directory, which the second snapshot shares.
    assert_eq!(first_packs.len(), 2);
    fs::remove_file(&first_packs[1]).unwrap();
    env.cmd().args(["repair", "index"]).assert().success();

    let report = json_lines(env.cmd().args(["repair", "snapshots", "--json"]), 3);
    assert_eq!(repair_entry(&report[0], &first)["status"], "lost");
    let entry = repair_entry(&report[0], &second);
    assert_eq!(entry["status"], "repaired");
    assert!(
        removed_paths(entry).contains(&"/data/empty".to_string()),
        "{entry}"
    );
    assert!(
        entry["removed"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["type"] == "dir"),
        "only directories lost their trees: {entry}"
    );
    let repaired = entry["new_id"].as_str().unwrap().to_string();

    json_lines(
        env.cmd()
            .args(["repair", "snapshots", "--forget", "--json"]),
        0,
    );
    assert_eq!(ids(&env.snapshots()), [repaired.as_str()]);
    env.cmd().args(["check"]).assert().success();
    let target = restore_verified(&env, &repaired);
    assert_eq!(fs::read(target.join("data/fresh.txt")).unwrap(), b"fresh\n");
    assert_eq!(
        fs::read(target.join("data/big.bin")).unwrap(),
        fs::read(src.join("big.bin")).unwrap()
    );
    assert!(!target.join("data/empty").exists());
}

#[test]
fn check_names_every_snapshot_that_shares_a_damaged_blob() {
    let env = Env::new();
    let (_, first_packs, both) = two_backups(&env, |src| {
        write(&src.join("more.txt"), b"second backup\n");
    });
    // big.bin's data, stored once by the first backup, is lost to both.
    fs::remove_file(&first_packs[0]).unwrap();
    for repaired_index in [false, true] {
        if repaired_index {
            // Then the blobs are not even in the index any more.
            env.cmd().args(["repair", "index"]).assert().success();
        }
        let report = json_lines(env.cmd().args(["check", "--json"]), 1);
        assert_eq!(report[0]["damaged_snapshots"], serde_json::json!(both));
        let out = env.cmd().arg("check").output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let shared = format!(
            "error: snapshots {}, {}: /data/big.bin: data blob",
            &both[0][..8],
            &both[1][..8]
        );
        assert!(stderr.contains(&shared), "{stderr}");
    }
}

#[test]
fn diff_against_the_disk_shows_what_changed_since_the_backup() {
    let env = Env::new();
    let src = diff_fixture(&env, |_| {});
    let dir = src.to_str().unwrap();
    let diff = |extra: &[&str]| {
        let lines = json_lines(
            env.cmd()
                .args(["diff", "--json", "latest", dir])
                .args(extra),
            0,
        );
        (diff_changes(&lines), lines.last().unwrap().clone())
    };
    let (changes, stats) = diff(&[]);
    assert!(changes.is_empty(), "an unchanged tree: {changes:?}");
    assert_eq!(stats["message_type"], "statistics");
    assert!(diff(&["--content"]).0.is_empty());

    diff_edits(&src);
    // Same size, and the old mtime put back: only reading the data tells.
    let log = src.join("sub/deep/c.log");
    let mtime = fs::metadata(&log).unwrap().modified().unwrap();
    write(&log, b"CHARLIE\n");
    fs::File::options()
        .write(true)
        .open(&log)
        .unwrap()
        .set_modified(mtime)
        .unwrap();

    let at = |rel: &str| format!("{dir}/{rel}");
    let has = |changes: &[(String, String)], m: &str, rel: &str| {
        changes.contains(&(m.to_string(), at(rel)))
    };
    let (changes, stats) = diff(&[]);
    assert!(has(&changes, "M", "a.txt"), "{changes:?}");
    assert!(has(&changes, "U", "sub/b.txt"), "{changes:?}");
    assert!(has(&changes, "-", "gone"), "{changes:?}");
    assert!(has(&changes, "+", "fresh.txt"), "{changes:?}");
    assert!(
        !changes.iter().any(|(_, p)| p.starts_with(&at("gone/"))),
        "a removed directory is listed once: {changes:?}"
    );
    assert_eq!(
        changes.len(),
        4,
        "size and mtime cannot see c.log: {changes:?}"
    );
    assert_eq!(
        (
            &stats["added"],
            &stats["removed"],
            &stats["modified"],
            &stats["metadata_only"]
        ),
        (&1.into(), &1.into(), &1.into(), &1.into())
    );
    assert_eq!(stats["bytes_removed"], 6 + 6, "gone/ held 6 bytes, a.txt 6");

    let (changes, stats) = diff(&["--content"]);
    assert!(has(&changes, "M", "sub/deep/c.log"), "{changes:?}");
    assert!(has(&changes, "U", "sub/b.txt"), "{changes:?}");
    assert_eq!(stats["modified"], 2);
    let (changes, _) = diff(&["--exclude", "fresh.txt"]);
    assert!(!has(&changes, "+", "fresh.txt"), "{changes:?}");

    // A directory of the snapshot against a relative path, as text.
    let assert = env
        .cmd()
        .current_dir(&src)
        .args(["diff", "latest:/data/sub", "./sub"])
        .assert()
        .success();
    let text = String::from_utf8_lossy(&assert.get_output().stdout);
    assert!(
        text.contains(&format!("U    {}  (mode)", at("sub/b.txt"))),
        "{text}"
    );
    assert!(!text.contains("a.txt"), "{text}");
    // A directory under one the snapshot was made of is found in it.
    env.cmd()
        .current_dir(&src)
        .args(["diff", "latest", "./sub"])
        .assert()
        .success();
    // One outside them needs SNAPSHOT:PATH.
    fs::create_dir_all(env.path("elsewhere")).unwrap();
    let out = env
        .cmd()
        .args(["diff", "latest"])
        .arg(env.path("elsewhere"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(":PATH"),
        "the error says how to choose the directory"
    );
}

#[test]
fn completions_for_every_shell_and_man_pages_for_every_command() {
    let env = Env::new();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = env.cmd().args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(
            script.contains("restore-db") && script.contains("--delta-pattern"),
            "{shell}"
        );
    }
    // The bash script is valid bash.
    let bash = env.cmd().args(["completions", "bash"]).output().unwrap();
    let file = env.path("strata.bash");
    std::fs::write(&file, &bash.stdout).unwrap();
    let syntax = std::process::Command::new("bash")
        .arg("-n")
        .arg(&file)
        .status()
        .unwrap();
    assert!(syntax.success());
    let out = env.cmd().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));

    let dir = env.path("man/man1");
    env.cmd()
        .args(["man", dir.to_str().unwrap()])
        .assert()
        .success();
    for page in [
        "strata.1",
        "strata-backup.1",
        "strata-key-add.1",
        "strata-repair-snapshots.1",
    ] {
        let text = std::fs::read_to_string(dir.join(page)).unwrap();
        assert!(
            text.starts_with(".ie") || text.contains(".TH"),
            "{page}: {text:.200}"
        );
    }
    let backup = std::fs::read_to_string(dir.join("strata-backup.1")).unwrap();
    assert!(backup.contains("strata backup") && backup.contains("delta"));
}
