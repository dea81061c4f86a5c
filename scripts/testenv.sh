#!/usr/bin/env bash
# Brings up the real daemons kiln's end-to-end tests run against:
#   - Docker Engine 28 (Debian testing, unpacked, never installed) on its own containerd 2.x,
#     with the containerd image store;
#   - Docker Engine 20.10 (Debian 12 package) on its own containerd 1.6, classic image store;
#   - two OCI registries on 127.0.0.1 (5000 without auth, 5001 with htpasswd basic auth);
#   - arm64 emulation through qemu-user-static + binfmt_misc;
#   - busybox base images (amd64 + arm64) in both engines and in the registry, built from
#     Debian's busybox-static because nothing can be pulled from Docker Hub;
#   - the reference docker-buildx and a docker CLI >= 28 under $KILN_TESTENV_DIR/bin.
#
# A second Engine 28 ("engine28b", same packages, own containerd, data, socket and bridge) gives
# the multi-node tests two distinct BuildKit daemons (distinct worker IDs and caches).
#
# Usage: scripts/testenv.sh [up|down|env|status]
#   up    (default) idempotent: reuses running daemons, cached downloads and imported images
#   down  stops every daemon this script started (state and cache are kept)
#   env   prints the path of the sourceable env file that `up` writes
#
# Knobs: KILN_CACHE_DIR (downloads, default /var/cache/kiln), KILN_TESTENV_DIR (state,
# default /run/kiln-testenv), KILN_TESTENV_REFRESH=1 (re-download Debian testing packages),
# KILN_TESTENV_TIMEOUT (seconds to wait for each daemon, default 90).
set -euo pipefail

CACHE=${KILN_CACHE_DIR:-/var/cache/kiln}
DIR=${KILN_TESTENV_DIR:-/run/kiln-testenv}
TIMEOUT=${KILN_TESTENV_TIMEOUT:-90}
ENV_FILE=$DIR/env

# Unpacked Debian testing tree (dockerd 28, containerd 2.x, buildx, docker CLI).
FORKY=$CACHE/forky-root
FORKY_PKGS=(docker.io containerd docker-buildx docker-cli)

# Everything the tests or this script call, from Debian 12 (installed with apt).
# containerd/tini are docker.io dependencies, listed so a partial install gets repaired.
BOOKWORM_PKGS=(runc docker.io containerd tini docker-registry busybox-static qemu-user-static
  skopeo umoci iproute2 apache2-utils openssh-client protobuf-compiler curl jq ca-certificates)

AUTH_USER=kiln
AUTH_PASSWORD=kiln-test-password
REG_PORT=5000
AUTH_REG_PORT=5001

# Own bridges and subnets: two dockerd on one machine otherwise fight over docker0.
# default-address-pools are split too so user-defined networks of the two engines never overlap.
BR28=kiln28br0 BR28_CIDR=10.228.0.1/24 POOL28=10.128.0.0/16
BR20=kiln20br0 BR20_CIDR=10.220.0.1/24 POOL20=10.120.0.0/16
BR28B=kiln28bbr0 BR28B_CIDR=10.229.0.1/24 POOL28B=10.129.0.0/16

C28=$DIR/containerd28 C20=$DIR/containerd20 E28=$DIR/engine28 E20=$DIR/engine20
C28B=$DIR/containerd28b E28B=$DIR/engine28b
C28_SOCK=$C28/containerd.sock C20_SOCK=$C20/containerd.sock C28B_SOCK=$C28B/containerd.sock
E28_SOCK=$E28/docker.sock E20_SOCK=$E20/docker.sock E28B_SOCK=$E28B/docker.sock
# engine28b also listens on TCP with mutual TLS (as dind in CI): server certs in $E28B_TLS,
# the client's ca.pem/cert.pem/key.pem (a DOCKER_CERT_PATH) in $E28B_TLS/client.
E28B_TLS_PORT=2376 E28B_TLS=$E28B/tls
PIDS=$DIR/pids

# Base PATH for the daemons, independent of the caller's PATH (which may hold other dockers).
SYS_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

log() { printf '[testenv] %s\n' "$*" >&2; }
die() { printf '[testenv] ERROR: %s\n' "$*" >&2; exit 1; }

export DEBIAN_FRONTEND=noninteractive

# ---------------------------------------------------------------------------------------------
# apt helpers
# ---------------------------------------------------------------------------------------------

# Index lists of the private (download-only) apt setups live in the cache too, so a warm cache
# needs no network at all. pkgcache files are disabled so the private runs never overwrite the
# system's binary cache.
APT_PRIVATE_OPTS=(-o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=
  -o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false
  -o Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false
  -o Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false
  -o Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled=false
  -o Acquire::Languages=none)

# First URIs: value of the machine's own Debian sources: never hard-code a mirror host.
debian_uri() {
  local f=/etc/apt/sources.list.d/debian.sources uri
  [[ -r $f ]] || die "$f not found: cannot derive the Debian mirror"
  uri=$(awk '/^URIs:/ {print $2; exit}' "$f")
  [[ -n $uri ]] || die "no URIs: line in $f"
  printf '%s\n' "$uri"
}

pkg_installed() {
  [[ $(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true) == installed ]]
}

install_bookworm_packages() {
  local missing=() p
  for p in "${BOOKWORM_PKGS[@]}"; do pkg_installed "$p" || missing+=("$p"); done
  if ((${#missing[@]} == 0)); then return 0; fi
  log "installing from Debian 12: ${missing[*]}"
  mkdir -p "$CACHE/apt-archives/partial"
  # Keep apt's .debs in our cache (the machine's docker-clean hook only wipes the default
  # archive folder) so a reinstall on this machine needs no download.
  local opts=(-o "Dir::Cache::archives=$CACHE/apt-archives" -o APT::Keep-Downloaded-Packages=true
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
  apt-get "${opts[@]}" -qq update
  # No init system runs here: a package's postinst must not try to start docker/containerd/the
  # registry. policy-rc.d exit 101 tells invoke-rc.d "not allowed"; deb-systemd-invoke does
  # nothing without /run/systemd/system. Only add one if the machine has none.
  local policy_added=
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
    policy_added=1
  fi
  local rc=0
  apt-get "${opts[@]}" -y -qq --no-install-recommends install "${missing[@]}" >"$CACHE/apt-install.log" 2>&1 || rc=$?
  [[ -n $policy_added ]] && rm -f /usr/sbin/policy-rc.d
  if ((rc != 0)); then tail -n 40 "$CACHE/apt-install.log" >&2; die "apt-get install failed"; fi
  for p in "${BOOKWORM_PKGS[@]}"; do pkg_installed "$p" || die "package $p still not installed"; done
}

# Newest cached .deb of a package in a folder (empty if none).
cached_deb() { # dir pkg [arch]
  local d=$1 p=$2 a=${3:-*}
  compgen -G "$d/${p}_*_${a}.deb" >/dev/null || return 0
  printf '%s\n' "$d/${p}_"*"_${a}.deb" | sort -V | tail -n 1
}

# Debian testing packages: download only (into the cache), then dpkg -x. Never installed: the
# machine stays a bookworm machine and the two engines' binaries can't clash.
fetch_forky() {
  local debs=$CACHE/debs/forky need=${KILN_TESTENV_REFRESH:-} p
  mkdir -p "$debs"
  for p in "${FORKY_PKGS[@]}"; do [[ -n $(cached_deb "$debs" "$p" amd64) ]] || need=1; done
  if [[ -n $need ]]; then
    log "downloading from Debian testing: ${FORKY_PKGS[*]}"
    local a=$CACHE/apt/forky
    mkdir -p "$a/sources" "$a/lists/partial"
    printf 'Types: deb\nURIs: %s\nSuites: forky\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      "$(debian_uri)" >"$a/sources/forky.sources"
    local o=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$a/sources"
      -o "Dir::State::Lists=$a/lists" "${APT_PRIVATE_OPTS[@]}")
    apt-get "${o[@]}" -qq update
    # Drop older cached versions so the unpacked tree is always the newest download.
    for p in "${FORKY_PKGS[@]}"; do rm -f "$debs/${p}_"*.deb; done
    (cd "$debs" && apt-get "${o[@]}" -qq download "${FORKY_PKGS[@]}" 2>&1 | grep -v "_apt" >&2 || true)
    for p in "${FORKY_PKGS[@]}"; do [[ -n $(cached_deb "$debs" "$p" amd64) ]] || die "download of $p from testing failed"; done
  fi
  # Re-extract only when the set of .debs changed (marker = their names).
  local want have=
  want=$(for p in "${FORKY_PKGS[@]}"; do basename "$(cached_deb "$debs" "$p" amd64)"; done)
  [[ -f $FORKY/.kiln-debs ]] && have=$(cat "$FORKY/.kiln-debs")
  if [[ $want != "$have" ]]; then
    log "unpacking Debian testing packages into $FORKY"
    rm -rf "$FORKY.tmp" && mkdir -p "$FORKY.tmp"
    for p in "${FORKY_PKGS[@]}"; do dpkg -x "$(cached_deb "$debs" "$p" amd64)" "$FORKY.tmp"; done
    # Testing's runc needs glibc 2.38 (bookworm has 2.36): make sure none is found in the tree,
    # so the daemons and shims fall through to bookworm's /usr/sbin/runc on PATH.
    find "$FORKY.tmp" -name runc \( -type f -o -type l \) -delete
    # docker-init points at tini-static of a package we don't unpack: use bookworm's tini.
    if [[ -L $FORKY.tmp/usr/bin/docker-init ]]; then ln -sfn /usr/bin/tini-static "$FORKY.tmp/usr/bin/docker-init"; fi
    printf '%s\n' "$want" >"$FORKY.tmp/.kiln-debs"
    rm -rf "$FORKY" && mv "$FORKY.tmp" "$FORKY"
  fi
  local b
  for b in usr/sbin/dockerd usr/bin/containerd usr/bin/containerd-shim-runc-v2 usr/bin/ctr \
    usr/libexec/docker/cli-plugins/docker-buildx usr/bin/docker; do
    [[ -x $FORKY/$b ]] || die "missing $FORKY/$b after unpacking"
  done
}

# busybox-static for one architecture from Debian 12, downloaded with a private apt state whose
# architecture is that one (so arm64 needs no dpkg --add-architecture on this machine).
fetch_busybox_deb() { # arch -> prints the .deb path
  local arch=$1 debs=$CACHE/debs/busybox deb
  mkdir -p "$debs"
  deb=$(cached_deb "$debs" busybox-static "$arch")
  if [[ -z $deb ]]; then
    log "downloading busybox-static ($arch)"
    local a=$CACHE/apt/bookworm-$arch
    mkdir -p "$a/lists/partial"
    local o=(-o "APT::Architecture=$arch" -o "APT::Architectures=$arch" -o "Dir::State::Lists=$a/lists"
      "${APT_PRIVATE_OPTS[@]}")
    apt-get "${o[@]}" -qq update
    (cd "$debs" && apt-get "${o[@]}" -qq download "busybox-static:$arch" 2>&1 | grep -v "_apt" >&2 || true)
    deb=$(cached_deb "$debs" busybox-static "$arch")
    [[ -n $deb ]] || die "download of busybox-static:$arch failed"
  fi
  printf '%s\n' "$deb"
}

# ---------------------------------------------------------------------------------------------
# busybox base images
# ---------------------------------------------------------------------------------------------
# Built reproducibly (sorted tar, mtime 0, gzip -n), so the same .debs always give the same
# digests and "already imported?" is a digest comparison. Outputs, all in $CACHE/busybox/out:
#   oci/                     OCI layout: tag latest = index(amd64, arm64); tags amd64, arm64
#   engine28.tar             OCI archive: busybox:latest = the index (both platforms), and
#                            busybox:amd64 / busybox:arm64 = the single-platform manifests
#   engine20.tar             docker-save archive (manifest.json): busybox:latest and
#                            busybox:amd64 = amd64, busybox:arm64 = arm64. Engine 20.10 can't
#                            load OCI archives, and its store holds one platform per tag, so a
#                            `--platform linux/arm64` build there needs `FROM busybox:arm64`
#   digests                  shell vars INDEX_DIGEST, AMD64_CONFIG, ... for the checks
BB=$CACHE/busybox
BB_OUT=$BB/out

sha() { sha256sum "$1" | cut -d' ' -f1; }

# put FILE into the layout's blob store, print its hex digest
add_blob() {
  local h
  h=$(sha "$1")
  mv -f "$1" "$BB_OUT.tmp/oci/blobs/sha256/$h"
  printf '%s\n' "$h"
}

build_busybox_images() {
  local deb_amd64 deb_arm64 want have=
  deb_amd64=$(fetch_busybox_deb amd64)
  deb_arm64=$(fetch_busybox_deb arm64)
  want="$(basename "$deb_amd64") $(basename "$deb_arm64") v2"
  [[ -f $BB_OUT/.kiln-inputs ]] && have=$(cat "$BB_OUT/.kiln-inputs")
  if [[ $want == "$have" ]]; then return 0; fi
  log "building busybox base images from $(basename "$deb_amd64") and $(basename "$deb_arm64")"
  rm -rf "$BB_OUT.tmp" "$BB/work" && mkdir -p "$BB_OUT.tmp/oci/blobs/sha256" "$BB/work"
  local version
  version=$(dpkg-deb -f "$deb_amd64" Version)
  # The applet list comes from the amd64 binary (runs natively); both arches are the same
  # Debian build configuration, so the list applies to arm64 too.
  dpkg -x "$deb_amd64" "$BB/work/deb-amd64"
  local applets
  applets=$("$BB/work/deb-amd64/bin/busybox" --list-full)
  local arch manifests=()
  for arch in amd64 arm64; do
    local x=$BB/work/deb-$arch r=$BB/work/rootfs-$arch
    [[ -d $x ]] || dpkg -x "$([[ $arch == amd64 ]] && echo "$deb_amd64" || echo "$deb_arm64")" "$x"
    mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin,etc,root,tmp,proc,sys,dev,var,home}
    chmod 1777 "$r/tmp" && chmod 700 "$r/root"
    install -m 755 "$x/bin/busybox" "$r/bin/busybox"
    local a
    while read -r a; do
      [[ -z $a || $a == bin/busybox ]] && continue
      mkdir -p "$r/$(dirname "$a")"
      ln -sfn /bin/busybox "$r/$a"
    done <<<"$applets"
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n' >"$r/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$r/etc/group"
    # Reproducible layer: fixed order, times and owners.
    tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=posix \
      --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
      -C "$r" -cf "$BB/work/layer-$arch.tar" .
    local diff_id layer layer_size
    diff_id=$(sha "$BB/work/layer-$arch.tar")
    gzip -n -9 -c "$BB/work/layer-$arch.tar" >"$BB/work/layer-$arch.tar.gz"
    layer_size=$(stat -c %s "$BB/work/layer-$arch.tar.gz")
    layer=$(add_blob "$BB/work/layer-$arch.tar.gz")
    local variant_json='' plat_variant=''
    if [[ $arch == arm64 ]]; then variant_json=',"variant":"v8"'; plat_variant=',"variant":"v8"'; fi
    printf '{"architecture":"%s"%s,"os":"linux","created":"1970-01-01T00:00:00Z","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created":"1970-01-01T00:00:00Z","created_by":"kiln testenv: busybox-static %s (%s)"}]}' \
      "$arch" "$variant_json" "$diff_id" "$version" "$arch" >"$BB/work/config-$arch.json"
    local cfg cfg_size
    cfg_size=$(stat -c %s "$BB/work/config-$arch.json")
    cfg=$(add_blob "$BB/work/config-$arch.json")
    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
      "$cfg" "$cfg_size" "$layer" "$layer_size" >"$BB/work/manifest-$arch.json"
    local man man_size
    man_size=$(stat -c %s "$BB/work/manifest-$arch.json")
    man=$(add_blob "$BB/work/manifest-$arch.json")
    manifests+=("$(printf '{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"%s","os":"linux"%s}}' \
      "$man" "$man_size" "$arch" "$plat_variant")")
    printf '%s_CONFIG=sha256:%s\n%s_MANIFEST=sha256:%s\n%s_LAYER=%s\n' "${arch^^}" "$cfg" "${arch^^}" "$man" "${arch^^}" "$layer" >>"$BB/work/digests"
    # docker-save format for Engine 20.10: same blobs, described by manifest.json.
    local tags='"busybox:arm64"'
    [[ $arch == amd64 ]] && tags='"busybox:latest","busybox:amd64"'
    printf '{"Config":"blobs/sha256/%s","RepoTags":[%s],"Layers":["blobs/sha256/%s"]}\n' "$cfg" "$tags" "$layer" >>"$BB/work/manifest-entries"
  done
  local joined
  joined=$(IFS=,; echo "${manifests[*]}")
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[%s]}' "$joined" >"$BB/work/index-multi.json"
  local idx idx_size
  idx_size=$(stat -c %s "$BB/work/index-multi.json")
  idx=$(add_blob "$BB/work/index-multi.json")
  printf 'INDEX_DIGEST=sha256:%s\n' "$idx" >>"$BB/work/digests"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$BB_OUT.tmp/oci/oci-layout"
  # Layout for skopeo/tests: tags latest (index), amd64, arm64 (single-platform manifests).
  local amd arm
  amd=$(printf '%s' "${manifests[0]}" | sed 's/}}$/},"annotations":{"org.opencontainers.image.ref.name":"amd64"}}/')
  arm=$(printf '%s' "${manifests[1]}" | sed 's/}}$/},"annotations":{"org.opencontainers.image.ref.name":"arm64"}}/')
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"latest"}},%s,%s]}' \
    "$idx" "$idx_size" "$amd" "$arm" >"$BB_OUT.tmp/oci/index.json"
  # Archive for Engine 28 (containerd store): one entry, named the way containerd's importer
  # and `docker save` name images, so `docker load` creates busybox:latest with both platforms.
  mkdir -p "$BB/work/e28"
  cp -a "$BB_OUT.tmp/oci/blobs" "$BB_OUT.tmp/oci/oci-layout" "$BB/work/e28/"
  amd=$(printf '%s' "${manifests[0]}" | sed 's/}}$/},"annotations":{"io.containerd.image.name":"docker.io\/library\/busybox:amd64","org.opencontainers.image.ref.name":"amd64"}}/')
  arm=$(printf '%s' "${manifests[1]}" | sed 's/}}$/},"annotations":{"io.containerd.image.name":"docker.io\/library\/busybox:arm64","org.opencontainers.image.ref.name":"arm64"}}/')
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"sha256:%s","size":%s,"annotations":{"io.containerd.image.name":"docker.io/library/busybox:latest","org.opencontainers.image.ref.name":"latest"}},%s,%s]}' \
    "$idx" "$idx_size" "$amd" "$arm" >"$BB/work/e28/index.json"
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$BB/work/e28" -cf "$BB_OUT.tmp/engine28.tar" .
  # Archive for Engine 20.10: manifest.json + the image blobs (no manifests/index needed).
  mkdir -p "$BB/work/e20/blobs/sha256"
  # shellcheck disable=SC1091
  (source "$BB/work/digests"
    for d in "${AMD64_CONFIG#sha256:}" "$AMD64_LAYER" "${ARM64_CONFIG#sha256:}" "$ARM64_LAYER"; do
      cp "$BB_OUT.tmp/oci/blobs/sha256/$d" "$BB/work/e20/blobs/sha256/"
    done)
  jq -cs . "$BB/work/manifest-entries" >"$BB/work/e20/manifest.json"
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$BB/work/e20" -cf "$BB_OUT.tmp/engine20.tar" .
  cp "$BB/work/digests" "$BB_OUT.tmp/digests"
  printf '%s\n' "$want" >"$BB_OUT.tmp/.kiln-inputs"
  rm -rf "$BB_OUT" && mv "$BB_OUT.tmp" "$BB_OUT" && rm -rf "$BB/work"
}

# ---------------------------------------------------------------------------------------------
# arm64 emulation
# ---------------------------------------------------------------------------------------------
setup_binfmt() {
  local bm=/proc/sys/fs/binfmt_misc
  if [[ ! -e $bm/register ]]; then
    mount -t binfmt_misc binfmt_misc "$bm" || die "cannot mount binfmt_misc (needed for arm64 builds)"
  fi
  local entry=$bm/qemu-aarch64
  if [[ -e $entry ]] && grep -q '^enabled' "$entry"; then
    # F (fix binary) makes the kernel open the interpreter now, so it also works inside
    # containers' mount namespaces, where /usr/bin/qemu-aarch64-static doesn't exist.
    if grep -q '^flags:.*F' "$entry"; then return 0; fi
    log "qemu-aarch64 is registered without the F flag: re-registering it with F"
    echo -1 >"$entry"
  fi
  local interp=/usr/bin/qemu-aarch64-static
  [[ -x $interp ]] || die "$interp missing (package qemu-user-static)"
  log "registering $interp for aarch64 ELF binaries (binfmt_misc, flags F)"
  printf '%s' ':qemu-aarch64:M::\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/usr/bin/qemu-aarch64-static:F' \
    >"$bm/register" || die "binfmt_misc registration of qemu-aarch64 failed"
}

# ---------------------------------------------------------------------------------------------
# daemon bookkeeping
# ---------------------------------------------------------------------------------------------
# Our own pidfiles ($DIR/pids/NAME.pid), written by the launched process itself before exec, so
# they hold the daemon's pid. A pid only counts when /proc/PID/exe is the expected binary:
# after a reboot or in a new session the pid in a stale file may belong to anything.

daemon_pid() { # name exe -> prints pid if that daemon runs
  local f=$PIDS/$1.pid pid exe
  [[ -f $f ]] || return 1
  pid=$(cat "$f" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  exe=${exe% (deleted)} # binary replaced by a re-unpack while running: still ours
  [[ $exe == "$(readlink -f "$2")" ]] || return 1
  printf '%s\n' "$pid"
}

start_daemon() { # name log PATH cmd...   (runs detached in its own session)
  local name=$1 logf=$2 path=$3
  shift 3
  mkdir -p "$PIDS" "$(dirname "$logf")"
  printf '\n==== %s starting %s\n' "$(date -Is)" "$*" >>"$logf"
  # setsid: survives this script and its terminal; the pidfile is written by the very process
  # that then execs the daemon, so it holds the daemon's pid.
  # cd /: daemons outlive the checkout that started them (git sources run in dockerd's working
  # directory and fail once that directory is deleted).
  # exec: nothing of this script (its stdout pipe above all) stays alive beside the daemon.
  (cd / && exec setsid env PATH="$path" bash -c 'echo $$ >"$0"; exec "$@"' "$PIDS/$name.pid" "$@" </dev/null >>"$logf" 2>&1) &
  disown || true
}

# stop_daemons NAME:EXE...: SIGTERM to all of them at once (each takes ~2s to shut down
# gracefully), then wait up to 30s for all, then SIGKILL what is left.
stop_daemons() {
  local spec pid pids=() names=() i left
  for spec in "$@"; do
    if pid=$(daemon_pid "${spec%%:*}" "${spec#*:}"); then
      log "stopping ${spec%%:*} (pid $pid)"
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid") names+=("${spec%%:*}")
    fi
    rm -f "$PIDS/${spec%%:*}.pid"
  done
  for ((i = 0; i < 300; i++)); do
    left=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && left=1; done
    ((left)) || return 0
    sleep 0.1
  done
  for i in "${!pids[@]}"; do
    if kill -0 "${pids[$i]}" 2>/dev/null; then
      log "${names[$i]} did not stop in 30s: killing it"
      kill -KILL "${pids[$i]}" 2>/dev/null || true
    fi
  done
  sleep 0.5
}
stop_daemon() { stop_daemons "$1:$2"; }

# Shims outlive their containerd on purpose; on `down` end those of our containerds only
# (matched by their -address argument, which is unique to this state dir).
stop_shims() { # containerd socket
  local p cmd
  for p in /proc/[0-9]*; do
    cmd=$(tr '\0' ' ' 2>/dev/null <"$p/cmdline") || continue
    if [[ $cmd == *containerd-shim* && $cmd == *"-address $1 "* ]]; then
      log "stopping leftover shim ${p#/proc/}"
      kill -TERM "${p#/proc/}" 2>/dev/null || true
    fi
  done
}

wait_until() { # name logfile timeout check-cmd...
  local name=$1 logf=$2 t=$3 i
  shift 3
  for ((i = 0; i < t * 4; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.25
  done
  log "$name did not answer within ${t}s; last lines of $logf:"
  tail -n 40 "$logf" >&2 || true
  return 1
}

# Writes FILE if its content differs; returns 0 when it changed (daemon must be restarted).
write_config() { # file content
  if [[ -f $1 && $(cat "$1") == "$2" ]]; then return 1; fi
  mkdir -p "$(dirname "$1")"
  printf '%s\n' "$2" >"$1.tmp" && mv "$1.tmp" "$1"
  return 0
}

# ensure_daemon NAME EXE CONFIG_CHANGED START_FN CHECK_FN...
# Reuses a running daemon that answers; restarts one that runs but doesn't answer or whose
# config changed; starts it otherwise; then waits (bounded) until it answers.
ensure_daemon() {
  local name=$1 exe=$2 changed=$3 start_fn=$4 logf=$DIR/logs/$1.log
  shift 4
  if daemon_pid "$name" "$exe" >/dev/null; then
    if [[ $changed == 0 ]] && wait_until "$name" /dev/null 10 "$@" 2>/dev/null; then
      log "$name already running"
      return 0
    fi
    log "$name: $([[ $changed == 1 ]] && echo 'config changed' || echo 'running but not answering'): restarting"
    stop_daemon "$name" "$exe"
  fi
  log "starting $name (log: $logf)"
  "$start_fn"
  wait_until "$name" "$logf" "$TIMEOUT" "$@" || die "$name did not come up"
  daemon_pid "$name" "$exe" >/dev/null || { tail -n 40 "$logf" >&2; die "$name answered but its process isn't ours (another daemon on the same address?)"; }
}

ping_docker() { [[ $(curl -fsS --max-time 3 --unix-socket "$1" http://docker/_ping) == OK ]]; }
ping_registry() { curl -fsS --max-time 3 -o /dev/null "$@"; }
ping_ctr() { timeout 5 "$1" --address "$2" version; }

# ---------------------------------------------------------------------------------------------
# containerd (x3)
# ---------------------------------------------------------------------------------------------
# Own root/state/sockets for each; CRI and NRI are off (no Kubernetes here, and they would
# reach for /etc/cni, /var/run/nri); opt plugin kept out of /opt/containerd.
containerd2x_config() { # dir socket   (containerd 2.x, for engine28 and engine28b)
  cat <<EOF
version = 3
root = "$1/root"
state = "$1/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime", "io.containerd.podsandbox.controller.v1.podsandbox", "io.containerd.nri.v1.nri"]
[grpc]
  address = "$2"
[ttrpc]
  address = "$2.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$1/opt"
EOF
}
containerd28_config() { containerd2x_config "$C28" "$C28_SOCK"; }
containerd28b_config() { containerd2x_config "$C28B" "$C28B_SOCK"; }
containerd20_config() {
  cat <<EOF
version = 2
root = "$C20/root"
state = "$C20/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$C20_SOCK"
[ttrpc]
  address = "$C20_SOCK.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$C20/opt"
EOF
}
# containerd 2.x finds testing's containerd-shim-runc-v2 first on PATH, then bookworm's runc.
start_containerd28() { start_daemon containerd28 "$DIR/logs/containerd28.log" "$FORKY/usr/bin:$FORKY/usr/sbin:$SYS_PATH" "$FORKY/usr/bin/containerd" --config "$C28/config.toml"; }
start_containerd28b() { start_daemon containerd28b "$DIR/logs/containerd28b.log" "$FORKY/usr/bin:$FORKY/usr/sbin:$SYS_PATH" "$FORKY/usr/bin/containerd" --config "$C28B/config.toml"; }
start_containerd20() { start_daemon containerd20 "$DIR/logs/containerd20.log" "$SYS_PATH" /usr/bin/containerd --config "$C20/config.toml"; }

# ---------------------------------------------------------------------------------------------
# dockerd (x3)
# ---------------------------------------------------------------------------------------------
ensure_bridge() { # name cidr
  ip link show "$1" >/dev/null 2>&1 || ip link add "$1" type bridge
  ip -4 addr show dev "$1" | grep -q "inet $2 " || ip addr add "$2" dev "$1"
  ip link set "$1" up
}

# iptables off: the engines never touch the host firewall (and don't fight over each other's
# DOCKER chains); builds need no NAT since nothing outside the machine is reachable anyway.
# builder.history: BuildKit's own cleanup of old build records must not run during test runs.
# Once a client has listed a record by ref (buildx does after every build), deleting that record
# leaves it queued, and Engine 28's BuildKit then crashes dockerd on the next history listing
# with a limit (the reference buildx's `history ls` sends one).
engine28x_config() { # dir containerd-socket bridge pool [extra-hosts] [extra-keys]   (dockerd 28, containerd image store)
  cat <<EOF
{
  "hosts": ["unix://$1/docker.sock"${5:-}],
  "data-root": "$1/data",
  "exec-root": "$1/exec",
  "pidfile": "$1/docker.pid",
  "containerd": "$2",
  "bridge": "$3",
  "default-address-pools": [{"base": "$4", "size": 24}],
  "iptables": false,
  "ip6tables": false,
  "features": {"containerd-snapshotter": true, "buildkit": true},
  "builder": {"history": {"maxEntries": 100000, "maxAge": "87600h"}}${6:-}
}
EOF
}
engine28_config() { engine28x_config "$E28" "$C28_SOCK" "$BR28" "$POOL28"; }
# engine28b's extra: a TCP listener with mutual TLS, beside its socket.
engine28b_config() {
  engine28x_config "$E28B" "$C28B_SOCK" "$BR28B" "$POOL28B" ", \"tcp://127.0.0.1:$E28B_TLS_PORT\"" ",
  \"tls\": true,
  \"tlsverify\": true,
  \"tlscacert\": \"$E28B_TLS/ca.pem\",
  \"tlscert\": \"$E28B_TLS/server-cert.pem\",
  \"tlskey\": \"$E28B_TLS/server-key.pem\""
}
# A CA, a server certificate for 127.0.0.1/localhost and a client certificate, made once and
# again only when a file is missing; returns 0 when it (re)made them (engine28b must restart).
ensure_engine28b_certs() {
  local d=$E28B_TLS f
  for f in ca.pem ca-key.pem server-cert.pem server-key.pem client/ca.pem client/cert.pem client/key.pem; do
    [[ -s $d/$f ]] || break
    f=
  done
  [[ -n $f ]] || return 1
  log "engine28b: generating TLS certificates in $d"
  rm -rf "$d" && mkdir -p "$d/client" && chmod 700 "$d"
  local ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
  openssl req -x509 "${ec[@]}" -keyout "$d/ca-key.pem" -out "$d/ca.pem" -days 3650 \
    -subj "/CN=kiln test CA" 2>/dev/null || die "openssl: CA"
  openssl req "${ec[@]}" -keyout "$d/server-key.pem" -out "$d/server.csr" -subj "/CN=localhost" 2>/dev/null || die "openssl: server key"
  openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca-key.pem" -CAcreateserial -days 3650 \
    -extfile <(printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n') \
    -out "$d/server-cert.pem" 2>/dev/null || die "openssl: server cert"
  openssl req "${ec[@]}" -keyout "$d/client/key.pem" -out "$d/client.csr" -subj "/CN=kiln test client" 2>/dev/null || die "openssl: client key"
  openssl x509 -req -in "$d/client.csr" -CA "$d/ca.pem" -CAkey "$d/ca-key.pem" -CAcreateserial -days 3650 \
    -extfile <(printf 'extendedKeyUsage=clientAuth\n') -out "$d/client/cert.pem" 2>/dev/null || die "openssl: client cert"
  cp "$d/ca.pem" "$d/client/ca.pem"
  rm -f "$d/server.csr" "$d/client.csr" "$d/ca.srl"
  return 0
}
ping_docker_tls() { # port certdir
  [[ $(curl -fsS --max-time 3 --cacert "$2/ca.pem" --cert "$2/cert.pem" --key "$2/key.pem" "https://127.0.0.1:$1/_ping") == OK ]]
}
ping_engine28b() { ping_docker "$E28B_SOCK" && ping_docker_tls "$E28B_TLS_PORT" "$E28B_TLS/client"; }
engine20_config() {
  cat <<EOF
{
  "hosts": ["unix://$E20_SOCK"],
  "data-root": "$E20/data",
  "exec-root": "$E20/exec",
  "pidfile": "$E20/docker.pid",
  "containerd": "$C20_SOCK",
  "bridge": "$BR20",
  "default-address-pools": [{"base": "$POOL20", "size": 24}],
  "iptables": false,
  "storage-driver": "overlay2",
  "features": {"buildkit": true}
}
EOF
}
# dockerd refuses to start when its pidfile names a live process: after a reboot that pid may
# be reused by anything, so a pidfile of a dockerd we don't see running is removed first.
start_engine28() {
  rm -f "$E28/docker.pid"
  start_daemon engine28 "$DIR/logs/engine28.log" "$FORKY/usr/sbin:$FORKY/usr/bin:$SYS_PATH" \
    "$FORKY/usr/sbin/dockerd" --config-file "$E28/daemon.json"
}
start_engine28b() {
  rm -f "$E28B/docker.pid"
  start_daemon engine28b "$DIR/logs/engine28b.log" "$FORKY/usr/sbin:$FORKY/usr/bin:$SYS_PATH" \
    "$FORKY/usr/sbin/dockerd" --config-file "$E28B/daemon.json"
}
start_engine20() {
  rm -f "$E20/docker.pid"
  start_daemon engine20 "$DIR/logs/engine20.log" "$SYS_PATH" /usr/sbin/dockerd --config-file "$E20/daemon.json"
}

# ---------------------------------------------------------------------------------------------
# registries
# ---------------------------------------------------------------------------------------------
registry_config() { # port storage [htpasswd]
  cat <<EOF
version: 0.1
log:
  level: info
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $2
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$1
EOF
  if [[ -n ${3:-} ]]; then
    printf 'auth:\n  htpasswd:\n    realm: kiln-test\n    path: %s\n' "$3"
  fi
}
# The registries keep what every earlier run pushed (tests push to fresh repositories and never
# delete). Past REGISTRY_KEEP_MB of it, a registry starts over empty; the busybox seed is pushed
# again by load_images.
REGISTRY_KEEP_MB=${KILN_TEST_REGISTRY_KEEP_MB:-1024}
trim_registry() { # name
  local data=$DIR/$1/data mb
  mb=$(du -sm "$data" 2>/dev/null | cut -f1)
  if ((${mb:-0} > REGISTRY_KEEP_MB)); then
    log "$1 holds ${mb} MB pushed by earlier runs: emptying it"
    stop_daemon "$1" /usr/bin/docker-registry
    rm -rf "$data/docker"
  fi
}
start_registry5000() { start_daemon registry5000 "$DIR/logs/registry5000.log" "$SYS_PATH" /usr/bin/docker-registry serve "$DIR/registry5000/config.yml"; }
start_registry5001() { start_daemon registry5001 "$DIR/logs/registry5001.log" "$SYS_PATH" /usr/bin/docker-registry serve "$DIR/registry5001/config.yml"; }

# ---------------------------------------------------------------------------------------------
# images into the engines and the registries
# ---------------------------------------------------------------------------------------------
docker_api() { # sock path [curl args...]
  local s=$1 p=$2
  shift 2
  curl -fsS --max-time 300 --unix-socket "$s" "$@" "http://docker$p"
}

load_images() {
  # shellcheck disable=SC1091
  source "$BB_OUT/digests"
  # Engine 20.10: classic store, image id = config digest.
  load_into engine20 "$E20_SOCK" "$BB_OUT/engine20.tar" \
    latest="$AMD64_CONFIG" amd64="$AMD64_CONFIG" arm64="$ARM64_CONFIG"
  # Engine 28: containerd store, image id = digest of the tag's target: busybox:latest is the
  # index, so one image holds both platforms (FROM busybox + --platform linux/arm64 works).
  local e
  for e in engine28:"$E28_SOCK" engine28b:"$E28B_SOCK"; do
    load_into "${e%%:*}" "${e#*:}" "$BB_OUT/engine28.tar" \
      latest="$INDEX_DIGEST" amd64="$AMD64_MANIFEST" arm64="$ARM64_MANIFEST"
  done
  # Registries: the multi-platform index as busybox:latest, single-platform tags beside it.
  local reg creds tag want
  for reg in "127.0.0.1:$REG_PORT" "127.0.0.1:$AUTH_REG_PORT"; do
    creds=()
    [[ $reg == *":$AUTH_REG_PORT" ]] && creds=(-u "$AUTH_USER:$AUTH_PASSWORD")
    for tag in latest amd64 arm64; do
      case $tag in latest) want=$INDEX_DIGEST ;; amd64) want=$AMD64_MANIFEST ;; arm64) want=$ARM64_MANIFEST ;; esac
      if [[ $(registry_digest "$reg" busybox "$tag" "${creds[@]}") == "$want" ]]; then continue; fi
      log "pushing $reg/busybox:$tag"
      local sk=(--dest-tls-verify=false --preserve-digests --quiet)
      [[ ${#creds[@]} -gt 0 ]] && sk+=(--dest-creds "$AUTH_USER:$AUTH_PASSWORD")
      [[ $tag == latest ]] && sk+=(--all)
      skopeo copy "${sk[@]}" "oci:$BB_OUT/oci:$tag" "docker://$reg/busybox:$tag" >&2
      [[ $(registry_digest "$reg" busybox "$tag" "${creds[@]}") == "$want" ]] || die "$reg/busybox:$tag has the wrong digest after push"
    done
  done
}

load_into() { # name sock archive tag=id...
  local name=$1 sock=$2 archive=$3 kv ok=1 id
  shift 3
  for kv in "$@"; do
    id=$(docker_api "$sock" "/images/busybox:${kv%%=*}/json" 2>/dev/null | jq -r .Id || true)
    [[ $id == "${kv#*=}" ]] || ok=
  done
  [[ -n $ok ]] && return 0
  log "loading busybox:{latest,amd64,arm64} into $name"
  docker_api "$sock" '/images/load?quiet=1' -X POST -H 'Content-Type: application/x-tar' \
    --data-binary "@$archive" >"$DIR/logs/load-$name.out"
  for kv in "$@"; do
    id=$(docker_api "$sock" "/images/busybox:${kv%%=*}/json" | jq -r .Id)
    [[ $id == "${kv#*=}" ]] || die "$name: busybox:${kv%%=*} is $id after load, expected ${kv#*=}"
  done
}

registry_digest() { # host repo tag [curl args]
  local h=$1 r=$2 t=$3
  shift 3
  curl -fsS --max-time 10 -I "$@" \
    -H 'Accept: application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json' \
    "http://$h/v2/$r/manifests/$t" 2>/dev/null | tr -d '\r' | awk -F': ' 'tolower($1)=="docker-content-digest" {print $2}'
}

# ---------------------------------------------------------------------------------------------
# outputs
# ---------------------------------------------------------------------------------------------
write_bin_and_env() {
  mkdir -p "$DIR/bin" "$DIR/docker-config/cli-plugins"
  ln -sfn "$FORKY/usr/libexec/docker/cli-plugins/docker-buildx" "$DIR/bin/docker-buildx"
  ln -sfn "$FORKY/usr/bin/docker" "$DIR/bin/docker"
  ln -sfn "$FORKY/usr/bin/ctr" "$DIR/bin/ctr28"
  ln -sfn /usr/bin/ctr "$DIR/bin/ctr20"
  # DOCKER_CONFIG for plugin-mode tests: `docker buildx` finds the reference plugin here.
  ln -sfn "$FORKY/usr/libexec/docker/cli-plugins/docker-buildx" "$DIR/docker-config/cli-plugins/docker-buildx"
  [[ -f $DIR/docker-config/config.json ]] || echo '{}' >"$DIR/docker-config/config.json"
  local protoc=
  command -v protoc >/dev/null && protoc=$(command -v protoc)
  # shellcheck disable=SC1091
  source "$BB_OUT/digests"
  {
    echo "# written by scripts/testenv.sh up; source it"
    echo "export KILN_TESTENV_DIR=$DIR"
    echo "export KILN_TEST_ENGINE28_HOST=unix://$E28_SOCK"
    echo "export KILN_TEST_ENGINE20_HOST=unix://$E20_SOCK"
    echo "export KILN_TEST_ENGINE28B_HOST=unix://$E28B_SOCK"
    echo "export KILN_TEST_ENGINE28B_TLS_HOST=tcp://127.0.0.1:$E28B_TLS_PORT"
    echo "export KILN_TEST_ENGINE28B_TLS_CERTS=$E28B_TLS/client"
    echo "export KILN_TEST_CONTAINERD28_ADDRESS=$C28_SOCK"
    echo "export KILN_TEST_CONTAINERD20_ADDRESS=$C20_SOCK"
    echo "export KILN_TEST_CONTAINERD28B_ADDRESS=$C28B_SOCK"
    echo "export KILN_TEST_REGISTRY=127.0.0.1:$REG_PORT"
    echo "export KILN_TEST_AUTH_REGISTRY=127.0.0.1:$AUTH_REG_PORT"
    echo "export KILN_TEST_AUTH_USER=$AUTH_USER"
    echo "export KILN_TEST_AUTH_PASSWORD=$AUTH_PASSWORD"
    echo "export KILN_TEST_BUILDX=$DIR/bin/docker-buildx"
    echo "export KILN_TEST_DOCKER_CLI=$DIR/bin/docker"
    echo "export KILN_TEST_DOCKER_CONFIG=$DIR/docker-config"
    echo "export KILN_TEST_CTR_28=$FORKY/usr/bin/ctr"
    echo "export KILN_TEST_CTR_20=/usr/bin/ctr"
    echo "export KILN_TEST_BUSYBOX_IMAGE=busybox:latest"
    echo "export KILN_TEST_BUSYBOX_OCI_LAYOUT=$BB_OUT/oci"
    echo "export KILN_TEST_BUSYBOX_INDEX_DIGEST=$INDEX_DIGEST"
    echo "export KILN_TEST_SKOPEO=/usr/bin/skopeo"
    echo "export KILN_TEST_UMOCI=/usr/bin/umoci"
    [[ -n $protoc ]] && echo "export PROTOC=$protoc"
  } >"$ENV_FILE.tmp"
  mv "$ENV_FILE.tmp" "$ENV_FILE"
}

print_versions() {
  local v28 v20 v28b
  v28=$(docker_api "$E28_SOCK" /version | jq -r '"\(.Version) (API \(.ApiVersion))"')
  v28b=$(docker_api "$E28B_SOCK" /version | jq -r '"\(.Version) (API \(.ApiVersion))"')
  v20=$(docker_api "$E20_SOCK" /version | jq -r '"\(.Version) (API \(.ApiVersion))"')
  echo "kiln test environment ($DIR):"
  echo "  dockerd engine28:    $v28, unix://$E28_SOCK"
  echo "  dockerd engine28b:   $v28b, unix://$E28B_SOCK and tcp://127.0.0.1:$E28B_TLS_PORT (TLS, certs $E28B_TLS/client)"
  echo "  dockerd engine20:    $v20, unix://$E20_SOCK"
  echo "  containerd28:        $("$FORKY/usr/bin/ctr" --address "$C28_SOCK" version | awk '/^Server:/ {s=1} s && /Version:/ {print $2; exit}'), $C28_SOCK"
  echo "  containerd28b:       $("$FORKY/usr/bin/ctr" --address "$C28B_SOCK" version | awk '/^Server:/ {s=1} s && /Version:/ {print $2; exit}'), $C28B_SOCK"
  echo "  containerd20:        $(/usr/bin/ctr --address "$C20_SOCK" version | awk '/^Server:/ {s=1} s && /Version:/ {print $2; exit}'), $C20_SOCK"
  echo "  buildx (reference):  $("$DIR/bin/docker-buildx" version)"
  echo "  docker CLI:          $("$DIR/bin/docker" --version)"
  echo "  registry:            $(/usr/bin/docker-registry --version 2>&1 | head -n 1), 127.0.0.1:$REG_PORT and 127.0.0.1:$AUTH_REG_PORT (auth)"
  echo "  qemu:                $(/usr/bin/qemu-aarch64-static --version | head -n 1)"
  echo "  runc:                $(/usr/sbin/runc --version | head -n 1)"
  echo "  env file:            $ENV_FILE"
}

# ---------------------------------------------------------------------------------------------
cmd_up() {
  [[ $(id -u) == 0 ]] || die "must run as root (daemons, bridges, binfmt_misc)"
  local t0=$SECONDS
  mkdir -p "$CACHE" "$DIR/logs" "$PIDS"
  install_bookworm_packages
  fetch_forky
  build_busybox_images
  setup_binfmt

  local ch
  # containerds first: the engines need them.
  ch=0; write_config "$C28/config.toml" "$(containerd28_config)" && ch=1
  ensure_daemon containerd28 "$FORKY/usr/bin/containerd" $ch start_containerd28 ping_ctr "$FORKY/usr/bin/ctr" "$C28_SOCK"
  ch=0; write_config "$C20/config.toml" "$(containerd20_config)" && ch=1
  ensure_daemon containerd20 /usr/bin/containerd $ch start_containerd20 ping_ctr /usr/bin/ctr "$C20_SOCK"
  ch=0; write_config "$C28B/config.toml" "$(containerd28b_config)" && ch=1
  ensure_daemon containerd28b "$FORKY/usr/bin/containerd" $ch start_containerd28b ping_ctr "$FORKY/usr/bin/ctr" "$C28B_SOCK"

  ensure_bridge "$BR28" "$BR28_CIDR"
  ensure_bridge "$BR20" "$BR20_CIDR"
  ensure_bridge "$BR28B" "$BR28B_CIDR"
  ch=0; write_config "$E28/daemon.json" "$(engine28_config)" && ch=1
  ensure_daemon engine28 "$FORKY/usr/sbin/dockerd" $ch start_engine28 ping_docker "$E28_SOCK"
  ch=0; write_config "$E20/daemon.json" "$(engine20_config)" && ch=1
  ensure_daemon engine20 /usr/sbin/dockerd $ch start_engine20 ping_docker "$E20_SOCK"
  ch=0; ensure_engine28b_certs && ch=1
  write_config "$E28B/daemon.json" "$(engine28b_config)" && ch=1
  ensure_daemon engine28b "$FORKY/usr/sbin/dockerd" $ch start_engine28b ping_engine28b

  trim_registry registry5000
  trim_registry registry5001
  mkdir -p "$DIR/registry5000/data" "$DIR/registry5001/data"
  ch=0; write_config "$DIR/registry5000/config.yml" "$(registry_config $REG_PORT "$DIR/registry5000/data")" && ch=1
  ensure_daemon registry5000 /usr/bin/docker-registry $ch start_registry5000 ping_registry "http://127.0.0.1:$REG_PORT/v2/"
  local htp=$DIR/registry5001/htpasswd
  # bcrypt is the only hash distribution's htpasswd backend accepts.
  htpasswd -vb "$htp" "$AUTH_USER" "$AUTH_PASSWORD" >/dev/null 2>&1 || htpasswd -Bbc "$htp" "$AUTH_USER" "$AUTH_PASSWORD" >/dev/null 2>&1
  ch=0; write_config "$DIR/registry5001/config.yml" "$(registry_config $AUTH_REG_PORT "$DIR/registry5001/data" "$htp")" && ch=1
  ensure_daemon registry5001 /usr/bin/docker-registry $ch start_registry5001 ping_registry -u "$AUTH_USER:$AUTH_PASSWORD" "http://127.0.0.1:$AUTH_REG_PORT/v2/"
  # The auth registry must really refuse anonymous requests.
  [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$AUTH_REG_PORT/v2/") == 401 ]] || die "registry on $AUTH_REG_PORT does not require auth"

  load_images
  write_bin_and_env
  print_versions
  log "up in $((SECONDS - t0))s"
}

cmd_down() {
  # Engines before their containerds, so they shut down cleanly; registries along with them.
  stop_daemons engine28:"$FORKY/usr/sbin/dockerd" engine20:/usr/sbin/dockerd engine28b:"$FORKY/usr/sbin/dockerd" \
    registry5000:/usr/bin/docker-registry registry5001:/usr/bin/docker-registry
  stop_daemons containerd28:"$FORKY/usr/bin/containerd" containerd20:/usr/bin/containerd \
    containerd28b:"$FORKY/usr/bin/containerd"
  stop_shims "$C28_SOCK"
  stop_shims "$C20_SOCK"
  stop_shims "$C28B_SOCK"
  # dockerd bind-mounts its data-root onto itself (mount propagation) and, when it was killed
  # rather than stopped, leaves that and overlay mounts behind: they would keep the state dir
  # busy (rm -rf fails with "Device or resource busy"). Unmount what is left under $DIR,
  # deepest first.
  local m
  if [[ $DIR != / ]]; then
    awk -v d="$DIR/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "could not unmount $m"
    done
  fi
  local br
  for br in "$BR28" "$BR20" "$BR28B"; do
    if ip link show "$br" >/dev/null 2>&1; then ip link del "$br" || true; fi
  done
  log "down"
}

cmd_status() {
  local n e rc=0
  for n in containerd28:$FORKY/usr/bin/containerd containerd20:/usr/bin/containerd containerd28b:$FORKY/usr/bin/containerd \
    engine28:$FORKY/usr/sbin/dockerd engine20:/usr/sbin/dockerd engine28b:$FORKY/usr/sbin/dockerd registry5000:/usr/bin/docker-registry registry5001:/usr/bin/docker-registry; do
    e=${n#*:}
    if daemon_pid "${n%%:*}" "$e" >/dev/null; then echo "${n%%:*}: running (pid $(daemon_pid "${n%%:*}" "$e"))"; else echo "${n%%:*}: stopped"; rc=1; fi
  done
  return $rc
}

case ${1:-up} in
  up) cmd_up ;;
  down) cmd_down ;;
  env) echo "$ENV_FILE" ;;
  status) cmd_status ;;
  *) echo "usage: $0 [up|down|env|status]" >&2; exit 2 ;;
esac
