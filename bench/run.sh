#!/usr/bin/env bash
# Benchmark strata side by side with restic and borg.
#
#   bench/run.sh                         # full run, corpus of about 1.5 GB
#   BENCH_SCALE=0.05 bench/run.sh        # quick run
#   BENCH_TOOLS=restic,borg bench/run.sh # a subset of the tools
#
# Installs restic, borgbackup and GNU time from Debian's packages if missing,
# builds strata (release) if its binary is missing or older than the sources
# (unless STRATA_BIN names a binary to use),
# then runs bench/bench.py (see its header for all settings). Results are
# written to $BENCH_DIR/results.{json,md}.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
export BENCH_DIR=${BENCH_DIR:-/var/tmp/strata-bench}
tools=",${BENCH_TOOLS:-strata,restic,borg},"

log() { echo "[run] $*"; }

wants() { [[ $tools == *",$1,"* ]]; }

# Debian packages for the tools that are selected and missing.
install_deps() {
    local missing=()
    [ -x /usr/bin/time ] || missing+=(time)
    if wants restic && ! command -v restic >/dev/null; then missing+=(restic); fi
    if wants borg && ! command -v borg >/dev/null; then missing+=(borgbackup); fi
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "missing packages (${missing[*]}) and not root: install them first" >&2
        exit 1
    fi
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
        >"$BENCH_DIR/apt.log" 2>&1; then
        tail -n 20 "$BENCH_DIR/apt.log" >&2
        exit 1
    fi
}

# True if target/release/strata is missing or any source is newer.
strata_stale() {
    local bin=$root/target/release/strata
    [ -x "$bin" ] || return 0
    [ -n "$(find "$root/crates" "$root/Cargo.toml" "$root/Cargo.lock" \
        -newer "$bin" -type f -print -quit)" ]
}

# Build strata if needed; on failure strata is skipped, not the benchmark.
build_strata() {
    strata_stale || return 0
    command -v cargo >/dev/null || export PATH="$HOME/.cargo/bin:$PATH"
    log "building strata (release); log: $BENCH_DIR/build.log"
    if ! (cd "$root" && cargo build --release -p strata) >"$BENCH_DIR/build.log" 2>&1; then
        tail -n 20 "$BENCH_DIR/build.log" >&2
        export STRATA_SKIP_REASON="cargo build --release -p strata failed (see $BENCH_DIR/build.log)"
    fi
}

mkdir -p "$BENCH_DIR"
install_deps
# A binary given in STRATA_BIN is used as it is.
if wants strata && [ -z "${STRATA_BIN:-}" ]; then build_strata; fi
export BENCH_ENTRY="$0"
exec python3 "$here/bench.py"
