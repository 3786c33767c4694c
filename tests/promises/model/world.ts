/**
 * A script made concrete for one session: its user, passwords and markers
 * (the World), and the octets of each line it sends.
 *
 * @module
 */

import { bytes } from "../../support/bytes.ts";
import {
  type Case,
  type Cmd,
  type Kind,
  KINDS,
  type Script,
} from "./scripts.ts";

/** Everything a session renders its lines from and the model predicts with. */
export interface World {
  readonly kind: Kind;
  readonly own: Uint8Array;
  readonly unknown: Uint8Array;
  readonly right: Uint8Array;
  readonly wrong: Uint8Array;
  readonly fresh: Uint8Array;
  /** Each password starts with it: `Mk-<hex>`, unique per run. */
  readonly marker: string;
}

/** Make a script concrete for session `index` of run `run`. */
export function world(
  s: Script,
  run: number,
  index: number,
  token: string,
): World {
  const id = `r${run}s${index}`;
  const kind: Kind = KINDS[s.kind];
  const marker = `Mk-${token}`;
  return {
    kind,
    own: bytes(`${kind.prefix}${id}`),
    unknown: bytes(`zz${id}`),
    right: bytes(`${marker}-${index} old \u00fc`),
    wrong: bytes(`${marker}-${index} wrong`),
    fresh: bytes(`${marker}-${index} new \u00e9`),
    marker,
  };
}

function keyword(word: string, c: Case): string {
  return c === "upper"
    ? word.toUpperCase()
    : c === "title"
    ? word[0]!.toUpperCase() + word.slice(1)
    : word;
}

/** `head` with `octet` put after its second octet. */
function spliced(head: Uint8Array, octet: number): Uint8Array {
  return bytes(head.subarray(0, 2), octet, head.subarray(2));
}

/** A password of exactly `length` octets that starts with the marker. */
function long(w: World, length: number): Uint8Array {
  const head = `${w.marker}-L`;
  return bytes(head, "L".repeat(Math.max(0, length - head.length)));
}

function render(c: Cmd, w: World): Uint8Array {
  switch (c.op) {
    case "user":
      return bytes(
        keyword("user", c.verb),
        " ",
        c.who === "own" ? w.own : w.unknown,
      );
    case "badUser":
      return bytes(keyword("user", c.verb), " ", spliced(w.own, c.octet));
    case "pass": {
      const pw = {
        right: w.right,
        wrong: w.wrong,
        spaced: bytes(" ", w.right),
      };
      return bytes(keyword("pass", c.verb), " ", pw[c.pw]);
    }
    case "longPass":
      return bytes("pass ", long(w, c.length));
    case "badPass":
      return bytes("pass ", spliced(w.right, c.octet));
    case "newpass":
      return bytes(keyword("newpass", c.verb), " ", w.fresh);
    case "longNewpass":
      return bytes("newpass ", long(w, c.length));
    case "badNewpass":
      return bytes("newpass ", spliced(w.fresh, c.octet));
    case "quit":
      return bytes(keyword("quit", c.verb), c.arg ? " now" : "");
    case "junk":
      return Uint8Array.from(c.octets);
    case "edge":
      return bytes(c.text);
    case "overlong":
      return bytes("user ", "x".repeat(c.length - 5));
  }
}

/** The unterminated last line, if any. */
export function partial(s: Script, w: World): Uint8Array {
  return s.partial ? render(s.partial, w) : new Uint8Array(0);
}

/** The session's lines, each with its end of line. */
export function lines(s: Script, w: World): Uint8Array[] {
  const happy: Cmd[] = [
    { op: "user", who: "own", verb: "lower" },
    { op: "pass", pw: "right", verb: "lower" },
    { op: "newpass", verb: "lower" },
  ];
  return [...happy.slice(0, s.happy), ...s.tail].map((c) =>
    bytes(render(c, w), s.eol)
  );
}
