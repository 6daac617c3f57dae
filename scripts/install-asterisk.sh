#!/bin/bash
# install-asterisk.sh [TARGET_DIR]
#
# Builds a minimal Debian sid root in TARGET_DIR (default .local/asterisk-root) that holds
# Asterisk 22 from Debian's packages. Route: the host's bookworm `mmdebstrap` -> sid root, so
# no sid package ever lands in the host root. Idempotent: an existing root is only reported.
# Uses the Debian mirror the host is already configured with (override: MIRROR=...).
set -euo pipefail

HERE=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${1:-${CLINIC_PBX_ASTERISK_ROOT:-$HERE/.local/asterisk-root}}
MIRROR=${MIRROR:-$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)}
MIRROR=${MIRROR:-$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SUITE=${SUITE:-sid}
# Recommends are off: no music-on-hold packs, no sox inside the root.
PKGS=${PKGS:-asterisk,asterisk-core-sounds-en-gsm}

if [ -x "$TARGET/usr/sbin/asterisk" ]; then
    echo "asterisk root: present at $TARGET ($(chroot "$TARGET" /usr/sbin/asterisk -V 2>/dev/null || echo '?'))"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "asterisk root: building it needs root (mmdebstrap --mode=root, chroot)" >&2
    exit 1
fi
command -v mmdebstrap >/dev/null || "$HERE/scripts/install-system.sh"

# mmdebstrap mounts /proc, /sys and /dev inside the root it builds and sometimes cannot unmount
# /proc at the end: whatever is still mounted under a root is unmounted before anything walks
# or removes it (rm -rf through a live /proc is a screen of errors, or worse).
unmount_under() {
    local root=$1
    [ -d "$root" ] || return 0
    awk -v r="$(readlink -f "$root")/" 'index($2, r) == 1 {print $2}' /proc/mounts | sort -r |
        while read -r mnt; do umount "$mnt" 2>/dev/null || umount -l "$mnt" || true; done
}

# A half-built root from an interrupted run is removed first (mmdebstrap wants an empty dir).
unmount_under "$TARGET.partial"
rm -rf --one-file-system "$TARGET.partial"
mkdir -p "$(dirname "$TARGET")"
LOG="${TARGET%/}.mmdebstrap.log"
echo "asterisk root: mmdebstrap $SUITE from $MIRROR -> $TARGET (about 30 s; log $LOG)"
t0=$(date +%s)
mmdebstrap --mode=root --variant=minbase \
    --aptopt='APT::Install-Recommends "false"' \
    --aptopt='Acquire::Check-Valid-Until "false"' \
    --aptopt='Acquire::Check-Date "false"' \
    --aptopt='Acquire::Retries "3"' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --include="$PKGS" \
    "$SUITE" "$TARGET.partial" "$MIRROR" >"$LOG" 2>&1 || { unmount_under "$TARGET.partial"; tail -30 "$LOG"; exit 1; }
unmount_under "$TARGET.partial"
mv "$TARGET.partial" "$TARGET"
# -x: the size of the root's own files, never of a filesystem mounted inside it
echo "asterisk root: $(chroot "$TARGET" /usr/sbin/asterisk -V) in $(( $(date +%s) - t0 )) s, $(du -shx "$TARGET" | cut -f1)"
