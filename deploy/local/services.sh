#!/usr/bin/env bash
# Start/stop the service processes for local runs (`make up` / `make down`).
#   deploy/local/services.sh start|stop|status
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
run_dir=${UNION_CACHE_DIR:-$repo/.cache}/run
mkdir -p "$run_dir"
# name:port, in start order. Services not built yet are simply absent from this list.
services=(membership:8001 claims:8002)

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start() {
  for entry in "${services[@]}"; do
    local name=${entry%%:*} port=${entry##*:}
    local pidf=$run_dir/$name.pid
    [[ -f $repo/services/$name/__main__.py ]] || continue
    if [[ -f $pidf ]] && kill -0 "$(cat "$pidf")" 2>/dev/null; then
      echo "[services] $name already running (pid $(cat "$pidf")) on 127.0.0.1:$port"; continue
    fi
    # exec: the recorded pid is the service itself; no stdin/stdout left attached to the caller.
    if port_open "$port"; then
      echo "[services] something else already listens on 127.0.0.1:$port; not starting a second $name" >&2; exit 1
    fi
    (cd "$repo" && exec nohup .venv/bin/python -m "services.$name") </dev/null >"$run_dir/$name.log" 2>&1 &
    echo $! >"$pidf"
    for _ in $(seq 1 120); do
      port_open "$port" && break
      kill -0 "$(cat "$pidf")" 2>/dev/null || { echo "[services] $name exited; see $run_dir/$name.log" >&2; tail -20 "$run_dir/$name.log" >&2; exit 1; }
      sleep 0.25
    done
    echo "[services] $name on http://127.0.0.1:$port (log $run_dir/$name.log)"
  done
  echo "[services] PostgreSQL 127.0.0.1:5432 · Kafka 127.0.0.1:9092 · staff token: local-staff-token"
}

stop() {
  for entry in "${services[@]}"; do
    local name=${entry%%:*}
    local pidf=$run_dir/$name.pid
    [[ -f $pidf ]] || continue
    local pid; pid=$(cat "$pidf")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid"
      for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
      kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
      echo "[services] $name stopped"
    fi
    rm -f "$pidf"
  done
}

status() {
  for entry in "${services[@]}"; do
    local name=${entry%%:*} port=${entry##*:}
    if port_open "$port"; then echo "$name  127.0.0.1:$port  up"; else echo "$name  127.0.0.1:$port  down"; fi
  done
}

case "${1:-start}" in start) start ;; stop) stop ;; status) status ;; *) echo "usage: $0 start|stop|status" >&2; exit 2 ;; esac
