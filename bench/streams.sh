#!/usr/bin/env bash
# Benchmark strata, restic and borg on streams and big files: hourly database
# dumps from a private MariaDB server (then restores, forget --prune and
# restores again), a large file that grows between backups, and a disk image
# with small random writes between backups.
#
#   bench/streams.sh                          # full run (600k rows x 12 hours,
#                                             #   2 GiB file x 5, 1 GiB image x 6)
#   BENCH_HOURS=48 BENCH_CASES=db bench/streams.sh   # the delta issue's figures
#   BENCH_QUICK=1 bench/streams.sh            # smoke run
#   BENCH_TOOLS=restic,borg bench/streams.sh  # a subset of the tools
#   BENCH_CASES=grow bench/streams.sh         # a subset of the cases (db,grow,image)
#
# Installs restic, borgbackup, GNU time and MariaDB (server and client; only
# for the db case) from Debian's packages if missing, then runs
# bench/streams.py (see its header for all settings). strata is not built
# here: it uses $STRATA_BIN, else target/release/strata, else
# target/debug/strata. Results are written to $BENCH_DIR/streams.{json,md}.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
export BENCH_DIR=${BENCH_DIR:-/var/tmp/strata-bench-streams}
tools=",${BENCH_TOOLS:-strata,restic,borg},"
cases=",${BENCH_CASES:-db,grow,image},"

log() { echo "[streams] $*"; }

wants() { [[ $tools == *",$1,"* ]]; }

# A program on PATH or in /usr/sbin (where mariadbd is).
have() { command -v "$1" >/dev/null || [ -x "/usr/sbin/$1" ]; }

# Debian packages for what the selected tools and cases need and is missing.
install_deps() {
    local missing=()
    [ -x /usr/bin/time ] || missing+=(time)
    if wants restic && ! have restic; then missing+=(restic); fi
    if wants borg && ! have borg; then missing+=(borgbackup); fi
    if [[ $cases == *",db,"* ]]; then
        if ! have mariadbd || ! have mariadb-install-db; then missing+=(mariadb-server); fi
        if ! have mariadb || ! have mariadb-dump || ! have mariadb-admin; then
            missing+=(mariadb-client)
        fi
    fi
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

mkdir -p "$BENCH_DIR"
install_deps
export BENCH_ENTRY="$0"
exec python3 "$here/streams.py"
