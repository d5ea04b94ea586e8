#!/usr/bin/env bash
# Build the edgeinfer images with podman on a machine that cannot pull python:3.11-slim-bookworm (no Docker
# Hub, only Debian's package mirror), as CI does:
#
#   scripts/build-images.sh [--arch amd64|arm64|all] [--ca-bundle FILE] [--save DIR] [--base-only]
#
#   1. a Python base image per architecture, made from Debian packages with mmdebstrap: Debian's python3.11
#      with a venv at /usr/local, so python, pip and site-packages sit where the official image has them and
#      containers/Dockerfile needs no fork (it takes the base as --build-arg PYTHON_IMAGE). The rootfs tarball
#      is cached under build/containers/ (git-ignored), keyed by the mmdebstrap arguments; delete it to refresh
#      Debian's packages.
#   2. `podman build` of containers/Dockerfile -> localhost/edgeinfer:dev-amd64, localhost/edgeinfer:dev-arm64.
#      These two tags are a contract: tests/containers and other tools run them.
#   3. with --save DIR: DIR/edgeinfer-dev-ARCH.tar, `docker save` format (podman save --format docker-archive),
#      for sites without a registry (`docker load -i` / `podman load -i`).
#
# arm64 on an x86 host runs under qemu-user through binfmt_misc (the script registers qemu-aarch64 when
# qemu-user-static is installed and it is not registered yet; that needs root). Expect minutes, not seconds.
#
# --ca-bundle FILE: a TLS proxy that re-signs PyPI's certificates (a corporate proxy, this CI machine) needs
# its CA for pip. The file goes into the build as a build secret (never into a layer) and pip uses it as
# PIP_CERT. It must be a full bundle (e.g. the host's /etc/ssl/certs/ca-certificates.crt), since it replaces
# pip's own.
#
# Environment: CONTAINERS_CONF defaults to containers/podman/containers.conf (runc, no ulimit changes: what
# this CI machine needs); export CONTAINERS_CONF=/etc/containers/containers.conf to use the host's settings.
set -euo pipefail
cd "$(dirname "$0")/.."

arches=()
ca_bundle=""
save_dir=""
base_only=0
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) shift; case "${1:-}" in all) arches=(amd64 arm64) ;; amd64|arm64) arches+=("$1") ;;
              *) echo "build-images.sh: --arch takes amd64, arm64 or all, not '${1:-}'" >&2; exit 2 ;; esac ;;
    --ca-bundle) shift; ca_bundle="${1:-}"
              [ -f "$ca_bundle" ] || { echo "build-images.sh: --ca-bundle: no such file '$ca_bundle'" >&2; exit 2; } ;;
    --save) shift; save_dir="${1:-}"; [ -n "$save_dir" ] || { echo "build-images.sh: --save needs a directory" >&2; exit 2; } ;;
    --base-only) base_only=1 ;;
    -h|--help) sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-images.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[ ${#arches[@]} -gt 0 ] || arches=(amd64 arm64)

export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/containers/podman/containers.conf}"
for tool in podman mmdebstrap; do
  command -v "$tool" >/dev/null || { echo "build-images.sh: $tool is not installed (scripts/container-tools.sh)" >&2; exit 1; }
done

host_arch="$(dpkg --print-architecture)"
cache="build/containers"
mkdir -p "$cache"
base_tag() { echo "localhost/edgeinfer-base:py311-bookworm-$1"; }
# a manifest list over the per-arch bases: the Dockerfile's FROM picks the target's image, and the wheel
# stage (FROM --platform=$BUILDPLATFORM) the build machine's, as with the official multi-arch image
BASE_LIST="localhost/edgeinfer-base:py311-bookworm"

ensure_emulation() {
  local arch="$1"
  [ "$arch" = "$host_arch" ] && return 0
  local qemu="qemu-${arch/arm64/aarch64}"
  if [ ! -e "/proc/sys/fs/binfmt_misc/$qemu" ]; then
    [ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    [ -f "/usr/lib/binfmt.d/$qemu.conf" ] ||
      { echo "build-images.sh: $arch needs qemu-user-static (/usr/lib/binfmt.d/$qemu.conf is missing)" >&2; exit 1; }
    cat "/usr/lib/binfmt.d/$qemu.conf" >/proc/sys/fs/binfmt_misc/register
  fi
  arch-test "$arch" >/dev/null || { echo "build-images.sh: $arch binaries do not run here (binfmt_misc/qemu)" >&2; exit 1; }
}

build_base() {
  local arch="$1"
  local args=(
    --variant=minbase --arch="$arch" --include=python3,python3-venv,ca-certificates,passwd
    --aptopt='Acquire::Languages "none"'
    # merged /usr set up by the hook, so usr-is-merged replaces usrmerge and its ~55 MB of perl
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*'
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/doc/*'
    --dpkgopt='path-include=/usr/share/doc/*/copyright'
    # the official image's layout: python, pip and site-packages under /usr/local
    --customize-hook='chroot "$1" python3 -m venv /usr/local'
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/log/*.log "$1"/root/.cache'
  )
  local mirrors=(
    "deb http://deb.debian.org/debian bookworm main"
    "deb http://deb.debian.org/debian bookworm-updates main"
    "deb http://deb.debian.org/debian-security bookworm-security main"
  )
  local key
  key="$(printf '%s\n' "${args[@]}" bookworm "${mirrors[@]}" | sha256sum | cut -c1-12)"
  local tar="$cache/rootfs-$arch-$key.tar"
  local tag
  tag="$(base_tag "$arch")"
  if [ "$(podman image inspect --format '{{index .Labels "org.edgeinfer.base-key"}}' "$tag" 2>/dev/null)" = "$key" ]; then
    echo "== base $arch: $tag is current ($key)"
    return 0
  fi
  find "$cache" -maxdepth 1 -name "rootfs-$arch-*.tar*" ! -name "${tar##*/}" -delete  # older keys
  if [ ! -f "$tar" ]; then
    ensure_emulation "$arch"
    echo "== base $arch: mmdebstrap -> $tar"
    local start=$SECONDS
    mmdebstrap --quiet --format=tar "${args[@]}" bookworm "$tar.part" "${mirrors[@]}"
    mv "$tar.part" "$tar"
    echo "== base $arch: rootfs in $((SECONDS - start)) s"
  fi
  podman import --quiet --arch "$arch" --os linux \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change "LABEL org.edgeinfer.base-key=$key" \
    --change 'CMD ["python3"]' \
    "$tar" "$tag" >/dev/null
  echo "== base $arch: imported as $tag"
}

build_image() {
  local arch="$1"
  ensure_emulation "$arch"
  local secret=()
  [ -z "$ca_bundle" ] || secret=(--secret "id=ca-bundle,src=$ca_bundle")
  local start=$SECONDS
  echo "== image $arch: podman build -> localhost/edgeinfer:dev-$arch"
  podman build --format docker --platform "linux/$arch" --network host "${secret[@]}" \
    --build-arg PYTHON_IMAGE="$BASE_LIST" \
    -f containers/Dockerfile -t "localhost/edgeinfer:dev-$arch" .
  echo "== image $arch: built in $((SECONDS - start)) s, $(podman image inspect --format '{{.Size}}' "localhost/edgeinfer:dev-$arch" | awk '{printf "%.0f MB", $1 / 1e6}')"
  if [ -n "$save_dir" ]; then
    mkdir -p "$save_dir"
    rm -f "$save_dir/edgeinfer-dev-$arch.tar"
    podman save --quiet --format docker-archive -o "$save_dir/edgeinfer-dev-$arch.tar" "localhost/edgeinfer:dev-$arch"
    echo "== image $arch: saved $save_dir/edgeinfer-dev-$arch.tar"
  fi
}

base_list() {
  podman manifest rm "$BASE_LIST" >/dev/null 2>&1 || true
  podman manifest create "$BASE_LIST" >/dev/null
  for arch in amd64 arm64; do
    if podman image exists "$(base_tag "$arch")"; then
      podman manifest add "$BASE_LIST" "containers-storage:$(base_tag "$arch")" >/dev/null
    fi
  done
}

# The builder stage runs on the build machine's own architecture (pure-Python wheel), so its base is needed
# in any case. A foreign base (minutes under qemu) is made in the background meanwhile, while the host's
# image builds: on a 2-core CI machine that overlaps the two slowest steps.
build_base "$host_arch"
base_list
foreign=()
for arch in "${arches[@]}"; do [ "$arch" = "$host_arch" ] || foreign+=("$arch"); done
pids=()
for arch in "${foreign[@]}"; do
  ( build_base "$arch" 2>&1 | sed -u "s/^/[base $arch] /" ) &
  pids+=($!)
done
if [ "$base_only" = 0 ] && [[ " ${arches[*]} " == *" $host_arch "* ]]; then
  build_image "$host_arch"
fi
for pid in "${pids[@]}"; do
  wait "$pid" || { echo "build-images.sh: a base image build failed (log above)" >&2; exit 1; }
done
[ ${#foreign[@]} -eq 0 ] || base_list
[ "$base_only" = 1 ] && exit 0
for arch in "${foreign[@]}"; do
  build_image "$arch"
done
