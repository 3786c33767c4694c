/**
 * The fake back ends of the leak tests: a wrapper that runs fakeauth with
 * its accounts and forced behaviour chosen per client port, and the unique
 * password markers the secrets scan looks for.
 *
 * @module
 */

import { FAKEAUTH, type Sandbox } from "../../support/sandbox.ts";

/**
 * Which session a back-end run belongs to. Neither the client port nor a
 * pid names one alone over a long run: loopback ports get reused
 * (tcp_tw_reuse=2; a 2,000-session soak reused 5), and so do pids
 * (pid_max 32768 here; the same soak reused 31 session pids). Stdio mode:
 * the session's server process and client port together (`p<pid>-<port>`;
 * the run's parent and TCPREMOTEPORT). Listen mode: the client port, with
 * sessions one at a time and fresh state for each.
 */
export interface Key {
  /** Names the session's account file and forced behaviour. */
  readonly file: string;
  /** The transcript's session for the ledger checker. */
  readonly session: string;
}

/** The account file of one session. */
export function accountsOf(box: Sandbox, key: Key): string {
  return `${box.dir}/accounts-${key.file}`;
}

/**
 * A wrapper around fakeauth that uses, per session (`p<server pid>-$port` in
 * stdio mode, the server being the parent of the group leader, else the
 * client port): its own account file (fakeauth's set rewrites the
 * file without a lock, so concurrent sets on one file lose updates) and a
 * forced behaviour (noread cannot be chosen by user name: the name is on
 * fd 3). Written again here rather than shared: test files may not import
 * each other.
 */
export async function writeWrapper(box: Sandbox): Promise<string> {
  const wrapper = `${box.dir}/auth`;
  await Deno.writeTextFile(`${box.dir}/force`, "");
  await Deno.writeTextFile(
    wrapper,
    `#!/bin/sh
port=\${TCPREMOTEPORT:-none}
# The server process: the parent of our group's leader (the shim or fd3exec
# leads it and waits for us), as fakeauth's ledger has it.
group=\$(echo \$(cut -d')' -f2- /proc/$$/stat) | cut -d' ' -f3)
starter=\$(cut -d')' -f2- /proc/"$group"/stat 2>/dev/null | cut -d' ' -f3)
[ -n "$starter" ] || starter=$PPID
for k in "p$starter-$port" "$port"; do
  a='${box.dir}/accounts-'$k
  [ -f "$a" ] && FAKEAUTH_ACCOUNTS=$a && export FAKEAUTH_ACCOUNTS && break
done
b=$(grep -E "^(p$starter-$port|$port) $1 " '${box.dir}/force' | cut -d' ' -f3)
[ -n "$b" ] && FAKEAUTH_BEHAVE=$b && export FAKEAUTH_BEHAVE
exec '${FAKEAUTH}' "$@"
`,
  );
  await Deno.chmod(wrapper, 0o755);
  return wrapper;
}

/** Force fakeauth's behaviour for one session and mode. */
export async function force(
  box: Sandbox,
  key: Key,
  mode: "check" | "set",
  behave: string,
): Promise<void> {
  await Deno.writeTextFile(
    `${box.dir}/force`,
    `${key.file} ${mode} ${behave}\n`,
    { append: true },
  );
}

/** A fresh password marker: `Mk-<hex>`, never to be found outside fd 3. */
export function marker(): string {
  const octets = crypto.getRandomValues(new Uint8Array(6));
  return `Mk-${
    Array.from(octets, (b) => b.toString(16).padStart(2, "0")).join("")
  }`;
}
