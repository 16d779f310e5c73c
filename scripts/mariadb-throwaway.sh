#!/usr/bin/env bash
# A throwaway MariaDB for benchmarks and demos: fresh datadir, free port on
# 127.0.0.1, socket in its own temp dir, --no-defaults (no my.cnf leaks in),
# stopped by its pid. The machine's own server is never touched.
#
#   eval "$(scripts/mariadb-throwaway.sh start [mariadbd options...])"
#   ... use $SERA_DB_DSN_TCP / $SERA_DB_DSN_UNIX ...
#   scripts/mariadb-throwaway.sh stop "$SERA_DB_DIR"
#
# `start` prints shell assignments (nothing else on stdout; progress goes to
# stderr):
#   SERA_DB_DIR        the directory holding everything (data/, mysqld.sock, logs)
#   SERA_DB_PID        pid of mariadbd
#   SERA_DB_PORT       TCP port on 127.0.0.1
#   SERA_DB_SOCKET     unix socket path
#   SERA_DB_DSN_TCP    sera:sera-pass@tcp(127.0.0.1:PORT)/
#   SERA_DB_DSN_UNIX   sera:sera-pass@unix(SOCKET)/
#   SERA_DB_VERSION    the server's version string
# The options in tests/support/mariadb.cnf and the SQL in
# tests/support/setup.sql are the tests' own: user `sera`@`%` and
# `sera`@`localhost`, password `sera-pass`, mysql_native_password, GRANT ALL ON
# *.*, database `sera_test`. root@localhost has no password (socket only).
# Extra arguments to `start` go to mariadbd after those options, so they win
# (e.g. --max-connections=500).
#
# `stop DIR` sends SIGTERM to the mariadbd recorded in DIR (only if that pid is
# still a mariadbd using DIR), SIGKILL after 30 s, then removes DIR.
#
# Environment: MARIADBD, MARIADB_INSTALL_DB, MARIADB (client) override the
# programs; TMPDIR picks where DIR goes (keep it short: socket paths are
# limited to 107 bytes).
set -euo pipefail

MARIADBD=${MARIADBD:-$(command -v mariadbd || command -v mysqld || echo /usr/sbin/mariadbd)}
MARIADB_INSTALL_DB=${MARIADB_INSTALL_DB:-$(command -v mariadb-install-db || command -v mysql_install_db || echo mariadb-install-db)}
MARIADB=${MARIADB:-$(command -v mariadb || command -v mysql || echo mariadb)}

# The server's options and setup SQL, shared with the tests (tests/support/
# mariadb.rs): each option line of mariadb.cnf becomes --name=value.
support=$(cd "$(dirname "${BASH_SOURCE[0]}")/../tests/support" && pwd)
SERVER_OPTIONS=()
while read -r line; do
  case $line in '' | '#'* | '['*) continue ;; esac
  SERVER_OPTIONS+=("--$line")
done <"$support/mariadb.cnf"

say() { echo "mariadb-throwaway: $*" >&2; }
die() { say "$*"; exit 1; }

user_args() { if [ "$(id -u)" = 0 ]; then echo --user=root; fi; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

start() {
  [ -x "$MARIADBD" ] || die "mariadbd not found (set MARIADBD)"
  local dir
  dir=$(mktemp -d "${TMPDIR:-/tmp}/sera-db.XXXXXX")
  mkdir -p "$dir/tmp"
  say "installing a fresh datadir in $dir/data"
  # shellcheck disable=SC2046
  if ! "$MARIADB_INSTALL_DB" --no-defaults $(user_args) --datadir="$dir/data" \
      --auth-root-authentication-method=normal --skip-test-db \
      "${SERVER_OPTIONS[@]}" >"$dir/install.log" 2>&1; then
    cat "$dir/install.log" >&2
    rm -rf "$dir"
    die "mariadb-install-db failed"
  fi

  local port pid attempt socket="$dir/mysqld.sock"
  for attempt in 1 2 3 4 5; do
    port=$(free_port)
    : >"$dir/err.log"
    # shellcheck disable=SC2046
    "$MARIADBD" --no-defaults $(user_args) \
      --datadir="$dir/data" --tmpdir="$dir/tmp" --socket="$socket" \
      --pid-file="$dir/mysqld.pid" --log-error="$dir/err.log" \
      --bind-address=127.0.0.1 --port="$port" \
      "${SERVER_OPTIONS[@]}" "$@" \
      </dev/null >"$dir/mariadbd.out" 2>&1 &
    pid=$!
    echo "$pid" >"$dir/pid"
    local waited=0
    while :; do
      if ! kill -0 "$pid" 2>/dev/null; then
        if grep -q "Address already in use" "$dir/err.log"; then
          say "port $port was taken; trying another"
          continue 2
        fi
        cat "$dir/err.log" "$dir/mariadbd.out" >&2
        rm -rf "$dir"
        die "mariadbd exited at start"
      fi
      grep -q "ready for connections" "$dir/err.log" && break 2
      sleep 0.05
      waited=$((waited + 1))
      if [ "$waited" -gt 600 ]; then
        kill -KILL "$pid" 2>/dev/null || true
        rm -rf "$dir"
        die "mariadbd not ready within 30 s"
      fi
    done
  done
  grep -q "ready for connections" "$dir/err.log" || { rm -rf "$dir"; die "no free port found"; }

  "$MARIADB" --no-defaults -uroot --socket="$socket" <"$support/setup.sql" \
    || { stop "$dir"; die "could not create the sera user"; }
  local version
  version=$("$MARIADB" --no-defaults -uroot --socket="$socket" -N -B -e "SELECT VERSION()")
  say "mariadbd $version, pid $pid, 127.0.0.1:$port, $socket"
  cat <<EOF
SERA_DB_DIR='$dir'
SERA_DB_PID=$pid
SERA_DB_PORT=$port
SERA_DB_SOCKET='$socket'
SERA_DB_DSN_TCP='sera:sera-pass@tcp(127.0.0.1:$port)/'
SERA_DB_DSN_UNIX='sera:sera-pass@unix($socket)/'
SERA_DB_VERSION='$version'
export SERA_DB_DIR SERA_DB_PID SERA_DB_PORT SERA_DB_SOCKET SERA_DB_DSN_TCP SERA_DB_DSN_UNIX SERA_DB_VERSION
EOF
}

stop() {
  local dir=${1:?usage: $0 stop DIR}
  [ -f "$dir/pid" ] || die "$dir/pid not found: not a throwaway server directory"
  local pid
  pid=$(cat "$dir/pid")
  # Only ever signal the mariadbd we started: same pid, and its command line
  # names our datadir (a recycled pid is left alone).
  if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "--datadir=$dir/data"; then
    kill -TERM "$pid" 2>/dev/null || true
    local i
    for i in $(seq 600); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.05
    done
    if kill -0 "$pid" 2>/dev/null; then
      say "mariadbd $pid did not stop within 30 s of SIGTERM; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -rf "$dir"
}

case "${1:-}" in
  start) shift; start "$@" ;;
  stop) shift; stop "$@" ;;
  *) echo "usage: $0 start [mariadbd options...] | stop DIR" >&2; exit 2 ;;
esac
