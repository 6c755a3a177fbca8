//! `strata prune` and `forget --prune`, alone and beside running backups.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::process::Stdio;

use common::{last_json, pack_bytes, pseudo_random, tree_files, write, Env};
use serde_json::Value;

/// A tree's files and contents, as `tree_files` lists them.
type Files = Vec<(String, Vec<u8>)>;

/// Rewrite `dir` with `n` files drawn from a pool of contents shared by all
/// hosts and rounds, so that backups keep deduplicating against data that
/// forgotten snapshots held, which is what prune must not lose.
fn refill(dir: &Path, rng: &mut u64, n: usize, many: usize) {
    let _ = fs::remove_dir_all(dir);
    for k in 0..n {
        let pick = next(rng) % 24;
        let size = 30_000 + (pick as usize * 70_919) % 1_500_000;
        write(
            &dir.join(format!("sub{}/f{k}", k % 3)),
            &pseudo_random(size, pick + 1),
        );
    }
    // and something new each time, which takes the backup a while to store
    write(&dir.join("new.bin"), &pseudo_random(4 << 20, *rng));
    // many small files: the walk keeps the backup running (and holding
    // references it took from its index) while prune works
    for k in 0..many {
        write(
            &dir.join(format!("many/{}/{k}", k % 10)),
            &pseudo_random(200 + k % 900, *rng + k as u64),
        );
    }
}

/// How many rounds a long test runs: an environment variable or a default.
fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(default)
}

/// Step a xorshift64 generator.
fn next(rng: &mut u64) -> u64 {
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    *rng
}

/// `check` (structure) passes; its output is shown if not.
fn assert_checks(env: &Env, when: &str) {
    let check = env.cmd().arg("check").output().unwrap();
    assert!(
        check.status.success(),
        "{when}: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
}

fn prune_json(out: &std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "prune failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    last_json(&out.stdout)
}

#[test]
fn forget_prune_frees_space_and_keeps_what_snapshots_need() {
    let env = Env::new();
    env.init();
    let src = env.path("data");
    let mut rng = 7;
    let mut kept = Vec::new();
    for _ in 0..4 {
        refill(&src, &mut rng, 8, 0);
        kept.push(tree_files(&src));
        env.backup(&[src.to_str().unwrap()]);
    }
    let before = pack_bytes(&env.repo());
    let out = env
        .cmd()
        .args(["forget", "--keep-last", "1", "--prune", "--dry-run"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("would forget 3 snapshots"), "{text}");
    assert!(text.contains("dry run: nothing was changed"), "{text}");
    // the plan is made as if the three were forgotten already
    assert!(text.contains("1 snapshot uses"), "{text}");
    assert!(!text.contains("frees 0 B"), "{text}");
    assert_eq!(pack_bytes(&env.repo()), before);
    assert_eq!(env.snapshots().len(), 4);

    let out = env
        .cmd()
        .args(["--json", "forget", "--keep-last", "1", "--prune"])
        .args(["--max-unused", "0"])
        .output()
        .unwrap();
    let report = prune_json(&out);
    assert!(report["deleted_packs"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["waiting_packs"], 0);
    assert!(pack_bytes(&env.repo()) < before);
    env.cmd().args(["check", "--read-data"]).assert().success();
    let target = env.path("restored");
    env.cmd()
        .args(["restore", "latest", "--target"])
        .arg(&target)
        .assert()
        .success();
    assert_eq!(tree_files(&target.join("data")), kept[3]);
    // nothing left to do
    let again = prune_json(&env.cmd().args(["--json", "prune"]).output().unwrap());
    assert_eq!(again["deleted_packs"], 0);
    assert_eq!(again["freed_bytes"], 0);
}

#[test]
fn prune_rejects_a_bad_limit() {
    let env = Env::new();
    env.init();
    env.cmd()
        .args(["prune", "--max-unused", "150%"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("between 0% and 100%"));
}

/// SIGKILL `child` as soon as `when` holds, unless it exits first.
fn kill_when(child: &mut std::process::Child, when: Box<dyn Fn() -> bool + '_>) {
    while child.try_wait().unwrap().is_none() {
        if when() {
            let _ = child.kill();
            return;
        }
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
}

fn signal(child: &std::process::Child, sig: libc::c_int) {
    // SAFETY: plain kill(2) on our own child, which has not been reaped.
    unsafe { libc::kill(child.id() as libc::pid_t, sig) };
}

/// Backups from two hosts run while the snapshots they use as parents (and
/// deduplicate against) are forgotten and pruned, round after round (every
/// third round's snapshots are kept to the end). Each
/// backup is stopped (SIGSTOP) at a random point for the length of the
/// prune, so prune meets backups at every stage: before their lock, with an
/// index loaded and references taken, with packs written but not indexed,
/// finished. Every snapshot left must restore exactly what it saw.
#[test]
fn prune_beside_concurrent_backups_loses_nothing() {
    let rounds = env_count("STRATA_PRUNE_ROUNDS", 30);
    let env = Env::new();
    env.init();
    let mut rng = 0x5EED_u64;
    let mut expected: HashMap<String, Files> = HashMap::new();
    let mut previous: Vec<String> = Vec::new();
    let (mut deleted, mut waited) = (0, 0);
    for round in 0..rounds {
        let mut backups = Vec::new();
        for host in ["a", "b"] {
            let dir = env.path(&format!("{host}/data"));
            if round % 5 == 0 {
                refill(&dir, &mut rng, 8, 1500);
            } else {
                // mostly what the parent saw: reused or deduplicated
                let _ = fs::remove_file(dir.join(format!("sub{}/f{}", round % 3, round % 8)));
                write(
                    &dir.join("new.bin"),
                    &pseudo_random(2 << 20, rng + round as u64),
                );
            }
            let child = env
                .std_cmd()
                .args(["backup", "--json", "--host", host])
                .arg(&dir)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            backups.push((tree_files(&dir), child));
        }
        for (_, child) in &backups {
            next(&mut rng);
            std::thread::sleep(std::time::Duration::from_millis(rng % 50));
            signal(child, libc::SIGSTOP);
        }
        if !previous.is_empty() {
            let prune = env
                .std_cmd()
                .args(["--json", "forget"])
                .args(&previous)
                .args(["--prune", "--max-unused", "0"])
                .output()
                .unwrap();
            let report = prune_json(&prune);
            deleted += report["deleted_packs"].as_u64().unwrap();
            waited += report["waiting_packs"].as_u64().unwrap()
                + report["rescued_packs"].as_u64().unwrap();
        }
        for (_, child) in &backups {
            signal(child, libc::SIGCONT);
        }
        previous.clear();
        for (files, child) in backups {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "backup failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let id = last_json(&out.stdout)["snapshot_id"]
                .as_str()
                .unwrap()
                .to_string();
            // every third round's snapshots are kept to the end, the
            // others forgotten by the next round
            if !round.is_multiple_of(3) {
                previous.push(id.clone());
            }
            expected.insert(id, files);
        }
        // before the next round forgets them: every blob of these snapshots
        // is indexed and its pack present
        assert_checks(&env, &format!("round {round}"));
    }
    // Alone at last: whatever waited for the backups goes now.
    let last = prune_json(
        &env.cmd()
            .args(["--json", "prune", "--max-unused", "0"])
            .output()
            .unwrap(),
    );
    deleted += last["deleted_packs"].as_u64().unwrap();
    assert_eq!(last["waiting_packs"], 0);
    println!("{rounds} rounds: {deleted} packs deleted, {waited} waited or were rescued");
    assert!(deleted > 0, "prune never deleted anything");
    env.cmd().args(["check", "--read-data"]).assert().success();
    let snaps = env.snapshots();
    let kept = 2 * rounds.div_ceil(3) + if (rounds - 1).is_multiple_of(3) { 0 } else { 2 };
    assert_eq!(
        snaps.len(),
        kept,
        "every third round's and the last round's"
    );
    for snap in snaps {
        let id = snap["id"].as_str().unwrap();
        let target = env.path(&format!("restore-{id}"));
        env.cmd()
            .args(["restore", id, "--target"])
            .arg(&target)
            .assert()
            .success();
        assert_eq!(
            tree_files(&target.join("data")),
            expected[id],
            "snapshot {id} does not restore what it saw"
        );
    }
}

/// `prune` killed with SIGKILL at random moments, some while a backup runs
/// beside it: after every kill `check` passes, and at the end every
/// snapshot still restores exactly and `check --read-data` passes.
#[test]
fn a_killed_prune_leaves_a_repository_that_checks_and_restores() {
    let kills = env_count("STRATA_PRUNE_KILLS", 16);
    let env = Env::new();
    env.init();
    let src = env.path("data");
    let mut rng = 0xC0FFEE_u64;
    let mut alive: Vec<(String, Files)> = Vec::new();
    let backup = |rng: &mut u64| {
        refill(&src, rng, 6, 50);
        let id = env.backup(&[src.to_str().unwrap()])["snapshot_id"]
            .as_str()
            .unwrap()
            .to_string();
        (id, tree_files(&src))
    };
    for _ in 0..3 {
        alive.push(backup(&mut rng));
    }
    // how long an uninterrupted prune with work to do takes, to aim the kills
    env.cmd()
        .args(["forget", &alive.remove(0).0])
        .assert()
        .success();
    let started = std::time::Instant::now();
    env.cmd()
        .args(["prune", "--max-unused", "0"])
        .assert()
        .success();
    let span = started.elapsed().as_micros() as u64 + 1;
    alive.push(backup(&mut rng));
    println!("an uninterrupted prune takes {span} µs");
    let mut killed = 0;
    for i in 0..kills {
        alive.push(backup(&mut rng));
        let (gone, _) = alive.remove((rng % 3) as usize);
        let before = std::fs::read_dir(env.repo().join("condemned"))
            .unwrap()
            .count();
        let packs_before = common::pack_count(&env.repo());
        env.cmd().args(["forget", &gone]).assert().success();
        // in half the rounds (each kill mode in both) a backup runs beside,
        // so lists must wait
        let beside = ((i / 4) % 2 == 0).then(|| {
            refill(&env.path("other"), &mut rng, 4, 200);
            env.std_cmd()
                .args(["backup", "--host", "other"])
                .arg(env.path("other"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        });
        let mut prune = env
            .std_cmd()
            .args(["prune", "--max-unused", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        next(&mut rng);
        let repo = env.repo();
        let count = |dir: &str| fs::read_dir(repo.join(dir)).unwrap().count();
        let (lists, indexes) = (count("condemned"), count("index"));
        // a quarter at random, the rest right when a step begins
        let when: Box<dyn Fn() -> bool> = match i % 4 {
            0 => {
                let at =
                    std::time::Instant::now() + std::time::Duration::from_micros(rng % (span * 2));
                Box::new(move || std::time::Instant::now() >= at)
            }
            1 => Box::new(|| count("condemned") != lists),
            2 => Box::new(|| count("index") != indexes),
            _ => Box::new(|| common::pack_count(&repo) < packs_before),
        };
        kill_when(&mut prune, when);
        let status = prune.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        if status.signal() == Some(libc::SIGKILL) {
            killed += 1;
            let lists = std::fs::read_dir(env.repo().join("condemned"))
                .unwrap()
                .count();
            println!(
                "kill {i}: condemned lists {before} -> {lists}, packs {packs_before} -> {}",
                common::pack_count(&env.repo())
            );
        } else {
            assert!(status.success(), "prune failed on its own: {status:?}");
        }
        if let Some(mut b) = beside {
            assert!(b.wait().unwrap().success(), "the backup beside failed");
        }
        assert_checks(&env, &format!("after kill {i}"));
    }
    println!("{killed} of {kills} prunes were killed mid-way");
    assert!(killed > 0, "no prune was interrupted");
    env.cmd()
        .args(["prune", "--max-unused", "0"])
        .assert()
        .success();
    env.cmd().args(["check", "--read-data"]).assert().success();
    for (id, files) in &alive {
        let target = env.path(&format!("restore-{id}"));
        env.cmd()
            .args(["restore", id, "--target"])
            .arg(&target)
            .assert()
            .success();
        assert_eq!(&tree_files(&target.join("data")), files, "snapshot {id}");
    }
}
