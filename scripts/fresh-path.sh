#!/usr/bin/env bash
# Run a script as a fresh machine would: with a PATH of links to everything
# on this PATH except the optional tools, that is every command a `need`
# line of scripts/*.sh or .ci/run names (with the rest of its package's
# commands) and musl-gcc. A script that uses one of them without its own
# `need` line then fails with "command not found"; one that has the line
# installs the package (as root; without root it names it and stops), and
# scripts/need.sh links the package's commands in, as installing them would.
#
#   scripts/fresh-path.sh scripts/build-static.sh --no-default-features
#   scripts/fresh-path.sh .ci/run
#
# A new tool needs nothing here: its `need` line in the script that uses it
# is what hides it. Files that `need_file` names (headers, libraries) cannot
# be hidden by a PATH; only their commands are.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || { echo "usage: scripts/fresh-path.sh SCRIPT [ARGS...]" >&2; exit 1; }

# What the scripts install when it is missing: `need COMMAND PACKAGE` and
# `need_file PATH PACKAGE` lines. musl-tools is not needed by any: cc-rs
# takes the host's cc without it, and that must keep working.
hidden_commands=(musl-gcc x86_64-linux-musl-gcc)
packages=(musl-tools)
while read -r kind first package _; do
  [ "$kind" = need ] && hidden_commands+=("$first")
  packages+=("$package")
done < <(grep -hE '^[[:space:]]*need(_file)?[[:space:]]+[^[:space:]]+[[:space:]]+[^[:space:]]+' \
           scripts/*.sh .ci/run | grep -v '^[[:space:]]*#')
for package in "${packages[@]}"; do
  while read -r path; do hidden_commands+=("${path##*/}"); done < <(
    dpkg -L "$package" 2>/dev/null | grep -E '/s?bin/[^/]+$' || true)
done

fresh=$(mktemp -d /tmp/sera-fresh-path.XXXXXX)
trap 'rm -rf "$fresh"' EXIT
# apt-get runs its download methods as the user _apt, which needs this PATH too.
chmod 755 "$fresh"
declare -A hide=()
for command in "${hidden_commands[@]}"; do hide[$command]=1; done
IFS=: read -r -a dirs <<<"$PATH"
for dir in "${dirs[@]}"; do
  [ -d "$dir" ] || continue
  for path in "$dir"/*; do
    name=${path##*/}
    # The first of a name on PATH wins, as for the shell.
    if [ -x "$path" ] && [ ! -d "$path" ] && [ -z "${hide[$name]:-}" ] && [ ! -e "$fresh/$name" ]; then
      ln -s "$path" "$fresh/$name"
    fi
  done
done
hidden=$(for c in "${!hide[@]}"; do if command -v "$c" >/dev/null; then echo "$c"; fi; done | sort | tr '\n' ' ')
echo "fresh-path: hidden: ${hidden:-nothing}" >&2

SERA_FULL_PATH=$PATH SERA_FRESH_PATH=$fresh PATH=$fresh "$@"
