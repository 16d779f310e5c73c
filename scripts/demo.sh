#!/usr/bin/env bash
# sera doing its job, on this machine: build it, start a throwaway MariaDB
# (or use $SERA_DEMO_DSN), race seras on the same command, stop the server.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

. scripts/lib.sh
. scripts/need.sh

# The throwaway server (mariadbd, mariadb-install-db, the client for its
# setup, python3 for a free port); not needed with $SERA_DEMO_DSN.
if [ -z "${SERA_DEMO_DSN:-}" ]; then
  need mariadbd mariadb-server
  need mariadb-install-db mariadb-server
  need mariadb mariadb-client
  need python3 python3
  install_needed scripts/demo.sh
fi

cargo build --release --quiet
sera=$PWD/target/release/sera
work=$(mktemp -d /tmp/sera-demo.XXXXXX)

if [ -n "${SERA_DEMO_DSN:-}" ]; then
    dsn=$SERA_DEMO_DSN
else
    start_db
    dsn=$SERA_DB_DSN_TCP
fi
config=$work/sera.json
printf '{"server": "%s", "verbose": true}\n' "$dsn" > "$config"
chmod 600 "$config"
job='echo "[$WHO] running, pid $$"; sleep 2; echo "[$WHO] done"'
run() { WHO=$1 "$sera" --config "$config" "${@:2}"; }

step "A and B start the same job at once: B waits until A is done"
run A 10 sh -c "$job" &
sleep 0.3
run B 10 sh -c "$job"
wait

step "C will not wait (0 s): it gives up at once, exit 204"
run A 10 sh -c "$job" &
sleep 0.3
run C 0 sh -c "$job" || echo "C exited $?"
wait

step "--wait-and-skip: A runs it; D waits for A, then skips it (205 with --detailed-exit-codes)"
run A --wait-and-skip 10 sh -c "$job" &
sleep 0.3
run D --wait-and-skip --detailed-exit-codes 10 sh -c "$job" || echo "D exited $?"
wait

step "The command's status is sera's; a missing command is 203"
run E 5 sh -c 'exit 3' || echo "E exited $?"
run F 5 no-such-command || echo "F exited $?"
