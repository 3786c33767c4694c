/**
 * Which clients share a per-IP limit: an IPv4 address counts under its
 * `/prefix4` network and an IPv6 address under its `/prefix6` network
 * (by default /32 and /64: one IPv6 host is usually given a whole /64, so
 * counting per /128 would let one host take every slot; Dovecot and
 * OpenSSH group the same way).
 *
 * @module
 */

import { formatIp, masked, parseIp } from "./cidr.ts";

/** The group an address counts under, e.g. `192.0.2.7` or `2001:db8:1:2::/64`. */
export function addressGroup(
  ip: string,
  prefix4: number,
  prefix6: number,
): string {
  // A zone (`fe80::1%eth0`) does not make another host.
  const octets = parseIp(ip.replace(/%.*$/, ""));
  if (octets === undefined) return ip;
  if (octets.length === 4) {
    return prefix4 >= 32
      ? ip
      : `${formatIp(masked(octets, prefix4))}/${prefix4}`;
  }
  return prefix6 >= 128
    ? formatIp(octets, false)
    : `${formatIp(masked(octets, prefix6), false)}/${prefix6}`;
}
