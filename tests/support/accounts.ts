/**
 * The account file fakeauth checks and rewrites: lines `userhex:passwordhex`.
 *
 * @module
 */

import { bytes, hex, type Part, unhex } from "./bytes.ts";

/** Passwords by user; keys are the user names' hex. */
export type Accounts = ReadonlyMap<string, Uint8Array>;

/** One account: user and password as text (UTF-8) or octets. */
export type Account = readonly [user: Part, password: Part];

/** Build an `Accounts` map from pairs. */
export function accounts(pairs: readonly Account[]): Accounts {
  return new Map(pairs.map(([u, p]) => [hex(bytes(u)), bytes(p)]));
}

/** Write the account file from pairs; returns the snapshot written. */
export async function writeAccounts(
  path: string,
  pairs: readonly Account[],
): Promise<Accounts> {
  const map = accounts(pairs);
  const text = [...map].map(([u, p]) => `${u}:${hex(p)}\n`).join("");
  await Deno.writeTextFile(path, text);
  return map;
}

/** Read the account file back. */
export async function readAccounts(path: string): Promise<Accounts> {
  const text = await Deno.readTextFile(path);
  const map = new Map<string, Uint8Array>();
  for (const line of text.split("\n").filter((l) => l !== "")) {
    const [user, password = ""] = line.split(":");
    map.set(user!, unhex(password));
  }
  return map;
}

/** The password of `user` in a snapshot, if any. */
export function passwordOf(
  snapshot: Accounts,
  user: Part,
): Uint8Array | undefined {
  return snapshot.get(hex(bytes(user)));
}
