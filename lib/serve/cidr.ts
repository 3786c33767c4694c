/**
 * IPv4 and IPv6 addresses and networks (`192.0.2.0/24`, `2001:db8::/32`,
 * or a bare address for one host), for `--proxy-protocol` (which peers are
 * trusted to tell us the real client) and the per-IP address groups
 * (./peers.ts). Pure: no `Deno.*`.
 *
 * @module
 */

/** A network: its address (4 or 16 octets, host bits cleared) and prefix length. */
export interface Network {
  readonly octets: Uint8Array;
  readonly prefix: number;
}

const V4_PART = /^(0|[1-9]\d{0,2})$/;
const V6_GROUP = /^[0-9A-Fa-f]{1,4}$/;

/** Parse dotted-quad IPv4 (no leading zeros, which some parsers read as octal). */
export function parseIpv4(text: string): Uint8Array | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const part = parts[i]!;
    if (!V4_PART.test(part) || Number(part) > 255) return undefined;
    out[i] = Number(part);
  }
  return out;
}

/** Parse IPv6 text (`::` compression and a dotted IPv4 tail allowed; no zone). */
export function parseIpv6(text: string): Uint8Array | undefined {
  if (text.length > 45 || !text.includes(":")) return undefined;
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const groups = (half: string, last: boolean): number[] | undefined => {
    if (half === "") return [];
    const out: number[] = [];
    const words = half.split(":");
    for (let i = 0; i < words.length; i++) {
      const word = words[i]!;
      if (last && i === words.length - 1 && word.includes(".")) {
        const v4 = parseIpv4(word);
        if (!v4) return undefined;
        out.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
      } else if (V6_GROUP.test(word)) out.push(parseInt(word, 16));
      else return undefined;
    }
    return out;
  };
  const head = groups(halves[0]!, halves.length === 1);
  const tail = halves.length === 2 ? groups(halves[1]!, true) : [];
  if (!head || !tail) return undefined;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return undefined;
  const words = [...head, ...new Array<number>(missing).fill(0), ...tail];
  const out = new Uint8Array(16);
  words.forEach((word, i) => {
    out[2 * i] = word >> 8;
    out[2 * i + 1] = word & 0xff;
  });
  return out;
}

/** Parse an IPv4 or IPv6 address; `undefined` when it is neither. */
export function parseIp(text: string): Uint8Array | undefined {
  return text.includes(":") ? parseIpv6(text) : parseIpv4(text);
}

/**
 * Text for 4 or 16 octets: dotted quad, or RFC 5952 IPv6 (lower case, the
 * longest run of two or more zero groups as `::`). An IPv4-mapped IPv6
 * address (`::ffff:192.0.2.1`) is written as plain IPv4, as the listener
 * writes the peers of dual-stack sockets.
 */
export function formatIp(octets: Uint8Array, unmap = true): string {
  if (octets.length === 4) return octets.join(".");
  if (unmap && isMapped(octets)) return octets.subarray(12).join(".");
  const words: number[] = [];
  for (let i = 0; i < 16; i += 2) {
    words.push((octets[i]! << 8) | octets[i + 1]!);
  }
  let best = -1;
  let bestLength = 1;
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

/** Parse `ADDRESS/PREFIX` or a bare address (one host); throws `RangeError`. */
export function parseNetwork(text: string): Network {
  const [address = "", prefixText, ...more] = text.split("/");
  const octets = parseIp(address);
  if (!octets || more.length > 0) {
    throw new RangeError(`${JSON.stringify(text)} is not an IP network`);
  }
  const bits = octets.length * 8;
  const prefix = prefixText === undefined ? bits : Number(prefixText);
  if (
    prefixText !== undefined && !/^(0|[1-9]\d{0,2})$/.test(prefixText) ||
    !(prefix >= 0 && prefix <= bits)
  ) {
    throw new RangeError(
      `${JSON.stringify(text)}: the prefix length must be 0 to ${bits}`,
    );
  }
  return { octets: masked(octets, prefix), prefix };
}

/** Parse a list separated by commas and/or white space; throws `RangeError`. */
export function parseNetworks(text: string): Network[] {
  const words = text.split(/[\s,]+/).filter((w) => w !== "");
  if (words.length === 0) throw new RangeError("no network given");
  return words.map(parseNetwork);
}

/** Is `ip` (text) inside any of `networks`? Unparsable text is in none. */
export function inNetworks(ip: string, networks: readonly Network[]): boolean {
  let octets = parseIp(ip);
  if (!octets) return false;
  if (isMapped(octets)) octets = octets.slice(12);
  return networks.some((net) =>
    net.octets.length === octets.length &&
    masked(octets, net.prefix).every((b, i) => b === net.octets[i])
  );
}

/** `ADDRESS/PREFIX`, for the startup line. */
export function formatNetwork(network: Network): string {
  return `${formatIp(network.octets, false)}/${network.prefix}`;
}

/** The first `prefix` bits of `octets`, the rest zero. */
export function masked(octets: Uint8Array, prefix: number): Uint8Array {
  const out = new Uint8Array(octets.length);
  for (let i = 0; i < octets.length; i++) {
    const keep = Math.max(0, Math.min(8, prefix - 8 * i));
    out[i] = octets[i]! & (0xff << (8 - keep));
  }
  return out;
}

/** `::ffff:a.b.c.d`: an IPv4 client on a dual-stack socket. */
function isMapped(octets: Uint8Array): boolean {
  return octets.length === 16 && octets.subarray(0, 10).every((b) => b === 0) &&
    octets[10] === 0xff && octets[11] === 0xff;
}
