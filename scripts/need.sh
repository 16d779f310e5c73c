# Sourced by scripts/test.sh, scripts/demo.sh and .ci/run, so that a fresh
# Debian machine with only Rust needs no set-up step of its own: what a
# script needs and the machine lacks is installed (as root), or named in one
# line (without root).
#
#   . scripts/need.sh
#   need mariadbd mariadb-server        # a command, and the package that has it
#   need_file PATH PACKAGE              # a file, and the package that has it
#   install_needed NAME                 # NAME: what to call the script in messages
# shellcheck shell=bash

needed=()

need() {
  # /usr/sbin too: mariadbd lives there, and a user's PATH often lacks it.
  command -v "$1" >/dev/null || [ -x "/usr/sbin/$1" ] || needed+=("$2")
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
  needed=()
}
