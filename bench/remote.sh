#!/usr/bin/env bash
# Benchmark strata and restic against the same S3 (moto) and SFTP (OpenSSH)
# servers on loopback: a first backup and a full restore of one corpus each.
#
#   bench/remote.sh                      # the bench corpus (bench/run.sh makes it)
#   BENCH_CORPUS=/some/dir bench/remote.sh
#   BENCH_SERVERS=sftp bench/remote.sh   # one server only
#
# Prints a table of wall-clock seconds and peak RSS; the servers are
# started by scripts/servers.sh and stopped at the end. Each tool runs as a
# user would: with its local cache (empty before the backup, which fills
# it), and once more without it (`--no-cache`, STRATA_NO_CACHE=1) for a
# restore on a machine that never saw the repository. The page cache is not
# dropped (the corpus is read warm by both tools alike).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
corpus=${BENCH_CORPUS:-/var/tmp/strata-bench/corpus}
work=${BENCH_DIR:-/var/tmp/strata-bench}/remote
strata=${STRATA_BIN:-$root/target/release/strata}
[ -d "$corpus" ] || { echo "no corpus at $corpus: run bench/run.sh first or set BENCH_CORPUS" >&2; exit 1; }
command -v restic >/dev/null || { apt-get update -qq && apt-get install -y -qq restic >/dev/null; }
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
[ -x "$strata" ] || (cd "$root" && cargo build --release -p strata)

# shellcheck source=scripts/servers.sh
source "$root/scripts/servers.sh"
trap stop_test_servers EXIT
rm -rf "$work" && mkdir -p "$work"
# ext4 scans recently deleted inodes when creating files for a while after
# a large delete, which would slow whichever restore comes first.
sync && sleep 31
export STRATA_PASSWORD=bench RESTIC_PASSWORD=bench
export STRATA_CACHE_DIR=$work/strata-cache RESTIC_CACHE_DIR=$work/restic-cache

# "seconds max-rss-MiB" of a command
timed() {
    /usr/bin/time -f "%e %M" -o "$work/time" "$@" >"$work/out.log" 2>&1 || {
        tail -5 "$work/out.log" >&2
        return 1
    }
    awk '{printf "%s %.0f", $1, $2 / 1024}' "$work/time"
}

state=${STRATA_TEST_STATE:-${TMPDIR:-/tmp}/strata-test-servers}
sftp_port=$(awk '/^Port/ {print $2}' "$state/sshd_config")
restic_sftp=(-o "sftp.command=ssh -p $sftp_port -i $state/client_key -o IdentitiesOnly=yes -o UserKnownHostsFile=$state/known_hosts -o BatchMode=yes $(id -un)@127.0.0.1 -s sftp")
s3_base=${STRATA_TEST_S3#s3:}
# the SFTP server's files outlive the servers
rm -rf "$state/sftp/bench-strata" "$state/sftp/bench-restic"

printf "| server | tool | first backup s | backup RSS MiB | restore s | restore RSS MiB | restore without cache s |\n|---|---|---|---|---|---|---|\n"
for server in ${BENCH_SERVERS:-s3 sftp}; do
    for tool in strata restic; do
        # Targets are kept until the end, for the reason above.
        target="$work/restore-$server-$tool"
        if [ "$tool" = strata ]; then
            if [ "$server" = s3 ]; then repo="$STRATA_TEST_S3/bench-strata"; else repo="$STRATA_TEST_SFTP/bench-strata"; fi
            "$strata" -r "$repo" init -q
            b=$(timed "$strata" -r "$repo" backup -q "$corpus")
            r=$(timed "$strata" -r "$repo" restore latest --target "$target")
            c=$(STRATA_NO_CACHE=1 timed "$strata" -r "$repo" restore latest --target "$target-cold")
        else
            if [ "$server" = s3 ]; then
                repo="s3:$s3_base/bench-restic"; extra=()
            else
                repo="sftp:$(id -un)@127.0.0.1:$state/sftp/bench-restic"; extra=("${restic_sftp[@]}")
            fi
            restic -r "$repo" "${extra[@]}" init -q
            b=$(timed restic -r "$repo" "${extra[@]}" backup -q "$corpus")
            r=$(timed restic -r "$repo" "${extra[@]}" restore latest --target "$target")
            c=$(timed restic -r "$repo" "${extra[@]}" --no-cache restore latest --target "$target-cold")
        fi
        read -r bs bm <<<"$b"
        read -r rs rm_ <<<"$r"
        read -r cs _ <<<"$c"
        printf "| %s | %s | %s | %s | %s | %s | %s |\n" "$server" "$tool" "$bs" "$bm" "$rs" "$rm_" "$cs"
    done
done
