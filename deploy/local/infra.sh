#!/usr/bin/env bash
# Local infrastructure without Docker: a real PostgreSQL (Debian package) and a real Apache Kafka
# (KRaft, jars from Maven Central). Idempotent: what already answers is used, not restarted.
#
#   deploy/local/infra.sh up       ensure PostgreSQL and Kafka answer, create service roles/databases
#   deploy/local/infra.sh down     stop what this script started
#   deploy/local/infra.sh status   say what answers where
#   deploy/local/infra.sh fetch-kafka   only download the Kafka jars (the fault tests need them)
#
# Environment: DATABASE_URL (admin URL of a PostgreSQL to use instead), KAFKA_BOOTSTRAP_SERVERS
# (a broker to use instead), UNION_CACHE_DIR (download/data cache, default <repo>/.cache).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${UNION_CACHE_DIR:-$repo/.cache}
kafka_version=4.1.2
kafka_home=$cache/kafka-$kafka_version
kafka_data=$cache/kafka-data
run_dir=$cache/run
mkdir -p "$cache" "$run_dir"

# Local development credentials. They exist only on 127.0.0.1; production mode refuses them.
admin_user=union_admin
admin_password=union-admin-local
services=(membership claims activities counseling mediation)

log() { printf '[infra] %s\n' "$*" >&2; }

port_open() { # host port
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0 || return 1
}

docker_engine() { command -v docker >/dev/null 2>&1 && timeout 5 docker info >/dev/null 2>&1; }

admin_url() {
  if [[ -n "${DATABASE_URL:-}" ]]; then printf '%s' "${DATABASE_URL/+asyncpg/}"
  else printf 'postgresql://%s:%s@127.0.0.1:5432/postgres' "$admin_user" "$admin_password"; fi
}

pg_version() { ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -1; }

ensure_postgres() {
  if [[ -n "${DATABASE_URL:-}" ]]; then log "PostgreSQL: using DATABASE_URL"; return; fi
  if port_open 127.0.0.1 5432; then
    log "PostgreSQL: already answering on 127.0.0.1:5432"
  else
    local v; v=$(pg_version)
    if [[ -z "$v" || ! -x /usr/lib/postgresql/$v/bin/postgres ]]; then
      if [[ $(id -u) -ne 0 ]]; then
        log "PostgreSQL is not installed and this is not root: install the 'postgresql' package or set DATABASE_URL"; exit 1
      fi
      log "PostgreSQL: installing the Debian package (first run only)"
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq >/dev/null
      apt-get install -y -qq postgresql >/dev/null
      v=$(pg_version)
    fi
    if ! pg_lsclusters -h 2>/dev/null | awk '{print $1"/"$2}' | grep -qx "$v/main"; then
      log "PostgreSQL: creating cluster $v/main"
      pg_createcluster "$v" main >/dev/null
    fi
    log "PostgreSQL: starting cluster $v/main"
    pg_ctlcluster "$v" main start
    touch "$run_dir/postgres.started-by-us"
    for _ in $(seq 1 60); do port_open 127.0.0.1 5432 && break; sleep 0.5; done
    port_open 127.0.0.1 5432 || { log "PostgreSQL did not come up; see /var/log/postgresql/"; exit 1; }
  fi
  bootstrap_admin_role
}

bootstrap_admin_role() {
  # Needs local superuser access (the Debian 'postgres' OS user) only the first time.
  # pg_signal_backend: DROP DATABASE ... WITH (FORCE) of a test database must be able to end an
  # autovacuum worker that happens to be in it (else the drop fails now and then).
  if [[ $(PGPASSWORD=$admin_password PGCONNECT_TIMEOUT=5 psql -qAtX -h 127.0.0.1 -U "$admin_user" -d postgres \
        -c "select pg_has_role('$admin_user', 'pg_signal_backend', 'member')" 2>/dev/null) == t ]]; then
    return
  fi
  if [[ $(id -u) -ne 0 ]] || ! id postgres >/dev/null 2>&1; then
    log "cannot create role $admin_user (need root and the postgres OS user); set DATABASE_URL to an admin URL"; exit 1
  fi
  log "PostgreSQL: creating admin role $admin_user"
  runuser -u postgres -- psql -qAtX -v ON_ERROR_STOP=1 -d postgres \
    -c "DO \$\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$admin_user') THEN
          CREATE ROLE $admin_user LOGIN CREATEDB CREATEROLE PASSWORD '$admin_password';
        ELSE ALTER ROLE $admin_user LOGIN CREATEDB CREATEROLE PASSWORD '$admin_password'; END IF; END \$\$;" \
    -c "GRANT pg_signal_backend TO $admin_user" >/dev/null
}

ensure_service_databases() {
  # One role and one database per service (role password = "<service>-local" for local runs).
  local url; url=$(admin_url)
  for s in "${services[@]}"; do
    psql -qAtX -v ON_ERROR_STOP=1 "$url" -c "DO \$\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$s') THEN
        CREATE ROLE $s LOGIN PASSWORD '$s-local'; END IF; END \$\$;" >/dev/null
    psql -qAtX -v ON_ERROR_STOP=1 "$url" -c "GRANT $s TO CURRENT_USER" >/dev/null 2>&1 || true
    if [[ -z $(psql -qAtX "$url" -c "SELECT 1 FROM pg_database WHERE datname = '$s'") ]]; then
      psql -qAtX -v ON_ERROR_STOP=1 "$url" -c "CREATE DATABASE $s OWNER $s" >/dev/null
      log "PostgreSQL: created database $s"
    fi
  done
}

fetch_kafka() {
  if [[ -f "$kafka_home/lib/.complete" ]]; then return; fi
  log "Kafka: fetching Apache Kafka $kafka_version jars from Maven Central into $kafka_home/lib (first run only)"
  command -v mvn >/dev/null || { log "Maven (mvn) is required to fetch Kafka"; exit 1; }
  command -v java >/dev/null || { log "Java 17+ is required to run Kafka"; exit 1; }
  mkdir -p "$kafka_home"
  cp "$here/kafka/pom.xml" "$kafka_home/pom.xml"
  rm -rf "$kafka_home/lib"
  (cd "$kafka_home" && mvn -B -q -Dstyle.color=never org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$kafka_home/lib" -Dkafka.version=$kafka_version) \
      >"$kafka_home/maven.log" 2>&1 || { log "Maven failed; last lines of $kafka_home/maven.log:"; tail -30 "$kafka_home/maven.log" >&2; exit 1; }
  touch "$kafka_home/lib/.complete"
}

ensure_kafka() {
  if [[ -n "${KAFKA_BOOTSTRAP_SERVERS:-}" ]]; then log "Kafka: using KAFKA_BOOTSTRAP_SERVERS"; return; fi
  if port_open 127.0.0.1 9092; then log "Kafka: already answering on 127.0.0.1:9092"; return; fi
  fetch_kafka
  mkdir -p "$kafka_data"
  sed "s#@LOG_DIR@#$kafka_data#" "$here/kafka/server.properties.in" > "$run_dir/server.properties"
  local jvm=(java -Xms256m -Xmx512m -XX:+UseG1GC -Djava.awt.headless=true -cp "$kafka_home/lib/*")
  if [[ ! -f "$kafka_data/meta.properties" ]]; then
    log "Kafka: formatting KRaft storage in $kafka_data"
    local cluster_id
    cluster_id=$("${jvm[@]}" -Dlog4j2.configurationFile="$here/kafka/log4j2-tools.properties" kafka.tools.StorageTool random-uuid)
    "${jvm[@]}" -Dlog4j2.configurationFile="$here/kafka/log4j2-tools.properties" \
      kafka.tools.StorageTool format -t "$cluster_id" -c "$run_dir/server.properties" --standalone >/dev/null
  fi
  log "Kafka: starting the broker (log: $run_dir/kafka.log)"
  nohup "${jvm[@]}" -Dlog4j2.configurationFile="$here/kafka/log4j2.properties" \
    kafka.Kafka "$run_dir/server.properties" >"$run_dir/kafka.log" 2>&1 &
  echo $! > "$run_dir/kafka.pid"
  # A fresh broker starts in ~10 s; one that was killed re-reads every partition's log first
  # (a minute for a few thousand), so the wait is long and says what the broker is doing.
  local waited
  for waited in $(seq 1 600); do
    if grep -q 'Kafka Server started' "$run_dir/kafka.log" 2>/dev/null && port_open 127.0.0.1 9092; then
      log "Kafka: ready on 127.0.0.1:9092"; return
    fi
    kill -0 "$(cat "$run_dir/kafka.pid")" 2>/dev/null || { log "Kafka exited; last lines:"; tail -20 "$run_dir/kafka.log" >&2; exit 1; }
    if (( waited % 60 == 0 )); then
      log "Kafka: still starting after $((waited / 2)) s ($(grep -o '[0-9]*/[0-9]* completed' "$run_dir/kafka.log" | tail -1 || true) partition logs loaded)"
    fi
    sleep 0.5
  done
  log "Kafka did not become ready in 300 s; see $run_dir/kafka.log"; exit 1
}

stop_kafka() {
  local pidf=$run_dir/kafka.pid
  [[ -f $pidf ]] || return 0
  local pid; pid=$(cat "$pidf")
  if kill -0 "$pid" 2>/dev/null; then
    log "Kafka: stopping (pid $pid)"
    kill -TERM "$pid"
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && { log "Kafka: still running after 30 s, killing"; kill -KILL "$pid"; }
  fi
  rm -f "$pidf"
}

stop_postgres() {
  [[ -f $run_dir/postgres.started-by-us ]] || return 0
  local v; v=$(pg_version)
  log "PostgreSQL: stopping cluster $v/main"
  pg_ctlcluster "$v" main stop || true
  rm -f "$run_dir/postgres.started-by-us"
}

status() {
  if port_open 127.0.0.1 5432; then echo "PostgreSQL  127.0.0.1:5432  up"; else echo "PostgreSQL  127.0.0.1:5432  down"; fi
  if port_open 127.0.0.1 9092; then echo "Kafka       127.0.0.1:9092  up"; else echo "Kafka       127.0.0.1:9092  down"; fi
}

case "${1:-up}" in
  up)
    ensure_postgres
    ensure_service_databases
    ensure_kafka ;;
  down)
    stop_kafka
    stop_postgres ;;
  status) status ;;
  fetch-kafka) fetch_kafka ;;  # the fault tests start brokers of their own from these jars
  docker-engine) docker_engine ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
