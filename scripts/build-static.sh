#!/usr/bin/env bash
# The release artefact: a fully static sera for x86_64 Linux (musl, static-pie),
# stripped. Prints its path, size and sha256, and fails if the binary turned
# out dynamic, does not run, or is over its size budget.
#
#   scripts/build-static.sh                        # TLS and ed25519: budget 2 MiB
#   scripts/build-static.sh --no-default-features  # the small build: budget 600 KiB
#   (other arguments go to cargo build)
#
# Needs rustup's musl target (`rustup target add x86_64-unknown-linux-musl`);
# Rust ships musl and its start files. With TLS, ring's C and assembly parts
# are compiled by musl-gcc (`apt-get install musl-tools`). The linker
# settings live in .cargo/config.toml.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=x86_64-unknown-linux-musl
case " $* " in
  *" --no-default-features "*) BUDGET_KIB=600 ;;
  *) BUDGET_KIB=2048
     command -v musl-gcc >/dev/null || {
       echo "build-static: TLS needs musl-gcc: apt-get install musl-tools" \
            "(or build without TLS: --no-default-features)" >&2
       exit 1
     } ;;
esac

cargo build --release --locked --target "$TARGET" "$@" >&2

target_dir=$(cargo metadata --format-version 1 --no-deps \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
bin="$target_dir/$TARGET/release/sera"
[ -x "$bin" ] || { echo "build-static: $bin not found" >&2; exit 1; }

# Static means: no program interpreter, no shared libraries needed.
problems=()
if readelf -lW "$bin" | grep -q 'INTERP'; then
  problems+=("it has a program interpreter (PT_INTERP)")
fi
if readelf -dW "$bin" 2>/dev/null | grep -q '(NEEDED)'; then
  problems+=("it needs shared libraries: $(readelf -dW "$bin" | grep '(NEEDED)' | sed 's/.*\[\(.*\)\]/\1/' | tr '\n' ' ')")
fi
if command -v file >/dev/null; then
  kind=$(file -b "$bin")
  case "$kind" in
    *static-pie\ linked* | *statically\ linked*) ;;
    *) problems+=("file(1) says: $kind") ;;
  esac
else
  kind="(file(1) not installed)"
fi
# And it must start: a static-pie relocates itself (RELR included), so a
# toolchain whose musl cannot would give a binary that crashes at once.
if ! version=$("$bin" --version 2>&1) || [ "${version#sera }" = "$version" ]; then
  problems+=("it does not run: \`$bin --version\` said: $version")
fi
if [ "${#problems[@]}" -gt 0 ]; then
  echo "build-static: $bin is NOT static:" >&2
  printf '  - %s\n' "${problems[@]}" >&2
  exit 1
fi

bytes=$(stat -c %s "$bin")
kib=$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1024 }')
sha=$(sha256sum "$bin" | cut -d' ' -f1)
echo "path:   $bin"
echo "size:   $bytes bytes ($kib KiB; budget $BUDGET_KIB KiB)"
echo "sha256: $sha"
echo "type:   $kind"
echo "runs:   $version"
if [ "$bytes" -gt $((BUDGET_KIB * 1024)) ]; then
  echo "build-static: over the size budget of $BUDGET_KIB KiB" >&2
  exit 1
fi
