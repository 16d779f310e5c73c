# Sourced by scripts/bench.sh and scripts/demo.sh: a work directory and a
# throwaway MariaDB that go away however the script ends.
#
#   . "$(dirname "$0")/lib.sh"
#   work=$(mktemp -d ...)             # removed at exit, kept if keep_work=1
#   start_db [mariadbd options...]    # SERA_DB_* as scripts/mariadb-throwaway.sh
#                                     # prints them; the server stops at exit
# shellcheck shell=bash

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=
keep_work=0
db_dir=

cleanup() {
  if [ -n "$db_dir" ]; then "$root/scripts/mariadb-throwaway.sh" stop "$db_dir" || true; fi
  if [ -n "$work" ]; then
    if [ "$keep_work" = 1 ]; then
      echo "$(basename "$0" .sh): kept $work" >&2
    else
      rm -rf "$work"
    fi
  fi
}
trap cleanup EXIT

start_db() {
  local assignments
  assignments=$("$root/scripts/mariadb-throwaway.sh" start "$@")
  eval "$assignments"
  db_dir=$SERA_DB_DIR
}
