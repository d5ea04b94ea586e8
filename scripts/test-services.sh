#!/usr/bin/env bash
# Install the real servers the integration tests talk to (the fixtures start and stop them per test session)
# and the Debian tools some tests run (systemd-analyze, setpriv, chromium).
set -euo pipefail
need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v victoria-metrics >/dev/null 2>&1 || [ -x /usr/bin/victoria-metrics ] || need+=(victoria-metrics)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)  # verifies deploy/systemd/edgeinfer.service
command -v setpriv >/dev/null 2>&1 || need+=(util-linux)  # runs the CLI as nobody (permission tests)
[ -x /usr/bin/chromium ] || need+=(chromium)  # the live page's browser test (headless, via Playwright)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  echo "installing ${need[*]} (Debian packages) ..."
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# podman, buildah, mmdebstrap, qemu-user-static for tests/containers (the images and the compose stack)
"$(dirname "$0")/container-tools.sh"
