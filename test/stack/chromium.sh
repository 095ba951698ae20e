#!/usr/bin/env bash
# Headless Chromium and the npm packages of the browser tests (test/browser).
#
#   test/stack/chromium.sh install   Debian's chromium (apt-get) if /usr/bin/chromium is missing, then
#                                    `npm ci` of test/browser/package-lock.json into $FHIRWALL_CACHE/browser
#   test/stack/chromium.sh dir       print the node_modules parent the tests use
#
# The npm tree lives outside the checkout (one copy per machine, like Envoy's venv) and is re-installed only
# when the lock file changes. puppeteer-core never downloads a browser of its own: the tests point it at
# /usr/bin/chromium (override with CHROMIUM).
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

LOCK=$FHIRWALL_ROOT/test/browser/package-lock.json
PKG=$FHIRWALL_ROOT/test/browser/package.json
DIR=$FHIRWALL_CACHE/browser
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}

install_chromium() {
  [ -x "$CHROMIUM" ] && return 0
  command -v apt-get >/dev/null || die "no $CHROMIUM and no apt-get: install Debian's chromium package"
  log "installing Debian's chromium"
  local sudo=; [ "$(id -u)" = 0 ] || sudo=sudo
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q chromium >/dev/null 2>&1 || {
    DEBIAN_FRONTEND=noninteractive $sudo apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q chromium >/dev/null
  }
  [ -x "$CHROMIUM" ] || die "apt-get installed chromium but $CHROMIUM is missing"
}

install_node_modules() {
  command -v npm >/dev/null || {
    log "installing Debian's nodejs and npm"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm >/dev/null
  }
  local sum; sum=$(cat "$PKG" "$LOCK" | sha256sum | cut -d' ' -f1)
  [ "$(cat "$DIR/lock.sha256" 2>/dev/null)" = "$sum" ] && [ -d "$DIR/node_modules/fhirclient" ] && return 0
  log "npm ci into $DIR"
  mkdir -p "$DIR"
  cp "$PKG" "$LOCK" "$DIR/"
  (cd "$DIR" && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error) || die "npm ci failed in $DIR"
  echo "$sum" >"$DIR/lock.sha256"
}

case ${1:-} in
  install) install_chromium; install_node_modules ;;
  dir) echo "$DIR" ;;
  *) die "usage: $0 install|dir" ;;
esac
