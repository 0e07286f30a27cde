#!/usr/bin/env bash
# The local base image, for a machine that can reach no container registry (scripts/image.py decides, and tags the
# result with the hash of this file, so it is rebuilt only when this recipe changes).
#
#   scripts/image_base.sh NAME:TAG        (as root; DOCKER_HOST points at the engine)
#
# Debian bookworm (the release of BentoML's own python:3.11-slim base) with its Python 3.11 and pip, from the mirror
# apt already uses on this machine, plus the two libraries the bentofile's system_packages name (OpenCV's GUI build,
# which ultralytics installs, loads them). The machine's own CA certificates (a proxy with its own authority carries
# package traffic here) are copied in at build time, never committed.
set -euo pipefail
name=${1:?usage: image_base.sh NAME:TAG}
release=bookworm
packages=python3,python3-venv,python3-pip,ca-certificates,libgl1,libglib2.0-0

# the Debian mirror apt uses here: deb822 sources first, then the one-line format
mirror=$(awk -v r="$release" '
  /^URIs:/ {uris=$2} /^Suites:/ {for (i = 2; i <= NF; i++) if ($i == r) {print uris; exit}}
  /^deb / && $3 == r {print $2; exit}' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null | head -n1)
mirror=${mirror:-http://deb.debian.org/debian}

rootfs=$(mktemp -d /var/tmp/perception-base.XXXXXX)
trap 'rm -rf --one-file-system "$rootfs"' EXIT
echo "local base: debootstrap $release from $mirror" >&2
debootstrap --variant=minbase --include="$packages" "$release" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 \
  || { tail -n 30 "$rootfs.log" >&2; rm -f "$rootfs.log"; exit 1; }
rm -f "$rootfs.log"
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
  chroot "$rootfs" update-ca-certificates >/dev/null
fi
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/usr/share/doc/* \
  "$rootfs"/usr/share/man/*
tar -C "$rootfs" --numeric-owner -c . | docker import \
  --change 'ENV PIP_BREAK_SYSTEM_PACKAGES=1' \
  --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
  --change 'ENV UV_SYSTEM_CERTS=1' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["/bin/bash"]' \
  - "$name" >/dev/null
echo "local base: $name" >&2
