#!/usr/bin/env bash
# Times kiln against the reference docker-buildx on the same engine and prints ratios
# (buildx time / kiln time: above 1 means kiln is faster).
#
#   bash benches/compare.sh            # needs `scripts/testenv.sh up` to have run
#
# Rows: CLI startup (`version`), a build whose context holds 20,000 small files, a build whose
# context holds one 1 GiB file, and a no-change rebuild. Each build row uses a fresh copy of its
# context (new directory name) so neither tool can reuse an earlier upload; medians of N runs.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
source benches/lib.sh
header

k=$(time_cmd 50 "$KILN" version); b=$(time_cmd 50 "$BUILDX" version); row "version (startup)" "$k" "$b"

# 20,000 small files.
mkdir -p "$WORK/small/d"
printf 'FROM scratch\nCOPY . /ctx\n' > "$WORK/small/Dockerfile"
for i in $(seq 0 199); do mkdir -p "$WORK/small/d/$i"; for j in $(seq 0 99); do echo "$i-$j" > "$WORK/small/d/$i/$j"; done; done
fresh_build() { # tool template
  local dir; dir="$WORK/run-$RANDOM$RANDOM"; cp -a "$2" "$dir"
  if [ "$1" = kiln ]; then "$KILN" build --progress=quiet -o type=cacheonly "$dir"; else "$BUILDX" build --progress=quiet -o type=cacheonly "$dir"; fi
  rm -rf "$dir"
}
k=$(time_cmd 3 fresh_build kiln "$WORK/small"); b=$(time_cmd 3 fresh_build buildx "$WORK/small"); row "20k-file context" "$k" "$b"

# One 1 GiB file (random data, so nothing compresses it away).
mkdir -p "$WORK/big"
printf 'FROM scratch\nCOPY big /big\n' > "$WORK/big/Dockerfile"
head -c $((1024*1024*1024)) /dev/urandom > "$WORK/big/big"
k=$(time_cmd 3 fresh_build kiln "$WORK/big"); b=$(time_cmd 3 fresh_build buildx "$WORK/big"); row "1 GiB-file context" "$k" "$b"
rm -rf "$WORK/big"

# No-change rebuild of the same directory (everything cached).
"$KILN" build --progress=quiet -o type=cacheonly "$WORK/small" >/dev/null 2>&1
"$BUILDX" build --progress=quiet -o type=cacheonly "$WORK/small" >/dev/null 2>&1
k=$(time_cmd 5 "$KILN" build --progress=quiet -o type=cacheonly "$WORK/small")
b=$(time_cmd 5 "$BUILDX" build --progress=quiet -o type=cacheonly "$WORK/small")
row "no-change rebuild" "$k" "$b"
