#!/usr/bin/env bash
# Times connection setup to a ready `Control` client with the remote driver, kiln against the
# reference docker-buildx, over a unix socket and over TLS on 127.0.0.1 (ratio = buildx / kiln:
# above 1 means kiln is faster; medians of N runs).
#
#   bash benches/remote.sh             # needs `scripts/testenv.sh up` to have run
#
# There is no standalone buildkitd here, so Engine 28's embedded BuildKit is exposed as a plain
# endpoint by a small python3 forwarder (started below, stopped on exit): per accepted
# connection it upgrades `POST /grpc` (h2c) on the engine and splices the bytes, terminating TLS
# itself on the TCP port (CA and server certificate made with openssl in the bench's temp dir).
# "Ready Control client" is `inspect --bootstrap --builder B`: connect, handshake, ListWorkers
# (and whatever else each tool asks for), print. Each tool has its own remote builder in its own
# private config. The forwarder is listening before any run, so buildx's retry of a refused
# connection never comes into play. The forwarder sets TCP_NODELAY (without it, Nagle and delayed
# ACKs add about 40 ms stalls to every TLS run, for both tools).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
source benches/lib.sh
N=${N:-30}

# CA and a server certificate for localhost/127.0.0.1.
C="$WORK/certs"; mkdir -p "$C"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj '/CN=kiln bench CA' \
  -keyout "$C/ca-key.pem" -out "$C/ca.pem" >/dev/null 2>&1
openssl req -newkey rsa:2048 -nodes -subj '/CN=localhost' \
  -keyout "$C/server-key.pem" -out "$C/server.csr" >/dev/null 2>&1
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > "$C/ext.cnf"
openssl x509 -req -in "$C/server.csr" -CA "$C/ca.pem" -CAkey "$C/ca-key.pem" -CAcreateserial \
  -days 2 -extfile "$C/ext.cnf" -out "$C/server-cert.pem" >/dev/null 2>&1

cat > "$WORK/forward.py" <<'PY'
import os, socket, ssl, sys, threading
from relay import pump
engine, unix_path, certs = sys.argv[1], sys.argv[2], sys.argv[3]
engine = engine[len("unix://"):]

def serve(client):
    up = socket.socket(socket.AF_UNIX)
    up.connect(engine)
    up.sendall(b"POST /grpc HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = up.recv(4096)
        if not d:
            client.close(); up.close(); return
        buf += d
    head, rest = buf.split(b"\r\n\r\n", 1)
    if not head.startswith(b"HTTP/1.1 101"):
        client.close(); up.close(); return
    if rest:
        client.sendall(rest)
    threading.Thread(target=pump, args=(up, client), daemon=True).start()
    pump(client, up)

def accept_loop(l, wrap=None):
    while True:
        c, _ = l.accept()
        if c.family != socket.AF_UNIX:
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        def run(c=c):
            try:
                if wrap:
                    c = wrap(c)
                serve(c)
            except (OSError, ssl.SSLError):
                c.close()
        threading.Thread(target=run, daemon=True).start()

u = socket.socket(socket.AF_UNIX); u.bind(unix_path); u.listen(64)
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("127.0.0.1", 0)); t.listen(64)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(os.path.join(certs, "server-cert.pem"), os.path.join(certs, "server-key.pem"))
ctx.set_alpn_protocols(["h2"])
threading.Thread(target=accept_loop, args=(t, lambda c: ctx.wrap_socket(c, server_side=True)), daemon=True).start()
print(t.getsockname()[1], flush=True)
accept_loop(u)
PY

SOCK="$WORK/buildkitd.sock"
coproc FWD { exec python3 "$WORK/forward.py" "$KILN_TEST_ENGINE28_HOST" "$SOCK" "$C"; }
# bash unsets FWD_PID when the coprocess ends; keep it for the trap.
# shellcheck disable=SC2269
FWD_PID=$FWD_PID
trap 'kill "$FWD_PID" 2>/dev/null; rm -rf "$WORK"' EXIT
read -r PORT <&"${FWD[0]}"

TLS_OPTS="cacert=$C/ca.pem,servername=localhost"
"$KILN" create --name bench-unix --driver remote "unix://$SOCK" >/dev/null
"$BUILDX" create --name bench-unix --driver remote "unix://$SOCK" >/dev/null
"$KILN" create --name bench-tls --driver remote --driver-opt "$TLS_OPTS" "tcp://127.0.0.1:$PORT" >/dev/null
"$BUILDX" create --name bench-tls --driver remote --driver-opt "$TLS_OPTS" "tcp://127.0.0.1:$PORT" >/dev/null
# Every builder must answer before anything is timed (a failing run would time an error).
for b in bench-unix bench-tls; do
  "$KILN" inspect --bootstrap --builder "$b" | grep -q 'Status: *running' || { echo "kiln: $b not running" >&2; exit 1; }
  "$BUILDX" inspect --bootstrap --builder "$b" | grep -q 'Status: *running' || { echo "buildx: $b not running" >&2; exit 1; }
done

header
k=$(time_cmd "$N" "$KILN" inspect --bootstrap --builder bench-unix)
b=$(time_cmd "$N" "$BUILDX" inspect --bootstrap --builder bench-unix)
row "remote, unix socket" "$k" "$b"
k=$(time_cmd "$N" "$KILN" inspect --bootstrap --builder bench-tls)
b=$(time_cmd "$N" "$BUILDX" inspect --bootstrap --builder bench-tls)
row "remote, TLS on 127.0.0.1" "$k" "$b"
