# Shared by the bench scripts: the test environment, a release kiln, a private state directory
# for both tools, and median timing helpers. Source it from a script's repository root.
# shellcheck shell=bash disable=SC1091
source "${KILN_TESTENV_DIR:-/run/kiln-testenv}/env"
export DOCKER_HOST="$KILN_TEST_ENGINE28_HOST"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/kiln/bench-target}"
if [ -z "${KILN:-}" ]; then
  cargo build --release --locked -p kiln
  KILN="$CARGO_TARGET_DIR/release/kiln"
fi
# shellcheck disable=SC2034 # used by the scripts that source this file
BUILDX="$KILN_TEST_BUILDX"
WORK=$(mktemp -d /var/tmp/kiln-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
export KILN_CONFIG="$WORK/kiln" BUILDX_CONFIG="$WORK/buildx" DOCKER_CONFIG="$WORK/docker"
mkdir -p "$KILN_CONFIG" "$BUILDX_CONFIG" "$DOCKER_CONFIG"

# For the scripts' python3 proxies, written next to them in $WORK (`from relay import pump`):
# pump(a, b) copies socket a into socket b until either side ends, then shuts both down.
cat > "$WORK/relay.py" <<'PY'
import socket

def pump(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
    except OSError:
        pass
    for s in (a, b):
        try: s.shutdown(socket.SHUT_RDWR)
        except OSError: pass
PY

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
# time_cmd N cmd... -> median seconds of N runs
time_cmd() {
  local n=$1; shift
  for _ in $(seq "$n"); do
    local s e; s=$(now); "$@" >/dev/null 2>&1; e=$(now)
    echo "$e - $s" | bc -l
  done | median
}
# row NAME KILN_SECONDS BUILDX_SECONDS: ratio above 1 means kiln is faster.
row() { printf '%-32s %10.4fs %10.4fs %8.2fx\n' "$1" "$2" "$3" "$(echo "$3 / $2" | bc -l)"; }
header() { printf '%-32s %11s %11s %9s\n' "benchmark" "kiln" "buildx" "ratio"; }
