#!/usr/bin/env bash
# Run the whole test suite the way CI does: formatting, lints, every test.
# Works on a fresh Debian machine with the Rust toolchain: it installs and
# starts the servers the remote-storage and database-dump tests use (moto for
# S3 and OpenSSH for SFTP on loopback, MariaDB and PostgreSQL on Unix sockets
# only; see scripts/servers.sh) and stops them after.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== test servers (S3: moto, SFTP: OpenSSH on 127.0.0.1; MariaDB, PostgreSQL on Unix sockets)"
# Set before starting: when one server fails to start, the ones started
# before it are stopped too.
trap stop_test_servers EXIT
# shellcheck source=scripts/servers.sh
source scripts/servers.sh
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
