#!/usr/bin/env bash
# Runs every kiln test on a fresh machine: brings up the real daemons the end-to-end tests use
# (scripts/testenv.sh), then the unit and end-to-end suites. This is the README's test command
# and the only thing CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
# On some machines (CI's sandbox among them) /dev/null is a plain file: every `>/dev/null` appends
# to it, and every reader gets that back. rustc's target probe reads its program from a null stdin,
# so the build-cache IDs `docker builder prune` printed "to /dev/null" once failed the build as Rust
# source. Put the real device back; where devices can't be made, at least start from an empty file.
if [[ ! -c /dev/null ]]; then
  if mknod -m 0666 /dev/null.kiln c 1 3 2>/dev/null && mv -f /dev/null.kiln /dev/null; then
    echo "test.sh: /dev/null was a plain file; replaced it with the null device" >&2
  else
    rm -f /dev/null.kiln
    { : >/dev/null; } 2>/dev/null || true
    echo "test.sh: /dev/null is a plain file and can't be replaced; emptied it" >&2
  fi
fi
# Nothing here reads the caller's terminal or pipe.
exec </dev/null

# Downloads and build outputs live outside the clone so the next run on this machine reuses them.
export KILN_CACHE_DIR="${KILN_CACHE_DIR:-/var/cache/kiln}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$KILN_CACHE_DIR/cargo-target}"
mkdir -p "$KILN_CACHE_DIR" "$CARGO_TARGET_DIR"
# Cargo caches rustc's answers to its target probe here; drop any answer a junk-filled /dev/null
# gave an earlier run. Re-probing costs milliseconds.
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

# Where /dev/null stayed a plain file, empty it of what was written there before cargo probes rustc.
empty_devnull() { [[ -c /dev/null ]] || { : >/dev/null; } 2>/dev/null || true; }
empty_devnull
echo "--- building"
cargo build --workspace --locked --all-targets
echo "--- tests"
empty_devnull
cargo test --workspace --locked -- --test-threads=2
