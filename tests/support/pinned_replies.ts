/**
 * The wire text the listen-mode tests expect, written out literally so a
 * change to `lib/protocol/replies.ts` cannot silently change what the tests demand.
 *
 * @module
 */

/** The greeting for a host name. */
export const greeting = (host = "pop.example"): string =>
  `200 ${host} hello, who are you?\r\n`;

/** Replies by name, CRLF included. */
export const R = {
  userOk: "200 Your password please.\r\n",
  passOk: "200 Your new password please.\r\n",
  changed: "200 Password changed, thank-you.\r\n",
  bye: "200 Bye.\r\n",
  authFailed: "500 Old password is incorrect or user not found.\r\n",
  usernameRequired: "500 Username required.\r\n",
  lineTooLong: "500 Line too long.\r\n",
  tooMany: "500 Too many connections, try later.\r\n",
} as const;
