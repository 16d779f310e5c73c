#!/usr/bin/env bash
# The tests, from a fresh Debian machine with only Rust: install what they
# use (as root; without root, one line names the packages), then
# `cargo test` with this script's arguments. .ci/run runs this same script.
#
# The tests start their own MariaDB servers (mariadbd, mariadb-install-db,
# and the mariadb client for their setup), make TLS certificates with
# openssl, catch overlaps with flock, run sera in namespaces with unshare,
# start workers with setsid and python3, run a static sera in a bare
# root with a static busybox (tests/container.rs), put a far host in
# network namespaces with ip, and start Galera clusters (galera-4, rsync).
# Some need root (mount and network namespaces, chroot). A new tool the
# tests use is one more `need` line: scripts/fresh-path.sh checks that none
# is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/need.sh

need mariadbd mariadb-server
need mariadb-install-db mariadb-server
need mariadb mariadb-client
need openssl openssl
need flock util-linux
need unshare util-linux
need setsid util-linux
need python3 python3
need busybox busybox-static
need ip iproute2
# A three-node Galera cluster (tests/galera.rs): the provider, and rsync
# with ss for its state transfer.
need_file /usr/lib/galera/libgalera_smm.so galera-4
need rsync rsync
need ss iproute2
install_needed scripts/test.sh

exec cargo test "$@"
