//! Every kind of repository object damaged in every way we could think of:
//! truncated, emptied, swapped for another object of its kind, or replaced
//! by a FIFO, a symlink out of the repository, or a directory; and stray
//! files in every folder. No command may hang, panic or follow the link;
//! `check` must report the damage (locks are not data: a damaged one is an
//! unknown lock, and stray files are ignored).
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{pseudo_random, write, Env};

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            fs::copy(e.path(), &target).unwrap();
        }
    }
}

fn objects(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[derive(Clone, Copy, Debug)]
enum Harm {
    Truncated,
    Empty,
    Swapped,
    Fifo,
    SymlinkOut,
    Directory,
}

const HARMS: [Harm; 6] = [
    Harm::Truncated,
    Harm::Empty,
    Harm::Swapped,
    Harm::Fifo,
    Harm::SymlinkOut,
    Harm::Directory,
];

fn harm(victim: &Path, other: Option<&Path>, outside: &Path, how: Harm) {
    match how {
        Harm::Truncated => {
            let data = fs::read(victim).unwrap();
            fs::write(victim, &data[..data.len() / 2]).unwrap();
        }
        Harm::Empty => fs::write(victim, b"").unwrap(),
        Harm::Swapped => {
            let data = fs::read(other.unwrap_or(victim)).unwrap();
            fs::write(victim, data).unwrap();
        }
        Harm::Fifo => {
            fs::remove_file(victim).unwrap();
            nix::unistd::mkfifo(victim, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        }
        Harm::SymlinkOut => {
            fs::copy(victim, outside).unwrap();
            fs::remove_file(victim).unwrap();
            std::os::unix::fs::symlink(outside, victim).unwrap();
        }
        Harm::Directory => {
            fs::remove_file(victim).unwrap();
            fs::create_dir(victim).unwrap();
            fs::write(victim.join("inside"), b"x").unwrap();
        }
    }
}

/// Run `strata ARGS`: it must end within a minute and not panic.
fn survives(env: &Env, repo: &Path, args: &[&str], case: &str) -> std::process::Output {
    let out = env
        .cmd()
        .arg("-r")
        .arg(repo)
        .args(args)
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code().is_some(),
        "{case} {args:?}: killed (hung?)"
    );
    assert_ne!(
        out.status.code(),
        Some(101),
        "{case} {args:?}: panicked: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{case} {args:?}: {stderr}");
    out
}

#[test]
fn every_object_kind_damaged_every_way() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("a.txt"), b"alpha");
    write(&src.join("d/big.bin"), &pseudo_random(400_000, 1));
    env.init();
    env.backup(&[src.to_str().unwrap()]);
    write(&src.join("a.txt"), b"alpha, changed");
    env.backup(&[src.to_str().unwrap()]);
    // Locks and condemned lists exist only while commands run; damaged
    // ones are covered in trust.rs and the prune tests.
    let template = env.repo();
    let kinds = ["config", "keys", "index", "snapshots", "data"];
    let mut n = 0;
    for kind in kinds {
        for how in HARMS {
            n += 1;
            let case = format!("{kind}/{how:?}");
            let repo = env.path(&format!("case-{n}"));
            copy_dir(&template, &repo);
            let outside = env.path(&format!("outside-{n}"));
            let all: Vec<PathBuf> = if kind == "config" {
                vec![repo.join("config")]
            } else {
                objects(&repo.join(kind))
            };
            // The largest object of the kind (for packs: one of data).
            let victim = all
                .iter()
                .max_by_key(|p| fs::metadata(p).unwrap().len())
                .unwrap()
                .clone();
            let other = all.iter().find(|p| **p != victim).cloned();
            let outside_copy = outside.with_extension("copy");
            harm(&victim, other.as_deref(), &outside_copy, how);
            let target = env.path(&format!("restore-{n}"));
            let check = survives(&env, &repo, &["check", "--read-data"], &case);
            for args in [
                vec!["snapshots"],
                vec!["ls", "latest"],
                vec!["restore", "latest", "--target", target.to_str().unwrap()],
                vec!["prune", "--dry-run"],
                vec!["stats"],
            ] {
                survives(&env, &repo, &args, &case);
            }
            // A swapped copy of the only other key, or an object swapped
            // for an identical one, is no damage.
            let harmless = matches!(how, Harm::Swapped) && other.is_none();
            if !harmless {
                assert_ne!(check.status.code(), Some(0), "{case}: check found nothing");
            }
            if matches!(how, Harm::SymlinkOut) {
                assert!(outside_copy.exists(), "{case}: nothing outside is deleted");
                // prune itself (not a dry run) must not delete through it
                survives(&env, &repo, &["prune"], &case);
                assert!(outside_copy.exists(), "{case}: prune deleted outside");
            }
        }
    }
}

#[test]
fn stray_files_in_every_folder_are_harmless() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("a.txt"), b"alpha");
    env.init();
    env.backup(&[src.to_str().unwrap()]);
    let repo = env.repo();
    for dir in [
        "",
        "keys",
        "data",
        "data/00",
        "index",
        "snapshots",
        "locks",
        "condemned",
    ] {
        write(&repo.join(dir).join("stray-notes.txt"), b"left by someone");
        write(&repo.join(dir).join(".hidden"), b"dot file");
    }
    for args in [
        vec!["snapshots"],
        vec!["check", "--read-data"],
        vec![
            "restore",
            "latest",
            "--target",
            env.path("t").to_str().unwrap(),
        ],
        vec!["prune"],
        vec!["unlock"],
    ] {
        survives(&env, &repo, &args, "stray");
    }
    assert_eq!(
        fs::read(env.path("t/src/a.txt")).unwrap(),
        b"alpha",
        "the snapshot restores"
    );
}
