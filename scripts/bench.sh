#!/usr/bin/env bash
# The footprint-and-speed benchmark of issue 6, in one command:
#
#   scripts/bench.sh
#
# builds the static release binaries (scripts/build-static.sh: the default
# one with TLS, and the small one without), starts a throwaway MariaDB with
# TLS (scripts/mariadb-throwaway.sh, certificates made by openssl) unless
# SERA_BENCH_DSN is set, and prints markdown: the machine, a table of interleaved timings, the
# contention and scale runs, footprint, the fleet table, and PASS/FAIL per
# budget. Exit status 1 if a budget fails or a correctness check fails. About
# a minute and a half end to end.
#
# This file is the wiring; the measuring is scripts/bench.py, and the command
# sera runs in the contention and scale runs is examples/bench_stamp.rs.
#
# Environment (all optional):
#   SERA_BENCH_DSN        use this server instead of a throwaway one (the TCP row)
#   SERA_BENCH_DSN_UNIX   ... and this DSN for the unix-socket row (else skipped)
#                         The user needs no privileges beyond GET_LOCK, but the
#                         scale and fleet runs read information_schema.PROCESSLIST;
#                         the scale run needs max_connections >= waiters + 10,
#                         a fleet herd of N (room off) N + 10.
#   SERA_BENCH_BIN        benchmark this sera binary instead of building one
#   SERA_BENCH_ROUNDS     interleaved rounds (200); each runs every variant once
#   SERA_BENCH_RACERS     contention: concurrent racers (6)
#   SERA_BENCH_RACE_RUNS  contention: serialized runs in total (120)
#   SERA_BENCH_WAITERS    scale: seras waiting on one lock (200)
#   SERA_BENCH_IDLE_SECONDS  scale: how long the waiters are watched idle (3)
#   SERA_BENCH_FLEET=0    skip the fleet table (issue 15: N seras started at
#                         once on one lock, the waiting room on and off)
#   SERA_BENCH_FLEET_SIZES   fleet: the herd sizes (300,1000); a herd that
#                         does not fit the server's max_connections is skipped
#   SERA_BENCH_FLEET_WORK_MS fleet: how long each command holds the lock (20)
#   SERA_BENCH_GO_BIN     the Go sera, for the rows that compare with it (the
#                         `sera 5 true` ratio and the contention run); it reads
#                         only /etc/sera.json, so it is run only together with
#                         SERA_BENCH_DSN, the server that file names
#   SERA_BENCH_KEEP=1     keep the work directory (configs, logs, stamp files)
#
# With tcpdump on PATH and root, the contention run is captured on the
# server's port and each hand-off is split into the holder's release, the
# server's grant and the next command's start; without, that table says
# "not measured".
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

work=$(mktemp -d "${TMPDIR:-/tmp}/sera-bench.XXXXXX")
keep_work=${SERA_BENCH_KEEP:-0}

# 1. The binary.
if [ -n "${SERA_BENCH_BIN:-}" ]; then
  bin=$SERA_BENCH_BIN
  echo "bench: using $bin" >&2
else
  echo "bench: building the static release binaries, small and with TLS" >&2
  if "$root/scripts/build-static.sh" --no-default-features >"$work/build-small.txt" 2>"$work/build-small.err"; then
    cat "$work/build-small.err" "$work/build-small.txt" >&2
    # Each build lands in target/dist under its own name.
    small_bin=$(sed -n 's/^path: *//p' "$work/build-small.txt")
  else
    cat "$work/build-small.err" >&2
    # A small build that only misses its size budget is still measured, so
    # that the budget table says by how much and the other figures are not
    # lost; anything else (it did not build, is not static, does not run)
    # stops the bench. build-static.sh keeps such a binary out of
    # target/dist, and the next build overwrites it: keep a copy.
    problems=$(sed -n 's/^  - //p' "$work/build-small.err")
    if [ "$(grep -vc 'over the size budget' <<<"$problems")" != 0 ] || [ -z "$problems" ]; then
      echo "bench: the small build failed" >&2
      exit 1
    fi
    small_bin=$work/sera-small-over-budget
    cp "$(sed -n 's/^build-static: \(.*\) is not fit to release:$/\1/p' "$work/build-small.err")" "$small_bin"
    echo "bench: measuring the small build anyway; its size budget will FAIL" >&2
  fi
  "$root/scripts/build-static.sh" >"$work/build.txt"
  cat "$work/build.txt" >&2
  bin=$(sed -n 's/^path: *//p' "$work/build.txt")
fi

# 2. The command sera runs in the contention and scale runs
#    (examples/bench_stamp.rs): static when the musl target builds it.
# cc-rs looks for x86_64-linux-musl-gcc for this target and nothing else
# (the example links the library's C parts): set CC as build-static.sh does,
# or the musl build fails and the slower host build is measured instead.
if [ -z "${CC_x86_64_unknown_linux_musl:-}" ]; then
  for cc in x86_64-linux-musl-gcc musl-gcc cc; do
    if command -v "$cc" >/dev/null; then export CC_x86_64_unknown_linux_musl=$cc; break; fi
  done
fi
target_dir=$(cargo metadata --format-version 1 --no-deps \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
if cargo build --release --locked --quiet --example bench_stamp \
     --target x86_64-unknown-linux-musl 2>/dev/null; then
  stamp=$target_dir/x86_64-unknown-linux-musl/release/examples/bench_stamp
else
  echo "bench: the musl build of bench_stamp failed: measuring a host build" >&2
  cargo build --release --locked --quiet --example bench_stamp
  stamp=$target_dir/release/examples/bench_stamp
fi

# 3. The server.
if [ -n "${SERA_BENCH_DSN:-}" ]; then
  dsn_tcp=$SERA_BENCH_DSN
  dsn_unix=${SERA_BENCH_DSN_UNIX:-}
else
  # Room for the scale run's waiters, and for the largest fleet herd with
  # the waiting room off, when every sera of it may be connected at once.
  connections=${SERA_BENCH_WAITERS:-200}
  if [ "${SERA_BENCH_FLEET:-1}" != 0 ]; then
    IFS=, read -ra herds <<<"${SERA_BENCH_FLEET_SIZES:-300,1000}"
    for n in "${herds[@]}"; do
      if [ "${n// /}" -gt "$connections" ]; then connections=${n// /}; fi
    done
  fi
  # A CA and a certificate for 127.0.0.1, for the TLS row.
  ( cd "$work" \
    && openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=sera-bench-ca \
         -keyout ca.key -out ca.pem \
    && openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout server.key -out server.csr \
    && printf 'subjectAltName=IP:127.0.0.1\n' > server.ext \
    && openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
         -extfile server.ext -out server.pem ) >/dev/null 2>&1
  # A connection is a thread and a file descriptor or two in mariadbd: lift
  # the soft limit on open files as far as the hard one allows (the harness
  # inherits it too).
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  start_db --max-connections=$((connections + 50)) \
    --ssl-ca="$work/ca.pem" --ssl-cert="$work/server.pem" --ssl-key="$work/server.key"
  dsn_tcp=$SERA_DB_DSN_TCP
  dsn_unix=$SERA_DB_DSN_UNIX
  dsn_tls="${SERA_DB_DSN_TCP}?tls=true"
  tls_ca=$work/ca.pem
fi

# 4. Measure, and print the markdown.
SERA_BIN="$bin" SMALL_BIN="${small_bin:-}" STAMP_BIN="$stamp" WORK="$work" \
  DSN_TCP="$dsn_tcp" DSN_UNIX="$dsn_unix" DSN_TLS="${dsn_tls:-}" TLS_CA="${tls_ca:-}" \
  python3 scripts/bench.py
