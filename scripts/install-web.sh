#!/bin/bash
# Builds the panel's phone in the browser (issue #34) from npm: JsSIP, pinned in
# scripts/browser-phone/package-lock.json, bundled for the browser by esbuild into
# web/static/vendor/jssip.min.js (not committed: never a copy of the library in our tree).
# Idempotent: nothing is fetched while the bundle matches the lock file.
set -euo pipefail

HERE=$(cd "$(dirname "$0")/.." && pwd)
SRC=$HERE/scripts/browser-phone
WORK=$HERE/.local/browser-phone
OUT=$HERE/web/static/vendor
STAMP=$OUT/.lock-sha256
want=$(sha256sum "$SRC/package-lock.json" | cut -d' ' -f1)
if [ -f "$OUT/jssip.min.js" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$want" ]; then
    echo "browser phone: JsSIP bundle present"
    exit 0
fi
if ! command -v npm >/dev/null; then
    [ "$(id -u)" = 0 ] || { echo "browser phone: npm not found; run as root: apt-get install nodejs npm" >&2; exit 1; }
    echo "browser phone: installing Debian's nodejs and npm"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nodejs npm >/dev/null ||
        { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nodejs npm >/dev/null; }
fi
mkdir -p "$WORK" "$OUT"
cp "$SRC/package.json" "$SRC/package-lock.json" "$WORK/"
(cd "$WORK" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
"$WORK/node_modules/.bin/esbuild" "$WORK/node_modules/jssip/lib/JsSIP.js" --bundle --format=iife \
    --global-name=JsSIP --minify --log-level=warning --outfile="$OUT/jssip.min.js"
cp "$WORK/node_modules/jssip/LICENSE.md" "$OUT/JSSIP-LICENSE.md"
echo "$want" > "$STAMP"
echo "browser phone: JsSIP $(node -p "require('$WORK/node_modules/jssip/package.json').version") bundled into web/static/vendor"
