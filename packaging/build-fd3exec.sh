#!/bin/sh
# Build lib/stores/programs/fd3exec.c: build-fd3exec.sh OUTPUT
#
# An ordinary C program with Debian's hardening flags. Used by
# `deno task helper`, packaging/deb/build.sh, `deno task bench` and the
# tests, so all of them run the same binary. (A second build without a C
# library saved about 2 % of a stdio session's CPU; it went, see
# BENCHMARKS.md.)
set -eu
out=${1:?usage: build-fd3exec.sh OUTPUT}
here=$(cd "$(dirname "$0")" && pwd)
cc=${CC:-cc}
$cc -O2 -g0 -Wall -Wextra -Werror -fPIE -pie -Wl,-z,relro,-z,now \
  -fstack-protector-strong -D_FORTIFY_SOURCE=2 \
  -o "$out" "$here/../lib/stores/programs/fd3exec.c"
strip --remove-section=.comment --remove-section=.note "$out" 2>/dev/null ||
  true
