#!/usr/bin/env bash
# Start/stop the service processes for local runs (`make up` / `make down`).
#   deploy/local/services.sh start|stop|status [service ...]
# Ports come from <SERVICE>_PORT (the variable the service itself reads), else the defaults below.
# Worker processes per service: <SERVICE>_HTTP_WORKERS, else UNION_HTTP_WORKERS, else 1.
# Pid files and logs go to UNION_RUN_DIR, else $UNION_CACHE_DIR/run, else .cache/run: a private
# copy (tests, a second checkout) sets UNION_RUN_DIR and the <SERVICE>_PORT of what it starts.
# Readiness: `start` waits up to UNION_START_TIMEOUT seconds (60) for /readyz to answer 200.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
run_dir=${UNION_RUN_DIR:-${UNION_CACHE_DIR:-$repo/.cache}/run}
mkdir -p "$run_dir"
start_timeout=${UNION_START_TIMEOUT:-60}
[[ $start_timeout =~ ^[0-9]+$ ]] || { echo "[services] UNION_START_TIMEOUT must be whole seconds" >&2; exit 2; }
# name:default port, in start order. Services not built yet are simply absent from this list.
services=(membership:8001 claims:8002 activities:8003 counseling:8004 mediation:8005)

workers_of() { # workers_of NAME: <NAME>_HTTP_WORKERS, else UNION_HTTP_WORKERS, else 1
  local var; var="$(tr '[:lower:]' '[:upper:]' <<<"$1")_HTTP_WORKERS"
  echo "${!var:-${UNION_HTTP_WORKERS:-1}}"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ready PORT: /readyz answers 200. An open port is not enough: with several workers uvicorn's
# supervisor binds the socket before any worker has started, and the kernel accepts connections
# on it that nobody serves yet.
# Plain bash (no curl needed); the answer's status line must come within 2 s.
ready() {
  (
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf 'GET /readyz HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3
    IFS= read -r -t 2 line <&3 || exit 1
    [[ $line == "HTTP/1."?" 200 "* ]]
  ) 2>/dev/null
}

port_of() { # port_of NAME DEFAULT: <NAME>_PORT if set, as the service itself reads it
  local var; var="$(tr '[:lower:]' '[:upper:]' <<<"$1")_PORT"
  echo "${!var:-$2}"
}

# Every process this script starts carries SERVICES_SH_TAG=<run dir>/<name> in its environment,
# and its workers inherit it: that is how a process of a group is known to be ours, even after
# the supervisor died (a worker's command line is multiprocessing's, not `-m services.NAME`).
tag_of() { echo "$run_dir/$1"; }

# live PID: the process exists and is neither a zombie nor dead. `kill -0` is not enough: it
# succeeds on a killed process that nobody has reaped yet.
live() {
  local stat state
  [[ $1 =~ ^[0-9]+$ ]] || return 1
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  state=${stat##*) }; state=${state%% *}    # the field after "(comm)"; comm may contain spaces
  [[ $state != Z && $state != X && $state != x ]]
}

# ours PID NAME: PID is a live process running `python -m services.NAME` (the supervisor, or the
# only process with one worker). The command line also rules out a recycled pid.
ours() {
  local pid=$1 name=$2 cmdline
  live "$pid" || return 1
  cmdline=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
  [[ " $cmdline" == *" -m services.$name "* ]]
}

# members PGID NAME: the live processes of process group PGID that carry NAME's tag. The kernel
# does not hand out a pid while a process group still uses it as its id, so while any member
# lives PGID cannot name someone else's group; the tag covers a group that is gone entirely.
members() {
  local pgid=$1 tag; tag="SERVICES_SH_TAG=$(tag_of "$2")"
  [[ $pgid =~ ^[0-9]+$ ]] || return 0
  local stat rest pid pgrp
  for stat in /proc/[0-9]*/stat; do
    read -r rest 2>/dev/null <"$stat" || continue
    pid=${rest%% *}
    rest=${rest##*) }                         # state ppid pgrp ...
    read -r _ _ pgrp _ <<<"$rest"
    [[ $pgrp == "$pgid" ]] || continue
    live "$pid" || continue
    tr '\0' '\n' 2>/dev/null <"/proc/$pid/environ" | grep -qxF -- "$tag" || continue
    echo "$pid"
  done
}

pgrp_of() { local rest pgrp; read -r rest 2>/dev/null <"/proc/$1/stat" || return 1; rest=${rest##*) }; read -r _ _ pgrp _ <<<"$rest"; echo "$pgrp"; }

# running PID NAME: anything of the service recorded as PID is still alive.
running() { ours "$1" "$2" || [[ -n $(members "$1" "$2") ]]; }

# stop_group PID NAME: TERM to the service's whole process group (the supervisor and every
# worker), wait up to 15 s for all of them, then KILL the group and wait up to 5 s more. Only
# ever a group of ours. A service started before services.sh used setsid is not a group leader:
# then only its pid is signalled, as before. Our own children are reaped; a service started by an
# earlier run of this script belongs to init (or a subreaper) by now, which reaps it, and its
# zombie counts as stopped.
stop_group() {
  local pid=$1 name=$2 target="-$1"
  running "$pid" "$name" || return 0
  if ours "$pid" "$name" && [[ $(pgrp_of "$pid") != "$pid" ]]; then target=$pid; fi
  kill -TERM -- "$target" 2>/dev/null || true
  for _ in $(seq 1 60); do
    running "$pid" "$name" || { wait "$pid" 2>/dev/null || true; return 0; }
    sleep 0.25
  done
  echo "[services] $name (pid $pid) still running 15 s after TERM; killing it" >&2
  kill -KILL -- "$target" 2>/dev/null || true
  for _ in $(seq 1 20); do
    running "$pid" "$name" || { wait "$pid" 2>/dev/null || true; return 0; }
    sleep 0.25
  done
  echo "[services] $name: processes $(members "$pid" "$name" | tr '\n' ' ')of group $pid survived KILL" >&2
  return 1
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
    elif [[ -n $pid ]]; then
      echo "[services] $name: pid $pid from $pidf is gone (crashed?); starting it again" >&2
    fi
    # The recorded pid is also its process group: stop whatever is left of it (a supervisor
    # killed with SIGKILL leaves its workers running, and they hold the port).
    [[ -n $pid ]] && { stop_group "$pid" "$name" || exit 1; }
    rm -f "$pidf"
    if port_open "$port"; then
      echo "[services] something else already listens on 127.0.0.1:$port; not starting a second $name" >&2; exit 1
    fi
    # setsid: the service leads its own session and process group (pid = pgid = the recorded
    # pid), so `stop` reaches its workers too, and a terminal's signals do not. The subshell is
    # not a group leader (no job control here), so setsid and nohup exec in place: the recorded
    # pid is the service itself. UNION_HTTP_WORKERS (or <NAME>_HTTP_WORKERS for one service):
    # worker processes, each a full replica (shared/runtime.py, serve) under that supervisor.
    (cd "$repo" && SERVICES_SH_TAG=$(tag_of "$name") UNION_HTTP_WORKERS=$(workers_of "$name") \
      exec setsid nohup .venv/bin/python -m "services.$name") </dev/null >>"$run_dir/$name.log" 2>&1 &
    pid=$!
    echo "$pid" >"$pidf"
    local deadline=$((SECONDS + start_timeout))
    until ready "$port"; do
      # `live`, not `ours`: until the subshell has exec'd, its command line is this script's; and
      # the pid of a child we have not reaped cannot be anyone else's.
      if ! live "$pid"; then
        echo "[services] $name exited before /readyz answered; see $run_dir/$name.log" >&2
        tail -20 "$run_dir/$name.log" >&2
        stop_group "$pid" "$name" || true
        rm -f "$pidf"; exit 1
      fi
      if ((SECONDS >= deadline)); then
        echo "[services] $name: http://127.0.0.1:$port/readyz did not answer 200 within ${start_timeout} s;" \
          "stopping it; see $run_dir/$name.log" >&2
        tail -20 "$run_dir/$name.log" >&2
        stop_group "$pid" "$name" || true
        rm -f "$pidf"; exit 1
      fi
      sleep 0.25
    done
    [[ $(pgrp_of "$pid") == "$pid" ]] || { echo "[services] $name (pid $pid) does not lead its own process group" >&2; exit 1; }
    echo "[services] $name ready on http://127.0.0.1:$port ($(workers_of "$name") worker(s), process group $pid, log $run_dir/$name.log)"
  done
  echo "[services] PostgreSQL 127.0.0.1:5432 · Kafka 127.0.0.1:9092 · staff token: local-staff-token"
}

stop() {
  local failed=0
  for entry in "${services[@]}"; do
    local name=${entry%%:*}
    local pidf=$run_dir/$name.pid
    selected "$name" "$@" || continue
    [[ -f $pidf ]] || continue
    local pid; pid=$(cat "$pidf")
    # The whole group, even when its supervisor is already gone: workers may have outlived it.
    if running "$pid" "$name"; then
      stop_group "$pid" "$name" || { echo "[services] $name not stopped; $pidf kept" >&2; failed=1; continue; }
      echo "[services] $name stopped"
    fi
    rm -f "$pidf"
  done
  return "$failed"
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
