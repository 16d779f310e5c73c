# Sourced by scripts/test.sh, scripts/demo.sh, scripts/build-static.sh and
# .ci/run, so that a fresh Debian machine with only Rust needs no set-up step
# of its own: what a script needs and the machine lacks is installed (as
# root), or named in one line (without root).
#
#   . scripts/need.sh
#   need mariadbd mariadb-server        # a command, and the package that has it
#   need_file PATH PACKAGE              # a file, and the package that has it
#   install_needed NAME                 # NAME: what to call the script in messages
#
# A `need` line is all a script needs for a new tool: scripts/fresh-path.sh
# reads these lines to know what a fresh machine lacks, and hides it.
# shellcheck shell=bash

needed=()
needed_commands=()

need() {
  # /usr/sbin too: mariadbd lives there, and a user's PATH often lacks it.
  # Not under scripts/fresh-path.sh, whose PATH is all there is.
  if command -v "$1" >/dev/null ||
     { [ -z "${SERA_FRESH_PATH:-}" ] && [ -x "/usr/sbin/$1" ]; }; then
    return 0
  fi
  needed+=("$2")
  needed_commands+=("$1")
}

need_file() {
  [ -e "$1" ] || needed+=("$2")
}

install_needed() {
  [ ${#needed[@]} -gt 0 ] || return 0
  local packages
  packages=$(printf '%s\n' "${needed[@]}" | awk '!seen[$0]++' | tr '\n' ' ')
  packages=${packages% }
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "$1: this machine lacks what it needs; as root: apt-get install $packages" >&2
    exit 1
  fi
  echo "$1: installing $packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  # shellcheck disable=SC2086 # one word per package
  apt-get install -y -qq --no-install-recommends $packages >&2
  # shellcheck disable=SC2086
  [ -z "${SERA_FRESH_PATH:-}" ] || fresh_path_show $packages
  needed=()
  needed_commands=()
}

# Under scripts/fresh-path.sh: what was just installed appears on its PATH,
# as it would on a fresh machine (the commands of each package, and each
# command that was needed, wherever the full PATH has it).
fresh_path_show() {
  local path package command
  {
    for package in "$@"; do dpkg -L "$package" 2>/dev/null | grep -E '/s?bin/[^/]+$' || true; done
    for command in "${needed_commands[@]}"; do PATH=$SERA_FULL_PATH command -v "$command" || true; done
  } | while read -r path; do
    if [ -x "$path" ] && [ ! -d "$path" ]; then ln -sfn "$path" "$SERA_FRESH_PATH/${path##*/}"; fi
  done
  hash -r
}
