/**
 * User names into LDAP text: `%u`/`%n`/`%d` templates whose values are
 * escaped for a DN (RFC 4514) or for a search filter (RFC 4515), so that no
 * user name can add an RDN, leave the base, or widen a filter. Works on the
 * raw octets the client sent: anything outside printable ASCII becomes a
 * `\XX` hex pair, which both RFCs allow.
 *
 * @module
 */

/** The parts of a user name a template can use. */
export interface NameParts {
  /** `%u`: the whole name. */
  readonly u: Uint8Array;
  /** `%n`: the part before the first `@` (the whole name without one). */
  readonly n: Uint8Array;
  /** `%d`: the part after the first `@` (empty without one). */
  readonly d: Uint8Array;
}

/** Split a user name at its first `@`. */
export function nameParts(user: Uint8Array): NameParts {
  const at = user.indexOf(0x40);
  return at < 0
    ? { u: user, n: user, d: new Uint8Array(0) }
    : { u: user, n: user.subarray(0, at), d: user.subarray(at + 1) };
}

const HEX = "0123456789abcdef";

function hexPair(octet: number): string {
  return "\\" + HEX[octet >> 4] + HEX[octet & 15];
}

/** Printable ASCII that may stand for itself, everything else hex. */
function printable(octet: number): boolean {
  return octet >= 0x20 && octet <= 0x7e;
}

/**
 * Escape octets as an RFC 4514 attribute value: `"+,;<>\=#` with a
 * backslash, a leading or trailing space too, and every octet outside
 * printable ASCII (NUL, controls, UTF-8) as a hex pair.
 */
export function escapeDnValue(value: Uint8Array): string {
  let out = "";
  for (let i = 0; i < value.length; i++) {
    const octet = value[i]!;
    const char = String.fromCharCode(octet);
    if (!printable(octet)) out += hexPair(octet);
    else if ('"+,;<>\\=#'.includes(char)) out += "\\" + char;
    else if (char === " " && (i === 0 || i === value.length - 1)) {
      out += "\\ ";
    } else out += char;
  }
  return out;
}

/**
 * Escape octets as an RFC 4515 assertion value: `*`, `(`, `)`, `\`, NUL and
 * the other ASCII controls as hex pairs. Valid UTF-8 beyond ASCII stays as
 * it is (RFC 4515 allows it, and ldapts turns each `\XX` into one
 * character, which would split a multi-octet one); octets that are not
 * UTF-8 become hex pairs (the store refuses such names before searching).
 */
export function escapeFilterValue(value: Uint8Array): string {
  let text: string;
  try {
    text = strictUtf8.decode(value);
  } catch {
    return [...value].map((octet) =>
      octet >= 0x80 ? hexPair(octet) : escapeFilterChar(octet)
    ).join("");
  }
  let out = "";
  for (const char of text) {
    const code = char.codePointAt(0)!;
    out += code >= 0x80 ? char : escapeFilterChar(code);
  }
  return out;
}

function escapeFilterChar(code: number): string {
  const char = String.fromCharCode(code);
  return !printable(code) || "*()\\".includes(char) ? hexPair(code) : char;
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** Is this name valid UTF-8 (what a filter value must be)? */
export function isUtf8(value: Uint8Array): boolean {
  try {
    strictUtf8.decode(value);
    return true;
  } catch {
    return false;
  }
}

/** The `%` sequences a template may hold. */
const TEMPLATE_PART = /%([und%])/g;

/**
 * The problem with a template, or undefined: only `%u`, `%n`, `%d` and
 * `%%`, and at least one of the first three.
 */
export function templateProblem(template: string): string | undefined {
  const stray = /%(?![und%])/.exec(template.replace(/%%/g, ""));
  if (stray) return "only %u, %n, %d and %% may follow a %";
  if (!/%[und]/.test(template.replace(/%%/g, ""))) {
    return "it must contain %u, %n or %d";
  }
  return undefined;
}

/**
 * Fill a checked template, escaping each value with `escape`. Returns
 * undefined when a value it uses is empty (no such user can exist).
 */
export function fillTemplate(
  template: string,
  parts: NameParts,
  escape: (value: Uint8Array) => string,
): string | undefined {
  let empty = false;
  const text = template.replace(TEMPLATE_PART, (_, key: string) => {
    if (key === "%") return "%";
    const value = parts[key as keyof NameParts];
    if (value.length === 0) empty = true;
    return escape(value);
  });
  return empty ? undefined : text;
}
