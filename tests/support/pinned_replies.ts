/**
 * The wire text every suite expects, written out literally so a
 * change to `lib/protocol/replies.ts` cannot silently change what the tests demand.
 *
 * @module
 */

/** The greeting for a host name. */
export const greeting = (host = "pop.example"): string =>
  `200 ${host} hello, who are you?\r\n`;

/** Every reply by name, CRLF included: the one pinned table every suite uses. */
export const R = {
  userOk: "200 Your password please.\r\n",
  passOk: "200 Your new password please.\r\n",
  changed: "200 Password changed, thank-you.\r\n",
  bye: "200 Bye.\r\n",
  usernameRequired: "500 Username required.\r\n",
  passwordRequired: "500 Password required.\r\n",
  authFailed: "500 Old password is incorrect or user not found.\r\n",
  authTemporary: "500 Temporary failure, please try again later.\r\n",
  newPasswordRequired: "500 New Password required.\r\n",
  changeFailed: "500 Password change failed.\r\n",
  quitRequired: "500 Quit required.\r\n",
  lineTooLong: "500 Line too long.\r\n",
  timeout: "500 Timeout.\r\n",
  tooMany: "500 Too many connections, try later.\r\n",
  misconfigured: "500 Server configuration error, see the server log.\r\n",
} as const;
