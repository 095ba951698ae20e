#!/usr/bin/env bash
# Keycloak 26 (Quarkus distribution) for the fhirwall test stack.
#
#   test/stack/keycloak.sh install   download org.keycloak:keycloak-quarkus-dist into $FHIRWALL_CACHE
#   test/stack/keycloak.sh start     start-dev on 127.0.0.1:$KEYCLOAK_PORT with realm "fhirwall" imported
#   test/stack/keycloak.sh stop
#   test/stack/keycloak.sh status
#
# The realm comes from config/keycloak/fhirwall-realm.json. Each checkout runs its own copy of the
# distribution under $FHIRWALL_STATE/keycloak/, so the dev H2 database and the import directory are per
# checkout. When the realm file changes, the next start wipes the H2 database so the realm is re-imported
# (Keycloak skips --import-realm for a realm that already exists).
#
# Issuer: http://127.0.0.1:$KEYCLOAK_PORT/realms/fhirwall. Master-realm admin (test only): admin / admin,
# override with KC_BOOTSTRAP_ADMIN_USERNAME / KC_BOOTSTRAP_ADMIN_PASSWORD.
# Environment: KEYCLOAK_VERSION (default 26.7.3), KEYCLOAK_START_TIMEOUT (s, default 240),
# JAVA_OPTS_KC_HEAP (default -Xms64m -Xmx768m), JAVA_OPTS_APPEND (default -XX:TieredStopAtLevel=1: C1 only,
# quicker start on 2 cores; kc.sh already selects G1, so do not add another GC flag).
#
# Times on 2 busy cores: first start from an empty state dir 1.5-4 min (Quarkus re-augmentation, schema,
# import); warm start about 15 s (no re-augmentation while the options and provider JAR stay the same).
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NAME=keycloak
KC_VERSION=${KEYCLOAK_VERSION:-26.7.3}
REALM=fhirwall
REALM_FILE=$FHIRWALL_ROOT/config/keycloak/fhirwall-realm.json
SCRIPTS_DIR=$FHIRWALL_ROOT/config/keycloak/scripts   # script mapper JAR layout (SMART patient in token response)
CLIENTAUTH_DIR=$FHIRWALL_ROOT/config/keycloak/clientauth  # Java client authenticator (public clients refresh without client_id)
ZIP=$FHIRWALL_CACHE/keycloak/keycloak-quarkus-dist-$KC_VERSION.zip
DIST=$FHIRWALL_CACHE/keycloak/keycloak-$KC_VERSION          # pristine unpacked distribution (shared)
HOME_DIR=$FHIRWALL_STATE/keycloak/keycloak-$KC_VERSION      # this checkout's copy (kc.home.dir)
BASE=http://127.0.0.1:$KEYCLOAK_PORT
READY_URL=$BASE/realms/$REALM/.well-known/openid-configuration
MAVEN=${MAVEN_CENTRAL:-https://repo.maven.apache.org/maven2}

install() {
  [ -x "$DIST/bin/kc.sh" ] && return 0
  log "downloading keycloak-quarkus-dist $KC_VERSION"
  fetch "$MAVEN/org/keycloak/keycloak-quarkus-dist/$KC_VERSION/keycloak-quarkus-dist-$KC_VERSION.zip" "$ZIP"
  local tmp; tmp=$(mktemp -d "$FHIRWALL_CACHE/keycloak/unzip.XXXXXX")
  unzip -q "$ZIP" -d "$tmp"
  [ -x "$tmp/keycloak-$KC_VERSION/bin/kc.sh" ] || { rm -rf "$tmp"; die "unexpected zip layout in $ZIP"; }
  rm -rf "$DIST"
  mv "$tmp/keycloak-$KC_VERSION" "$DIST"
  rm -rf "$tmp"
  log "installed $DIST"
}

healthy() { curl -fsS -o /dev/null --max-time 2 "$READY_URL" 2>/dev/null; }

realm_sum() { sha256sum "$REALM_FILE" | cut -d' ' -f1; }

# prepare_home: copy the distribution once per checkout; re-import the realm when the file changed
prepare_home() {
  [ -f "$REALM_FILE" ] || die "missing $REALM_FILE"
  if [ ! -x "$HOME_DIR/bin/kc.sh" ]; then
    log "copying distribution to $HOME_DIR"
    rm -rf "$HOME_DIR.tmp"
    mkdir -p "$(dirname "$HOME_DIR")"
    cp -a "$DIST" "$HOME_DIR.tmp"
    mv "$HOME_DIR.tmp" "$HOME_DIR"
  fi
  local stamp=$HOME_DIR/data/realm.sha256 sum; sum=$(realm_sum)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$sum" ] || [ ! -d "$HOME_DIR/data/h2" ]; then
    log "realm file new or changed: wiping the dev database so the realm is imported again"
    rm -rf "$HOME_DIR/data/h2" "$HOME_DIR/data/import"
  fi
  mkdir -p "$HOME_DIR/data/import"
  cp "$REALM_FILE" "$HOME_DIR/data/import/$REALM-realm.json"
  echo "$sum" >"$stamp"
  # The realm's launch/patient scope uses the deployed script mapper script-smart-patient-token-response.js
  # (needs --features=scripts). start-dev re-augments on every start, so a rebuilt JAR is always picked up.
  # Rebuilt only when the sources change: Keycloak records provider JAR timestamps and re-augments
  # (about a minute or more on 2 cores) whenever one changes.
  local jar=$HOME_DIR/providers/fhirwall-smart-scripts.jar jsum
  jsum=$(cd "$SCRIPTS_DIR" && find . -type f | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1)
  if [ ! -f "$jar" ] || [ "$(cat "$jar.sha256" 2>/dev/null)" != "$jsum" ]; then
    rm -f "$jar"
    (cd "$SCRIPTS_DIR" && "$1/bin/jar" --create --file "$jar" ./*.js META-INF) \
      || die "could not build the script mapper JAR from $SCRIPTS_DIR"
    echo "$jsum" >"$jar.sha256"
  fi
  # The client authenticator that lets a public browser app refresh without client_id, as the SMART JS
  # client does by default (config/keycloak/clientauth, docs/keycloak-realm.md), compiled against this
  # distribution's own JARs; rebuilt only when its sources change, for the same reason as above.
  local cjar=$HOME_DIR/providers/fhirwall-clientauth.jar csum tmp
  csum=$(cd "$CLIENTAUTH_DIR" && find . -type f | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1)
  if [ ! -f "$cjar" ] || [ "$(cat "$cjar.sha256" 2>/dev/null)" != "$csum" ]; then
    rm -f "$cjar"
    tmp=$(mktemp -d)
    { "$1/bin/javac" --release 17 -nowarn -cp "$HOME_DIR/lib/lib/main/*" -d "$tmp" \
        $(find "$CLIENTAUTH_DIR/src" -name '*.java') \
      && cp -r "$CLIENTAUTH_DIR/META-INF" "$tmp/" \
      && "$1/bin/jar" --create --file "$cjar" -C "$tmp" .; } \
      || { rm -rf "$tmp"; die "could not build the client authenticator JAR from $CLIENTAUTH_DIR"; }
    rm -rf "$tmp"
    echo "$csum" >"$cjar.sha256"
  fi
}

# client_secrets: the secrets of the realm's own confidential clients (fhirwall-registry, the registry's
# service account; fhirwall-portal, the portal's OIDC client), made once per checkout and read by the realm
# import (${FHIRWALL_KC_*_SECRET} placeholders) and by fhirwall-proxy (registry.keycloak.client_secret_file,
# portal.client_secret_file). They live beside the dev database that holds them.
SECRETS_DIR=$FHIRWALL_STATE/keycloak/secrets
client_secrets() {
  mkdir -p "$SECRETS_DIR"; chmod 700 "$SECRETS_DIR"
  local name
  for name in registry portal; do
    [ -s "$SECRETS_DIR/$name.secret" ] && continue
    (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$SECRETS_DIR/$name.secret")
  done
}

start() {
  if is_running "$NAME" && healthy; then
    if [ "$(cat "$HOME_DIR/data/realm.sha256" 2>/dev/null)" != "$(realm_sum)" ]; then
      log "warning: $REALM_FILE changed since Keycloak started; run '$0 stop' then '$0 start' to re-import"
    fi
    log "already running at $BASE"
    return 0
  fi
  is_running "$NAME" && stop
  install
  local jdk; jdk=$(jdk21) || die "no JDK >= 21 under /usr/lib/jvm (Keycloak 26.7 wants 21 or 25)"
  if (exec 3<>"/dev/tcp/127.0.0.1/$KEYCLOAK_PORT") 2>/dev/null; then
    die "port $KEYCLOAK_PORT already in use by another process"
  fi
  prepare_home "$jdk"
  client_secrets
  log "starting Keycloak $KC_VERSION on $BASE (JDK $jdk, log $(logfile "$NAME"))"
  local t0=$SECONDS
  JAVA_HOME=$jdk \
  JAVA_OPTS_KC_HEAP=${JAVA_OPTS_KC_HEAP:--Xms64m -Xmx768m} \
  JAVA_OPTS_APPEND=${JAVA_OPTS_APPEND:--XX:TieredStopAtLevel=1} \
  KC_BOOTSTRAP_ADMIN_USERNAME=${KC_BOOTSTRAP_ADMIN_USERNAME:-admin} \
  KC_BOOTSTRAP_ADMIN_PASSWORD=${KC_BOOTSTRAP_ADMIN_PASSWORD:-admin} \
  FHIRWALL_KC_REGISTRY_SECRET=$(cat "$SECRETS_DIR/registry.secret") \
  FHIRWALL_KC_PORTAL_SECRET=$(cat "$SECRETS_DIR/portal.secret") \
    start_bg "$NAME" "$HOME_DIR/bin/kc.sh" start-dev \
      --http-host=127.0.0.1 --http-port="$KEYCLOAK_PORT" \
      --hostname="$BASE" \
      --http-management-port="$KEYCLOAK_MGMT_PORT" --health-enabled=true \
      --features=scripts,client-secret-rotation \
      --import-realm
  wait_http "$NAME" "$READY_URL" "${KEYCLOAK_START_TIMEOUT:-240}" || { stop; die "Keycloak did not become healthy"; }
  log "Keycloak ready after $((SECONDS - t0)) s: issuer $BASE/realms/$REALM"
}

stop() {
  stop_bg "$NAME"
  log "stopped"
}

status() {
  if is_running "$NAME"; then
    if healthy; then echo "keycloak: running, healthy ($BASE/realms/$REALM), pid $(cat "$(pidfile "$NAME")")"; return 0; fi
    echo "keycloak: running, not healthy yet, pid $(cat "$(pidfile "$NAME")")"; return 1
  fi
  echo "keycloak: stopped"; return 3
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 {install|start|stop|status}" >&2; exit 2 ;;
esac
