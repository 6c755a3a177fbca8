//! The command line end to end against real servers on loopback (started by
//! `scripts/servers.sh`, run by `scripts/test.sh`): init, backup, restore,
//! check, forget --prune, on S3 and on SFTP; and the same commands while
//! connections to the servers drop mid-transfer and while the SSH server is
//! stopped and started again. Without the servers the tests say so and
//! pass, unless `STRATA_REQUIRE_SERVERS` is set.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{pseudo_random, tree_files, write, Env};

/// Held by every SFTP test: one of them stops the server.
static SFTP_SERVER: Mutex<()> = Mutex::new(());

fn server_lock(var: &str) -> Option<std::sync::MutexGuard<'static, ()>> {
    (var == "STRATA_TEST_SFTP").then(|| SFTP_SERVER.lock().unwrap_or_else(|p| p.into_inner()))
}

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
    let _server = server_lock(var);
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
    assert!(
        cached
            .iter()
            .any(|p| p.to_string_lossy().contains("/data/")),
        "no tree pack cached: {cached:?}"
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

/// Which way a proxied connection is cut: while the client sends (an
/// upload) or while the server answers (a download).
#[derive(Clone, Copy, PartialEq)]
enum Way {
    Up,
    Down,
}

/// A TCP proxy in front of a real server that drops connections in the
/// middle of a transfer: the next `cuts` connections to carry more than
/// `after` bytes (given to `start`) one way are shut down at that point.
#[derive(Clone)]
struct Proxy {
    port: u16,
    way: Arc<Mutex<Way>>,
    cuts: Arc<AtomicUsize>,
    /// Refuse new connections (the server is unreachable).
    refuse: Arc<AtomicBool>,
    live: Arc<Mutex<Vec<TcpStream>>>,
    /// Bytes sent by the server to the client.
    down: Arc<AtomicU64>,
}

impl Proxy {
    fn start(server: String, after: u64) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let proxy = Proxy {
            port: listener.local_addr().unwrap().port(),
            way: Arc::new(Mutex::new(Way::Up)),
            cuts: Arc::new(AtomicUsize::new(0)),
            refuse: Arc::new(AtomicBool::new(false)),
            live: Arc::new(Mutex::new(Vec::new())),
            down: Arc::new(AtomicU64::new(0)),
        };
        let (way, cuts, refuse, live, down) = (
            proxy.way.clone(),
            proxy.cuts.clone(),
            proxy.refuse.clone(),
            proxy.live.clone(),
            proxy.down.clone(),
        );
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if refuse.load(Ordering::SeqCst) {
                    continue; // dropped: the connection closes at once
                }
                let Ok(upstream) = TcpStream::connect(&server) else {
                    continue;
                };
                live.lock().unwrap().push(client.try_clone().unwrap());
                live.lock().unwrap().push(upstream.try_clone().unwrap());
                let cut_way = *way.lock().unwrap();
                for (from, to, this) in [
                    (
                        client.try_clone().unwrap(),
                        upstream.try_clone().unwrap(),
                        Way::Up,
                    ),
                    (upstream, client, Way::Down),
                ] {
                    let cuts = (this == cut_way).then(|| cuts.clone());
                    let counted = match this {
                        Way::Up => Arc::new(AtomicU64::new(0)),
                        Way::Down => down.clone(),
                    };
                    std::thread::spawn(move || pipe(from, to, cuts, after, &counted));
                }
            }
        });
        proxy
    }

    /// Cut the next `n` connections carrying more than `after` bytes `way`.
    fn cut(&self, way: Way, n: usize) {
        *self.way.lock().unwrap() = way;
        self.cuts.store(n, Ordering::SeqCst);
    }

    /// Drop every connection and refuse new ones.
    fn go_down(&self) {
        self.refuse.store(true, Ordering::SeqCst);
        for c in self.live.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    fn downloaded(&self) -> u64 {
        self.down.load(Ordering::SeqCst)
    }

    fn cuts_left(&self) -> usize {
        self.cuts.load(Ordering::SeqCst)
    }
}

/// Copy `from` to `to`; after `after` bytes, take one of `cuts` (if any
/// are left) and shut both down.
fn pipe(
    mut from: TcpStream,
    mut to: TcpStream,
    cuts: Option<Arc<AtomicUsize>>,
    after: u64,
    counted: &AtomicU64,
) {
    let mut buf = vec![0u8; 64 << 10];
    let mut carried = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // counted before the client can see them and exit
        counted.fetch_add(n as u64, Ordering::SeqCst);
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        carried += n as u64;
        let take = |c: &AtomicUsize| {
            c.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |k| k.checked_sub(1))
                .is_ok()
        };
        if carried > after && cuts.as_deref().is_some_and(take) {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

/// The host and port in a test server location.
fn server_address(var: &str) -> Option<String> {
    match var {
        "STRATA_TEST_S3" => {
            let url = std::env::var(var).ok()?;
            let rest = url.split("://").nth(1)?;
            Some(rest.split('/').next()?.to_string())
        }
        _ => std::env::var("STRATA_TEST_SFTP_ADDR").ok(),
    }
}

/// `url` (a location from `remote`) reached through the proxy on `port`.
fn through(var: &str, url: &str, port: u16) -> String {
    if var == "STRATA_TEST_S3" {
        let addr = server_address(var).unwrap();
        url.replace(&addr, &format!("127.0.0.1:{port}"))
    } else {
        // sftp:strata-test-sftp:/abs/path → sftp://strata-test-sftp:PORT/abs/path
        let path = url.splitn(3, ':').nth(2).unwrap();
        format!("sftp://strata-test-sftp:{port}{path}")
    }
}

/// A source tree of several packs' worth of data and a few small files.
fn fault_source(env: &Env) -> PathBuf {
    let src = env.path("data");
    for i in 0..3u64 {
        write(
            &src.join(format!("big{i}.bin")),
            &pseudo_random(7 << 20, 40 + i),
        );
    }
    for i in 0..20u64 {
        write(
            &src.join(format!("small/{i}.txt")),
            format!("file {i}\n").as_bytes(),
        );
    }
    src
}

fn command(env: &Env, url: &str, args: &[&str]) -> std::process::Output {
    command_cached(env, url, args, false)
}

fn command_cached(env: &Env, url: &str, args: &[&str], cache: bool) -> std::process::Output {
    let mut c = env.cmd();
    c.env("STRATA_REPOSITORY", url);
    if !cache {
        c.env("STRATA_NO_CACHE", "1");
    }
    pass_through(&mut c);
    c.args(args).output().unwrap()
}

fn ok(out: &std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "failed: {stderr}");
    stderr
}

fn snapshot_count(env: &Env, url: &str) -> usize {
    let out = command(env, url, &["snapshots", "--json"]);
    ok(&out);
    serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout)
        .unwrap()
        .len()
}

fn connections_dropped_mid_transfer(var: &str) {
    let _server = server_lock(var);
    let Some(direct) = remote(var) else { return };
    let proxy = Proxy::start(server_address(var).unwrap(), 256 << 10);
    let via = through(var, &direct, proxy.port);
    let env = Env::new();
    let src = fault_source(&env);
    ok(&command(
        &env,
        &direct,
        &["init", "--kdf-memory", "1", "--kdf-iterations", "1"],
    ));

    // Three uploads cut after 256 KiB: retried, and the backup completes.
    proxy.cut(Way::Up, 3);
    let stderr = ok(&command(&env, &via, &["backup", src.to_str().unwrap()]));
    assert_eq!(proxy.cuts_left(), 0, "no upload was cut");
    assert!(stderr.contains("retry"), "no retry reported: {stderr}");
    assert!(!stderr.contains("ERROR"), "libraries' logs shown: {stderr}");
    ok(&command(&env, &direct, &["check", "--read-data"]));

    // Three downloads cut after 256 KiB: retried, and the restore is exact.
    proxy.cut(Way::Down, 3);
    let target = env.path("restored");
    let stderr = ok(&command(
        &env,
        &via,
        &["restore", "latest", "--target", target.to_str().unwrap()],
    ));
    assert_eq!(proxy.cuts_left(), 0, "no download was cut");
    assert!(stderr.contains("retry"), "no retry reported: {stderr}");
    assert_eq!(tree_files(&target.join("data")), tree_files(&src));

    // The server becomes unreachable in the middle of an upload: the
    // backup fails with a clear error and stores no snapshot, and the
    // repository stays whole.
    write(&src.join("big0.bin"), &pseudo_random(7 << 20, 99));
    let watching = Arc::new(AtomicBool::new(true));
    proxy.cut(Way::Up, 1);
    let watcher = {
        let (proxy, watching) = (proxy.clone(), watching.clone());
        std::thread::spawn(move || {
            while watching.load(Ordering::SeqCst) && proxy.cuts_left() > 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
            proxy.go_down();
        })
    };
    let started = Instant::now();
    let out = command(&env, &via, &["backup", src.to_str().unwrap()]);
    watching.store(false, Ordering::SeqCst);
    watcher.join().unwrap();
    proxy.go_down();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected a clean failure: {stderr}"
    );
    assert!(
        stderr.contains("strata: error:"),
        "no error message: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(snapshot_count(&env, &direct), 1, "a snapshot was written");
    ok(&command(&env, &direct, &["check", "--read-data"]));
    ok(&command(&env, &direct, &["backup", src.to_str().unwrap()]));
    ok(&command(&env, &direct, &["check", "--read-data"]));
}

#[test]
fn s3_connections_dropped_mid_transfer() {
    connections_dropped_mid_transfer("STRATA_TEST_S3");
}

#[test]
fn sftp_connections_dropped_mid_transfer() {
    connections_dropped_mid_transfer("STRATA_TEST_SFTP");
}

/// The SSH server is stopped while a backup uploads a pack (every sshd
/// process killed) and started again a second later: the backup goes on
/// with new connections, and what it stored checks clean and restores.
#[test]
fn sftp_server_restarted_mid_upload() {
    let _server = server_lock("STRATA_TEST_SFTP");
    let Some(url) = remote("STRATA_TEST_SFTP") else {
        return;
    };
    let state = PathBuf::from(std::env::var("STRATA_TEST_STATE").unwrap());
    let env = Env::new();
    let src = fault_source(&env);
    ok(&command(
        &env,
        &url,
        &["init", "--kdf-memory", "1", "--kdf-iterations", "1"],
    ));
    let repo_dir = PathBuf::from(url.splitn(3, ':').nth(2).unwrap());
    let mut backup = env.std_cmd();
    backup
        .env("STRATA_REPOSITORY", &url)
        .env("STRATA_NO_CACHE", "1")
        .args(["backup", src.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    for var in ["AWS_ACCESS_KEY_ID", "STRATA_SFTP_KEY"] {
        if let Some(v) = std::env::var_os(var) {
            backup.env(var, v);
        }
    }
    let child = backup.spawn().unwrap();
    // an object being uploaded has a temporary name on the server
    let deadline = Instant::now() + Duration::from_secs(60);
    while !has_temporary(&repo_dir.join("data")) {
        assert!(Instant::now() < deadline, "no upload seen");
        std::thread::sleep(Duration::from_millis(1));
    }
    restart_sshd(&state);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "backup failed across the restart: {stderr}"
    );
    assert!(
        stderr.contains("retry") || stderr.contains("trying again"),
        "the restart went unnoticed: {stderr}"
    );
    ok(&command(&env, &url, &["check", "--read-data"]));
    let target = env.path("restored");
    ok(&command(
        &env,
        &url,
        &["restore", "latest", "--target", target.to_str().unwrap()],
    ));
    assert_eq!(tree_files(&target.join("data")), tree_files(&src));
}

fn has_temporary(dir: &Path) -> bool {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_name().to_string_lossy().starts_with(".tmp-") {
                return true;
            }
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            }
        }
    }
    false
}

/// Kill the test sshd and every session under it, wait a second, and start
/// it again with the same configuration (scripts/servers.sh stops it by its
/// pid file).
fn restart_sshd(state: &Path) {
    let pid_file = state.join("sshd.pid");
    let listener: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut doomed = vec![listener];
    let mut i = 0;
    while i < doomed.len() {
        doomed.extend(children(doomed[i]));
        i += 1;
    }
    for pid in doomed {
        // SAFETY: plain kill(2) of the test server's processes.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    std::thread::sleep(Duration::from_secs(1));
    let _ = std::fs::remove_file(&pid_file);
    // without -D it detaches once listening, and writes its pid file
    let started = std::process::Command::new("/usr/sbin/sshd")
        .arg("-f")
        .arg(state.join("sshd_config"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(started.success(), "sshd did not start again");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pid_file.exists() {
        assert!(Instant::now() < deadline, "sshd did not start again");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The processes whose parent is `pid`.
fn children(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so split after ')'
        let Some(after) = stat.rsplit_once(')').map(|(_, a)| a) else {
            continue;
        };
        let ppid: Option<i32> = after.split_whitespace().nth(1).and_then(|p| p.parse().ok());
        if ppid == Some(pid) {
            if let Ok(child) = e.file_name().to_string_lossy().parse() {
                out.push(child);
            }
        }
    }
    out
}

/// With the cache, the commands that read only metadata (`ls`, `diff`, a
/// backup with nothing new) download a small part of what they download
/// without it; `snapshots` downloads less too. Measured at the socket.
#[test]
fn s3_cache_spares_metadata_downloads() {
    let Some(direct) = remote("STRATA_TEST_S3") else {
        return;
    };
    let proxy = Proxy::start(server_address("STRATA_TEST_S3").unwrap(), u64::MAX);
    let via = through("STRATA_TEST_S3", &direct, proxy.port);
    let env = Env::new();
    let src = env.path("data");
    for d in 0..200 {
        for f in 0..10 {
            let path = src.join(format!("dir{d}/file{f}.txt"));
            write(&path, format!("{d}/{f}\n").as_bytes());
        }
    }
    let s = src.to_str().unwrap();
    ok(&command(
        &env,
        &direct,
        &["init", "--kdf-memory", "1", "--kdf-iterations", "1"],
    ));
    ok(&command_cached(&env, &via, &["backup", s], true));
    let downloads = |args: &[&str], cache: bool| {
        let before = proxy.downloaded();
        ok(&command_cached(&env, &via, args, cache));
        proxy.downloaded() - before
    };
    for args in [
        &["ls", "latest"][..],
        &["diff", "latest:data", s],
        &["backup", s],
    ] {
        let (cached, uncached) = (downloads(args, true), downloads(args, false));
        assert!(
            cached * 10 < uncached,
            "{args:?}: {cached} bytes downloaded with the cache, {uncached} without"
        );
    }
    let (cached, uncached) = (
        downloads(&["snapshots"], true),
        downloads(&["snapshots"], false),
    );
    assert!(
        cached < uncached,
        "snapshots: {cached} with the cache, {uncached} without"
    );
}

/// `check` reads what the storage holds: a tree pack damaged on the server
/// after the cache kept a good copy is reported, while `ls` still works
/// from the cache.
#[test]
fn sftp_check_reads_the_storage_not_the_cache() {
    let _server = server_lock("STRATA_TEST_SFTP");
    let Some(url) = remote("STRATA_TEST_SFTP") else {
        return;
    };
    let env = Env::new();
    let src = env.path("data");
    write(&src.join("dir/a.txt"), b"alpha\n");
    ok(&command_cached(
        &env,
        &url,
        &["init", "--kdf-memory", "1", "--kdf-iterations", "1"],
        true,
    ));
    ok(&command_cached(
        &env,
        &url,
        &["backup", src.to_str().unwrap()],
        true,
    ));
    let cached_packs: Vec<PathBuf> = cache_files(&env.home().join(".cache/strata"))
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("/data/"))
        .collect();
    assert_eq!(
        cached_packs.len(),
        1,
        "one tree pack cached: {cached_packs:?}"
    );
    let name = cached_packs[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let on_server = PathBuf::from(url.splitn(3, ':').nth(2).unwrap())
        .join("data")
        .join(&name[..2])
        .join(&name);
    let mut bytes = std::fs::read(&on_server).unwrap();
    bytes[10] ^= 0x40;
    std::fs::write(&on_server, bytes).unwrap();

    let listed = command_cached(&env, &url, &["ls", "latest"], true);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("a.txt"));
    let checked = command_cached(&env, &url, &["check"], true);
    assert_eq!(
        checked.status.code(),
        Some(1),
        "damage in the storage went unnoticed: {}",
        String::from_utf8_lossy(&checked.stderr)
    );
}

/// Deltas on a remote repository take their bases from the local cache:
/// the second version of a dump costs its changes and downloads far less
/// than the dump; with the cache's blobs gone, the next backup stores the
/// changed chunks whole instead of downloading bases, and every version
/// restores exactly.
#[test]
fn s3_deltas_take_their_bases_from_the_cache_never_the_server() {
    let Some(direct) = remote("STRATA_TEST_S3") else {
        return;
    };
    let proxy = Proxy::start(server_address("STRATA_TEST_S3").unwrap(), u64::MAX);
    let via = through("STRATA_TEST_S3", &direct, proxy.port);
    let env = Env::new();
    ok(&command(
        &env,
        &direct,
        &["init", "--kdf-memory", "1", "--kdf-iterations", "1"],
    ));
    let file = env.path("dump.bin");
    let mut dump = pseudo_random(8 << 20, 5);
    let mut versions = Vec::new();
    let backup = |dump: &[u8], round: usize| {
        std::fs::write(&file, dump).unwrap();
        let before = proxy.downloaded();
        let out = command_cached(
            &env,
            &via,
            &[
                "backup",
                "--json",
                "--stdin-from-command",
                "--stdin-filename",
                "db.bin",
                "--",
                "cat",
                file.to_str().unwrap(),
            ],
            true,
        );
        ok(&out);
        let summary = common::last_json(&out.stdout);
        let downloaded = proxy.downloaded() - before;
        assert!(
            downloaded < 1 << 20,
            "round {round}: {downloaded} bytes downloaded"
        );
        summary["summary"]["data_added_stored"].as_u64().unwrap()
    };
    let change = |dump: &mut Vec<u8>, round: usize| {
        for i in 0..8 {
            let at = (i * 1_000_003 + round * 7919) % (dump.len() - 100);
            dump[at..at + 100].copy_from_slice(&pseudo_random(100, (round * 10 + i) as u64));
        }
    };
    versions.push(dump.clone());
    let first = backup(&dump, 0);
    change(&mut dump, 1);
    versions.push(dump.clone());
    let second = backup(&dump, 1);
    assert!(second * 20 < first, "deltas: {second} after {first}");
    let blobs = cache_files(&env.home().join(".cache/strata"))
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("/blobs/"))
        .collect::<Vec<_>>();
    assert!(!blobs.is_empty(), "no blob kept in the cache");
    for b in &blobs {
        std::fs::remove_file(b).unwrap();
    }
    change(&mut dump, 2);
    versions.push(dump.clone());
    let third = backup(&dump, 2);
    assert!(third > 2 << 20, "without bases, chunks are whole: {third}");
    let snapshots = command(&env, &direct, &["snapshots", "--json"]);
    let ids: Vec<String> = serde_json::from_slice::<Vec<serde_json::Value>>(&snapshots.stdout)
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 3);
    for (id, want) in ids.iter().zip(&versions) {
        let out = command(&env, &direct, &["dump", id, "db.bin"]);
        ok(&out);
        assert!(
            out.stdout == *want,
            "snapshot {id} does not restore exactly"
        );
    }
}

/// Found by attacking delta storage (2026-11-30): the cache of a remote
/// repository grew by the whole of every version of content that changes
/// entirely (each kept for 30 days), while chunks that did not change aged
/// out of it and were stored whole when they changed at last. Now each
/// series (host and sources) lists what its next backup wants, and the
/// rest goes (once an hour old).
#[test]
fn s3_cache_kept_every_version_of_a_stream_and_let_unchanged_chunks_age_out() {
    let Some(url) = remote("STRATA_TEST_S3") else {
        return;
    };
    let env = Env::new();
    ok(&command(
        &env,
        &url,
        &["init", "--kdf-memory", "1", "--kdf-iterations", "1"],
    ));
    let (random, steady) = (env.path("random.bin"), env.path("steady.bin"));
    let mut steady_data = pseudo_random(6 << 20, 77);
    let backup = |round: u64, steady_data: &[u8]| {
        std::fs::write(&random, pseudo_random(6 << 20, 1000 + round)).unwrap();
        std::fs::write(&steady, steady_data).unwrap();
        let out = command_cached(
            &env,
            &url,
            &[
                "backup",
                "--json",
                "--command",
                &format!("random.bin=cat {}", random.display()),
                "--command",
                &format!("steady.bin=cat {}", steady.display()),
            ],
            true,
        );
        ok(&out);
        common::last_json(&out.stdout)["summary"]["data_added_stored"]
            .as_u64()
            .unwrap()
    };
    let kept = || -> (u64, Vec<PathBuf>) {
        let files: Vec<PathBuf> = cache_files(&env.home().join(".cache/strata"))
            .into_iter()
            .filter(|p| {
                p.to_string_lossy().contains("/blobs/") && !p.to_string_lossy().contains("/series/")
            })
            .collect();
        (
            files.iter().map(|f| f.metadata().unwrap().len()).sum(),
            files,
        )
    };
    // Make every kept blob look older than the grace period.
    let age = |files: &[PathBuf]| {
        let old = std::time::SystemTime::now() - Duration::from_secs(3 * 3600);
        for f in files {
            std::fs::File::options()
                .write(true)
                .open(f)
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
    };
    backup(0, &steady_data);
    for round in 1..4 {
        age(&kept().1);
        // One small change at the end of the steady stream: its other
        // chunks stay as they were, and must stay in the cache.
        let n = steady_data.len();
        steady_data[n - 10..].copy_from_slice(&pseudo_random(10, round));
        let added = backup(round, &steady_data);
        // The random stream is stored whole (6 MiB); the steady one costs
        // a delta of its last chunk.
        assert!(added < (6 << 20) + (1 << 20), "round {round}: {added}");
    }
    let (bytes, _) = kept();
    // One version of each stream, not four of the random one.
    assert!(bytes < 14 << 20, "the cache keeps {bytes} bytes of blobs");
    // Changing the start of the steady stream now needs its first chunk,
    // unchanged since the first backup: still in the cache, so a delta.
    steady_data[..10].copy_from_slice(&pseudo_random(10, 99));
    age(&kept().1);
    let added = backup(9, &steady_data);
    assert!(
        added < (6 << 20) + (1 << 20),
        "first chunk stored whole: {added}"
    );
}
