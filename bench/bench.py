#!/usr/bin/env python3
"""Side-by-side backup benchmark: strata vs restic vs borg.

Normally started through bench/run.sh, which installs the tools and builds
strata first. Steps, for every available tool, on the same trees:

  phase A (corpus state A):  init, backup 1, backup 2 (nothing changed)
  change the tree once (state B, see corpus.mutate_tree)
  phase B (corpus state B):  backup 3, restore latest (+ verification)

Each timed step runs under `/usr/bin/time -v` (wall time, peak RSS, CPU
time); after each backup the repository size is measured with `du -sb`.
Results go to $BENCH_DIR/results.json and $BENCH_DIR/results.md.

Settings (environment):
  BENCH_DIR           work directory            (/var/tmp/strata-bench)
  BENCH_SCALE         corpus size multiplier    (1.0: ~50k files, ~1.5 GB)
  BENCH_TOOLS         tools to run              (strata,restic,borg)
  BENCH_DROP_CACHES   drop page cache per step  (1)
  BENCH_STEP_TIMEOUT  seconds per step          (7200)
  BENCH_KEEP          keep repos and restores   (0)
  STRATA_BIN          strata binary             (target/release/strata)
  STRATA_SKIP_REASON  set by run.sh when strata could not be built
"""

import datetime
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # keep bench/ free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import corpus  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PASSWORD = "bench"
BORG_COMPRESSION = "zstd,3"
KNOBS = ["BENCH_DIR", "BENCH_SCALE", "BENCH_TOOLS", "BENCH_DROP_CACHES",
         "BENCH_STEP_TIMEOUT", "BENCH_KEEP", "STRATA_BIN"]
STEP_TITLES = {
    "init": "init",
    "backup1": "backup 1 (initial)",
    "backup2": "backup 2 (unchanged)",
    "backup3": "backup 3 (after change)",
    "restore": "restore latest",
}
TAIL_LINES = 15


def log(msg):
    print(f"[bench] {msg}", flush=True)


def sh(argv, **kw):
    """Run a short helper command, return its stdout (stripped)."""
    return subprocess.run(argv, capture_output=True, text=True, **kw).stdout.strip()


def tail(path, n=TAIL_LINES):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


def du_bytes(path):
    if not os.path.exists(path):
        return None
    out = sh(["du", "-sb", path])
    return int(out.split()[0]) if out else None


# ------------------------------------------------------------------- tools

class Cmd:
    """One command line with its working directory."""

    def __init__(self, argv, cwd=None):
        self.argv, self.cwd = [str(a) for a in argv], cwd

    def text(self, env_prefix=""):
        cd = f"cd {shlex.quote(self.cwd)} && " if self.cwd else ""
        return cd + env_prefix + shlex.join(self.argv)


class Tool:
    """A backup tool: how to call it for each step, in its own HOME so that
    caches and config start empty and can be measured."""

    name = ""
    warn_codes = ()     # exit codes meaning "done, with warnings"
    secret_env = {}

    def __init__(self, binary, run_dir):
        self.bin = binary
        self.repo = os.path.join(run_dir, "repos", self.name)
        self.home = os.path.join(run_dir, "home", self.name)
        self.notes = []

    def env(self):
        env = dict(os.environ)
        env.update(HOME=self.home,
                   XDG_CACHE_HOME=os.path.join(self.home, ".cache"),
                   XDG_CONFIG_HOME=os.path.join(self.home, ".config"))
        env.update(self.secret_env)
        return env

    def env_prefix(self):
        return "".join(f"{k}={v} " for k, v in self.secret_env.items())

    def version(self):
        try:
            out = sh(self.version_argv(), env=self.env(), timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return "unknown"
        return out.splitlines()[0] if out else "unknown"

    def unavailable_reason(self):
        """None if the tool can run; otherwise why not."""
        if not self.bin or not os.access(self.bin, os.X_OK):
            return f"binary not found ({self.bin or self.name})"
        return None

    def init_cmds(self):
        """Alternatives to try in order until one succeeds."""
        raise NotImplementedError

    def after_init(self, cmd):
        """Untimed inspection of the fresh repository (adds notes)."""


class Strata(Tool):
    name = "strata"
    secret_env = {"STRATA_PASSWORD": PASSWORD}

    def unavailable_reason(self):
        reason = os.environ.get("STRATA_SKIP_REASON") or super().unavailable_reason()
        if reason:
            return reason
        helptext = sh([self.bin, "--help"], env=self.env())
        if "backup" not in helptext or "restore" not in helptext:
            return "strata --help lists no backup/restore commands yet"
        return None

    def version_argv(self):
        return [self.bin, "--version"]

    def init_cmds(self):
        return [Cmd([self.bin, "-r", self.repo, "init"])]

    def backup(self, src, n):
        return Cmd([self.bin, "-r", self.repo, "backup", src])

    def restore(self, target, n):
        return Cmd([self.bin, "-r", self.repo, "restore", "latest", "--target", target])

    def snapshots(self):
        return Cmd([self.bin, "-r", self.repo, "snapshots"])


class Restic(Tool):
    name = "restic"
    warn_codes = (3,)   # snapshot made, some source files unreadable
    secret_env = {"RESTIC_PASSWORD": PASSWORD}

    def version_argv(self):
        return [self.bin, "version"]

    def init_cmds(self):
        return [Cmd([self.bin, "-r", self.repo, "init"])]

    def after_init(self, cmd):
        out = sh([self.bin, "-r", self.repo, "cat", "config"], env=self.env())
        try:
            version = json.loads(out).get("version")
        except ValueError:
            version = "unknown"
        self.notes.append(f"repository format {version}, default options: "
                          "compression auto")

    def backup(self, src, n):
        return Cmd([self.bin, "-r", self.repo, "backup", src])

    def restore(self, target, n):
        return Cmd([self.bin, "-r", self.repo, "restore", "latest", "--target", target])

    def snapshots(self):
        return Cmd([self.bin, "-r", self.repo, "snapshots"])


class Borg(Tool):
    name = "borg"
    warn_codes = (1,)   # archive made, with warnings
    secret_env = {"BORG_PASSPHRASE": PASSWORD}

    def env(self):
        env = super().env()
        env.update(BORG_BASE_DIR=self.home,
                   BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK="yes",
                   BORG_RELOCATED_REPO_ACCESS_IS_OK="yes")
        return env

    def version_argv(self):
        return [self.bin, "--version"]

    def init_cmds(self):
        return [Cmd([self.bin, "init", f"--encryption={mode}", self.repo])
                for mode in ("repokey-blake2", "repokey")]

    def after_init(self, cmd):
        self.notes.append(f"{cmd.argv[2]}, compression {BORG_COMPRESSION}")

    def backup(self, src, n):
        return Cmd([self.bin, "create", "--compression", BORG_COMPRESSION,
                    f"{self.repo}::snap-{n}", src])

    def restore(self, target, n):
        return Cmd([self.bin, "extract", f"{self.repo}::snap-{n}"], cwd=target)

    def snapshots(self):
        return Cmd([self.bin, "list", self.repo])


def make_tools(names, run_dir):
    strata_bin = os.environ.get("STRATA_BIN",
                                os.path.join(REPO_ROOT, "target", "release", "strata"))
    known = {"strata": (Strata, strata_bin),
             "restic": (Restic, shutil.which("restic")),
             "borg": (Borg, shutil.which("borg"))}
    tools = []
    for name in names:
        if name not in known:
            raise SystemExit(f"unknown tool in BENCH_TOOLS: {name}")
        cls, binary = known[name]
        tools.append(cls(binary, run_dir))
    return tools


# ------------------------------------------------------------------- steps

class PageCache:
    """Drops the page cache before each timed step, where permitted."""

    def __init__(self, enabled):
        self.enabled = enabled
        self.possible = enabled
        self.note = "not attempted (BENCH_DROP_CACHES=0): warm cache"

    def drop(self):
        os.sync()
        if not self.possible:
            return False
        try:
            with open("/proc/sys/vm/drop_caches", "w") as f:
                f.write("3\n")
            self.note = "dropped before every timed step (cold cache)"
            return True
        except OSError as e:
            self.possible = False
            self.note = f"could not drop ({e.strerror}): warm cache"
            return False


def parse_time_v(path):
    """Peak RSS (MiB) and CPU seconds from a `/usr/bin/time -v` report."""
    text = open(path).read() if os.path.exists(path) else ""

    def num(label):
        m = re.search(re.escape(label) + r":\s*([\d.]+)", text)
        return float(m.group(1)) if m else None

    rss_kb = num("Maximum resident set size (kbytes)")
    user, system = num("User time (seconds)"), num("System time (seconds)")
    return {"max_rss_mib": round(rss_kb / 1024, 1) if rss_kb is not None else None,
            "cpu_s": round(user + system, 2) if user is not None and system is not None else None}


def run_timed(cmd, env, log_base, timeout):
    """Run cmd under /usr/bin/time -v; returns (rc, wall seconds, time report)."""
    argv = ["/usr/bin/time", "-v", "-o", log_base + ".time", "--"] + cmd.argv
    with open(log_base + ".out", "wb") as out, open(log_base + ".err", "wb") as err:
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, env=env, cwd=cmd.cwd, stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
            rc = "timeout"
        wall = time.monotonic() - t0
    return rc, round(wall, 3), parse_time_v(log_base + ".time")


def run_step(tool, step, cmd, ctx):
    """One timed step; returns its result record."""
    dropped = ctx["cache"].drop()
    log_base = os.path.join(ctx["logs"], f"{tool.name}-{step}")
    log(f"{tool.name}: {STEP_TITLES.get(step, step)}")
    rc, wall, usage = run_timed(cmd, tool.env(), log_base, ctx["timeout"])
    status = "ok" if rc == 0 else "warning" if rc in tool.warn_codes else "FAILED"
    rec = {"step": step, "command": cmd.text(tool.env_prefix()), "rc": rc,
           "status": status, "wall_s": wall, **usage, "cache_dropped": dropped,
           "log": log_base + ".{out,err,time}"}
    if status != "ok":
        rec["stderr_tail"] = tail(log_base + ".err")
        log(f"{tool.name}: {step} {status} (rc {rc})")
    if step.startswith("backup"):
        rec["repo_bytes"] = du_bytes(tool.repo)
        rec["cache_bytes"] = du_bytes(tool.home)
    return rec


def run_init(tool, ctx):
    """Try each init form until one succeeds (borg: blake2, then plain)."""
    os.makedirs(tool.home, exist_ok=True)
    for cmd in tool.init_cmds():
        shutil.rmtree(tool.repo, ignore_errors=True)
        rec = run_step(tool, "init", cmd, ctx)
        if rec["status"] != "FAILED":
            tool.after_init(cmd)
            return rec
    return rec


# ----------------------------------------------------------------- restore

def find_restored_root(target, data_dir):
    """Where the tree landed: under its absolute path, its name, or at top."""
    top = sorted(os.listdir(data_dir))
    for cand in (os.path.join(target, data_dir.lstrip("/")),
                 os.path.join(target, os.path.basename(data_dir)), target):
        if os.path.isdir(cand) and sorted(os.listdir(cand)) == top:
            return cand
    return None


def verify_restore(target, data_dir):
    """Untimed check of the restored tree: file count and `diff -rq`."""
    root = find_restored_root(target, data_dir)
    if root is None:
        found = sorted(os.listdir(target))[:10]
        return {"ok": False, "summary": "restored tree not found under target",
                "diff_head": [f"top-level entries in {target}: {found}"]}
    files = sum(len(f) for _, _, f in os.walk(root))
    proc = subprocess.run(["diff", "-rq", "--no-dereference", data_dir, root],
                          capture_output=True, text=True, errors="replace")
    diffs = proc.stdout.splitlines()
    ok = proc.returncode == 0
    summary = f"identical, {files} entries" if ok else \
        f"{len(diffs)} differences (diff rc {proc.returncode}), {files} entries"
    return {"ok": ok, "summary": summary, "restored_entries": files,
            "root": root, "diff_head": diffs[:10] + proc.stderr.splitlines()[:5]}


# --------------------------------------------------------------- benchmark

def phase_a(tool, data_dir, ctx):
    recs = [run_init(tool, ctx)]
    if recs[0]["status"] == "FAILED":
        return recs
    for n in (1, 2):
        recs.append(run_step(tool, f"backup{n}", tool.backup(data_dir, n), ctx))
    return recs


def phase_b(tool, data_dir, ctx, recs):
    """Backup 3, then restore the newest snapshot into an empty directory."""
    if recs[0]["status"] == "FAILED":
        return recs
    recs.append(run_step(tool, "backup3", tool.backup(data_dir, 3), ctx))
    done = [int(r["step"][-1]) for r in recs
            if r["step"].startswith("backup") and r["status"] != "FAILED"]
    target = os.path.join(ctx["run"], "restore", tool.name)
    os.makedirs(target)
    rec = run_step(tool, "restore", tool.restore(target, max(done or [3])), ctx)
    rec["verify"] = verify_restore(target, data_dir)
    log(f"{tool.name}: restore check: {rec['verify']['summary']}")
    recs.append(rec)
    if not ctx["keep"]:
        shutil.rmtree(target, ignore_errors=True)
    return recs


def list_snapshots(tool):
    """Untimed: the tool's own snapshot listing, as a sanity check."""
    cmd = tool.snapshots()
    proc = subprocess.run(cmd.argv, env=tool.env(), capture_output=True, text=True,
                          errors="replace")
    return {"command": cmd.text(tool.env_prefix()), "rc": proc.returncode,
            "output_tail": "\n".join((proc.stdout + proc.stderr).splitlines()[-10:])}


def prepare_corpus(bench_dir, scale):
    """Reuse the cached corpus (state A) if it matches; else generate it."""
    path, meta = os.path.join(bench_dir, "corpus"), os.path.join(bench_dir, "corpus.json")
    want = {"version": corpus.CORPUS_VERSION, "seed": corpus.SEED, "scale": scale}
    if os.path.isdir(path) and os.path.exists(meta):
        manifest = json.load(open(meta))
        if all(manifest.get(k) == v for k, v in want.items()):
            log(f"using cached corpus {path} (generated in {manifest['generation_seconds']} s)")
            return path, dict(manifest, cached=True)
        log("cached corpus has other parameters: regenerating")
    tmp = path + ".tmp"
    for p in (path, tmp):
        shutil.rmtree(p, ignore_errors=True)
    manifest = corpus.generate(tmp, scale)
    os.rename(tmp, path)
    with open(meta, "w") as f:
        json.dump(manifest, f, indent=2)
    return path, dict(manifest, cached=False)


def machine_info(bench_dir):
    cpu = re.search(r"model name\s*:\s*(.*)", open("/proc/cpuinfo").read())
    mem = re.search(r"MemTotal:\s*(\d+)", open("/proc/meminfo").read())
    distro = re.search(r'PRETTY_NAME="?([^"\n]*)', open("/etc/os-release").read())
    return {"nproc": os.cpu_count(),
            "ram_gib": round(int(mem.group(1)) / 2**20, 1) if mem else None,
            "cpu_model": cpu.group(1).strip() if cpu else "unknown",
            "kernel": os.uname().release,
            "os": distro.group(1) if distro else "unknown",
            "filesystem": sh(["df", "--output=fstype", bench_dir]).splitlines()[-1]}


def bench_command():
    knobs = [f"{k}={shlex.quote(os.environ[k])}" for k in KNOBS if k in os.environ]
    entry = os.environ.get("BENCH_ENTRY", "python3 bench/bench.py")
    return " ".join(knobs + [entry])


def settings():
    env = os.environ.get
    return {"bench_dir": os.path.abspath(env("BENCH_DIR", "/var/tmp/strata-bench")),
            "scale": float(env("BENCH_SCALE", "1.0")),
            "tools": [t for t in env("BENCH_TOOLS", "strata,restic,borg").split(",") if t],
            "drop_caches": env("BENCH_DROP_CACHES", "1") != "0",
            "timeout": float(env("BENCH_STEP_TIMEOUT", "7200")),
            "keep": env("BENCH_KEEP", "0") != "0"}


def select_tools(cfg, run_dir):
    """Tools that can run, and (name -> reason) for those skipped."""
    ready, skipped = [], {}
    for tool in make_tools(cfg["tools"], run_dir):
        reason = tool.unavailable_reason()
        if reason:
            log(f"skipping {tool.name}: {reason}")
            skipped[tool.name] = reason
        else:
            ready.append(tool)
    return ready, skipped


def fresh_run_dir(bench_dir, corpus_dir):
    """Empty run directory with a private copy of corpus state A in data/."""
    run = os.path.join(bench_dir, "run")
    shutil.rmtree(run, ignore_errors=True)
    for sub in ("logs", "repos", "home", "restore"):
        os.makedirs(os.path.join(run, sub))
    data = os.path.join(run, "data")
    log(f"copying corpus to {data}")
    subprocess.run(["cp", "-a", corpus_dir, data], check=True)
    return run, data


def main():
    cfg = settings()
    os.makedirs(cfg["bench_dir"], exist_ok=True)
    started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    corpus_dir, manifest = prepare_corpus(cfg["bench_dir"], cfg["scale"])
    run, data = fresh_run_dir(cfg["bench_dir"], corpus_dir)
    tools, skipped = select_tools(cfg, run)
    ctx = {"cache": PageCache(cfg["drop_caches"]), "logs": os.path.join(run, "logs"),
           "run": run, "timeout": cfg["timeout"], "keep": cfg["keep"]}

    steps = {t.name: phase_a(t, data, ctx) for t in tools}
    log("changing the tree (state A -> state B)")
    change = corpus.mutate_tree(data, cfg["scale"])
    change["state_b"] = corpus.describe(data)
    for t in tools:
        phase_b(t, data, ctx, steps[t.name])

    results = {
        "command": bench_command(), "started": started,
        "finished": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine_info(cfg["bench_dir"]), "page_cache": ctx["cache"].note,
        "settings": cfg, "corpus": dict(manifest, path=corpus_dir, backed_up_as=data),
        "change": change,
        "tools": {t.name: {"version": t.version(), "notes": t.notes,
                           "snapshots": list_snapshots(t)} for t in tools},
        "skipped": skipped, "steps": steps,
    }
    if not cfg["keep"]:
        shutil.rmtree(os.path.join(run, "repos"), ignore_errors=True)
    write_reports(cfg["bench_dir"], results)


# ----------------------------------------------------------------- reports

def human(n):
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024


def secs(s):
    return "-" if s is None else f"{s:.2f} s" if s < 100 else f"{s:.0f} s"


def main_cell(rec):
    """'time · RSS · repo size' for the main table."""
    if rec is None:
        return "-"
    if rec["status"] == "FAILED":
        return f"FAILED (rc {rec['rc']})"
    parts = [secs(rec["wall_s"]),
             f"{rec['max_rss_mib']:.0f} MiB" if rec["max_rss_mib"] is not None else "-"]
    if "repo_bytes" in rec:
        parts.append(human(rec["repo_bytes"]))
    return " · ".join(parts) + (" (warning)" if rec["status"] == "warning" else "")


def detail_cell(rec):
    """'CPU time · cache size' for the second table."""
    if rec is None or rec["status"] == "FAILED":
        return "-"
    cell = f"cpu {secs(rec['cpu_s'])}"
    return cell + (f" · cache {human(rec['cache_bytes'])}" if "cache_bytes" in rec else "")


def table(results, cell, extra_rows=()):
    names = list(results["steps"])
    lines = ["| step | " + " | ".join(names) + " |",
             "|---" * (len(names) + 1) + "|"]
    for step, title in STEP_TITLES.items():
        row = [cell(next((r for r in results["steps"][n] if r["step"] == step), None))
               for n in names]
        lines.append(f"| {title} | " + " | ".join(row) + " |")
    for title, fn in extra_rows:
        lines.append(f"| {title} | " + " | ".join(fn(n) for n in names) + " |")
    return "\n".join(lines)


def restore_check(results, name):
    rec = next((r for r in results["steps"][name] if r["step"] == "restore"), None)
    if not rec or "verify" not in rec:
        return "-"
    v = rec["verify"]
    return v["summary"] if v["ok"] else "FAILED: " + v["summary"]


def header_md(r):
    m, c, ch = r["machine"], r["corpus"], r["change"]
    lines = [
        "# strata benchmark",
        "",
        f"- command: `{r['command']}`",
        f"- run: {r['started']} .. {r['finished']}",
        f"- machine: {m['cpu_model']}, {m['nproc']} CPUs, {m['ram_gib']} GiB RAM, "
        f"kernel {m['kernel']}, {m['os']}, {m['filesystem']} file system",
        f"- page cache: {r['page_cache']}",
        f"- corpus (state A): {c['files']} files, {c['symlinks']} symlinks, {c['dirs']} dirs, "
        f"{human(c['bytes'])}; scale {c['scale']}, seed {c['seed']}, fingerprint "
        f"{c['fingerprint']}; generated in {c['generation_seconds']} s"
        + (" (cached)" if c["cached"] else ""),
        f"- change to state B: {ch['edited_in_place']} files edited in place "
        f"({ch['edit_kinds']}), {ch['deleted']} deleted, {ch['added']} added, "
        f"directory moved: {ch['renamed_dir']}; state B: {ch['state_b']['files']} files, "
        f"{human(ch['state_b']['bytes'])}",
    ]
    for name, t in r["tools"].items():
        notes = "; ".join(t["notes"])
        lines.append(f"- {name}: {t['version']}" + (f" ({notes})" if notes else ""))
    for name, reason in r["skipped"].items():
        lines.append(f"- {name}: SKIPPED: {reason}")
    return lines


def commands_md(r):
    lines = ["## Commands", ""]
    for name, recs in r["steps"].items():
        lines += [f"{name}:", "```"] + [f"{x['step']}: {x['command']}" for x in recs] + ["```"]
    return lines


def failures_md(r):
    lines = []
    for name, recs in r["steps"].items():
        for x in recs:
            if x["status"] != "ok":
                lines += [f"### {name} {x['step']}: {x['status']} (rc {x['rc']})",
                          "```", x.get("stderr_tail", "").rstrip(), "```"]
            if not x.get("verify", {"ok": True})["ok"]:
                lines += [f"### {name} restore check", "```"] + x["verify"]["diff_head"] + ["```"]
    return (["## Problems", ""] + lines) if lines else []


def render_md(r):
    lines = header_md(r) + [
        "", "## Wall time · peak RSS · repository size after the step (du -sb)", "",
        table(r, main_cell, [("restore check", lambda n: restore_check(r, n))]),
        "", "## CPU time (user+sys) · local cache size after the step", "",
        table(r, detail_cell), ""]
    lines += commands_md(r) + [""] + failures_md(r)
    return "\n".join(lines).rstrip() + "\n"


def write_reports(bench_dir, results):
    with open(os.path.join(bench_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    md = render_md(results)
    with open(os.path.join(bench_dir, "results.md"), "w") as f:
        f.write(md)
    print()
    print(md)
    log(f"wrote {bench_dir}/results.json and {bench_dir}/results.md")


if __name__ == "__main__":
    main()
