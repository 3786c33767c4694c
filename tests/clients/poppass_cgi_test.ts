/**
 * Debian's poppass-cgi (/usr/lib/cgi-bin/poppass, Perl) as a real
 * third-party client, run headless as a CGI POST. It always connects to
 * port 106 of its `host` form field, so our server runs under
 * `tcpserver -R -H -l localhost 127.0.0.1 106 recordio deno run main.ts …`
 * (we are root); recordio gives the ledger checker the transcript.
 * The CGI speaks `USER`/`PASS`/`NEWPASS`/`QUIT` in upper case with bare LF.
 */

import assert from "node:assert/strict";
import { passwordOf } from "../support/accounts.ts";
import { bytes, changePayload, checkPayload, hex } from "../support/bytes.ts";
import { parseRecordio } from "../support/recordio.ts";
import { assertNoSecrets } from "../support/rows.ts";
import {
  baseEnv,
  FAKEAUTH,
  HOST,
  MAIN,
  Sandbox,
  SHORT,
} from "../support/sandbox.ts";
import { sleep, within } from "../support/time.ts";
import { Tcpserver } from "../support/tcpserver.ts";
import { needs, testWith } from "../support/tools.ts";

const CGI = "/usr/lib/cgi-bin/poppass";
const USER = "cgiuser";
const OLD = "Cgi-Old mk7 ü"; // spaces and UTF-8 are fine in the old password
const NEW = "Cgi-New-mk8-é"; // the CGI refuses spaces in the new one
const WRONG = "Cgi-Wrong mk9";

/** Port 106 may be busy for a moment (another run): retry, bounded. */
async function serve106(box: Sandbox): Promise<Tcpserver> {
  for (let attempt = 0;; attempt++) {
    try {
      return await Tcpserver.start({
        port: 106,
        wrapper: ["recordio"],
        program: [MAIN, ...SHORT, HOST, FAKEAUTH, "check"],
        env: {
          ...baseEnv(),
          ...box.env(),
          PASSWORD_COMMAND: `${FAKEAUTH} set`,
        },
      });
    } catch (error) {
      if (attempt >= 20) throw error;
      await sleep(500);
    }
  }
}

/** POST the form to the CGI, headless; returns its HTML. */
async function postForm(fields: Record<string, string>): Promise<string> {
  const body = new TextEncoder().encode(new URLSearchParams(fields).toString());
  const child = new Deno.Command("perl", {
    args: [CGI],
    env: {
      PATH: "/usr/bin:/bin",
      GATEWAY_INTERFACE: "CGI/1.1",
      REQUEST_METHOD: "POST",
      CONTENT_TYPE: "application/x-www-form-urlencoded",
      CONTENT_LENGTH: String(body.length),
      SCRIPT_NAME: "/cgi-bin/poppass",
      SERVER_NAME: "localhost",
      SERVER_PORT: "80",
      SERVER_PROTOCOL: "HTTP/1.0",
      REMOTE_ADDR: "127.0.0.1",
    },
    clearEnv: true,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(body);
  await writer.close();
  const out = await within(child.output(), 30_000, "poppass-cgi").catch(
    async (error) => {
      child.kill("SIGKILL");
      await child.status;
      throw error;
    },
  );
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  return new TextDecoder().decode(out.stdout);
}

/** Run one CGI change through our server; returns HTML, ledger, accounts, log. */
async function change(old: string) {
  await using box = await Sandbox.create([[USER, OLD]]);
  await using server = await serve106(box);
  const html = await postForm({
    host: "127.0.0.1",
    username: USER,
    password: old,
    newpassword1: NEW,
    newpassword2: NEW,
    action: "Change Password",
  });
  const statuses = await server.idle(1);
  assert.deepEqual(statuses, [0]);
  const transcripts = parseRecordio(server.stderr.bytes);
  assert.equal(transcripts.length, 1, server.log);
  await box.verify(transcripts);
  const log = server.log.split("\n").filter((l) =>
    l.startsWith("qmail-poppass")
  ).join("\n");
  assertNoSecrets(log, [OLD, NEW, WRONG, "mk7", "mk8", "mk9"]);
  return {
    html,
    ledger: await box.ledger(),
    after: await box.accounts(),
    log,
    transcript: transcripts[0]!,
  };
}

const test = testWith(
  needs(import.meta.url, "tcpserver", "recordio", "poppass-cgi", "perl"),
);

test("poppass-cgi changes a password through our server under tcpserver", async () => {
  const { html, ledger, after, log, transcript } = await change(OLD);
  assert.match(html, /Password Changed Successfully/);
  assert.doesNotMatch(html, /Error:/);
  assert.deepEqual(ledger.map((e) => [e.mode, hex(e.payload), e.exit]), [
    ["check", hex(checkPayload(USER, OLD)), "0"],
    ["set", hex(changePayload(USER, OLD, NEW)), "0"],
  ]);
  assert.equal(hex(passwordOf(after, USER)!), hex(bytes(NEW)));
  assert.equal(
    new TextDecoder().decode(transcript.sent),
    `USER ${USER}\nPASS ${OLD}\nNEWPASS ${NEW}\nQUIT\n`,
  );
  assert.match(log, /ip=127\.0\.0\.1: Password change for cgiuser succeeded/);
});

test("poppass-cgi shows the failure for a wrong old password and nothing is set", async () => {
  const { html, ledger, after } = await change(WRONG);
  assert.doesNotMatch(html, /Password Changed Successfully/);
  assert.match(html, /Error:/);
  assert.match(html, /Old password is incorrect or user not found\./);
  assert.deepEqual(ledger.map((e) => [e.mode, hex(e.payload), e.exit]), [
    ["check", hex(checkPayload(USER, WRONG)), "1"],
  ]);
  assert.equal(hex(passwordOf(after, USER)!), hex(bytes(OLD)));
});
