#!/usr/bin/env bash
# Times `imagetools create` of a 4-platform index, kiln against the reference docker-buildx
# (ratio = buildx / kiln: above 1 means kiln is faster; medians of N runs), and counts the blob
# bytes each tool uploads for the merge (a merge inside one registry should mount, uploading 0).
#
#   bash benches/imagetools.sh          # needs `scripts/testenv.sh up` to have run
#
# Four single-platform images (linux/amd64, arm64, arm/v7, 386; `FROM scratch` + one COPY, so no
# emulation; each pushed with its provenance attestation, so each source is an index of two
# manifests) are pushed once to the test registry. Every timed run merges them into a fresh
# repository, so each run checks, mounts and puts everything anew (nothing is already there).
# Uploaded bytes are counted by a python3 proxy in front of the registry (request bodies sent to
# `/blobs/uploads/`), through which one extra run of each tool goes; the timed runs go direct.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
source benches/lib.sh
N=${N:-15}
REG="$KILN_TEST_REGISTRY"
SRC="$REG/kiln-bench/itools-src-$$"

CTX="$WORK/ctx"; mkdir -p "$CTX"
printf 'FROM scratch\nCOPY file /file\n' > "$CTX/Dockerfile"
PLATFORMS=(linux/amd64 linux/arm64 linux/arm/v7 linux/386)
SOURCES=()
for p in "${PLATFORMS[@]}"; do
  tag="${p//\//-}"
  head -c 1048576 /dev/urandom > "$CTX/file"
  "$KILN" build --progress=quiet --push --platform "$p" -t "$SRC:$tag" "$CTX" >/dev/null
  SOURCES+=("$SRC:$tag")
done

cat > "$WORK/count.py" <<'PY'
# Forwards HTTP/1.1 to the registry, counting request body bytes sent to blob upload URLs.
import socket, sys, threading
from relay import pump
upstream = sys.argv[1].split(":")
count_file = sys.argv[2]
lock = threading.Lock()
total = [0]

def serve(c):
    up = socket.create_connection((upstream[0], int(upstream[1])))
    threading.Thread(target=pump, args=(up, c), daemon=True).start()
    f = c.makefile("rb")
    try:
        while True:
            line = f.readline()
            if not line:
                break
            head = [line]
            while True:
                h = f.readline()
                head.append(h)
                if h in (b"\r\n", b""):
                    break
            method, path = line.split()[0], line.split()[1]
            hdrs = {k.strip().lower(): v.strip() for k, _, v in (h.decode().partition(":") for h in head[1:-1])}
            body = b""
            if "chunked" in hdrs.get("transfer-encoding", ""):
                while True:
                    n = int(f.readline().split(b";")[0], 16)
                    chunk = f.read(n + 2)
                    if n == 0:
                        break
                    body += chunk[:n]
            else:
                body = f.read(int(hdrs.get("content-length", "0")))
            if b"/blobs/uploads/" in path and method in (b"PATCH", b"PUT", b"POST"):
                with lock:
                    total[0] += len(body)
                    open(count_file, "w").write(str(total[0]))
            out = [head[0]] + [h for h in head[1:-1]
                               if h.split(b":")[0].strip().lower() not in (b"content-length", b"transfer-encoding")]
            if body or method in (b"PUT", b"POST", b"PATCH"):
                out.append(b"Content-Length: %d\r\n" % len(body))
            up.sendall(b"".join(out) + b"\r\n" + body)
    except (OSError, ValueError):
        pass
    finally:
        try: up.shutdown(socket.SHUT_RDWR)
        except OSError: pass

l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("127.0.0.1", 0)); l.listen(64)
print(l.getsockname()[1], flush=True)
while True:
    c, _ = l.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
PY
coproc COUNT { exec python3 "$WORK/count.py" "$REG" "$WORK/uploaded"; }
# bash unsets COUNT_PID when the coprocess ends; keep it for the trap.
# shellcheck disable=SC2269
COUNT_PID=$COUNT_PID
trap 'kill "$COUNT_PID" 2>/dev/null; rm -rf "$WORK"' EXIT
read -r PORT <&"${COUNT[0]}"

# uploaded_by TOOL: blob bytes TOOL uploads merging the sources (read through the proxy) into a
# fresh repository behind the proxy.
uploaded_by() {
  local tool=$1 before after srcs=()
  before=$(cat "$WORK/uploaded" 2>/dev/null || echo 0)
  for s in "${SOURCES[@]}"; do srcs+=("127.0.0.1:$PORT/${s#"$REG"/}"); done
  "$tool" imagetools create -t "127.0.0.1:$PORT/kiln-bench/itools-count-$$-$RANDOM:merged" "${srcs[@]}" >/dev/null 2>&1
  after=$(cat "$WORK/uploaded" 2>/dev/null || echo 0)
  echo $((after - before))
}

# Both tools must produce the same index before anything is timed.
k_doc=$("$KILN" imagetools create --dry-run "${SOURCES[@]}")
b_doc=$("$BUILDX" imagetools create --dry-run "${SOURCES[@]}")
[ "$k_doc" = "$b_doc" ] || { echo "kiln and buildx disagree on the merged index" >&2; exit 1; }

run=0
merge_once() {
  run=$((run + 1))
  "$1" imagetools create -t "$REG/kiln-bench/itools-dst-$$-$2-$run:merged" "${SOURCES[@]}" >/dev/null 2>&1
}
timed() {
  local s e
  s=$(now); merge_once "$1" "$2"; e=$(now)
  echo "$e - $s" | bc -l
}
ks=(); bs=()
for _ in $(seq "$N"); do
  ks+=("$(timed "$KILN" kiln)")
  bs+=("$(timed "$BUILDX" buildx)")
done
k=$(printf '%s\n' "${ks[@]}" | median)
b=$(printf '%s\n' "${bs[@]}" | median)

header
row "imagetools create, 4 platforms" "$k" "$b"
printf '%-32s %10s  %10s\n' "blob bytes uploaded" "$(uploaded_by "$KILN")" "$(uploaded_by "$BUILDX")"
