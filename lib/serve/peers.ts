/**
 * Which clients share a per-IP limit: an IPv4 address counts under its
 * `/prefix4` network and an IPv6 address under its `/prefix6` network
 * (by default /32 and /64: one IPv6 host is usually given a whole /64, so
 * counting per /128 would let one host take every slot; Dovecot and
 * OpenSSH group the same way).
 *
 * @module
 */

/** The group an address counts under, e.g. `192.0.2.7` or `2001:db8:1:2::/64`. */
export function addressGroup(
  ip: string,
  prefix4: number,
  prefix6: number,
): string {
  const v4 = parseV4(ip);
  if (v4 !== undefined) {
    return prefix4 >= 32 ? ip : `${formatV4(mask(v4, prefix4))}/${prefix4}`;
  }
  const v6 = parseV6(ip);
  if (v6 === undefined) return ip;
  return prefix6 >= 128
    ? formatV6(v6)
    : `${formatV6(mask(v6, prefix6))}/${prefix6}`;
}

function parseV4(text: string): number[] | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  const octets = parts.map((p) => (/^\d{1,3}$/.test(p) ? Number(p) : NaN));
  return octets.every((o) => o >= 0 && o <= 255) ? octets : undefined;
}

function formatV4(octets: readonly number[]): string {
  return octets.join(".");
}

/** Sixteen octets, or `undefined` for text that is not an IPv6 address. */
function parseV6(text: string): number[] | undefined {
  const bare = text.replace(/%.*$/, "");
  if (!/^[0-9A-Fa-f:.]+$/.test(bare) || !bare.includes(":")) return undefined;
  const halves = bare.split("::");
  if (halves.length > 2) return undefined;
  const words = (half: string): number[] | undefined => {
    if (half === "") return [];
    const out: number[] = [];
    const items = half.split(":");
    for (let i = 0; i < items.length; i++) {
      const item = items[i]!;
      if (i === items.length - 1 && item.includes(".")) {
        const v4 = parseV4(item);
        if (!v4) return undefined;
        out.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
      } else if (/^[0-9A-Fa-f]{1,4}$/.test(item)) {
        out.push(parseInt(item, 16));
      } else return undefined;
    }
    return out;
  };
  const head = words(halves[0]!);
  const tail = halves.length === 2 ? words(halves[1]!) : [];
  if (!head || !tail) return undefined;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return undefined;
  const all = [...head, ...new Array<number>(missing).fill(0), ...tail];
  return all.flatMap((w) => [w >> 8, w & 0xff]);
}

function formatV6(octets: readonly number[]): string {
  const words: number[] = [];
  for (let i = 0; i < 16; i += 2) {
    words.push((octets[i]! << 8) | octets[i + 1]!);
  }
  // The longest run of two or more zero words becomes "::" (RFC 5952).
  let best = -1, bestLength = 1;
  for (let i = 0; i < 8;) {
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLength) [best, bestLength] = [i, j - i];
    i = j === i ? i + 1 : j;
  }
  const hex = (list: number[]) => list.map((w) => w.toString(16)).join(":");
  return best < 0
    ? hex(words)
    : `${hex(words.slice(0, best))}::${hex(words.slice(best + bestLength))}`;
}

/** Keep the first `bits` bits of the octets, zero the rest. */
function mask(octets: readonly number[], bits: number): number[] {
  return octets.map((octet, i) => {
    const keep = Math.max(0, Math.min(8, bits - i * 8));
    return keep === 0 ? 0 : octet & ((0xff << (8 - keep)) & 0xff);
  });
}
