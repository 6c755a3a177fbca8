#!/usr/bin/env bash
# Run the whole test suite the way CI does: formatting, lints, every test.
# Works on a fresh machine with the Rust toolchain; installs nothing else
# yet because the local-storage tests need no servers.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

echo "== cargo doc (the library's documented API builds without broken links)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet

echo "== cargo test"
cargo test --workspace --all-targets
cargo test --workspace --doc
