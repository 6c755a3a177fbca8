#!/usr/bin/env bash
# Run the whole test suite the way CI does: formatting, lints, every test.
# Works on a fresh Debian machine with the Rust toolchain: it installs and
# starts, on loopback only, the servers the remote-storage tests use (moto
# for S3, OpenSSH for SFTP; see scripts/servers.sh) and stops them after.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== test servers (S3: moto, SFTP: OpenSSH) on 127.0.0.1"
# shellcheck source=scripts/servers.sh
source scripts/servers.sh
trap stop_test_servers EXIT
export STRATA_REQUIRE_SERVERS=1

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

echo "== cargo doc (the library's documented API builds without broken links)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet

echo "== cargo test"
cargo test --workspace --all-targets
cargo test --workspace --doc
