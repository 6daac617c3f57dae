#!/bin/bash
# Installs the host (Debian 12 bookworm) packages clinic-pbx needs. Idempotent: packages that
# are already installed are skipped, and `apt-get update` runs only when something is missing.
# Host packages come from bookworm only; Asterisk itself lives in a private sid root
# (scripts/install-asterisk.sh) and never touches the host.
set -euo pipefail

PKGS=(mmdebstrap bc sip-tester espeak-ng libespeak-ng1 sox chromium systemd postgresql)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "system packages: all present"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "system packages missing (${missing[*]}); run as root: apt-get install ${missing[*]}" >&2
    exit 1
fi
echo "system packages: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
echo "system packages: done"
