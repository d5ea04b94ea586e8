#!/usr/bin/env bash
# The Debian tools tests/containers and scripts/build-images.sh use: podman (with runc, CNI networking and
# its DNS plugin, so compose services find each other by name), buildah, mmdebstrap for the base rootfs,
# qemu-user-static + arch-test for arm64 under emulation. Called by scripts/test-services.sh; safe to rerun.
set -euo pipefail
need=()
for pkg in podman buildah runc mmdebstrap qemu-user-static arch-test uidmap fuse-overlayfs slirp4netns \
  containernetworking-plugins golang-github-containernetworking-plugin-dnsname iptables; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]} (Debian packages, for tests/containers) ..."
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# arm64 binaries through qemu (systemd-binfmt does this at boot where systemd runs; a CI VM may have none)
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] && [ -f /usr/lib/binfmt.d/qemu-aarch64.conf ]; then
  [ -e /proc/sys/fs/binfmt_misc/register ] || $SUDO mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  $SUDO sh -c 'cat /usr/lib/binfmt.d/qemu-aarch64.conf > /proc/sys/fs/binfmt_misc/register'
fi
