#!/usr/bin/env bash
# Times `kiln bake` against the reference `docker buildx bake` and prints ratios
# (buildx time / kiln time: above 1 means kiln is faster; medians of N runs).
#
#   bash benches/bake.sh               # needs `scripts/testenv.sh up` to have run
#
# Rows:
#  - `bake --print` of a generated HCL file with 1,000 targets (10 matrix blocks of 99 targets
#    plus 10 base targets, using inherits, variables, user functions and built-ins); both tools'
#    JSON is checked to be identical (order-insensitively) once before timing.
#  - building 10 targets that share one 200 MB context (random data) on Engine 28, exported with
#    `type=cacheonly` so no export dominates; each run uses a fresh copy of the context (new
#    directory name, copy not timed) so neither tool reuses an earlier upload.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
source benches/lib.sh
PRINT_RUNS="${PRINT_RUNS:-10}" BUILD_RUNS="${BUILD_RUNS:-3}"

# --- (a) bake --print on 1,000 generated targets -------------------------------------------
mkdir -p "$WORK/print"
python3 - > "$WORK/print/docker-bake.hcl" <<'PY'
oses = ", ".join(f'"os{i}"' for i in range(9))
vers = ", ".join(f'"{i}"' for i in range(11))
print('''variable "REGISTRY" {
  default = "registry.example.com/team"
}
variable "VERSION" {
  default = "1.2.3"
}
function "tag" {
  params = [name, os, ver]
  result = "${REGISTRY}/${lower(name)}:${ver}-${upper(os)}"
}
function "labelset" {
  params = [name]
  variadic_params = extra
  result = merge({"org.example.name" = name, "org.example.sha" = substr(sha1(name), 0, 12)},
                 {for i, e in extra : "org.example.x${i}" => e})
}
target "common" {
  dockerfile = "Dockerfile"
  args = {
    VERSION = VERSION
    BUILD_DATE = formatdate("YYYY-MM-DD", "2026-01-02T03:04:05Z")
  }
  labels = labelset("common", "a", "b")
  platforms = ["linux/amd64"]
}''')
names = []
for b in range(10):
    print(f'''target "base-{b}" {{
  inherits = ["common"]
  context = "ctx-{b}"
  args = {{
    BASE = "base-{b}"
    ID = format("%03d", {b})
  }}
  cache-from = ["type=registry,ref=${{REGISTRY}}/cache:base-{b}"]
}}
target "svc-{b}" {{
  name = "svc-{b}-${{os}}-${{replace(ver, ".", "_")}}"
  inherits = ["base-{b}"]
  matrix = {{
    os = [{oses}]
    ver = [{vers}]
  }}
  tags = [tag("Svc-{b}", os, ver), join("-", ["${{REGISTRY}}/svc-{b}", os, ver, "latest"])]
  labels = labelset("svc-{b}", os, ver)
  args = {{
    OS = os
    VER = ver
    KEY = md5("${{os}}${{ver}}")
  }}
}}''')
    names += [f'"base-{b}"', f'"svc-{b}"']
print('group "default" {\n  targets = [' + ", ".join(names) + ']\n}')
PY
cd "$WORK/print"
"$KILN" bake --print >"$WORK/kiln.json" 2>"$WORK/kiln.err" || { cat "$WORK/kiln.err" >&2; exit 1; }
"$BUILDX" bake --print >"$WORK/buildx.json" 2>"$WORK/buildx.err" || { cat "$WORK/buildx.err" >&2; exit 1; }
python3 - "$WORK/kiln.json" "$WORK/buildx.json" <<'PY'
import json, sys
def norm(v):  # order-insensitive: buildx orders matrix expansions by Go map iteration
    if isinstance(v, dict): return {k: norm(x) for k, x in v.items()}
    if isinstance(v, list): return sorted((norm(x) for x in v), key=lambda x: json.dumps(x, sort_keys=True))
    return v
k, b = (json.load(open(p)) for p in sys.argv[1:])
if norm(k) != norm(b): sys.exit("bake --print: kiln and buildx JSON differ")
if len(b["target"]) != 1000: sys.exit(f"expected 1000 targets, got {len(b['target'])}")
PY
cd - >/dev/null

header
k=$(cd "$WORK/print" && time_cmd "$PRINT_RUNS" "$KILN" bake --print)
b=$(cd "$WORK/print" && time_cmd "$PRINT_RUNS" "$BUILDX" bake --print)
row "bake --print, 1,000 targets" "$k" "$b"

# --- (b) 10 targets sharing one 200 MB context on Engine 28 --------------------------------
mkdir -p "$WORK/shared"
head -c $((200*1024*1024)) /dev/urandom > "$WORK/shared/big"
{
  printf 'group "default" {\n  targets = [%s]\n}\n' "$(seq -s, -f '"t%g"' 0 9)"
  for i in $(seq 0 9); do
    printf 'target "t%d" {\n  context = "."\n  dockerfile-inline = "FROM scratch\\nCOPY big /t%d\\n"\n  output = ["type=cacheonly"]\n}\n' "$i" "$i"
  done
} > "$WORK/shared/docker-bake.hcl"
# fresh_bake tool -> seconds for one bake in a fresh copy of the context (copy not timed)
fresh_bake() {
  local dir s e; dir="$WORK/run-$RANDOM$RANDOM"; cp -a "$WORK/shared" "$dir"
  s=$(now)
  if [ "$1" = kiln ]; then (cd "$dir" && "$KILN" bake --progress=quiet) >/dev/null 2>&1
  else (cd "$dir" && "$BUILDX" bake --progress=quiet) >/dev/null 2>&1; fi || { echo "$1 bake failed" >&2; exit 1; }
  e=$(now); rm -rf "$dir"
  echo "$e - $s" | bc -l
}
k=$(for _ in $(seq "$BUILD_RUNS"); do fresh_bake kiln; done | median)
b=$(for _ in $(seq "$BUILD_RUNS"); do fresh_bake buildx; done | median)
row "bake 10 targets, 200 MB context" "$k" "$b"
