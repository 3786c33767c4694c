#!/bin/sh
# Build lib/stores/programs/fd3spawn.c: build-fd3spawn.sh OUTPUT
#
# An ordinary C program with Debian's hardening flags. Used by
# `deno task helper`, packaging/deb/build.sh, `deno task bench` and the
# tests, so all of them run the same binary.
set -eu
out=${1:?usage: build-fd3spawn.sh OUTPUT}
here=$(cd "$(dirname "$0")" && pwd)
cc=${CC:-cc}
$cc -O2 -g0 -Wall -Wextra -Werror -fPIE -pie -Wl,-z,relro,-z,now \
  -fstack-protector-strong -D_FORTIFY_SOURCE=2 \
  -o "$out" "$here/../lib/stores/programs/fd3spawn.c"
strip --remove-section=.comment --remove-section=.note "$out" 2>/dev/null ||
  true
