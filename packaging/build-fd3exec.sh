#!/bin/sh
# Build lib/stores/programs/fd3exec.c: build-fd3exec.sh OUTPUT [auto|libc|nolibc]
#
#   nolibc  no C library: fd3exec makes its few system calls itself, so
#           nothing (no glibc start-up, no dynamic loader) runs before the
#           exec. Linux on x86_64 and aarch64 only. A static PIE without
#           relocations (checked), with RELRO and BIND_NOW.
#   libc    the portable build: any system with a C compiler, with
#           Debian's hardening flags.
#   auto    (default) nolibc where it exists, else libc.
#
# Used by `deno task helper`, packaging/deb/build.sh, `deno task bench`
# and the tests, so all of them run the same binary.
set -eu
out=${1:?usage: build-fd3exec.sh OUTPUT [auto|libc|nolibc]}
kind=${2:-auto}
here=$(cd "$(dirname "$0")" && pwd)
source=$here/../lib/stores/programs/fd3exec.c
cc=${CC:-cc}

if [ "$kind" = auto ]; then
  case "$(uname -s)/$(uname -m)" in
  Linux/x86_64 | Linux/aarch64) kind=nolibc ;;
  *) kind=libc ;;
  esac
fi
common="-O2 -g0 -Wall -Wextra -Werror -fPIE -Wl,-z,relro,-z,now"
case $kind in
nolibc)
  # shellcheck disable=SC2086 # word splitting of the flag lists is meant
  $cc $common -DFD3EXEC_NOLIBC -static-pie -nostdlib -ffreestanding \
    -fno-stack-protector -fno-tree-loop-distribute-patterns \
    -o "$out" "$source"
  # A static PIE without a C library has nobody to apply relocations:
  # there must be none.
  if command -v readelf >/dev/null && ! readelf -r "$out" |
    grep -q 'There are no relocations'; then
    rm -f "$out"
    echo "build-fd3exec.sh: the nolibc build has relocations; keep pointers out of static data" >&2
    exit 1
  fi
  ;;
libc)
  # shellcheck disable=SC2086
  $cc $common -pie -fstack-protector-strong -D_FORTIFY_SOURCE=2 \
    -o "$out" "$source"
  ;;
*)
  echo "build-fd3exec.sh: unknown kind '$kind' (auto, libc or nolibc)" >&2
  exit 100
  ;;
esac
strip --remove-section=.comment --remove-section=.note "$out" 2>/dev/null ||
  true
echo "$kind"
