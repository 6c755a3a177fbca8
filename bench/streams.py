#!/usr/bin/env python3
"""Streams benchmark: database dumps, a growing file and a disk image,
strata vs restic vs borg.

Normally started through bench/streams.sh, which installs the tools first.

Case 1, database dumps ("db"). A private MariaDB server is started under
$BENCH_DIR (own datadir and socket, no TCP) and stopped at the end, also on
an error or Ctrl-C. Database `bench` gets one table `items` of BENCH_DB_ROWS
rows (about 85 MB as `mariadb-dump --skip-extended-insert` at 600000 rows).
Hour 0 backs up the fresh database (the initial full backup); then, for each
of BENCH_HOURS hours, 0.1% of the rows (chosen uniformly) get a new value in
column b, 300 rows are inserted and 300 deleted, and every variant backs up:

  strata-mysql  strata backup --mysql bench --mysql-defaults-file my.cnf, into
                a repository made with `init --format-version 1`: no deltas,
                the baseline (strata runs mariadb-dump itself, with extended
                inserts, and stores it as mysql/bench.sql)
  strata-delta  the same into a repository made with plain `init` (format
                version 2, where streams are always stored with deltas)
  strata-cmd    strata backup --command 'bench.sql=mariadb-dump ... --skip-extended-insert ...'
                (plain `init`: deltas)
  restic        mariadb-dump ... --skip-extended-insert ... | restic backup --stdin
  borg          mariadb-dump ... --skip-extended-insert ... | borg create ... -

Every backup of hour h is given the snapshot time 2026-01-01 00:00 local
time plus h hours (strata and restic `--time`, borg `--timestamp`), so that
the hourly and daily rules of forget mean what they say. The issue's figures
use BENCH_HOURS=48 (49 backups); the default stays 12.

Measured per backup: bytes added to the repository (`du -sb` before and
after), wall time of the whole command (dump and backup together) and peak
RSS of the backup tool: GNU time runs around the tool only, so the dump
process of the restic/borg pipelines is not counted; for strata, which runs
mariadb-dump as its own child, the figure is the larger of the two (the
kernel reports the maximum over a process and the children it reaped).
After each hour's backups (untimed), the benchmark itself dumps the database
the way strata --mysql does and the way the others do, and keeps the
sha256 of each: the reference a restored dump of that hour must match.

After the hours (MariaDB stopped), for every variant with snapshots:
  1. restore the first (hour 0) and the newest dump to /dev/null (`strata
     dump SNAPSHOT mysql/bench.sql`, `restic dump`, `borg extract --stdout`)
     under GNU time (wall time, peak RSS), BENCH_RESTORE_RUNS times: the
     run of median time counts;
  2. forget --keep-hourly BENCH_KEEP_HOURLY --keep-daily BENCH_KEEP_DAILY
     with prune (strata `forget ... --prune`, restic `forget ... --prune`,
     borg `prune ...` then `borg compact`), timed, with the repository's
     `du -sb` change and the bytes the tool wrote (`wchar` of /proc/<pid>/io
     of a shell that ran it: every write() call, pack files included);
  3. the repository size after it, and which hours are kept;
  4. restore the oldest kept and the newest dump the same way;
  5. strata: `stats --json` (delta_blobs, delta_stored, base_blobs,
     longest_chain...).
Each restore is run a second time, untimed, into sha256sum, and compared
with that hour's reference. The report gives restore times as ratios to the
first restore, the repository after prune against "one compressed dump"
(what hour 0 added to the strata-mysql repository), and the per-hour
figures with prune's cost spread over the hours: its net `du` change, and
(what the issue's "re-basing/repacking costs" mean) the bytes it wrote.

Case 2, growing file ("grow"). A file data.fs of BENCH_GROW_SIZE
incompressible bytes in a directory; BENCH_GROW_ROUNDS backups of the
directory, the file growing by BENCH_GROW_STEP before each but the first:

  strata-append  strata backup DIR --append-only data.fs
  strata-plain   strata backup DIR                 (reads a changed file whole)
  restic         restic backup DIR
  borg           borg create ... DIR

(strata repositories of this case and the next are made with plain `init`,
format version 2; backups use the default `--delta auto` unless told.)

Measured per backup: wall time, bytes read by the tool and its children
(`rchar`: all read() calls, cached or not; `read_bytes`: what had to come
from the disk) from /proc/<pid>/io of a shell that ran the tool (Linux adds
a reaped child's counters to its parent's), peak RSS, bytes added to the
repository, and strata's own `bytes_read` from its JSON summary. The page
cache is dropped before each of these backups (BENCH_DROP_CACHES=1). After
growing the file the benchmark waits BENCH_GROW_SETTLE seconds: strata does
not trust a parent snapshot's entry for a file changed less than a second
before that backup began, and the growth itself must not look like that.

Case 3, disk image ("image"). A file disk.img of BENCH_IMAGE_SIZE random
bytes in a directory, like a VM image; BENCH_IMAGE_ROUNDS backups of the
directory, with BENCH_IMAGE_WRITES random 4 KiB writes (offsets aligned to
4 KiB, random bytes, then fsync) before each but the first, and a wait of
BENCH_GROW_SETTLE seconds after them:

  strata          strata backup DIR               (default: --delta auto)
  strata-nodelta  strata backup DIR --delta off
  restic          restic backup DIR
  borg            borg create ... DIR

Measured per backup: bytes added (`du -sb`), wall time, peak RSS; the page
cache is left alone (the image fits in memory, so each tool reads it from
the cache and the times compare the tools' work). The sha256 of the image
is kept after each round. After the rounds, every variant restores the
first and the newest version of the file to /dev/null (strata `dump`,
restic `dump`, borg `extract --stdout`), timed (BENCH_RESTORE_RUNS runs,
the median counts), then again into sha256sum to compare; strata variants
also record `stats --json`.

All variants back up the same states: each hour (round) changes the data
once, then the variants run one after the other, each with its own
repository and its own HOME (so caches start empty). A tool invocation
that fails (such as an unknown flag) is recorded with its error text; after
a usage error (exit code 2) of a backup or a failed init that variant is not
backed up again, and the others go on. A failed restore, forget or stats is
recorded and the next step runs.

Results: $BENCH_DIR/streams.json (every measurement) and streams.md (the
tables, also printed).

Settings (environment; sizes take K/M/G suffixes, powers of 1024):
  BENCH_DIR            work directory              (/var/tmp/strata-bench-streams)
  BENCH_TOOLS          strata,restic,borg          (all; strata = every strata variant)
  BENCH_CASES          db,grow,image               (all three)
  BENCH_QUICK          1: smoke-run defaults       (0)
  BENCH_DB_ROWS        rows in the table           (600000; quick 60000)
  BENCH_HOURS          hours after the first backup (12; quick 3; the issue: 48)
  BENCH_DB_UPDATE      fraction of rows updated per hour (0.001)
  BENCH_DB_INSERTS     rows inserted per hour      (300)
  BENCH_DB_DELETES     rows deleted per hour       (300)
  BENCH_KEEP_HOURLY    forget --keep-hourly after the hours (24; quick 2, so
                       that the smoke run's prune removes something)
  BENCH_KEEP_DAILY     forget --keep-daily after the hours (7)
  BENCH_GROW_SIZE      initial size of data.fs     (2G; quick 256M)
  BENCH_GROW_STEP      growth between backups      (16M)
  BENCH_GROW_ROUNDS    backups of the growing file (5; quick 3)
  BENCH_GROW_SETTLE    seconds to wait after growing or writing (2)
  BENCH_IMAGE_SIZE     size of disk.img            (1G; quick 64M)
  BENCH_IMAGE_ROUNDS   backups of the image        (6; quick 3)
  BENCH_IMAGE_WRITES   random 4 KiB writes between backups (200)
  BENCH_DROP_CACHES    drop page cache before each growing-file backup (1)
  BENCH_RESTORE_RUNS   timed runs of each restore; the median counts (3)
  BENCH_STEP_TIMEOUT   seconds per backup, restore or prune (7200)
  BENCH_SEED           seed of the data generators (1)
  BENCH_KEEP           keep repositories, datadir, data.fs and disk.img (0)
  STRATA_BIN           strata binary (target/release/strata, else target/debug/strata)

With 48 hours, keep-hourly 24 and keep-daily 7 keep hours 25-48 and hour 23
(the last of the first day): the oldest kept dump is hour 23's.
"""

import datetime
import hashlib
import json
import os
import random
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # keep bench/ free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# Small helpers shared with the main benchmark.
from bench import PageCache, du_bytes, human, machine_info, parse_time_v, secs, sh, tail  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PASSWORD = "bench"
BORG_COMPRESSION = "zstd,3"
DB_NAME = "bench"
TABLE = "items"
GROW_FILE = "data.fs"
IMAGE_FILE = "disk.img"
# Hour h of the database case is snapshot time START + h hours (local time).
START = datetime.datetime(2026, 1, 1)
# The dump options of strata --mysql (crates/core/src/sources/mysql.rs), for
# the reference hashes of its dumps.
STRATA_MYSQL_DUMP_OPTIONS = ["--single-transaction", "--routines", "--events", "--triggers",
                             "--hex-blob", "--skip-dump-date"]
KNOBS = ["BENCH_DIR", "BENCH_TOOLS", "BENCH_CASES", "BENCH_QUICK", "BENCH_DB_ROWS",
         "BENCH_HOURS", "BENCH_DB_UPDATE", "BENCH_DB_INSERTS", "BENCH_DB_DELETES",
         "BENCH_KEEP_HOURLY", "BENCH_KEEP_DAILY",
         "BENCH_GROW_SIZE", "BENCH_GROW_STEP", "BENCH_GROW_ROUNDS", "BENCH_GROW_SETTLE",
         "BENCH_IMAGE_SIZE", "BENCH_IMAGE_ROUNDS", "BENCH_IMAGE_WRITES",
         "BENCH_RESTORE_RUNS", "BENCH_DROP_CACHES", "BENCH_STEP_TIMEOUT", "BENCH_SEED",
         "BENCH_KEEP", "STRATA_BIN"]
CASES = ("db", "grow", "image")

# Column titles, in table order, for each case.
DB_VARIANTS = {"strata-mysql": "strata --mysql, no deltas (format 1)",
               "strata-delta": "strata --mysql, deltas",
               "strata-cmd": "strata --command, deltas",
               "restic": "restic", "borg": "borg"}
GROW_VARIANTS = {"strata-append": "strata --append-only", "strata-plain": "strata",
                 "restic": "restic", "borg": "borg"}
IMAGE_VARIANTS = {"strata": "strata (--delta auto)", "strata-nodelta": "strata --delta off",
                  "restic": "restic", "borg": "borg"}


def log(msg):
    print(f"[streams] {msg}", flush=True)


# ---------------------------------------------------------------- settings

def parse_size(text):
    """'2G', '16MiB', '268435456' -> bytes (K/M/G are powers of 1024)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if not m:
        raise SystemExit(f"not a size: {text!r}")
    power = " KMGT".index(m.group(2).upper() or " ")
    return int(float(m.group(1)) * 1024 ** power)


def settings():
    env = os.environ.get
    quick = env("BENCH_QUICK", "0") not in ("", "0")

    def pick(name, full, small):
        """The variable if set, else the full or the quick default."""
        return env(name) or (small if quick else full)

    cfg = {
        "bench_dir": os.path.abspath(env("BENCH_DIR", "/var/tmp/strata-bench-streams")),
        "quick": quick,
        "tools": [t for t in env("BENCH_TOOLS", "strata,restic,borg").split(",") if t],
        "cases": [c for c in env("BENCH_CASES", ",".join(CASES)).split(",") if c],
        "db_rows": int(pick("BENCH_DB_ROWS", "600000", "60000")),
        "hours": int(pick("BENCH_HOURS", "12", "3")),
        "db_update": float(env("BENCH_DB_UPDATE", "0.001")),
        "db_inserts": int(env("BENCH_DB_INSERTS", "300")),
        "db_deletes": int(env("BENCH_DB_DELETES", "300")),
        "keep_hourly": int(pick("BENCH_KEEP_HOURLY", "24", "2")),
        "keep_daily": int(env("BENCH_KEEP_DAILY", "7")),
        "grow_size": parse_size(pick("BENCH_GROW_SIZE", "2G", "256M")),
        "grow_step": parse_size(env("BENCH_GROW_STEP", "16M")),
        "grow_rounds": int(pick("BENCH_GROW_ROUNDS", "5", "3")),
        "grow_settle": float(env("BENCH_GROW_SETTLE", "2")),
        "image_size": parse_size(pick("BENCH_IMAGE_SIZE", "1G", "64M")),
        "image_rounds": int(pick("BENCH_IMAGE_ROUNDS", "6", "3")),
        "image_writes": int(env("BENCH_IMAGE_WRITES", "200")),
        "drop_caches": env("BENCH_DROP_CACHES", "1") != "0",
        "timeout": float(env("BENCH_STEP_TIMEOUT", "7200")),
        "restore_runs": int(env("BENCH_RESTORE_RUNS", "3")),
        "seed": int(env("BENCH_SEED", "1")),
        "keep": env("BENCH_KEEP", "0") != "0",
    }
    for t in cfg["tools"]:
        if t not in ("strata", "restic", "borg"):
            raise SystemExit(f"unknown tool in BENCH_TOOLS: {t}")
    for c in cfg["cases"]:
        if c not in CASES:
            raise SystemExit(f"unknown case in BENCH_CASES: {c}")
    if cfg["image_size"] < 4096 or cfg["image_size"] % 4096:
        raise SystemExit("BENCH_IMAGE_SIZE must be a multiple of 4 KiB")
    return cfg


def strata_binary():
    """$STRATA_BIN, else the release build, else the debug build."""
    if os.environ.get("STRATA_BIN"):
        return os.environ["STRATA_BIN"]
    release = os.path.join(REPO_ROOT, "target", "release", "strata")
    debug = os.path.join(REPO_ROOT, "target", "debug", "strata")
    return release if os.access(release, os.X_OK) or not os.access(debug, os.X_OK) else debug


def which(name):
    """A program on PATH or in the sbin directories (mariadbd lives there)."""
    return shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")


# ------------------------------------------------------------ running steps

def kill_group(proc):
    """Stop a step started in its own session: TERM, then KILL."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 30)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_shell(script, env, log_base, timeout):
    """Run `bash -c script`, its output to log_base.{out,err}.

    Returns (exit code or "timeout", wall seconds). The step runs in its own
    session so that it can be stopped as a whole on timeout or Ctrl-C."""
    with open(log_base + ".out", "wb") as out, open(log_base + ".err", "wb") as err:
        t0 = time.monotonic()
        proc = subprocess.Popen(["bash", "-c", script], env=env, stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            rc = "timeout"
        except BaseException:  # Ctrl-C or SIGTERM: do not leave it running
            kill_group(proc)
            raise
        return rc, round(time.monotonic() - t0, 3)


def last_json(out_path, accept):
    """The last line of a file that is a JSON object for which accept(obj) holds."""
    try:
        lines = open(out_path, errors="replace").read().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if isinstance(msg, dict) and accept(msg):
            return msg
    return None


def backup_summary(out_path):
    """The summary message of `strata backup --json` or `restic backup --json`:
    both end with {"message_type": "summary", "snapshot_id": ..., ...}."""
    return last_json(out_path, lambda m: m.get("message_type") == "summary")


def with_io(script, base):
    """The script, then its shell's /proc io counters (which by then include
    those of every child it reaped) saved to base.io; the script's exit code."""
    return f"{script}; rc=$?; cat /proc/$$/io > {shlex.quote(base + '.io')}; exit $rc"


def read_proc_io(path):
    """{'rchar': n, 'read_bytes': n, ...} from a saved /proc/<pid>/io."""
    counters = {}
    try:
        for line in open(path):
            key, _, value = line.partition(":")
            if value.strip().isdigit():
                counters[key.strip()] = int(value)
    except OSError:
        pass
    return counters


# ------------------------------------------------------------------ variants

class Variant:
    """One column of a table: a tool used one way, with its own repository
    and HOME (empty caches, nothing from the user's configuration)."""

    def __init__(self, name, tool, binary, run_dir):
        self.name, self.tool, self.bin = name, tool, binary
        self.repo = os.path.join(run_dir, "repos", name)
        self.home = os.path.join(run_dir, "home", name)
        self.stopped = None      # why it is not run any more
        self.records = []        # one per backup
        self.after = {}          # steps after the backups: restores, forget, stats

    def env(self):
        env = dict(os.environ)
        env.update(HOME=self.home, XDG_CACHE_HOME=os.path.join(self.home, ".cache"),
                   XDG_CONFIG_HOME=os.path.join(self.home, ".config"))
        if self.tool == "strata":
            env["STRATA_PASSWORD"] = PASSWORD
        elif self.tool == "restic":
            env["RESTIC_PASSWORD"] = PASSWORD
        else:
            env.update(BORG_PASSPHRASE=PASSWORD, BORG_BASE_DIR=self.home,
                       BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK="yes",
                       BORG_RELOCATED_REPO_ACCESS_IS_OK="yes")
        return env

    def secret_prefix(self):
        """How the password is passed, for the commands shown in the report."""
        var = {"strata": "STRATA_PASSWORD", "restic": "RESTIC_PASSWORD",
               "borg": "BORG_PASSPHRASE"}[self.tool]
        return f"{var}={PASSWORD} "

    def init_argv(self):
        if self.tool == "strata":
            # strata-mysql is the baseline without deltas; every other strata
            # variant gets the default, format version 2 (deltas).
            old = ["--format-version", "1"] if self.name == "strata-mysql" else []
            return [self.bin, "--repo", self.repo, "init", *old]
        if self.tool == "restic":
            return [self.bin, "-r", self.repo, "init"]
        return [self.bin, "init", "--encryption=repokey-blake2", self.repo]

    def time_args(self, hour):
        """Snapshot time START + hour hours, in the form each tool takes."""
        t = START.astimezone().astimezone(datetime.timezone.utc) + datetime.timedelta(hours=hour)
        if self.tool == "strata":
            return ["--time", t.strftime("%Y-%m-%dT%H:%M:%SZ")]
        if self.tool == "restic":   # local time
            return ["--time", t.astimezone().strftime("%Y-%m-%d %H:%M:%S")]
        return ["--timestamp", t.strftime("%Y-%m-%dT%H:%M:%S")]   # borg: UTC

    def dump_argv(self, ref, path):
        """Write one file of a snapshot (archive) to standard output."""
        if self.tool == "strata":
            return [self.bin, "--repo", self.repo, "dump", ref, path]
        if self.tool == "restic":
            return [self.bin, "-r", self.repo, "dump", ref, path]
        return [self.bin, "extract", "--stdout", f"{self.repo}::{ref}", path]

    def forget_script(self, keep_hourly, keep_daily, timed):
        """forget by the policy, then prune, all under `timed` (GNU time)."""
        keep = ["--keep-hourly", str(keep_hourly), "--keep-daily", str(keep_daily)]
        if self.tool == "strata":
            return shlex.join(timed + [self.bin, "--repo", self.repo, "forget", *keep,
                                       "--prune", "--json"])
        if self.tool == "restic":
            return shlex.join(timed + [self.bin, "-r", self.repo, "forget", *keep, "--prune"])
        # borg 1.2: prune marks, compact frees; exit code 1 is a warning.
        inner = (f"{shlex.join([self.bin, 'prune', '--list', *keep, self.repo])}; r=$?; "
                 f"[ $r -le 1 ] || exit $r; {shlex.join([self.bin, 'compact', self.repo])}")
        return shlex.join(timed + ["bash", "-c", inner])

    def list_refs(self):
        """The snapshot ids (borg: archive names) in the repository now."""
        if self.tool == "strata":
            argv = [self.bin, "--repo", self.repo, "snapshots", "--json"]
        elif self.tool == "restic":
            argv = [self.bin, "-r", self.repo, "snapshots", "--json"]
        else:
            argv = [self.bin, "list", "--json", self.repo]
        proc = subprocess.run(argv, env=self.env(), capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"{shlex.join(argv)}: rc {proc.returncode}: {proc.stderr.strip()}")
        data = json.loads(proc.stdout)
        if self.tool == "borg":
            return [a["name"] for a in data["archives"]]
        return [snap["id"] for snap in data]

    def stats(self):
        """strata stats --json of the whole repository, or {"error": ...}."""
        argv = [self.bin, "--repo", self.repo, "stats", "--json"]
        try:
            proc = subprocess.run(argv, env=self.env(), capture_output=True, text=True,
                                  timeout=3600)
            if proc.returncode != 0:
                return {"error": f"rc {proc.returncode}: {proc.stderr.strip()}"}
            return json.loads(proc.stdout.strip().splitlines()[-1])
        except (OSError, ValueError, IndexError, subprocess.TimeoutExpired) as e:
            return {"error": f"{type(e).__name__}: {e}"}

    def version(self):
        argv = [self.bin, "version"] if self.tool == "restic" else [self.bin, "--version"]
        try:
            out = sh(argv, env=self.env(), timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return "unknown"
        return out.splitlines()[0] if out else "unknown"


def make_variants(names, cfg, run_dir):
    """The variants of a case for the selected tools, and (name -> reason) skipped."""
    binaries = {"strata": strata_binary(), "restic": which("restic"), "borg": which("borg")}
    ready, skipped = [], {}
    for name in names:
        tool = name.split("-")[0]
        if tool not in cfg["tools"]:
            continue
        binary = binaries[tool]
        if not binary or not os.access(binary, os.X_OK):
            skipped[name] = f"binary not found ({binary or tool})"
            log(f"skipping {name}: {skipped[name]}")
            continue
        ready.append(Variant(name, tool, binary, run_dir))
    return ready, skipped


def init_variant(v, logs, timeout):
    """Create the variant's repository; on failure the variant is stopped."""
    shutil.rmtree(v.repo, ignore_errors=True)
    shutil.rmtree(v.home, ignore_errors=True)
    os.makedirs(v.home)
    log_base = os.path.join(logs, f"{v.name}-init")
    rc, _ = run_shell(shlex.join(v.init_argv()), v.env(), log_base, timeout)
    if rc != 0:
        v.stopped = f"init failed (rc {rc}): " + (tail(log_base + ".err") or tail(log_base + ".out"))
        log(f"{v.name}: {v.stopped.splitlines()[0]}")


def measure(v, script, log_base, timeout, extra=None, backup=True):
    """Run one step of a variant (a backup unless told); returns its record
    (repository growth, wall time, peak RSS from log_base.time, status and
    error text; for a strata or restic backup with --json, the snapshot id
    as "ref"). A backup's usage error stops the variant."""
    before = du_bytes(v.repo) or 0
    rc, wall = run_shell(script, v.env(), log_base, timeout)
    after = du_bytes(v.repo) or 0
    ok_codes = {"strata": (0,), "restic": (0, 3), "borg": (0, 1)}[v.tool]
    rec = {"rc": rc, "status": "ok" if rc in ok_codes else "FAILED", "wall_s": wall,
           **parse_time_v(log_base + ".time"), "repo_before": before, "repo_after": after,
           "added": after - before, "cache_bytes": du_bytes(v.home),
           "command": v.secret_prefix() + script, "log": log_base + ".{out,err,time}"}
    if extra:
        rec.update(extra)
    if backup and v.tool in ("strata", "restic"):
        summary = backup_summary(log_base + ".out")
        if v.tool == "strata":
            rec["strata_summary"] = summary.get("summary") if summary else None
        if summary and summary.get("snapshot_id") and "ref" not in rec:
            rec["ref"] = summary["snapshot_id"]
    if rec["status"] != "ok":
        rec["error"] = (tail(log_base + ".err") or tail(log_base + ".out")).rstrip()
        first = rec["error"].splitlines()[0] if rec["error"] else ""
        log(f"{v.name}: FAILED (rc {rc}) {first}")
        if rc == 2 and backup:  # usage error: every later call would fail the same way
            v.stopped = f"usage error (rc 2): {rec['error']}"
    return rec


# ------------------------------------------- restores, forget and prune

def sha256_of(script, env, timeout):
    """sha256 (hex) of what a shell command writes, or None if it failed."""
    proc = subprocess.run(["bash", "-c", f"set -o pipefail; {script} | sha256sum"], env=env,
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    out = proc.stdout.split()
    return out[0] if proc.returncode == 0 and out else None


def restore_step(v, ref, path, expected, log_base, timeout, extra, runs):
    """Write one file of a snapshot to /dev/null under GNU time, `runs` times
    (the record is the run of median time; all times in wall_s_runs), then
    once more, untimed, into sha256sum; compare that with expected (the
    sha256 of the data when it was backed up)."""
    dump = shlex.join(v.dump_argv(ref, path))
    recs = []
    for i in range(max(runs, 1)):
        base = log_base if i == 0 else f"{log_base}-run{i + 1}"
        timed = ["/usr/bin/time", "-v", "-o", base + ".time"]
        recs.append(measure(v, f"{shlex.join(timed)} {dump} > /dev/null", base, timeout,
                            dict(extra, ref=ref, path=path), backup=False))
        if recs[-1]["status"] != "ok":
            break
    if recs[-1]["status"] != "ok":
        rec = recs[-1]
    else:
        rec = sorted(recs, key=lambda r: r["wall_s"])[len(recs) // 2]
    rec["wall_s_runs"] = [r["wall_s"] for r in recs]
    rec["max_rss_mib_runs"] = [r.get("max_rss_mib") for r in recs]
    try:
        got = sha256_of(dump, v.env(), timeout)
    except subprocess.TimeoutExpired:
        got = None
    rec.update(sha256=got, sha256_expected=expected,
               sha256_ok=None if expected is None else got == expected)
    if rec["sha256_ok"] is False:
        log(f"{v.name}: restore of {extra} does not match: {got} instead of {expected}")
    return rec


def forget_step(v, cfg, log_base):
    """forget --keep-hourly --keep-daily with prune, timed, with the bytes
    the tool wrote (wchar) and its repository change (du)."""
    timed = ["/usr/bin/time", "-v", "-o", log_base + ".time"]
    script = with_io(v.forget_script(cfg["keep_hourly"], cfg["keep_daily"], timed), log_base)
    rec = measure(v, script, log_base, cfg["timeout"], {"step": "forget"}, backup=False)
    io = read_proc_io(log_base + ".io")
    rec.update(wchar=io.get("wchar"), write_bytes=io.get("write_bytes"))
    if v.tool == "strata":   # forget's list, then prune's object: the last one
        rec["prune_summary"] = last_json(log_base + ".out", lambda m: "used_bytes" in m)
    return rec


def kept_keys(v, refs):
    """Which of refs ({hour or round: snapshot id or archive name}) the
    repository still has (restic's backup summary gives a short id)."""
    listed = v.list_refs()
    return sorted(k for k, ref in refs.items()
                  if any(x == ref or x.startswith(ref) or ref.startswith(x) for x in listed))


def snapshot_refs(v, key):
    """{hour or round: ref} of the variant's successful backups."""
    return {r[key]: r["ref"] for r in v.records if r["status"] == "ok" and r.get("ref")}


def after_backups(v, cfg, logs, prefix, key, path, expected, prune):
    """The steps after the backups of a case, for one variant: restores of
    the first and the newest snapshot; with prune, forget and prune, the
    repository after it, restores of the oldest kept and the newest; for
    strata the stats. expected(k) is the sha256 of snapshot k's file.
    Returns a dict of records; a failing step is recorded, the next runs."""
    after = {}
    refs = snapshot_refs(v, key)
    if not refs:
        after["error"] = "no successful backup (or no snapshot id from it)"
        return after
    timeout = cfg["timeout"]

    def restore(name, k):
        log(f"{prefix}: {v.name}: restore {key} {k} ({name})")
        base = os.path.join(logs, f"{prefix}-{v.name}-{name}")
        after[name] = restore_step(v, refs[k], path, expected(k), base, timeout, {key: k},
                                   cfg["restore_runs"])

    first, newest = min(refs), max(refs)
    try:
        restore("restore_first", first)
        if newest != first:
            restore("restore_newest", newest)
        if prune:
            log(f"{prefix}: {v.name}: forget --keep-hourly {cfg['keep_hourly']} "
                f"--keep-daily {cfg['keep_daily']} --prune")
            after["forget"] = forget_step(v, cfg, os.path.join(logs, f"{prefix}-{v.name}-forget"))
            after["repo_after_prune"] = du_bytes(v.repo)
            after["snapshots_before_prune"] = sorted(refs)
            kept = after["kept"] = kept_keys(v, refs)
            if kept:
                restore("restore_oldest_kept", kept[0])
                restore("restore_newest_after_prune", kept[-1])
    except Exception as e:   # e.g. a listing that is not JSON: recorded, the others go on
        after["error"] = f"{type(e).__name__}: {e}"
        log(f"{prefix}: {v.name}: {after['error']}")
    if v.tool == "strata":
        after["stats"] = v.stats()
    return after


# ------------------------------------------------------------------ MariaDB

class MariaDB:
    """A private server: datadir, socket, pid file and logs under BENCH_DIR."""

    def __init__(self, bench_dir):
        self.dir = bench_dir
        self.datadir = os.path.join(bench_dir, "mariadb-data")
        self.socket = os.path.join(bench_dir, "mariadb.sock")
        self.pidfile = os.path.join(bench_dir, "mariadb.pid")
        self.errlog = os.path.join(bench_dir, "mariadb.err")
        self.cnf = os.path.join(bench_dir, "my.cnf")
        self.proc = None
        if len(self.socket) > 100:
            raise RuntimeError(f"socket path too long for a unix socket: {self.socket}")

    def client(self, *args, sql=None, timeout=600):
        """Run the mariadb client on our server, SQL on stdin; raise on error."""
        argv = [which("mariadb") or "mariadb", f"--defaults-file={self.cnf}", *args]
        proc = subprocess.run(argv, input=sql, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"{shlex.join(argv)} failed: {proc.stderr.strip()}")
        return proc.stdout

    def stop_leftover(self):
        """A server left running by an interrupted earlier run (found by its
        pid file, and only if it is ours: its command line names our datadir)."""
        try:
            pid = int(open(self.pidfile).read().strip())
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
        except (OSError, ValueError):
            return
        if self.datadir not in cmdline:
            return
        log(f"stopping the MariaDB server left by an earlier run (pid {pid})")
        os.kill(pid, signal.SIGTERM)
        for _ in range(600):
            if not os.path.exists(f"/proc/{pid}"):
                return
            time.sleep(0.1)

    def start(self):
        self.stop_leftover()
        shutil.rmtree(self.datadir, ignore_errors=True)
        for p in (self.socket, self.pidfile, self.errlog):
            if os.path.exists(p):
                os.remove(p)
        with open(self.cnf, "w") as f:
            f.write(f"[client]\nsocket={self.socket}\nuser=root\n")
        log("creating the MariaDB datadir")
        # root@localhost with an empty password ("normal"), so that the client
        # connects as root whatever the OS user (the default, unix_socket,
        # would need the OS user root).
        install = [which("mariadb-install-db") or "mariadb-install-db", "--no-defaults",
                   "--user=root", f"--datadir={self.datadir}",
                   "--auth-root-authentication-method=normal", "--skip-test-db"]
        proc = subprocess.run(install, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"mariadb-install-db failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        server = [which("mariadbd") or "mariadbd", "--no-defaults", "--user=root",
                  f"--datadir={self.datadir}", f"--socket={self.socket}",
                  f"--pid-file={self.pidfile}", f"--log-error={self.errlog}",
                  "--skip-networking", "--innodb-buffer-pool-size=256M",
                  "--innodb-log-file-size=256M",
                  # Faster loading and updates; durability is not measured here.
                  "--innodb-flush-log-at-trx-commit=2", "--local-infile=1",
                  "--max-allowed-packet=64M"]
        log("starting MariaDB: " + shlex.join(server))
        self.proc = subprocess.Popen(server, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mariadbd exited with {self.proc.returncode}:\n"
                                   + tail(self.errlog, 20))
            try:
                self.client("-e", "SELECT 1", timeout=10)
                return
            except (RuntimeError, subprocess.TimeoutExpired):
                if time.monotonic() > deadline:
                    raise RuntimeError("MariaDB did not accept connections within 120 s:\n"
                                       + tail(self.errlog, 20))
                time.sleep(0.5)

    def stop(self):
        """Shut down cleanly (mariadb-admin), else TERM, else KILL."""
        if not self.proc or self.proc.poll() is not None:
            return
        log("stopping MariaDB")
        admin = which("mariadb-admin") or "mariadb-admin"
        try:
            done = subprocess.run([admin, f"--defaults-file={self.cnf}", "shutdown"],
                                  capture_output=True, timeout=60)
            if done.returncode == 0:
                self.proc.wait(timeout=120)
                return
        except (OSError, subprocess.TimeoutExpired):
            pass
        kill_group(self.proc)  # SIGTERM is a clean shutdown for mariadbd too

    def version(self):
        out = sh([which("mariadbd") or "mariadbd", "--version"]) or "unknown"
        return " ".join(out.split())


# ---------------------------------------------------------- the table's rows

class RowMaker:
    """Rows of random-ish data: (id, a, b, c, d). With the default sizes a row
    is about 148 bytes as a single-row INSERT of mariadb-dump, so 600000 rows
    make about 85 MiB (89 MB). Only letters, digits, '.', '@', '-', ':' and
    spaces: nothing that needs escaping in TSV or SQL."""

    DOMAINS = ["example.com", "mail.example.org", "corp.example.net", "example.de"]
    EPOCH = datetime.datetime(2015, 1, 1)

    def __init__(self, rng):
        self.rng = rng
        letters = "abcdefghijklmnopqrstuvwxyz"
        self.words = ["".join(rng.choice(letters) for _ in range(rng.randint(3, 9)))
                      for _ in range(4096)]

    def row(self, row_id):
        r, w = self.rng, self.words
        a = f"{r.choice(w)}.{r.choice(w)}{r.randrange(1000)}@{r.choice(self.DOMAINS)}"[:40]
        b = r.randrange(10**9)
        c = (self.EPOCH + datetime.timedelta(seconds=r.randrange(10 * 365 * 86400))
             ).strftime("%Y-%m-%d %H:%M:%S")
        d, length = r.choice(w), r.randint(20, 60)
        while len(d) < length:
            d += " " + r.choice(w)
        return (row_id, a, b, c, d[:60])


def sql_row(row):
    row_id, a, b, c, d = row
    return f"({row_id},'{a}',{b},'{c}','{d}')"


class Database:
    """The `bench` database and the ids of its live rows."""

    def __init__(self, server, cfg):
        self.server, self.cfg = server, cfg
        self.rng = random.Random(cfg["seed"])
        self.rows = RowMaker(self.rng)
        self.live = []          # ids of the rows in the table, in no order
        self.next_id = 1

    def load(self):
        """Create the table and fill it from a TSV with LOAD DATA LOCAL INFILE."""
        n = self.cfg["db_rows"]
        tsv = os.path.join(self.server.dir, f"{TABLE}.tsv")
        log(f"generating {n} rows")
        t0 = time.monotonic()
        with open(tsv, "w") as f:
            for row_id in range(1, n + 1):
                f.write("\t".join(map(str, self.rows.row(row_id))) + "\n")
        self.live = list(range(1, n + 1))
        self.next_id = n + 1
        self.server.client(sql=f"CREATE DATABASE {DB_NAME};")
        self.server.client(DB_NAME, sql=(
            f"CREATE TABLE {TABLE} (id INT PRIMARY KEY, a VARCHAR(40) NOT NULL, "
            "b INT NOT NULL, c DATETIME NOT NULL, d VARCHAR(60) NOT NULL) "
            "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;"))
        log("loading them (LOAD DATA LOCAL INFILE)")
        self.server.client("--local-infile=1", DB_NAME, sql=(
            f"LOAD DATA LOCAL INFILE '{tsv}' INTO TABLE {TABLE} "
            "FIELDS TERMINATED BY '\\t' LINES TERMINATED BY '\\n';"), timeout=3600)
        os.remove(tsv)
        count = int(self.server.client("-N", DB_NAME, sql=f"SELECT COUNT(*) FROM {TABLE};"))
        if count != n:
            raise RuntimeError(f"loaded {count} rows instead of {n}")
        return round(time.monotonic() - t0, 1)

    def take(self, k):
        """Remove k ids chosen uniformly from the live ones and return them."""
        taken = []
        for _ in range(min(k, len(self.live))):
            i = self.rng.randrange(len(self.live))
            # Swap with the last and pop: O(1), order does not matter.
            self.live[i], self.live[-1] = self.live[-1], self.live[i]
            taken.append(self.live.pop())
        return taken

    def change_hour(self):
        """One hour of activity, in one transaction: update a fraction of the
        rows (a new value in column b), insert some rows, delete some."""
        cfg = self.cfg
        n_update = round(len(self.live) * cfg["db_update"])
        updated = self.take(n_update)
        self.live.extend(updated)      # updated rows stay in the table
        stmts = ["START TRANSACTION;"]
        stmts += [f"UPDATE {TABLE} SET b={self.rng.randrange(10**9)} WHERE id={i};"
                  for i in updated]
        new = [self.rows.row(self.next_id + k) for k in range(cfg["db_inserts"])]
        if new:
            stmts.append(f"INSERT INTO {TABLE} VALUES " + ",".join(map(sql_row, new)) + ";")
        self.next_id += len(new)
        deleted = self.take(cfg["db_deletes"])
        if deleted:
            stmts.append(f"DELETE FROM {TABLE} WHERE id IN ({','.join(map(str, deleted))});")
        self.live.extend(r[0] for r in new)
        stmts.append("COMMIT;")
        self.server.client(DB_NAME, sql="\n".join(stmts))
        return {"updated": len(updated), "inserted": len(new), "deleted": len(deleted),
                "rows": len(self.live)}


def dump_command(cnf):
    """The --skip-extended-insert dump that restic, borg and strata-cmd take."""
    return shlex.join(["mariadb-dump", f"--defaults-file={cnf}", "--skip-extended-insert",
                       "--single-transaction", "--skip-dump-date", DB_NAME])


def dump_size(cnf, extra_args):
    """Bytes of a dump of the database with these options."""
    argv = ["mariadb-dump", f"--defaults-file={cnf}", *extra_args, DB_NAME]
    proc = subprocess.run(f"{shlex.join(argv)} | wc -c", shell=True, capture_output=True,
                          text=True)
    return int(proc.stdout.strip()) if proc.returncode == 0 and proc.stdout.strip() else None


def mysql_style_dump(cnf):
    """The dump strata --mysql takes of the database (its options, same order)."""
    return shlex.join(["mariadb-dump", f"--defaults-file={cnf}", *STRATA_MYSQL_DUMP_OPTIONS,
                       "--", DB_NAME])


def db_stream(v):
    """(path of the dump in the variant's snapshots, key of its reference hash)."""
    if v.name in ("strata-mysql", "strata-delta"):
        return f"mysql/{DB_NAME}.sql", "sha256_mysql_style"
    path = {"strata": "bench.sql", "restic": "/bench.sql", "borg": "bench.sql"}[v.tool]
    return path, "sha256_skip_extended_insert"


def db_script(v, cnf, hour, time_file):
    """The shell command that makes one backup of the database."""
    timed = ["/usr/bin/time", "-v", "-o", time_file]
    when = v.time_args(hour)
    if v.name in ("strata-mysql", "strata-delta"):
        return shlex.join(timed + [v.bin, "--repo", v.repo, "backup", "--mysql", DB_NAME,
                                   "--mysql-defaults-file", cnf, *when, "--json"])
    if v.name == "strata-cmd":
        return shlex.join(timed + [v.bin, "--repo", v.repo, "backup", "--command",
                                   "bench.sql=" + dump_command(cnf), *when, "--json"])
    if v.name == "restic":
        tool = [v.bin, "-r", v.repo, "backup", "--stdin", "--stdin-filename", "bench.sql",
                *when, "--json"]
    else:
        tool = [v.bin, "create", "--compression", BORG_COMPRESSION, *when, "--stdin-name",
                "bench.sql", f"{v.repo}::hour-{hour}", "-"]
    # pipefail: a failed dump fails the step.
    return f"set -o pipefail; {dump_command(cnf)} | {shlex.join(timed + tool)}"


def run_db_case(cfg, run_dir, results):
    """Case 1. Fills results['db']; the server is stopped however it ends."""
    logs = os.path.join(run_dir, "logs")
    variants, skipped = make_variants(DB_VARIANTS, cfg, run_dir)
    case = results["db"] = {"skipped": skipped, "hours": [], "variants": {}}
    server = MariaDB(cfg["bench_dir"])
    try:
        server.start()
        case["mariadb"] = server.version()
        db = Database(server, cfg)
        case["load_seconds"] = db.load()
        case["dump_bytes_skip_extended_insert"] = dump_size(
            server.cnf, ["--skip-extended-insert", "--single-transaction", "--skip-dump-date"])
        case["dump_bytes_strata_mysql_style"] = dump_size(
            server.cnf, ["--single-transaction", "--routines", "--events", "--triggers",
                         "--hex-blob", "--skip-dump-date"])
        log(f"dump sizes: {human(case['dump_bytes_skip_extended_insert'])} "
            f"(--skip-extended-insert), {human(case['dump_bytes_strata_mysql_style'])} "
            "(extended inserts, as strata --mysql dumps)")
        for v in variants:
            init_variant(v, logs, cfg["timeout"])
        # Reference hashes are needed only for the dump styles some variant stores.
        styles = {db_stream(v)[1] for v in variants}
        for hour in range(cfg["hours"] + 1):
            change = db.change_hour() if hour > 0 else {"rows": len(db.live)}
            info = dict(change, hour=hour)
            case["hours"].append(info)
            for v in variants:
                if v.stopped:
                    continue
                log(f"db hour {hour}: {v.name}")
                base = os.path.join(logs, f"db-{v.name}-hour{hour}")
                extra = {"hour": hour}
                if v.tool == "borg":
                    extra["ref"] = f"hour-{hour}"
                rec = measure(v, db_script(v, server.cnf, hour, base + ".time"), base,
                              cfg["timeout"], extra)
                v.records.append(rec)
            # The same state dumped by the benchmark (untimed): what a restore
            # of this hour must give back, byte for byte.
            if "sha256_mysql_style" in styles:
                info["sha256_mysql_style"] = sha256_of(mysql_style_dump(server.cnf), None, 3600)
            if "sha256_skip_extended_insert" in styles:
                info["sha256_skip_extended_insert"] = sha256_of(dump_command(server.cnf), None,
                                                                3600)
    except Exception as e:  # the other case still runs; the report says why this one stopped
        case["error"] = f"{type(e).__name__}: {e}"
        log(f"db case stopped: {case['error']}")
    finally:
        server.stop()
        if not cfg["keep"]:
            shutil.rmtree(server.datadir, ignore_errors=True)
    try:
        # With the server stopped: restores, forget and prune, stats.
        for v in variants:
            if v.records:
                path, style = db_stream(v)
                expected = lambda h, style=style: (   # noqa: E731
                    case["hours"][h].get(style) if h < len(case["hours"]) else None)
                v.after = after_backups(v, cfg, logs, "db", "hour", path, expected, prune=True)
    finally:
        for v in variants:
            case["variants"][v.name] = {"version": v.version(), "stopped": v.stopped,
                                        "records": v.records, "after": v.after}


# ------------------------------------------------------------ growing file

def append_random(path, nbytes, rng, chunk=16 << 20):
    """Append nbytes of incompressible bytes and fsync."""
    with open(path, "ab") as f:
        while nbytes > 0:
            n = min(chunk, nbytes)
            f.write(rng.randbytes(n))
            nbytes -= n
        f.flush()
        os.fsync(f.fileno())


def grow_script(v, data_dir, rnd, base):
    """Shell command for one backup of the directory: the tool under GNU time,
    then the shell's own /proc io counters, which by then include the tool's."""
    timed = ["/usr/bin/time", "-v", "-o", base + ".time"]
    if v.name == "strata-append":
        tool = [v.bin, "--repo", v.repo, "backup", data_dir, "--append-only", GROW_FILE, "--json"]
    elif v.name == "strata-plain":
        tool = [v.bin, "--repo", v.repo, "backup", data_dir, "--json"]
    elif v.name == "restic":
        tool = [v.bin, "-r", v.repo, "backup", data_dir]
    else:
        tool = [v.bin, "create", "--compression", BORG_COMPRESSION,
                f"{v.repo}::round-{rnd}", data_dir]
    return (f"{shlex.join(timed + tool)}; rc=$?; "
            f"cat /proc/$$/io > {shlex.quote(base + '.io')}; exit $rc")


def run_grow_case(cfg, run_dir, results):
    """Case 2. Fills results['grow']."""
    logs = os.path.join(run_dir, "logs")
    variants, skipped = make_variants(GROW_VARIANTS, cfg, run_dir)
    case = results["grow"] = {"skipped": skipped, "rounds": [], "variants": {}}
    cache = PageCache(cfg["drop_caches"])
    data_dir = os.path.join(run_dir, "grow")
    path = os.path.join(data_dir, GROW_FILE)
    rng = random.Random(cfg["seed"])
    try:
        os.makedirs(data_dir)
        log(f"writing {human(cfg['grow_size'])} of random data to {path}")
        append_random(path, cfg["grow_size"], rng)
        for v in variants:
            init_variant(v, logs, cfg["timeout"])
        for rnd in range(cfg["grow_rounds"]):
            if rnd > 0:
                append_random(path, cfg["grow_step"], rng)
            # Let the file's times age past strata's one-second safety window.
            time.sleep(cfg["grow_settle"])
            case["rounds"].append({"round": rnd, "file_size": os.path.getsize(path)})
            for v in variants:
                if v.stopped:
                    continue
                log(f"grow round {rnd} ({human(os.path.getsize(path))}): {v.name}")
                base = os.path.join(logs, f"grow-{v.name}-round{rnd}")
                dropped = cache.drop()
                rec = measure(v, grow_script(v, data_dir, rnd, base), base, cfg["timeout"],
                              {"round": rnd, "cache_dropped": dropped})
                io = read_proc_io(base + ".io")
                rec.update(rchar=io.get("rchar"), read_bytes=io.get("read_bytes"))
                if rec.get("strata_summary"):
                    rec["strata_bytes_read"] = rec["strata_summary"].get("bytes_read")
                v.records.append(rec)
    except Exception as e:
        case["error"] = f"{type(e).__name__}: {e}"
        log(f"grow case stopped: {case['error']}")
    finally:
        case["page_cache"] = cache.note
        if not cfg["keep"]:
            shutil.rmtree(data_dir, ignore_errors=True)
        for v in variants:
            case["variants"][v.name] = {"version": v.version(), "stopped": v.stopped,
                                        "records": v.records, "after": v.after}


# -------------------------------------------------------------- disk image

def random_writes(path, count, rng, block=4096):
    """count writes of block random bytes at random block-aligned offsets; fsync."""
    blocks = os.path.getsize(path) // block
    fd = os.open(path, os.O_WRONLY)
    try:
        for _ in range(count):
            os.pwrite(fd, rng.randbytes(block), rng.randrange(blocks) * block)
        os.fsync(fd)
    finally:
        os.close(fd)


def file_sha256(path, chunk=16 << 20):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            data = f.read(chunk)
            if not data:
                return h.hexdigest()
            h.update(data)


def image_script(v, data_dir, rnd, time_file):
    """The shell command that makes one backup of the image's directory."""
    timed = ["/usr/bin/time", "-v", "-o", time_file]
    if v.tool == "strata":
        off = ["--delta", "off"] if v.name == "strata-nodelta" else []
        tool = [v.bin, "--repo", v.repo, "backup", data_dir, *off, "--json"]
    elif v.tool == "restic":
        tool = [v.bin, "-r", v.repo, "backup", data_dir, "--json"]
    else:
        tool = [v.bin, "create", "--compression", BORG_COMPRESSION, f"{v.repo}::round-{rnd}",
                data_dir]
    return shlex.join(timed + tool)


def image_path(v, data_dir):
    """Where the image is in the variant's snapshots."""
    if v.tool == "strata":   # under the last component of the backed-up path
        return f"{os.path.basename(data_dir)}/{IMAGE_FILE}"
    if v.tool == "restic":   # the absolute path
        return os.path.join(data_dir, IMAGE_FILE)
    return os.path.join(data_dir, IMAGE_FILE).lstrip("/")   # borg: without the leading /


def run_image_case(cfg, run_dir, results):
    """Case 3. Fills results['image']."""
    logs = os.path.join(run_dir, "logs")
    variants, skipped = make_variants(IMAGE_VARIANTS, cfg, run_dir)
    case = results["image"] = {"skipped": skipped, "rounds": [], "variants": {}}
    data_dir = os.path.join(run_dir, "image")
    path = os.path.join(data_dir, IMAGE_FILE)
    rng = random.Random(cfg["seed"] + 2)
    try:
        try:
            os.makedirs(data_dir)
            log(f"writing {human(cfg['image_size'])} of random data to {path}")
            append_random(path, cfg["image_size"], rng)
            for v in variants:
                init_variant(v, logs, cfg["timeout"])
            for rnd in range(cfg["image_rounds"]):
                if rnd > 0:
                    random_writes(path, cfg["image_writes"], rng)
                time.sleep(cfg["grow_settle"])
                case["rounds"].append({"round": rnd, "sha256": file_sha256(path)})
                for v in variants:
                    if v.stopped:
                        continue
                    log(f"image round {rnd}: {v.name}")
                    base = os.path.join(logs, f"image-{v.name}-round{rnd}")
                    extra = {"round": rnd}
                    if v.tool == "borg":
                        extra["ref"] = f"round-{rnd}"
                    v.records.append(measure(v, image_script(v, data_dir, rnd, base + ".time"),
                                             base, cfg["timeout"], extra))
        except Exception as e:
            case["error"] = f"{type(e).__name__}: {e}"
            log(f"image case stopped: {case['error']}")
        for v in variants:
            if v.records:
                expected = lambda r: (   # noqa: E731
                    case["rounds"][r]["sha256"] if r < len(case["rounds"]) else None)
                v.after = after_backups(v, cfg, logs, "image", "round", image_path(v, data_dir),
                                        expected, prune=False)
    finally:
        if not cfg["keep"]:
            shutil.rmtree(data_dir, ignore_errors=True)
        for v in variants:
            case["variants"][v.name] = {"version": v.version(), "stopped": v.stopped,
                                        "records": v.records, "after": v.after}


# ------------------------------------------------------------------ reports

def ok_records(case, name, first):
    """Successful records of a variant: the first backup, or all later ones."""
    recs = case["variants"].get(name, {}).get("records", [])
    key = "hour" if "hours" in case else "round"
    return [r for r in recs if r["status"] == "ok" and (r[key] == 0) == first]


def median(values):
    values = [x for x in values if x is not None]
    return statistics.median(values) if values else None


def mean(values):
    values = [x for x in values if x is not None]
    return statistics.mean(values) if values else None


def rss(recs):
    values = [r["max_rss_mib"] for r in recs if r.get("max_rss_mib") is not None]
    return f"{max(values):.0f} MiB" if values else "-"


def one_line(text, width=90):
    """First non-empty line of an error, cut to fit a table cell."""
    lines = [x.strip() for x in text.splitlines() if x.strip()]
    line = " / ".join(lines[:2]).replace("|", "\\|")
    return line if len(line) <= width else line[:width - 1] + "…"


def md_table(titles, rows):
    lines = ["| | " + " | ".join(titles) + " |", "|---" * (len(titles) + 1) + "|"]
    lines += ["| " + " | ".join([label] + cells) + " |" for label, cells in rows]
    return "\n".join(lines)


def after_of(case, name):
    return case["variants"].get(name, {}).get("after") or {}


def after_steps(after):
    """The step records among a variant's after-the-backups results."""
    return [(k, r) for k, r in after.items() if isinstance(r, dict) and "status" in r]


def status_cell(case, name):
    info = case["variants"].get(name)
    if info is None:
        return "skipped: " + case["skipped"].get(name, "not selected")
    failed = [r for r in info["records"] if r["status"] != "ok"]
    after = info.get("after") or {}
    bad_after = [k for k, r in after_steps(after) if r["status"] != "ok"]
    if after.get("error"):
        bad_after.append("after: " + one_line(after["error"], 60))
    if info["stopped"]:
        cell = "STOPPED: " + one_line(info["stopped"])
    elif failed:
        cell = f"{len(failed)} FAILED"
    else:
        cell = "ok"
    if bad_after:
        cell += "; FAILED: " + ", ".join(k.replace("_", " ") for k in bad_after)
    return cell


def ratio(a, b, digits=2):
    return f"{a / b:.{digits}f}×" if a is not None and b else "-"


def step_cell(rec, base=None, key=None):
    """'time · RSS' of a step ('key k: ' first when given), then its time as a
    ratio to base's."""
    if rec is None:
        return "-"
    head = f"{key} {rec[key]}: " if key else ""
    if rec["status"] != "ok":
        return f"{head}FAILED (rc {rec['rc']})"
    cell = f"{head}{secs(rec['wall_s'])} · {rss([rec])}"
    if base is not None and base.get("status") == "ok" and base is not rec:
        cell += f" · {ratio(rec['wall_s'], base['wall_s'])}"
    return cell


def sha_cell(after, key):
    """How many restores gave back the bytes backed up."""
    recs = [r for name, r in after_steps(after) if name.startswith("restore")]
    if not recs:
        return "-"
    failed = [r for r in recs if r["status"] != "ok"]
    checked = [r for r in recs if r["status"] == "ok" and r.get("sha256_ok") is not None]
    good = [r for r in checked if r["sha256_ok"]]
    cell = f"{len(good)} of {len(recs)}"
    bad = [f"{key} {r[key]}" for r in checked if not r["sha256_ok"]]
    if bad:
        cell += " (DIFFERS: " + ", ".join(bad) + ")"
    if failed:
        cell += f" ({len(failed)} failed)"
    unchecked = len(recs) - len(checked) - len(failed)
    if unchecked:
        cell += f" ({unchecked} not checked: no reference)"
    return cell


def stats_cell(after):
    st = after.get("stats")
    if not st:
        return "-"
    if "error" in st:
        return "FAILED: " + one_line(st["error"], 60)
    return (f"{st.get('delta_blobs')} deltas ({human(st.get('delta_stored'))} stored, "
            f"{human(st.get('delta_size'))} restored), {st.get('base_blobs')} bases "
            f"({human(st.get('base_stored'))}), longest chain {st.get('longest_chain')}")


def ranges(keys):
    """[0, 1, 2, 5, 7, 8] -> '0–2, 5, 7–8'."""
    out, keys = [], sorted(keys)
    i = 0
    while i < len(keys):
        j = i
        while j + 1 < len(keys) and keys[j + 1] == keys[j] + 1:
            j += 1
        out.append(str(keys[i]) if i == j else f"{keys[i]}–{keys[j]}")
        i = j + 1
    return ", ".join(out)


def spread_in(recs, extra):
    """Per-step additions with `extra` bytes spread evenly over them:
    'median · mean'."""
    if not recs or extra is None:
        return "-"
    values = [r["added"] + extra / len(recs) for r in recs]
    return f"{human(median(values))} · {human(mean(values))}"


def db_md(case, cfg):
    names = [n for n in DB_VARIANTS if n in case["variants"] or n in case["skipped"]]
    if not names:
        return []
    n = cfg["hours"]

    def row(label, fn):
        return (label, [fn(name) for name in names])

    first = lambda name: ok_records(case, name, True)   # noqa: E731
    later = lambda name: ok_records(case, name, False)  # noqa: E731
    after = lambda name: after_of(case, name)           # noqa: E731
    med_time = lambda name: median(r["wall_s"] for r in later(name))  # noqa: E731

    def forget_ok(m):
        f = after(m).get("forget")
        return f if f and f["status"] == "ok" else None

    rows = [
        row("hour 0 (full backup): added", lambda m: human(first(m)[0]["added"]) if first(m) else "-"),
        row("hour 0: time", lambda m: secs(first(m)[0]["wall_s"]) if first(m) else "-"),
        row(f"hours 1–{n}: median added per hour", lambda m: human(median(r["added"] for r in later(m)))),
        row(f"hours 1–{n}: mean added per hour", lambda m: human(mean(r["added"] for r in later(m)))),
        row(f"hours 1–{n} + prune: median · mean added per hour, prune's net change (du) spread in",
            lambda m: spread_in(later(m), forget_ok(m) and forget_ok(m)["added"])),
        row(f"hours 1–{n} + prune: median · mean added per hour, prune's writes (wchar) spread in",
            lambda m: spread_in(later(m), forget_ok(m) and forget_ok(m).get("wchar"))),
        row(f"hours 1–{n}: median time", lambda m: secs(med_time(m))),
        row(f"hours 1–{n}: median time / {DB_VARIANTS['strata-mysql']}",
            lambda m: ratio(med_time(m), med_time("strata-mysql"))),
        row(f"hours 0–{n}: max RSS", lambda m: rss(first(m) + later(m))),
        row("repository before forget", lambda m: human(max([r["repo_after"] for r in first(m) + later(m)], default=None))),
        row("backups ok", lambda m: f"{len(first(m) + later(m))} of {n + 1}"),
        row("status", lambda m: status_cell(case, m)),
    ]
    lines = ["## Database dumps", ""]
    if case.get("mariadb"):
        lines += [
            f"- {case['mariadb']}; table `{TABLE}` of {cfg['db_rows']} rows, loaded in "
            f"{case.get('load_seconds')} s",
            f"- dump size: {human(case.get('dump_bytes_skip_extended_insert'))} with "
            f"--skip-extended-insert (restic, borg, strata --command); "
            f"{human(case.get('dump_bytes_strata_mysql_style'))} with extended inserts "
            "(as strata --mysql dumps)",
            f"- each hour: {cfg['db_update'] * 100:g}% of the rows updated (column b), "
            f"{cfg['db_inserts']} inserted, {cfg['db_deletes']} deleted; hour h has the "
            f"snapshot time {START:%Y-%m-%d %H:%M} (local) + h hours",
        ]
    if case.get("error"):
        lines.append(f"- CASE STOPPED: {case['error']}")
    lines += ["- added = `du -sb` of the repository after minus before; time = the "
              "whole command, dump included; RSS = the backup tool (strata: max of it and "
              "the mariadb-dump it runs)",
              f"- \"prune's … spread in\": each of hours 1–{n} charged 1/{n} of what forget "
              "--prune changed in the repository (net `du`: negative when it freed more than "
              "it wrote) or of the bytes it wrote (wchar: repacked and re-based data, indexes)",
              "", md_table([DB_VARIANTS[m] for m in names], rows), ""]
    lines += db_after_md(case, cfg, names)
    # Every hour, for a look at the spread.
    hours = range(n + 1)
    per_hour = []
    for h in hours:
        cells = []
        for m in names:
            rec = next((r for r in case["variants"].get(m, {}).get("records", [])
                        if r["hour"] == h), None)
            cells.append("-" if rec is None else f"FAILED (rc {rec['rc']})"
                         if rec["status"] != "ok" else f"{human(rec['added'])} · {secs(rec['wall_s'])}")
        per_hour.append((f"hour {h}", cells))
    lines += ["Per hour: added · time", "", md_table([DB_VARIANTS[m] for m in names], per_hour), ""]
    return lines


def one_dump(case):
    """'One compressed dump': what hour 0 added to the strata-mysql repository."""
    recs = ok_records(case, "strata-mysql", True)
    return recs[0]["added"] if recs else None


def db_after_md(case, cfg, names):
    """The table of restores, forget and prune after the hours, and the
    issue's targets."""
    after = lambda name: after_of(case, name)  # noqa: E731
    if not any(after(m) for m in names):
        return []
    dump = one_dump(case)

    def row(label, fn):
        return (label, [fn(name) for name in names])

    def restore(m, name, key=None):
        a = after(m)
        return step_cell(a.get(name), a.get("restore_first"), key)

    def forget_change(m):
        f = after(m).get("forget")
        if not f or f["status"] != "ok":
            return step_cell(f)
        return f"{human(f['added'])} · {human(f.get('wchar'))}"

    def kept(m):
        a = after(m)
        if "kept" not in a:
            return "-"
        return (f"{len(a['kept'])} of {len(a['snapshots_before_prune'])}: hours "
                f"{ranges(a['kept'])}")

    keep = f"--keep-hourly {cfg['keep_hourly']} --keep-daily {cfg['keep_daily']}"
    rows = [
        row("restore first (hour 0): time · RSS", lambda m: restore(m, "restore_first")),
        row("restore newest: hour · time · RSS · vs first",
            lambda m: restore(m, "restore_newest", "hour")),
        row(f"forget {keep} --prune: time · RSS", lambda m: step_cell(after(m).get("forget"))),
        row("forget --prune: repository change (du) · bytes written (wchar)", forget_change),
        row("snapshots kept", kept),
        row("repository after prune", lambda m: human(after(m).get("repo_after_prune"))),
        row(f"repository after prune / one compressed dump ({human(dump)})",
            lambda m: ratio(after(m).get("repo_after_prune"), dump)),
        row("after prune: restore oldest kept: hour · time · RSS · vs first",
            lambda m: restore(m, "restore_oldest_kept", "hour")),
        row("after prune: restore newest: hour · time · RSS · vs first",
            lambda m: restore(m, "restore_newest_after_prune", "hour")),
        row("restores matching the sha256 of that hour's dump", lambda m: sha_cell(after(m), "hour")),
        row("`strata stats` after prune", lambda m: stats_cell(after(m))),
    ]
    lines = ["After the hours (MariaDB stopped): each restore writes the dump to /dev/null "
             "(`strata dump SNAPSHOT PATH`, `restic dump`, `borg extract --stdout`), "
             f"median of {cfg['restore_runs']} runs; "
             "\"vs first\" = its time / the first restore's; one compressed dump = what "
             "hour 0 added to the strata --mysql, format 1 repository; borg's prune is "
             "`borg prune` then `borg compact`",
             "", md_table([DB_VARIANTS[m] for m in names], rows), ""]
    lines += targets_md(case, cfg, dump)
    return lines


def targets_md(case, cfg, dump):
    """The delta issue's targets, for each strata variant with deltas."""
    n = cfg["hours"]
    lines = []
    base_time = median(r["wall_s"] for r in ok_records(case, "strata-mysql", False))
    for m in ("strata-delta", "strata-cmd"):
        later = ok_records(case, m, False)
        a = after_of(case, m)
        if not later or not a:
            continue
        f = a.get("forget") if (a.get("forget") or {}).get("status") == "ok" else None

        def verdict(value, limit, fmt, strict=False):
            if value is None:
                return "-"
            met = value < limit if strict else value <= limit
            return f"{fmt(value)} ({'met' if met else 'NOT MET'})"

        med = median(r["added"] for r in later)
        med_w = (median(r["added"] + f["wchar"] / len(later) for r in later)
                 if f and f.get("wchar") is not None else None)
        first = a.get("restore_first") if (a.get("restore_first") or {}).get("status") == "ok" else None

        def rest(name):
            rec = a.get(name)
            if not first or not rec or rec["status"] != "ok":
                return None
            return rec["wall_s"] / first["wall_s"]

        rss_values = [x for name, r in after_steps(a)
                      if name.startswith("restore") and r["status"] == "ok"
                      for x in r.get("max_rss_mib_runs", [r.get("max_rss_mib")]) if x is not None]
        peak = f"{max(rss_values):.0f} MiB" if rss_values else "-"
        repo = a.get("repo_after_prune")
        tm = median(r["wall_s"] for r in later)
        x = lambda v: f"{v:.2f}×"  # noqa: E731
        lines += [f"Targets of the delta issue, {DB_VARIANTS[m]} ({n} hour{'s' * (n != 1)}"
                  + ("" if n >= 48 else "; the issue's figure needs BENCH_HOURS=48") + "):", "",
                  f"- median added per hour ≤ 100 KB: {verdict(med, 100e3, human)}; with "
                  f"prune's writes spread in: {verdict(med_w, 100e3, human)}",
                  f"- repository after forget --prune < 3× one compressed dump: "
                  f"{verdict(repo / dump if repo and dump else None, 3, x, strict=True)}",
                  f"- restore ≤ 2× the first: newest {verdict(rest('restore_newest'), 2, x)}; "
                  f"after prune oldest kept {verdict(rest('restore_oldest_kept'), 2, x)}, "
                  f"newest {verdict(rest('restore_newest_after_prune'), 2, x)}; peak RSS of "
                  f"the restores {peak}",
                  f"- hourly backup time ≤ 1.5× without deltas: "
                  f"{verdict(tm / base_time if tm and base_time else None, 1.5, x)}", ""]
    return lines


def image_md(case, cfg):
    names = [n for n in IMAGE_VARIANTS if n in case["variants"] or n in case["skipped"]]
    if not names:
        return []
    k = cfg["image_rounds"] - 1

    def row(label, fn):
        return (label, [fn(name) for name in names])

    first = lambda name: ok_records(case, name, True)   # noqa: E731
    later = lambda name: ok_records(case, name, False)  # noqa: E731
    after = lambda name: after_of(case, name)           # noqa: E731
    med = lambda name, key: median(r.get(key) for r in later(name))  # noqa: E731

    def restore(m, name):
        a = after(m)
        return step_cell(a.get(name), a.get("restore_first"), "round" if name != "restore_first" else None)

    rows = [
        row("round 0 (full backup): added · time", lambda m: f"{human(first(m)[0]['added'])} · "
            f"{secs(first(m)[0]['wall_s'])}" if first(m) else "-"),
        row(f"rounds 1–{k}: median added per round", lambda m: human(med(m, "added"))),
        row(f"rounds 1–{k}: mean added per round", lambda m: human(mean(r["added"] for r in later(m)))),
        row(f"rounds 1–{k}: restic's median added / this", lambda m: ratio(med("restic", "added"), med(m, "added"), 1)),
        row(f"rounds 1–{k}: median time", lambda m: secs(med(m, "wall_s"))),
        row(f"rounds 1–{k}: median time / strata --delta off",
            lambda m: ratio(med(m, "wall_s"), med("strata-nodelta", "wall_s"))),
        row(f"rounds 0–{k}: max RSS", lambda m: rss(first(m) + later(m))),
        row("repository at the end", lambda m: human(max([r["repo_after"] for r in first(m) + later(m)], default=None))),
        row("restore round 0 (first): time · RSS", lambda m: restore(m, "restore_first")),
        row("restore newest: round · time · RSS · vs first", lambda m: restore(m, "restore_newest")),
        row("restores matching the image's sha256", lambda m: sha_cell(after(m), "round")),
        row("`strata stats` at the end", lambda m: stats_cell(after(m))),
        row("backups ok", lambda m: f"{len(first(m) + later(m))} of {k + 1}"),
        row("status", lambda m: status_cell(case, m)),
    ]
    lines = ["## Disk image", "",
             f"- `{IMAGE_FILE}`: {human(cfg['image_size'])} of random bytes; before each of "
             f"rounds 1–{k}, {cfg['image_writes']} random 4 KiB writes (aligned, random bytes, "
             "fsync); page cache not dropped",
             "- added = `du -sb` of the repository after minus before; time = the backup "
             "command; a restore writes the file to /dev/null (`strata dump`, `restic dump`, "
             f"`borg extract --stdout`), median of {cfg['restore_runs']} runs"]
    if case.get("error"):
        lines.append(f"- CASE STOPPED: {case['error']}")
    lines += ["", md_table([IMAGE_VARIANTS[m] for m in names], rows), ""]
    restic_added, strata_added = med("restic", "added"), med("strata", "added")
    if restic_added and strata_added:
        lines += [f"restic / strata (--delta auto), median added per round of rounds 1–{k}: "
                  f"{restic_added / strata_added:.1f}×", ""]
    per_round = []
    for r in range(k + 1):
        cells = []
        for m in names:
            rec = next((x for x in case["variants"].get(m, {}).get("records", [])
                        if x["round"] == r), None)
            cells.append("-" if rec is None else f"FAILED (rc {rec['rc']})"
                         if rec["status"] != "ok" else f"{human(rec['added'])} · {secs(rec['wall_s'])}")
        per_round.append((f"round {r}", cells))
    lines += ["Per round: added · time", "", md_table([IMAGE_VARIANTS[m] for m in names], per_round), ""]
    return lines


def grow_md(case, cfg):
    names = [n for n in GROW_VARIANTS if n in case["variants"] or n in case["skipped"]]
    if not names:
        return []
    k = cfg["grow_rounds"] - 1

    def row(label, fn):
        return (label, [fn(name) for name in names])

    first = lambda name: ok_records(case, name, True)   # noqa: E731
    later = lambda name: ok_records(case, name, False)  # noqa: E731
    med = lambda name, key: median(r.get(key) for r in later(name))  # noqa: E731

    def first_val(name, key, fmt):
        recs = first(name)
        return fmt(recs[0].get(key)) if recs else "-"

    rows = [
        row("round 0 (full backup): time", lambda m: first_val(m, "wall_s", secs)),
        row("round 0: read (rchar)", lambda m: first_val(m, "rchar", human)),
        row(f"rounds 1–{k}: median time", lambda m: secs(med(m, "wall_s"))),
        row(f"rounds 1–{k}: median read (rchar)", lambda m: human(med(m, "rchar"))),
        row(f"rounds 1–{k}: median read from disk (read_bytes)", lambda m: human(med(m, "read_bytes"))),
        row(f"rounds 1–{k}: median strata bytes_read", lambda m: human(med(m, "strata_bytes_read"))
            if m.startswith("strata") else "-"),
        row(f"rounds 1–{k}: median added to repository", lambda m: human(med(m, "added"))),
        row(f"rounds 0–{k}: max RSS", lambda m: rss(first(m) + later(m))),
        row("backups ok", lambda m: f"{len(first(m) + later(m))} of {k + 1}"),
        row("status", lambda m: status_cell(case, m)),
    ]
    lines = ["## Growing file", "",
             f"- `{GROW_FILE}`: {human(cfg['grow_size'])} of random bytes, "
             f"+{human(cfg['grow_step'])} before each of rounds 1–{k}; "
             f"page cache: {case.get('page_cache')}",
             "- rchar: bytes the tool and its children read (read() calls, cached or not; "
             "restic also reads back its temporary pack files); read_bytes: what they read "
             "from the disk (/proc/<pid>/io), including their own executable and libraries "
             "after the cache drop"]
    if case.get("error"):
        lines.append(f"- CASE STOPPED: {case['error']}")
    lines += ["", md_table([GROW_VARIANTS[m] for m in names], rows), ""]
    restic_read, restic_time = med("restic", "rchar"), med("restic", "wall_s")
    strata_read, strata_time = med("strata-append", "rchar"), med("strata-append", "wall_s")
    if restic_read and strata_read:
        lines += [f"restic / strata --append-only, medians of rounds 1–{k}: "
                  f"read {restic_read / strata_read:.1f}×, time {restic_time / strata_time:.1f}×", ""]
    else:
        lines += ["restic / strata --append-only: - (one of them has no successful "
                  "incremental round)", ""]
    return lines


def commands_md(results):
    """One example command per variant and case (the first one run)."""
    lines = ["## Commands", "", "```"]
    for case_name in CASES:
        for name, info in results.get(case_name, {}).get("variants", {}).items():
            if info["records"]:
                lines.append(f"{case_name} {name}: {info['records'][0]['command']}")
            for step in ("restore_first", "forget"):
                rec = (info.get("after") or {}).get(step)
                if rec:
                    lines.append(f"{case_name} {name} {step.replace('_', ' ')}: {rec['command']}")
    return lines + ["```", ""]


def problems_md(results):
    lines = []
    for case_name in CASES:
        for name, info in results.get(case_name, {}).get("variants", {}).items():
            failed = [r for r in info["records"] if r["status"] != "ok"]
            if info["stopped"] and not failed:   # failed at init
                lines += [f"### {case_name} {name}", "```", info["stopped"].rstrip(), "```"]
            for r in failed[:2]:                 # the first two failures are enough
                step = f"hour {r['hour']}" if "hour" in r else f"round {r['round']}"
                lines += [f"### {case_name} {name}, {step}: rc {r['rc']}", "```",
                          r.get("error", ""), "```"]
            after = info.get("after") or {}
            for step, r in after_steps(after):
                if r["status"] != "ok":
                    lines += [f"### {case_name} {name}, {step.replace('_', ' ')}: rc {r['rc']}",
                              "```", r.get("error", ""), "```"]
                elif r.get("sha256_ok") is False:
                    lines += [f"### {case_name} {name}, {step.replace('_', ' ')}: wrong data",
                              "```", f"sha256 {r.get('sha256')}, expected "
                              f"{r.get('sha256_expected')}", "```"]
            if after.get("error"):
                lines += [f"### {case_name} {name}, after the backups", "```",
                          after["error"], "```"]
            if "error" in (after.get("stats") or {}):
                lines += [f"### {case_name} {name}, stats", "```", after["stats"]["error"], "```"]
    return (["## Problems", ""] + lines) if lines else []


def render_md(results, cfg):
    m = results["machine"]
    lines = ["# strata streams benchmark", "",
             f"- command: `{results['command']}`",
             f"- run: {results['started']} .. {results['finished']}",
             f"- machine: {m['cpu_model']}, {m['nproc']} CPUs, {m['ram_gib']} GiB RAM, "
             f"kernel {m['kernel']}, {m['os']}, {m['filesystem']} file system"]
    seen = set()
    for case_name in CASES:
        for name, info in results.get(case_name, {}).get("variants", {}).items():
            if name not in seen:
                seen.add(name)
                lines.append(f"- {name.split('-')[0]} ({name}): {info['version']}")
    lines.append("")
    if "db" in results:
        lines += db_md(results["db"], cfg)
    if "grow" in results:
        lines += grow_md(results["grow"], cfg)
    if "image" in results:
        lines += image_md(results["image"], cfg)
    lines += commands_md(results) + problems_md(results)
    return "\n".join(lines).rstrip() + "\n"


def write_reports(results, cfg):
    bench_dir = cfg["bench_dir"]
    with open(os.path.join(bench_dir, "streams.json"), "w") as f:
        json.dump(results, f, indent=2)
    md = render_md(results, cfg)
    with open(os.path.join(bench_dir, "streams.md"), "w") as f:
        f.write(md)
    print()
    print(md)
    log(f"wrote {bench_dir}/streams.json and {bench_dir}/streams.md")


# ---------------------------------------------------------------------- main

def bench_command():
    knobs = [f"{k}={shlex.quote(os.environ[k])}" for k in KNOBS if k in os.environ]
    entry = os.environ.get("BENCH_ENTRY", "python3 bench/streams.py")
    return " ".join(knobs + [entry])


def on_sigterm(signum, frame):
    # Unwinds like Ctrl-C, so that the finally blocks stop MariaDB and the step.
    raise KeyboardInterrupt


def main():
    signal.signal(signal.SIGTERM, on_sigterm)
    cfg = settings()
    os.makedirs(cfg["bench_dir"], exist_ok=True)
    run_dir = os.path.join(cfg["bench_dir"], "run")
    shutil.rmtree(run_dir, ignore_errors=True)
    for sub in ("logs", "repos", "home"):
        os.makedirs(os.path.join(run_dir, sub))
    log(f"strata: {strata_binary()}")
    results = {"command": bench_command(),
               "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
               "machine": machine_info(cfg["bench_dir"]), "settings": cfg}
    if "db" in cfg["cases"]:
        run_db_case(cfg, run_dir, results)
    if "grow" in cfg["cases"]:
        run_grow_case(cfg, run_dir, results)
    if "image" in cfg["cases"]:
        run_image_case(cfg, run_dir, results)
    results["finished"] = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    if not cfg["keep"]:
        shutil.rmtree(os.path.join(run_dir, "repos"), ignore_errors=True)
    write_reports(results, cfg)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        log("interrupted")
        sys.exit(130)
