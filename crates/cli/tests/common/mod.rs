//! Helpers shared by the command-line tests: a throw-away home and
//! repository, the `strata` command with a clean environment, and trees.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;

pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        let env = Env {
            dir: tempfile::tempdir().unwrap(),
        };
        fs::create_dir_all(env.home()).unwrap();
        env
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    pub fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `strata` with a clean environment, the test repository and password.
    pub fn cmd(&self) -> Command {
        Command::from_std(self.std_cmd())
    }

    /// The same as a plain process, for running several at once.
    pub fn std_cmd(&self) -> std::process::Command {
        let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("strata"));
        c.env_clear()
            .env("HOME", self.home())
            .env("PATH", std::env::var_os("PATH").unwrap())
            .env("STRATA_PASSWORD", "test-password")
            .env("STRATA_REPOSITORY", self.repo());
        c
    }

    pub fn init(&self) {
        self.init_with(&[]);
    }

    /// `init` with the cheapest key derivation and `extra` options.
    pub fn init_with(&self, extra: &[&str]) {
        self.cmd()
            .args(["init", "--kdf-memory", "1", "--kdf-iterations", "1"])
            .args(extra)
            .assert()
            .success();
    }

    /// Run `args` with `--json`; it must succeed and print one JSON value.
    #[allow(dead_code)]
    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.cmd().args(args).arg("--json").output().unwrap();
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| last_json(&out.stdout))
    }

    pub fn snapshots(&self) -> Vec<Value> {
        json_array(self.cmd().args(["snapshots", "--json"]))
    }

    pub fn backup(&self, args: &[&str]) -> Value {
        let out = self
            .cmd()
            .arg("backup")
            .arg("--json")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "backup failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        last_json(&out.stdout)
    }
}

/// Run a command that must succeed and print a JSON array.
pub fn json_array(cmd: &mut Command) -> Vec<Value> {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

pub fn last_json(stdout: &[u8]) -> Value {
    let text = String::from_utf8_lossy(stdout);
    serde_json::from_str(text.lines().last().expect("no output")).unwrap()
}

pub fn write(path: &Path, data: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, data).unwrap();
}

/// Deterministic incompressible bytes (xorshift64).
pub fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Every file (with contents) and directory under `root`, sorted.
pub fn tree_files(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            if p.is_dir() {
                out.push((rel + "/", Vec::new()));
                stack.push(p);
            } else {
                out.push((rel, fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// Number of pack files in a local repository.
pub fn pack_count(repo: &Path) -> usize {
    fs::read_dir(repo.join("data"))
        .unwrap()
        .filter_map(|d| d.ok())
        .filter(|d| d.path().is_dir())
        .map(|d| fs::read_dir(d.path()).unwrap().count())
        .sum()
}

/// Total bytes of the pack files in a local repository.
pub fn pack_bytes(repo: &Path) -> u64 {
    let mut total = 0;
    for sub in fs::read_dir(repo.join("data")).unwrap() {
        let sub = sub.unwrap().path();
        if sub.is_dir() {
            for f in fs::read_dir(&sub).unwrap() {
                total += f.unwrap().metadata().unwrap().len();
            }
        }
    }
    total
}
