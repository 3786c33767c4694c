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
#   built-in SQL store     --allow-net          (--sql-url, --sql-url-file, their
#                                                POPPASS_ variables), and
#                          --allow-write=PATH   for a unix socket (PostgreSQL
#                                                ?host=/DIR, MySQL ?socket=/FILE)
#                                                or an SQLite file's folder
#   passwd-file and SQL    --allow-ffi          (the hash workers load the
#                                                system's libcrypt for crypt(3)
#                                                strings such as yescrypt "$y$",
#                                                and libsodium for Argon2 at
#                                                native speed)
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
max_sessions=$(trim "${POPPASS_MAX_SESSIONS-}")
sql_url=$(trim "${POPPASS_SQL_URL-}")
sql_url_file=$(trim "${POPPASS_SQL_URL_FILE-}")
want=
for arg do
  case $want in
  listen) listen=$arg want= && continue ;;
  passwd-file) passwd_file=$arg want= && continue ;;
  pam) pam=$arg want= && continue ;;
  ldap-url) ldap_url=$arg want= && continue ;;
  max-sessions) max_sessions=$arg want= && continue ;;
  sql-url) sql_url=$arg want= && continue ;;
  sql-url-file) sql_url_file=$arg want= && continue ;;
  value) want= && continue ;;
  esac
  case $arg in
  --) break ;;
  --listen=*) listen=${arg#--listen=} ;;
  --passwd-file=*) passwd_file=${arg#--passwd-file=} ;;
  --pam=*) pam=${arg#--pam=} ;;
  --ldap-url=*) ldap_url=${arg#--ldap-url=} ;;
  --max-sessions=*) max_sessions=${arg#--max-sessions=} ;;
  --sql-url=*) sql_url=${arg#--sql-url=} ;;
  --sql-url-file=*) sql_url_file=${arg#--sql-url-file=} ;;
  --sql-url) want=sql-url ;;
  --sql-url-file) want=sql-url-file ;;
  --listen) want=listen ;;
  --passwd-file) want=passwd-file ;;
  --pam) want=pam ;;
  --ldap-url) want=ldap-url ;;
  --max-sessions) want=max-sessions ;;
  # The options that take no value; every other --name takes the next word.
  --allow-plaintext | --ldap-starttls | --check-config | --help | --version) ;;
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
  # 64 MiB keeps RSS near 90 MiB with room to spare. More sessions need
  # more: 16 MiB plus 24 KiB per --max-sessions (HEAP_BASE_MIB and
  # HEAP_PER_SESSION_KIB in lib/common/limits.ts, measured with
  # bench/heap.ts), at least 64. A value the program refuses (not a
  # number, over 100000) keeps 64: the program then says what is wrong.
  mib=64
  case $max_sessions in
  '' | 0* | *[!0-9]* | ???????*) ;;
  *)
    need=$((16 + (max_sessions * 24 + 1023) / 1024))
    [ "$need" -gt "$mib" ] && mib=$need
    ;;
  esac
  heap=--v8-flags=--max-old-space-size=$mib
fi
# The LDAP store connects to its directory servers in both modes.
[ -n "$ldap_url" ] && net=--allow-net

# No built-in store (passwd-file, LDAP, PAM, SQL) runs programs.
store=$passwd_file$ldap_url$pam$sql_url$sql_url_file

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
ffi=
if [ -n "$passwd_file" ]; then
  ffi=--allow-ffi
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
if [ -n "$sql_url$sql_url_file" ]; then
  net=--allow-net
  # The hash workers, as for the passwd-file store.
  ffi=--allow-ffi
  # The URL is read here only to find a path to grant; the program
  # checks it. A file's first line is the URL.
  if [ -n "$sql_url_file" ]; then
    sql_url=$(sed -n '1{s/^[[:space:]]*//;s/[[:space:]]*$//;p;}' -- "$sql_url_file" 2>/dev/null)
  fi
  path=
  case $sql_url in
  postgres://* | postgresql://*)
    dir=$(printf '%s\n' "$sql_url" | sed -n 's|^[^?]*?\(.*&\)\{0,1\}host=\(/[^&#]*\).*$|\2|p')
    port=$(printf '%s\n' "$sql_url" | sed -n 's|^[^?]*?\(.*&\)\{0,1\}port=\([0-9]*\).*$|\2|p')
    [ -n "$port" ] || port=$(printf '%s\n' "$sql_url" | sed -n 's,^[^/]*//[^/]*:\([0-9][0-9]*\)/.*$,\1,p')
    [ -n "$dir" ] && path=$dir/.s.PGSQL.${port:-5432}
    ;;
  mysql://* | mariadb://*)
    path=$(printf '%s\n' "$sql_url" | sed -n 's|^[^?]*?\(.*&\)\{0,1\}socket=\(/[^&#]*\).*$|\2|p')
    ;;
  sqlite:///*)
    file=${sql_url#sqlite://}
    path=$(dirname -- "$file")
    ;;
  esac
  if [ -n "$path" ]; then
    path=$(printf '%s\n' "$path" | sed 's/,/,,/g' && echo x)
    path=${path%?x}
    write=--allow-write=$path
  fi
fi

# PAM modules run inside the process (pam_unix writes /etc/shadow itself),
# so the PAM store needs Deno's FFI permission, and the server runs as root.
if [ -n "$pam" ]; then
  ffi=--allow-ffi
fi

exec "$runtime" run --no-config --no-remote --no-npm --no-prompt \
  --allow-env --allow-run --allow-read $net $heap $ffi ${write:+"$write"} \
  "$program" "$@"
