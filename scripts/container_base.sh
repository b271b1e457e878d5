#!/usr/bin/env bash
# Build localhost/mammo-base: a minimal Debian bookworm root file system made from Debian
# packages only (no registry needed), imported into podman. Every image in the Dockerfile
# (web/worker/beat, postgres, redis) starts FROM it.
#   scripts/container_base.sh            # build it if podman does not have it yet
#   scripts/container_base.sh --rebuild  # build it again (e.g. for Debian security updates)
set -euo pipefail
IMAGE=${MAMMO_BASE_IMAGE:-localhost/mammo-base}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PODMAN=${PODMAN:-podman}

if [ "${1:-}" != "--rebuild" ] && $PODMAN image exists "$IMAGE"; then
  echo "base image $IMAGE exists (pass --rebuild to make it again)"
  exit 0
fi
command -v mmdebstrap >/dev/null || { echo "mmdebstrap is needed: apt-get install mmdebstrap" >&2; exit 1; }

# --variant=apt: essential packages + apt, so later stages can apt-get install (postgresql,
# redis-server). Security updates come from bookworm-security. Docs and man pages dropped.
mmdebstrap --variant=apt \
  --include=python3,python3-venv,ca-certificates,tzdata \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --aptopt='APT::Install-Recommends "false"' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
  bookworm - \
  "deb $MIRROR bookworm main" \
  "deb $MIRROR bookworm-updates main" \
  "deb ${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security} bookworm-security main" \
  | $PODMAN import \
      --change 'ENV LANG=C.UTF-8' \
      --change 'CMD ["/bin/bash"]' \
      --message "mmdebstrap --variant=apt bookworm: python3 python3-venv ca-certificates tzdata" \
      - "$IMAGE"
$PODMAN image ls "$IMAGE"
