#!/usr/bin/env bash
# Install what the test suite needs on Debian, when run as root: the real
# clients and servers the integration tests start (tcpserver, poppass-cgi,
# databases, slapd, HAProxy …). Without root it installs nothing and says
# which packages are missing; tests that need them are then skipped with
# the same apt-get line. Installing never starts the packages' own services
# (a temporary policy-rc.d refuses them).
set -u
packages=(
  ucspi-tcp poppass-cgi netcat-openbsd fail2ban dovecot-core whois openssl
  lintian daemontools gcc libc6-dev python3
  postgresql mariadb-server slapd ldap-utils haproxy
  # the PAM store: useradd/chpasswd, pam_unix, libpam, crypt(3) (all in a
  # standard Debian install)
  passwd libpam-modules libpam-runtime libpam0g libcrypt1
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "tests/setup.sh: not root; tests that need them are skipped. To run every test: apt-get install ${missing[*]}" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && own_policy=1
fi
log=$(mktemp)
echo "tests/setup.sh: installing ${missing[*]}" >&2
if ! apt-get install -y -qq "${missing[@]}" >"$log" 2>&1; then
  apt-get update -qq >>"$log" 2>&1
  apt-get install -y -qq "${missing[@]}" >>"$log" 2>&1 || { tail -20 "$log" >&2; status=1; }
fi
[ "$own_policy" -eq 1 ] && rm -f "$policy"
rm -f "$log"
exit "${status:-0}"
