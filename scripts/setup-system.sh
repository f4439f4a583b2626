#!/usr/bin/env bash
# Debian packages the tests and the demo need. Idempotent; needs root (or sudo) on Debian/Ubuntu.
set -euo pipefail
# chromium and chromium-driver: tests/test_live_view.py drives the live view in headless Chromium.
PKGS="redis-server etcd-server docker.io debootstrap openssl iproute2 util-linux wrk chromium chromium-driver"
missing=""
for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
[ -z "$missing" ] && exit 0
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
# The packaged services must not run on their own: the tests start private instances on 127.0.0.1.
for svc in redis-server etcd docker containerd; do
  $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || true
  $SUDO service "$svc" stop >/dev/null 2>&1 || true
done
