/**
 * Transcripts from ucspi-tcp's `recordio`, which sits between tcpserver and
 * the server and prints every packet to fd 2 as `PID < data` (client to
 * server) or `PID > data` (server to client), each line ending in a space
 * (the data had a newline there), `+` (it did not) or being `[EOF]`.
 * PID is the server's, so it matches fakeauth's parent pid.
 *
 * @module
 */

import { bytes } from "./bytes.ts";
import type { Transcript } from "./talk.ts";

/** Collect every session's transcript from a log that recordio wrote into. */
export function parseRecordio(log: Uint8Array): Transcript[] {
  const sessions = new Map<
    string,
    { sent: Uint8Array[]; received: Uint8Array[] }
  >();
  let start = 0;
  for (let lf = log.indexOf(0x0a); lf >= 0; lf = log.indexOf(0x0a, start)) {
    const line = log.subarray(start, lf);
    start = lf + 1;
    const head = /^(\d+) ([<>]) /.exec(
      new TextDecoder("latin1").decode(line.subarray(0, 16)),
    );
    if (!head) continue;
    const data = line.subarray(head[0].length);
    if (data.length === 5 && new TextDecoder().decode(data) === "[EOF]") {
      continue;
    }
    const mark = data.at(-1);
    if (mark !== 0x20 && mark !== 0x2b) continue;
    const chunk = bytes(data.subarray(0, -1), ...(mark === 0x20 ? [0x0a] : []));
    const session = sessions.get(head[1]!) ?? { sent: [], received: [] };
    (head[2] === "<" ? session.sent : session.received).push(chunk);
    sessions.set(head[1]!, session);
  }
  return [...sessions].map(([session, { sent, received }]) => ({
    session,
    sent: bytes(...sent),
    received: bytes(...received),
  }));
}
