#!/usr/bin/env bash
# Runs every kiln test on a fresh machine: brings up the real daemons the end-to-end tests use
# (scripts/testenv.sh), then the unit and end-to-end suites. This is the README's test command
# and the only thing CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
# Nothing here reads the caller's terminal or pipe; rustc's target probe reads stdin and fails on
# whatever a caller left there.
exec </dev/null

# Downloads and build outputs live outside the clone so the next run on this machine reuses them.
export KILN_CACHE_DIR="${KILN_CACHE_DIR:-/var/cache/kiln}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$KILN_CACHE_DIR/cargo-target}"
mkdir -p "$KILN_CACHE_DIR" "$CARGO_TARGET_DIR"
# Cargo caches rustc's answers to its target probe here, failures included: one probe that once
# read junk from a caller's stdin would fail every later build. Re-probing costs milliseconds.
rm -f "$CARGO_TARGET_DIR/.rustc_info.json"

bash scripts/testenv.sh up
# shellcheck disable=SC1091
source "${KILN_TESTENV_DIR:-/run/kiln-testenv}/env"

# The test engines are kiln's own (state under $KILN_TESTENV_DIR): drop the build cache earlier
# runs left there so repeated runs on one machine do not fill its disk.
echo "--- clearing the test engines' build cache"
for host in "$KILN_TEST_ENGINE28_HOST" "$KILN_TEST_ENGINE28B_HOST" "$KILN_TEST_ENGINE20_HOST"; do
  "$KILN_TEST_DOCKER_CLI" -H "$host" builder prune -af >/dev/null
done

echo "--- building"
cargo build --workspace --locked --all-targets
echo "--- tests"
cargo test --workspace --locked -- --test-threads=2
