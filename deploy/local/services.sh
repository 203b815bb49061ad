#!/usr/bin/env bash
# Start/stop the service processes for local runs (`make up` / `make down`).
#   deploy/local/services.sh start|stop|status [service ...]
# Ports come from <SERVICE>_PORT (the variable the service itself reads), else the defaults below.
# Worker processes per service: <SERVICE>_HTTP_WORKERS, else UNION_HTTP_WORKERS, else 1.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
run_dir=${UNION_CACHE_DIR:-$repo/.cache}/run
mkdir -p "$run_dir"
# name:default port, in start order. Services not built yet are simply absent from this list.
services=(membership:8001 claims:8002 activities:8003 counseling:8004 mediation:8005)

workers_of() { # workers_of NAME: <NAME>_HTTP_WORKERS, else UNION_HTTP_WORKERS, else 1
  local var; var="$(tr '[:lower:]' '[:upper:]' <<<"$1")_HTTP_WORKERS"
  echo "${!var:-${UNION_HTTP_WORKERS:-1}}"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

port_of() { # port_of NAME DEFAULT: <NAME>_PORT if set, as the service itself reads it
  local var; var="$(tr '[:lower:]' '[:upper:]' <<<"$1")_PORT"
  echo "${!var:-$2}"
}

# ours PID NAME: PID is a live (not zombie, not dead) process running `python -m services.NAME`.
# `kill -0` is not enough: it succeeds on a killed process that nobody has reaped yet, and on a
# recycled pid that now belongs to something else.
ours() {
  local pid=$1 name=$2 stat state cmdline
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
  state=${stat##*) }; state=${state%% *}    # the field after "(comm)"; comm may contain spaces
  [[ $state != Z && $state != X && $state != x ]] || return 1
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ " $cmdline" == *" -m services.$name "* ]]
}

# stop_pid PID NAME: TERM, wait up to 15 s, then KILL; only ever a process of ours.
stop_pid() {
  local pid=$1 name=$2
  ours "$pid" "$name" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do ours "$pid" "$name" || return 0; sleep 0.25; done
  kill -KILL "$pid" 2>/dev/null || true
  for _ in $(seq 1 20); do ours "$pid" "$name" || return 0; sleep 0.25; done
}

selected() { # selected NAME [wanted...]: no names given means every service
  local name=$1; shift
  (($# == 0)) && return 0
  local w; for w in "$@"; do [[ $w == "$name" ]] && return 0; done
  return 1
}

start() {
  for entry in "${services[@]}"; do
    local name=${entry%%:*} port; port=$(port_of "$name" "${entry##*:}")
    local pidf=$run_dir/$name.pid pid=""
    selected "$name" "$@" || continue
    [[ -f $repo/services/$name/__main__.py ]] || continue
    [[ -f $pidf ]] && pid=$(cat "$pidf")
    if [[ -n $pid ]] && ours "$pid" "$name"; then
      if port_open "$port"; then
        echo "[services] $name already running (pid $pid) on 127.0.0.1:$port"; continue
      fi
      # Alive but not answering (hung, or its port changed): replace it rather than trust it.
      echo "[services] $name (pid $pid) does not answer on 127.0.0.1:$port; restarting it" >&2
      stop_pid "$pid" "$name"
    elif [[ -n $pid ]]; then
      echo "[services] $name: pid $pid from $pidf is gone (crashed?); starting it again" >&2
    fi
    rm -f "$pidf"
    # exec: the recorded pid is the service itself; no stdin/stdout left attached to the caller.
    if port_open "$port"; then
      echo "[services] something else already listens on 127.0.0.1:$port; not starting a second $name" >&2; exit 1
    fi
    # UNION_HTTP_WORKERS (or <NAME>_HTTP_WORKERS for one service): worker processes, each a full
    # replica (shared/runtime.py, serve); the recorded pid is their supervisor.
    (cd "$repo" && UNION_HTTP_WORKERS=$(workers_of "$name") exec nohup .venv/bin/python -m "services.$name") </dev/null >>"$run_dir/$name.log" 2>&1 &
    echo $! >"$pidf"
    pid=$!
    for _ in $(seq 1 240); do
      port_open "$port" && break
      ours "$pid" "$name" || { echo "[services] $name exited; see $run_dir/$name.log" >&2; tail -20 "$run_dir/$name.log" >&2; exit 1; }
      sleep 0.25
    done
    port_open "$port" || { echo "[services] $name did not open 127.0.0.1:$port within 60 s; see $run_dir/$name.log" >&2; exit 1; }
    echo "[services] $name on http://127.0.0.1:$port (log $run_dir/$name.log)"
  done
  echo "[services] PostgreSQL 127.0.0.1:5432 · Kafka 127.0.0.1:9092 · staff token: local-staff-token"
}

stop() {
  for entry in "${services[@]}"; do
    local name=${entry%%:*}
    local pidf=$run_dir/$name.pid
    selected "$name" "$@" || continue
    [[ -f $pidf ]] || continue
    local pid; pid=$(cat "$pidf")
    if ours "$pid" "$name"; then
      stop_pid "$pid" "$name"
      echo "[services] $name stopped"
    fi
    rm -f "$pidf"
  done
}

status() {
  for entry in "${services[@]}"; do
    local name=${entry%%:*} port; port=$(port_of "$name" "${entry##*:}")
    selected "$name" "$@" || continue
    if port_open "$port"; then echo "$name  127.0.0.1:$port  up"; else echo "$name  127.0.0.1:$port  down"; fi
  done
}

cmd=${1:-start}; shift || true
case "$cmd" in start) start "$@" ;; stop) stop "$@" ;; status) status "$@" ;; *) echo "usage: $0 start|stop|status [service ...]" >&2; exit 2 ;; esac
