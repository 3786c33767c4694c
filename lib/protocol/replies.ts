/**
 * The reply table: every line the server sends, by name. The wire text
 * lives only here (see `doc/protocol.md` §3).
 *
 * @module
 */

/** Fixed replies, without the CRLF. */
export const REPLIES = {
  userOk: "200 Your password please.",
  passOk: "200 Your new password please.",
  changed: "200 Password changed, thank-you.",
  bye: "200 Bye.",
  usernameRequired: "500 Username required.",
  passwordRequired: "500 Password required.",
  authFailed: "500 Old password is incorrect or user not found.",
  authTemporary: "500 Temporary failure, please try again later.",
  newPasswordRequired: "500 New Password required.",
  changeFailed: "500 Password change failed.",
  quitRequired: "500 Quit required.",
  lineTooLong: "500 Line too long.",
  timeout: "500 Timeout.",
  tooMany: "500 Too many connections, try later.",
  misconfigured: "500 Server configuration error, see the server log.",
} as const;

/** The name of a fixed reply. */
export type ReplyName = keyof typeof REPLIES;

const encoder = new TextEncoder();
const encoded = new Map<string, Uint8Array>(
  Object.entries(REPLIES).map((
    [name, text],
  ) => [name, encoder.encode(text + "\r\n")]),
);

/** The greeting line, without the CRLF. */
function greetingText(hostname: string): string {
  return `200 ${hostname} hello, who are you?`;
}

/** The greeting's exact octets, CRLF included; build it once per process. */
export function greetingBytes(hostname: string): Uint8Array {
  return encoder.encode(greetingText(hostname) + "\r\n");
}

/** The exact octets of a fixed reply, CRLF included. */
export function replyBytes(name: ReplyName): Uint8Array {
  return encoded.get(name)!;
}
