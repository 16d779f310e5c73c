#!/usr/bin/env bash
# The release artefacts: a fully static sera (musl) for x86_64 or aarch64
# Linux, stripped, with TLS and ed25519 (full) or without (small). Each lands
# in target/dist/ under its own name, and target/dist/SHA256SUMS is rewritten
# for every artefact there. Prints the artefact's path, size and sha256, and
# fails if the binary turned out dynamic, does not run, or is over its budget.
#
#   scripts/build-static.sh                        # sera-<version>-x86_64-linux-musl        (budget 2048 KiB)
#   scripts/build-static.sh --no-default-features  # sera-<version>-x86_64-linux-musl-small  (budget 680 KiB)
#   scripts/build-static.sh --target aarch64-unknown-linux-musl [--no-default-features]
#                                                  # sera-<version>-aarch64-linux-musl[-small]
#   (other arguments go to cargo build)
#
# Needs rustup's musl target, which this script adds when it is missing (Rust
# ships musl and its start files with it). Both targets are linked by
# rust-lld, which comes with Rust. What else it needs is Debian's, and it
# installs that when it is missing (as root; without root it names the
# packages in one line), as scripts/test.sh does:
# - always: readelf (binutils) and file, for the "static" check.
# - x86_64: nothing more. For the full build the host's cc compiles ring's C
#   and assembly parts: cc-rs would look for x86_64-linux-musl-gcc, so
#   CC_x86_64_unknown_linux_musl is set to musl-gcc where musl-tools is
#   installed and to cc otherwise (reported to give the same sha256).
# - aarch64: for the full build, aarch64-linux-gnu-gcc (gcc-aarch64-linux-gnu)
#   compiles ring's C parts, against the aarch64 C headers of
#   libc6-dev-arm64-cross (ring needs only stdint.h and string.h from them;
#   the binary links Rust's own musl, so no glibc code gets in). The small
#   build needs neither.
# - qemu-user-static (qemu-aarch64-static) runs an aarch64 binary on x86_64
#   for the "runs" check; without it the check is skipped, and said so.
# The linker settings live in .cargo/config.toml.
set -euo pipefail
cd "$(dirname "$0")/.."

target=x86_64-unknown-linux-musl
small=
cargo_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --target) [ $# -ge 2 ] || { echo "build-static: --target needs a triple" >&2; exit 1; }
              target=$2; shift ;;
    --target=*) target=${1#--target=} ;;
    --no-default-features) small=1; cargo_args+=("$1") ;;
    *) cargo_args+=("$1") ;;
  esac
  shift
done

arch=${target%%-*}
case "$target" in
  x86_64-unknown-linux-musl | aarch64-unknown-linux-musl) ;;
  *) echo "build-static: unsupported target $target:" \
          "x86_64-unknown-linux-musl or aarch64-unknown-linux-musl" >&2
     exit 1 ;;
esac
if [ -n "$small" ]; then budget_kib=680; else budget_kib=2048; fi

. scripts/need.sh
need readelf binutils
need file file
if [ "$target" = x86_64-unknown-linux-musl ]; then
  # cc-rs takes x86_64-linux-musl-gcc for this target and nothing else by
  # itself. ring's C needs only freestanding headers, so the host's cc does
  # as well (the link uses Rust's own musl either way).
  if [ -z "${CC_x86_64_unknown_linux_musl:-}" ]; then
    for cc in x86_64-linux-musl-gcc musl-gcc cc; do
      if command -v "$cc" >/dev/null; then export CC_x86_64_unknown_linux_musl=$cc; break; fi
    done
  fi
else
  # cc-rs would look for aarch64-linux-musl-gcc, which Debian does not have.
  # The gnu cross gcc compiles ring's C just as well: it needs C headers but
  # no C library, since the link uses Rust's own musl.
  export CC_aarch64_unknown_linux_musl=${CC_aarch64_unknown_linux_musl:-aarch64-linux-gnu-gcc}
  export AR_aarch64_unknown_linux_musl=${AR_aarch64_unknown_linux_musl:-aarch64-linux-gnu-ar}
  if [ -z "$small" ]; then
    need aarch64-linux-gnu-gcc gcc-aarch64-linux-gnu
    # Without them Debian's cross gcc falls back to the host's x86_64
    # headers and fails half-way through ring.
    need_file /usr/aarch64-linux-gnu/include/string.h libc6-dev-arm64-cross
  fi
fi
install_needed "build-static ($arch${small:+ small})"
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx "$target"; then
  echo "build-static: adding rustup's $target target" >&2
  rustup target add "$target" >&2
fi

cargo build --release --locked --target "$target" ${cargo_args[@]+"${cargo_args[@]}"} >&2

# Without python3 or jq: the target directory is the one string cargo
# metadata gives under that key, and `cargo pkgid` ends in the version.
target_dir=$(cargo metadata --format-version 1 --no-deps |
  sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
version=$(cargo pkgid)
version=${version##*[#@]}
bin="$target_dir/$target/release/sera"
[ -x "$bin" ] || { echo "build-static: $bin not found" >&2; exit 1; }

# Static means: no program interpreter, no shared libraries needed.
problems=()
if readelf -lW "$bin" | grep -q 'INTERP'; then
  problems+=("it has a program interpreter (PT_INTERP)")
fi
if readelf -dW "$bin" 2>/dev/null | grep -q '(NEEDED)'; then
  problems+=("it needs shared libraries: $(readelf -dW "$bin" | grep '(NEEDED)' | sed 's/.*\[\(.*\)\]/\1/' | tr '\n' ' ')")
fi
kind=$(file -b "$bin")
case "$kind" in
  *static-pie\ linked* | *statically\ linked*) ;;
  *) problems+=("file(1) says: $kind") ;;
esac
# And it must start: the x86_64 static-pie relocates itself (RELR included),
# so a toolchain whose musl cannot would give a binary that crashes at once.
# Another architecture's binary runs under qemu-user when it is there.
run=()
if [ "$(uname -m)" != "$arch" ]; then
  for qemu in "qemu-$arch-static" "qemu-$arch"; do
    if command -v "$qemu" >/dev/null; then run=("$qemu"); break; fi
  done
fi
if [ "$(uname -m)" != "$arch" ] && [ "${#run[@]}" -eq 0 ]; then
  version_line="not run: no qemu-$arch-static or qemu-$arch here (apt-get install qemu-user-static)"
elif ! version_line=$(${run[@]+"${run[@]}"} "$bin" --version 2>&1) ||
     [ "${version_line#sera }" = "$version_line" ]; then
  problems+=("it does not run: \`${run[*]:+${run[*]} }$bin --version\` said: $version_line")
fi
bytes=$(stat -c %s "$bin")
kib=$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1024 }')
if [ "$bytes" -gt $((budget_kib * 1024)) ]; then
  problems+=("it is over the size budget: $kib KiB > $budget_kib KiB")
fi
if [ "${#problems[@]}" -gt 0 ]; then
  echo "build-static: $bin is not fit to release:" >&2
  printf '  - %s\n' "${problems[@]}" >&2
  exit 1
fi

# Only a binary that passed lands in dist/, so SHA256SUMS never vouches for
# a bad one. The names carry version, arch and flavour, so all four
# artefacts live side by side.
dist="$target_dir/dist"
name="sera-$version-$arch-linux-musl${small:+-small}"
mkdir -p "$dist"
cp "$bin" "$dist/$name.tmp"
mv -f "$dist/$name.tmp" "$dist/$name"
# Relative names, so `cd target/dist && sha256sum -c SHA256SUMS` checks them
# wherever the folder is copied to.
(
  cd "$dist"
  shopt -s nullglob
  artefacts=(sera-*-linux-musl sera-*-linux-musl-small)
  sha256sum -- "${artefacts[@]}" >SHA256SUMS.tmp
  mv -f SHA256SUMS.tmp SHA256SUMS
)

sha=$(sha256sum "$dist/$name" | cut -d' ' -f1)
echo "path:   $dist/$name"
echo "size:   $bytes bytes ($kib KiB; budget $budget_kib KiB)"
echo "sha256: $sha"
echo "type:   $kind"
echo "runs:   ${run[*]:+${run[*]}: }$version_line"
echo "sums:   $dist/SHA256SUMS"
