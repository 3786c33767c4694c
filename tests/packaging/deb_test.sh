#!/usr/bin/env bash
# tests/packaging/deb_test.sh: the Debian package, end to end, on this machine.
#
# Builds the .deb (or takes the path given), installs it with dpkg -i, runs
# the installed /usr/sbin/qmail-poppass under tcpserver (as nobody) and in
# listen mode (flags, then POPPASS_* variables with the built-in
# passwd-file back end, then the PAM store with the shipped
# /etc/pam.d/qmail-poppass and a real Unix account) and through the daemontools example when envdir is
# installed, changes passwords through Debian's poppass-cgi (a headless CGI
# POST), measures connect-to-greeting under tcpserver as root and as
# nobody, then removes and purges the package and checks that nothing is
# left running or installed.
#
# Needs root, dpkg, ucspi-tcp, poppass-cgi, perl; lintian, systemd
# (systemd-analyze) and daemontools are used when present.
# Usage: bash tests/packaging/deb_test.sh [PACKAGE.deb]
# Ends with "N passed, N failed"; exits non-zero if anything failed.
set -uo pipefail
export LC_ALL=C NO_COLOR=1 DENO_NO_UPDATE_CHECK=1
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1

package=qmail-poppass
cgi=/usr/lib/cgi-bin/poppass
runtime_dir=/usr/lib/$package
port=106 # poppass-cgi always connects to port 106; only the host varies.

passed=0
failed=0
pids=()
installed_by_us=0
work=
unix_user=

pass() {
  passed=$((passed + 1))
  printf 'ok - %s\n' "$1"
}
fail() {
  failed=$((failed + 1))
  printf 'not ok - %s\n' "$1"
  if [ -n "${2-}" ]; then printf '%s\n' "$2" | tail -20 | sed 's/^/    # /'; fi
}
# check DESCRIPTION COMMAND...: one test, passing when COMMAND succeeds.
check() {
  local description=$1
  shift
  if "$@"; then pass "$description"; else fail "$description"; fi
}
note() { printf '# %s\n' "$*"; }
not() { ! "$@"; }

# --- processes: everything we start is recorded by pid and stopped as a tree.
children() {
  local stat rest fields
  for stat in /proc/[0-9]*/stat; do
    { read -r rest <"$stat"; } 2>/dev/null || continue
    fields=${rest##*) }
    # shellcheck disable=SC2086 # split into the stat fields
    set -- $fields
    if [ "${2-}" = "$target" ]; then
      rest=${stat#/proc/}
      printf '%s\n' "${rest%/stat}"
    fi
  done
}
tree() { # PID -> PID and its descendants, children first
  local target=$1 child
  for child in $(children); do tree "$child"; done
  printf '%s\n' "$1"
}
any_alive() {
  local pid
  for pid; do kill -0 "$pid" 2>/dev/null && return 0; done
  return 1
}
stop_tree() { # PID [SIGNAL]: signal the tree, wait up to 5 s, then SIGKILL
  local all
  all=$(tree "$1")
  # shellcheck disable=SC2086 # $all is a list of pids
  kill -"${2:-TERM}" $all 2>/dev/null
  for _ in $(seq 50); do
    # shellcheck disable=SC2086
    any_alive $all || break
    sleep 0.1
  done
  # shellcheck disable=SC2086
  kill -KILL $all 2>/dev/null
  wait "$1" 2>/dev/null
  return 0
}
# Processes running the installed runtime (also after its file is deleted).
runtime_processes() {
  local exe link
  for exe in /proc/[0-9]*/exe; do
    link=$(readlink "$exe" 2>/dev/null) || continue
    case $link in "$runtime_dir"/*) printf '%s %s\n' "${exe//[!0-9]/}" "$link" ;; esac
  done
}

dpkg_retry() { # dpkg with its arguments, waiting for a busy dpkg lock
  local out
  for _ in $(seq 60); do
    out=$(dpkg "$@" 2>&1) && {
      printf '%s\n' "$out"
      return 0
    }
    case $out in *"frontend lock"* | *"database is locked"* | *"lock was locked"*) sleep 2 ;; *)
      printf '%s\n' "$out"
      return 1
      ;;
    esac
  done
  printf '%s\n' "$out"
  return 1
}

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  local pid
  for pid in "${pids[@]}"; do stop_tree "$pid"; done
  if [ "$installed_by_us" = 1 ] && dpkg -s "$package" >/dev/null 2>&1; then
    note "cleanup: purging $package"
    dpkg_retry -P "$package" >/dev/null
  fi
  [ -n "$unix_user" ] && userdel "$unix_user" 2>/dev/null
  [ -n "$work" ] && rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

finish() {
  printf '%s passed, %s failed\n' "$passed" "$failed"
  [ "$failed" -eq 0 ]
  exit
}

# --- preconditions -------------------------------------------------------------
missing=
[ "$(id -u)" = 0 ] || missing="$missing root"
for tool in dpkg tcpserver tcprules perl setpriv; do
  command -v "$tool" >/dev/null || missing="$missing $tool"
done
[ -f "$cgi" ] || missing="$missing poppass-cgi($cgi)"
if [ -n "$missing" ]; then
  fail "preconditions: missing$missing"
  finish
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/deb_test.XXXXXX")
chmod 0755 "$work"
version=$(sed -n 's/^export const VERSION = "\([^"]*\)";$/\1/p' lib/common/version.ts)

# --- the package ---------------------------------------------------------------------
if [ $# -ge 1 ]; then
  deb=$1
else
  note "building the package (packaging/deb/build.sh)"
  if out=$(bash packaging/deb/build.sh "$work/$package.deb" 2>&1); then
    deb=$work/$package.deb
    pass "deno task deb's build.sh builds the package"
  else
    fail "deno task deb's build.sh builds the package" "$out"
    finish
  fi
fi
[ -f "$deb" ] || {
  fail "package file $deb exists"
  finish
}
note "package: $deb, $(stat -c %s "$deb") bytes"

if command -v lintian >/dev/null; then
  out=$(lintian -I -E --pedantic --show-overrides "$deb" 2>&1)
  printf '%s\n' "$out" | grep -v 'running with root privileges' | sed 's/^/# lintian: /'
  if printf '%s\n' "$out" | grep -q '^E: '; then
    fail "lintian reports no errors" "$(printf '%s\n' "$out" | grep '^E: ')"
  else
    pass "lintian reports no errors"
  fi
else
  note "skip: lintian is not installed"
fi

if dpkg -s "$package" >/dev/null 2>&1; then
  note "$package was installed before this test; it is replaced and removed"
fi
before=$(runtime_processes)
if out=$(dpkg_retry -i "$deb"); then
  installed_by_us=1
  pass "dpkg -i installs the package"
else
  installed_by_us=1
  fail "dpkg -i installs the package" "$out"
  finish
fi

check "installed: launcher, runtime, bundle, man page, units, copyright, cache" \
  test -x /usr/sbin/$package -a -x $runtime_dir/deno -a -f $runtime_dir/$package.js \
  -a -f /usr/share/man/man8/$package.8.gz -a -f /lib/systemd/system/$package.socket \
  -a -f "/lib/systemd/system/$package@.service" -a -f /lib/systemd/system/$package.service \
  -a -f /usr/share/doc/$package/copyright -a -f /etc/default/$package \
  -a -d /var/cache/$package -a -x $runtime_dir/fd3exec -a -x $runtime_dir/fd3spawn \
  -a -f /etc/pam.d/$package
check "installed: /etc/pam.d/$package includes common-auth, common-account, common-password" \
  test "$(grep '^@include' /etc/pam.d/$package | tr '\n' ' ')" = \
  "@include common-auth @include common-account @include common-password "
check "dpkg: /etc/pam.d/$package is a conffile" \
  grep -q "^ /etc/pam.d/$package [0-9a-f]" <<<"$(dpkg-query -W -f='${Conffiles}\n' "$package")"
said=$(/usr/sbin/$package --version 2>&1)
check "qmail-poppass --version says '$package $version'" test "$said" = "$package $version"
said=$($runtime_dir/deno --version 2>&1 | head -1)
note "runtime: $said"
check "the packaged runtime is Deno 2.9.6" test "${said#deno 2.9.6 }" != "$said"
check "postinst started nothing (no process runs the packaged runtime)" \
  test -z "$(runtime_processes)" -a -z "$before"
check "postinst filled the V8 code cache" test -s /var/cache/$package/v8_code_cache_v2

# The upgrade path (prerm upgrade, postinst configure with the old
# version): installing the same package again must work and start nothing.
if out=$(dpkg_retry -i "$deb"); then
  pass "dpkg -i again (the upgrade path) succeeds"
else
  fail "dpkg -i again (the upgrade path) succeeds" "$out"
fi
check "the upgrade started nothing and refilled the code cache" \
  test -z "$(runtime_processes)" -a -s /var/cache/$package/v8_code_cache_v2

if command -v systemd-analyze >/dev/null; then
  man_flag=
  command -v man >/dev/null || man_flag=--man=no
  out=$(systemd-analyze verify $man_flag /lib/systemd/system/$package.socket \
    "/lib/systemd/system/$package@.service" /lib/systemd/system/$package.service 2>&1)
  status=$?
  [ -n "$out" ] && printf '%s\n' "$out" | sed 's/^/# systemd-analyze: /'
  if [ $status -eq 0 ] && [ -z "$out" ]; then
    pass "systemd-analyze verify: the installed units are clean"
  else
    fail "systemd-analyze verify: the installed units are clean" "$out"
  fi
else
  note "skip: systemd-analyze is not installed"
fi

# --- a fake back end: checkpassword and setpassword that read fd 3 ---------------
state=$work/state
bin=$work/bin
mkdir -p "$state" "$bin"
printf '%s\n' 'old-secret1' >"$state/alice"
: >"$state/ledger"
cat >"$bin/check" <<EOF
#!/bin/sh
# checkpassword: fd 3 carries user NUL oldpass NUL NUL NUL.
printf '[%s]' "\$@" >"$state/check.argv"
payload=\$(head -c 600 <&3 | tr '\\000' '\\n'; echo .)
user=\$(printf '%s' "\$payload" | sed -n 1p)
old=\$(printf '%s' "\$payload" | sed -n 2p)
[ "\$user" = alice ] && [ "\$old" = "\$(cat "$state/alice")" ] && exit 0
exit 1
EOF
cat >"$bin/setpass" <<EOF
#!/bin/sh
# setpassword: fd 3 carries user NUL oldpass NUL NUL newpass NUL.
payload=\$(head -c 600 <&3 | tr '\\000' '\\n'; echo .)
user=\$(printf '%s' "\$payload" | sed -n 1p)
old=\$(printf '%s' "\$payload" | sed -n 2p)
new=\$(printf '%s' "\$payload" | sed -n 4p)
[ "\$user" = alice ] && [ "\$old" = "\$(cat "$state/alice")" ] || exit 1
printf '%s\n' "\$new" >"$state/alice.tmp" && mv "$state/alice.tmp" "$state/alice" || exit 111
echo "alice changed by uid \$(id -u)" >>"$state/ledger"
EOF
chmod 0755 "$bin/check" "$bin/setpass"
chown -R nobody:nogroup "$state"
nobody_uid=$(id -u nobody)
nogroup_gid=$(getent group nogroup | cut -d: -f3)

cat >"$work/greet.pl" <<'EOF'
# greet.pl HOST PORT N: connect N times, read the greeting, close; print the
# median, minimum and maximum milliseconds from connect() to the greeting.
use strict;
use IO::Socket::INET;
use Time::HiRes qw(time);
my ($host, $port, $n) = @ARGV;
my @ms;
for (1 .. $n) {
  local $SIG{ALRM} = sub { die "no greeting within 5 s\n" };
  alarm 5;
  my $t0 = time;
  my $s = IO::Socket::INET->new(PeerAddr => $host, PeerPort => $port,
    Proto => 'tcp', Timeout => 5) or die "connect: $!\n";
  my $line = <$s>;
  push @ms, (time - $t0) * 1000;
  alarm 0;
  close $s;
  die "no greeting\n" unless defined $line && $line =~ /^200 /;
}
@ms = sort { $a <=> $b } @ms;
my $mid = @ms % 2 ? $ms[$#ms / 2] : ($ms[@ms / 2 - 1] + $ms[@ms / 2]) / 2;
printf "%.1f %.1f %.1f\n", $mid, $ms[0], $ms[-1];
EOF

greets() { perl "$work/greet.pl" "$1" "$port" 1 >/dev/null 2>&1; }
wait_greeting() { # HOST PID: wait up to 10 s for a greeting while PID lives
  for _ in $(seq 100); do
    kill -0 "$2" 2>/dev/null || return 1
    greets "$1" && return 0
    sleep 0.1
  done
  return 1
}

# poppass-cgi as a web server runs it: a POST with the form on stdin. It
# connects to the form's host on port 106.
cgi_post() { # HOST USER OLD NEW -> the CGI's HTML on stdout
  local body="host=$1&username=$2&password=$3&newpassword1=$4&newpassword2=$4&action=Change+Password"
  printf '%s' "$body" | env -i PATH=/usr/bin:/bin REQUEST_METHOD=POST \
    CONTENT_TYPE=application/x-www-form-urlencoded CONTENT_LENGTH=${#body} \
    GATEWAY_INTERFACE=CGI/1.1 SERVER_PROTOCOL=HTTP/1.0 SERVER_NAME=localhost \
    SERVER_PORT=80 SCRIPT_NAME=/cgi-bin/poppass REMOTE_ADDR=127.0.0.1 \
    timeout 90 setpriv --reuid=nobody --regid=nogroup --clear-groups \
    perl "$cgi" 2>&1
}

# Port 106 is fixed by poppass-cgi: take 127.0.0.1 if it is free, else
# another loopback address (another test may be using 127.0.0.1:106).
candidates() {
  printf '%s\n' 127.0.0.1
  for _ in 1 2 3 4 5 6 7 8; do
    printf '127.%d.%d.%d\n' $((RANDOM % 250 + 1)) $((RANDOM % 250 + 1)) $((RANDOM % 250 + 2))
  done
}
# start_tcpserver LOG [tcpserver options]: sets $addr and $server_pid.
start_tcpserver() {
  local log=$1 candidate
  shift
  for candidate in $(candidates); do
    PASSWORD_COMMAND="$bin/setpass" POPPASS_FAIL_DELAY=0.5 \
      tcpserver -v -R -H -l localhost "$@" "$candidate" "$port" \
      /usr/sbin/$package localhost "$bin/check" --flag 'two words' /bin/true \
      >>"$log" 2>&1 &
    server_pid=$!
    pids+=("$server_pid")
    for _ in $(seq 50); do
      grep -q 'status: 0/' "$log" 2>/dev/null && break
      kill -0 "$server_pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$server_pid" 2>/dev/null && grep -q 'status: 0/' "$log"; then
      addr=$candidate
      return 0
    fi
    stop_tree "$server_pid"
    : >"$log"
  done
  return 1
}

# change HOST OLD NEW LABEL: a successful change through poppass-cgi.
change() {
  local out lines_before
  lines_before=$(wc -l <"$state/ledger")
  out=$(cgi_post "$1" alice "$2" "$3")
  if printf '%s' "$out" | grep -q 'Password Changed Successfully' &&
    [ "$(cat "$state/alice")" = "$3" ] &&
    [ "$(wc -l <"$state/ledger")" -eq $((lines_before + 1)) ]; then
    pass "$4: poppass-cgi changes alice's password"
  else
    fail "$4: poppass-cgi changes alice's password" "$out"
  fi
}
# refused HOST OLD NEW LABEL: a wrong old password changes nothing.
refused() {
  local out stored
  stored=$(cat "$state/alice")
  out=$(cgi_post "$1" alice "$2" "$3")
  if printf '%s' "$out" | grep -q 'Old password is incorrect' &&
    [ "$(cat "$state/alice")" = "$stored" ]; then
    pass "$4: a wrong old password is refused and changes nothing"
  else
    fail "$4: a wrong old password is refused and changes nothing" "$out"
  fi
}

# --- 0. stdio mode as a systemd socket unit (Accept=yes) starts it ------------------
# systemd passes the client as REMOTE_ADDR/REMOTE_PORT (and sets
# INVOCATION_ID); through the launcher, the failure line must still carry
# the client address for fail2ban.
out=$(printf 'user alice\r\npass wrong-secret0\r\n' |
  env -u TCPREMOTEIP INVOCATION_ID=deb-test REMOTE_ADDR=192.0.2.9 REMOTE_PORT=40106 \
    PASSWORD_COMMAND="$bin/setpass" POPPASS_FAIL_DELAY=0.1 \
    timeout 20 /usr/sbin/$package localhost "$bin/check" /bin/true 2>&1)
if printf '%s\n' "$out" | grep -q '^500 Old password is incorrect' &&
  printf '%s\n' "$out" | grep -q 'ip=192\.0\.2\.9: authentication failed for alice'; then
  pass "systemd-style stdio session: REMOTE_ADDR reaches the log as the client IP"
else
  fail "systemd-style stdio session: REMOTE_ADDR reaches the log as the client IP" "$out"
fi
rm -f "$state/check.argv" # written as root; the sessions below run as nobody

# --- 1. stdio mode under tcpserver, sessions as nobody ----------------------------
log=$work/tcpserver.log
if start_tcpserver "$log" -u "$nobody_uid" -g "$nogroup_gid"; then
  pass "tcpserver -u nobody runs the installed qmail-poppass on $addr:$port"
  refused "$addr" wrong-secret1 new-secret2 "tcpserver"
  change "$addr" old-secret1 new-secret2 "tcpserver"
  check "tcpserver: the chain's arguments arrive intact" \
    test "$(cat "$state/check.argv" 2>/dev/null)" = "[--flag][two words][/bin/true]"
  check "tcpserver: setpassword ran as nobody" grep -q "uid $nobody_uid\$" "$state/ledger"
  sleep 0.3
  check "tcpserver: the log has the success line with the client IP" \
    grep -Eq "ip=127\.[0-9.]+: Password change for alice succeeded" "$log"
  check "tcpserver: no password in the log" \
    not grep -q -e secret1 -e secret2 "$log"
  if timing=$(perl "$work/greet.pl" "$addr" "$port" 20 2>&1); then
    read -r median fastest slowest <<<"$timing"
    pass "tcpserver (sessions as nobody): 20 greetings"
    note "connect-to-greeting under tcpserver as nobody: median $median ms (min $fastest, max $slowest) of 20"
  else
    fail "tcpserver (sessions as nobody): 20 greetings" "$timing"
  fi
  sleep 0.5
  check "tcpserver: every session ended with status 0" \
    not grep -q " end .* status [1-9]" "$log"
  stop_tree "$server_pid"
else
  fail "tcpserver -u nobody runs the installed qmail-poppass on port $port" "$(cat "$log")"
fi

log=$work/tcpserver-root.log
if start_tcpserver "$log"; then
  if timing=$(perl "$work/greet.pl" "$addr" "$port" 20 2>&1); then
    read -r median fastest slowest <<<"$timing"
    pass "tcpserver (sessions as root): 20 greetings"
    note "connect-to-greeting under tcpserver as root: median $median ms (min $fastest, max $slowest) of 20"
  else
    fail "tcpserver (sessions as root): 20 greetings" "$timing"
  fi
  stop_tree "$server_pid"
else
  fail "tcpserver as root runs the installed qmail-poppass" "$(cat "$log")"
fi

# --- 2. listen mode (--listen), as root ----------------------------------------------
log=$work/listen.log
listening=0
for addr in $(candidates); do
  PASSWORD_COMMAND="$bin/setpass" POPPASS_FAIL_DELAY=0.5 \
    /usr/sbin/$package --listen "$addr:$port" localhost "$bin/check" /bin/true \
    </dev/null >>"$log" 2>&1 &
  listen_pid=$!
  pids+=("$listen_pid")
  if wait_greeting "$addr" "$listen_pid"; then
    listening=1
    break
  fi
  stop_tree "$listen_pid"
done
if [ $listening = 1 ]; then
  pass "listen mode: the installed qmail-poppass listens on $addr:$port"
  check "listen mode: the launcher exec'd the packaged runtime (same pid)" \
    test "$(readlink "/proc/$listen_pid/exe")" = "$runtime_dir/deno"
  refused "$addr" wrong-secret2 new-secret3 "listen mode"
  change "$addr" new-secret2 new-secret3 "listen mode"
  kill -TERM "$listen_pid"
  wait "$listen_pid"
  status=$?
  check "listen mode: SIGTERM ends it with exit 0 (got $status)" test "$status" -eq 0
  check "listen mode: the log has the success line" \
    grep -q "Password change for alice succeeded" "$log"
  check "listen mode: the launcher chose the packaged fd3spawn (startup line)" \
    grep -q "; fd-3 spawner $runtime_dir/fd3spawn\$" "$log"
else
  fail "listen mode: the installed qmail-poppass listens on port $port" "$(cat "$log")"
fi

# --- 3. listen mode from POPPASS_* variables, built-in passwd-file back end ----------
# The launcher must grant --allow-net (POPPASS_LISTEN) and write access to
# the passwd-file's folder (POPPASS_PASSWD_FILE) from the environment alone.
pwdir=$work/passwd
mkdir -p "$pwdir"
hash=$(perl -e 'print crypt($ARGV[0], q($6$debtestsalt$))' 'old-secret-pf1')
printf 'alice:{SHA512-CRYPT}%s\n' "$hash" >"$pwdir/users"
chmod 0640 "$pwdir/users"
log=$work/passwdfile.log
listening=0
for addr in $(candidates); do
  POPPASS_LISTEN=" $addr:$port " POPPASS_PASSWD_FILE="$pwdir/users" POPPASS_FAIL_DELAY=0.5 \
    /usr/sbin/$package localhost </dev/null >>"$log" 2>&1 &
  pf_pid=$!
  pids+=("$pf_pid")
  if wait_greeting "$addr" "$pf_pid"; then
    listening=1
    break
  fi
  stop_tree "$pf_pid"
done
if [ $listening = 1 ]; then
  pass "passwd-file: listen mode from POPPASS_LISTEN and POPPASS_PASSWD_FILE"
  out=$(cgi_post "$addr" alice old-secret-pf1 new-secret-pf2)
  if printf '%s' "$out" | grep -q 'Password Changed Successfully' &&
    grep -q '^alice:{ARGON2ID}' "$pwdir/users"; then
    pass "passwd-file: poppass-cgi changes alice's password in the file"
  else
    fail "passwd-file: poppass-cgi changes alice's password in the file" "$out$(cat "$log")"
  fi
  check "passwd-file: the file keeps its mode 0640" test "$(stat -c %a "$pwdir/users")" = 640
  stop_tree "$pf_pid"
else
  fail "passwd-file: listen mode from POPPASS_LISTEN and POPPASS_PASSWD_FILE" "$(cat "$log")"
fi

# --- 3b. the PAM store with the shipped /etc/pam.d/qmail-poppass ----------------------
# A real Unix account (uid 2000 and up), changed through poppass-cgi; the
# launcher must add --allow-ffi from POPPASS_PAM alone, and /etc/shadow
# must then hold a hash of the new password (perl's crypt is libcrypt's).
unix_user=pptdeb$(printf '%04x%04x' $RANDOM $RANDOM)
unix_uid=$((2000 + RANDOM % 50000))
while getent passwd "$unix_uid" >/dev/null; do unix_uid=$((unix_uid + 1)); done
if useradd -M -u "$unix_uid" "$unix_user" &&
  printf '%s:%s\n' "$unix_user" 'Pam-old-deb1' | chpasswd; then
  log=$work/pam.log
  listening=0
  for addr in $(candidates); do
    POPPASS_LISTEN="$addr:$port" POPPASS_PAM=qmail-poppass POPPASS_FAIL_DELAY=0.5 \
      /usr/sbin/$package localhost </dev/null >>"$log" 2>&1 &
    pam_pid=$!
    pids+=("$pam_pid")
    if wait_greeting "$addr" "$pam_pid"; then
      listening=1
      break
    fi
    stop_tree "$pam_pid"
  done
  if [ $listening = 1 ]; then
    pass "PAM: listen mode from POPPASS_LISTEN and POPPASS_PAM"
    check "PAM: the launcher granted --allow-ffi" \
      grep -q -- '--allow-ffi' "/proc/$pam_pid/cmdline"
    out=$(cgi_post "$addr" "$unix_user" Pam-wrong-deb1 Pam-new-deb2)
    check "PAM: a wrong old password is refused" \
      grep -q 'Old password is incorrect' <<<"$out"
    out=$(cgi_post "$addr" "$unix_user" Pam-old-deb1 Pam-new-deb2)
    hash=$(awk -F: -v u="$unix_user" '$1 == u { print $2 }' /etc/shadow)
    if grep -q 'Password Changed Successfully' <<<"$out" &&
      [ "$(perl -e 'print crypt($ARGV[0], $ARGV[1])' Pam-new-deb2 "$hash")" = "$hash" ]; then
      pass "PAM: poppass-cgi changes a Unix password (/etc/shadow: a ${hash:0:3} hash of the new one)"
    else
      fail "PAM: poppass-cgi changes a Unix password" "$out$(cat "$log")"
    fi
    out=$(cgi_post "$addr" root whatever Pam-new-deb3)
    check "PAM: root is refused" grep -q 'Old password is incorrect' <<<"$out"
    check "PAM: no password in the log" not grep -q -e Pam-old -e Pam-new "$log"
    stop_tree "$pam_pid"
  else
    fail "PAM: listen mode from POPPASS_LISTEN and POPPASS_PAM" "$(cat "$log")"
  fi
  userdel "$unix_user" && unix_user=
else
  fail "PAM: useradd/chpasswd make a test account"
fi

# --- 4. the daemontools example, as shipped ---------------------------------------------
if command -v envdir >/dev/null; then
  svc=$work/service
  cp -R /usr/share/doc/$package/examples/daemontools "$svc"
  log=$work/daemontools.log
  printf '%s\n' "$bin/check /bin/true" >"$svc/variables/CHECKPASSWORD"
  printf '%s\n' "$bin/setpass" >"$svc/variables/PASSWORD_COMMAND"
  printf '0.5\n' >"$svc/variables/POPPASS_FAIL_DELAY"
  printf 'localhost\n' >"$svc/variables/HOSTNAME"
  printf 'nobody\n' >"$svc/variables/RUN_AS"
  printf 'nogroup\n' >"$svc/variables/RUN_GROUP"
  (cd "$svc" && tcprules tcp.poppass.cdb tcp.poppass.tmp <tcp.poppass)
  running=0
  for addr in $(candidates); do
    printf '%s\n' "$addr" >"$svc/variables/LOCALIP"
    (cd "$svc" && exec ./run) >>"$log" 2>&1 &
    run_pid=$!
    pids+=("$run_pid")
    if wait_greeting "$addr" "$run_pid"; then
      running=1
      break
    fi
    stop_tree "$run_pid"
  done
  if [ $running = 1 ]; then
    pass "daemontools: the example run script serves on $addr:$port"
    change "$addr" new-secret3 new-secret4 "daemontools"
    check "daemontools: the run script exec'd tcpserver (same pid)" \
      test "$(readlink "/proc/$run_pid/exe")" = "$(command -v tcpserver)"
    stop_tree "$run_pid"
  else
    fail "daemontools: the example run script serves on port $port" "$(cat "$log")"
  fi
else
  note "skip: envdir (daemontools) is not installed; the run script is not exercised"
fi

# --- 5. removal ------------------------------------------------------------------------------
for pid in "${pids[@]}"; do stop_tree "$pid"; done
pids=()
if out=$(dpkg_retry -r "$package"); then
  pass "dpkg -r removes the package"
else
  fail "dpkg -r removes the package" "$out"
fi
leftover=
for path in /usr/sbin/$package $runtime_dir /var/cache/$package \
  /usr/share/man/man8/$package.8.gz /lib/systemd/system/$package.socket \
  "/lib/systemd/system/$package@.service" /lib/systemd/system/$package.service; do
  [ -e "$path" ] && leftover="$leftover $path"
done
check "dpkg -r: the program, runtime, cache, man page and units are gone${leftover:+ (left:$leftover)}" \
  test -z "$leftover"
check "dpkg -r: the conffiles /etc/default/$package and /etc/pam.d/$package stay until purge" \
  test -f /etc/default/$package -a -f /etc/pam.d/$package
if out=$(dpkg_retry -P "$package"); then
  installed_by_us=0
  pass "dpkg -P purges the package"
else
  fail "dpkg -P purges the package" "$out"
fi
check "dpkg -P: /etc/default/$package, /etc/pam.d/$package and /usr/share/doc/$package are gone" \
  test ! -e /etc/default/$package -a ! -e /etc/pam.d/$package -a ! -e /usr/share/doc/$package
check "dpkg: the package is no longer known" not dpkg -s "$package" 2>/dev/null
left=$(runtime_processes)
check "nothing is left running the packaged runtime${left:+ ($left)}" test -z "$left"

finish
