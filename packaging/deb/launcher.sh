#!/bin/sh
# /usr/sbin/qmail-poppass: run qmail-poppass on the Deno runtime shipped in
# the same package, with the fewest permissions this invocation needs:
#
#   always                 --allow-env --allow-run --allow-read
#   listen mode            --allow-net          (--listen, POPPASS_LISTEN)
#   LDAP store             --allow-net          (--ldap-url, POPPASS_LDAP_URL)
#   built-in passwd-file   --allow-write=DIR    (--passwd-file, POPPASS_PASSWD_FILE;
#                                                DIR = the file's real folder)
#   built-in PAM store     --allow-ffi          (--pam, POPPASS_PAM: libpam is
#                                                loaded through Deno's FFI)
#
# Deno.kill of a child's process group needs the unscoped --allow-run; the
# checkpassword programs and TLS files may live anywhere, hence --allow-read.
#
# The arguments go to the program untouched ("$@"); no descriptor is
# redirected (under tcpserver fd 0/1 are the client and fd 2 is the log);
# exec keeps the pid, so tcpserver, systemd and daemontools signal Deno
# itself.

runtime=/usr/lib/qmail-poppass/deno
program=/usr/lib/qmail-poppass/qmail-poppass.js

# Log lines reach multilog or the journal: no colour escapes. Never ask the
# network for a newer Deno.
NO_COLOR=1
DENO_NO_UPDATE_CHECK=1
# A bundle needs no module cache, but V8's code cache cuts the CPU time of
# a start by about 40% (measured: 85 -> 50 ms). The package's postinst
# fills this folder as root; users that cannot write it (tcpserver -u)
# still read it, and Deno falls back silently (and slower) if it is
# missing.
DENO_DIR=/var/cache/qmail-poppass
export NO_COLOR DENO_NO_UPDATE_CHECK DENO_DIR

# The options, read the way the program reads them: up to the first
# positional argument or "--"; the command line wins over the environment,
# and a variable that is empty or blank counts as unset.
trim() {
  t=$1
  t=${t#"${t%%[![:space:]]*}"}
  t=${t%"${t##*[![:space:]]}"}
  printf '%s' "$t"
}
listen=$(trim "${POPPASS_LISTEN-}")
passwd_file=$(trim "${POPPASS_PASSWD_FILE-}")
pam=$(trim "${POPPASS_PAM-}")
ldap_url=$(trim "${POPPASS_LDAP_URL-}")
want=
for arg do
  case $want in
  listen) listen=$arg want= && continue ;;
  passwd-file) passwd_file=$arg want= && continue ;;
  pam) pam=$arg want= && continue ;;
  ldap-url) ldap_url=$arg want= && continue ;;
  value) want= && continue ;;
  esac
  case $arg in
  --) break ;;
  --listen=*) listen=${arg#--listen=} ;;
  --passwd-file=*) passwd_file=${arg#--passwd-file=} ;;
  --pam=*) pam=${arg#--pam=} ;;
  --ldap-url=*) ldap_url=${arg#--ldap-url=} ;;
  --listen) want=listen ;;
  --passwd-file) want=passwd-file ;;
  --pam) want=pam ;;
  --ldap-url) want=ldap-url ;;
  # The options that take no value; every other --name takes the next word.
  --allow-plaintext | --ldap-starttls | --help | --version) ;;
  --*=*) ;;
  --*) want=value ;;
  *) break ;;
  esac
done

net=
heap=
if [ -n "$listen" ]; then
  net=--allow-net
  # One long-lived process: without a cap V8 lets garbage grow RSS to
  # ~180 MiB under load although the live heap stays ~8 MB (measured);
  # 64 MiB keeps RSS near 90 MiB with room to spare.
  heap=--v8-flags=--max-old-space-size=64
fi
# The LDAP store connects to its directory servers in both modes.
[ -n "$ldap_url" ] && net=--allow-net

# No built-in store (passwd-file, LDAP, PAM) runs programs.
store=$passwd_file$ldap_url$pam

# The compiled fd-3 shim starts each checkpassword and setpassword program
# with two execs instead of four (setsid, /bin/sh, the program and, after
# an exit 0, wc to check that fd 3 was read to its end). A
# POPPASS_FD3_HELPER that is set wins, even empty (empty = the /bin/sh
# shim), and so does --fd3-helper; the built-in stores run no programs,
# so they get none.
helper=/usr/lib/qmail-poppass/fd3exec
if [ -z "$store" ] && [ -z "${POPPASS_FD3_HELPER+set}" ] &&
  [ -x "$helper" ]; then
  POPPASS_FD3_HELPER=$helper
  export POPPASS_FD3_HELPER
fi
# In listen mode, one long-lived fd3spawn starts them all instead: the
# server then never spawns a process itself. The same rules apply to
# POPPASS_FD3_SPAWNER (empty = not used) and --fd3-spawner.
spawner=/usr/lib/qmail-poppass/fd3spawn
if [ -n "$listen" ] && [ -z "$store" ] &&
  [ -z "${POPPASS_FD3_SPAWNER+set}" ] && [ -x "$spawner" ]; then
  POPPASS_FD3_SPAWNER=$spawner
  export POPPASS_FD3_SPAWNER
fi

write=
if [ -n "$passwd_file" ]; then
  # The back end writes PATH.lock and a temporary file next to the file's
  # real path (symbolic links followed), then renames.
  real=$(readlink -f -- "$passwd_file" 2>/dev/null) || real=$passwd_file
  [ -n "$real" ] || real=$passwd_file
  folder=$(dirname -- "$real" && echo x)
  folder=${folder%?x}
  # Deno splits permission lists at commas; ",," is a literal comma.
  folder=$(printf '%s\n' "$folder" | sed 's/,/,,/g' && echo x)
  folder=${folder%?x}
  write=--allow-write=$folder
fi

# PAM modules run inside the process (pam_unix writes /etc/shadow itself),
# so the PAM store needs Deno's FFI permission, and the server runs as root.
ffi=
if [ -n "$pam" ]; then
  ffi=--allow-ffi
fi

exec "$runtime" run --no-config --no-remote --no-npm --no-prompt \
  --allow-env --allow-run --allow-read $net $heap $ffi ${write:+"$write"} \
  "$program" "$@"
