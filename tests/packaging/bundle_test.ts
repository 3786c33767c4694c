/**
 * `deno task bundle` (packaging/bundle.ts): one file that runs with the
 * package launcher's flags, keeps the passwd-file back end out of the code
 * every start loads, and still changes a passwd-file password and, as
 * root, a Unix password through the PAM store.
 */

import assert from "node:assert/strict";
import { embed, LAZY_MODULES } from "../../packaging/bundle.ts";
import {
  cryptMatches,
  shadowHash,
  SKIP_REASON,
  UnixFixture,
} from "../support/unix_accounts.ts";

const ROOT = decodeURIComponent(new URL("../../", import.meta.url).pathname);
const LAUNCHER_FLAGS = [
  "run",
  "--no-config",
  "--no-remote",
  "--no-npm",
  "--no-prompt",
  "--allow-env",
  "--allow-run",
  "--allow-read",
];

Deno.test("embed() swaps the one passwd-file import for a function returning a data: URL", () => {
  const outer =
    'a;\nconst m = await import("./lib/stores/passwdfile/backend.ts");\n';
  const inner =
    "// ../x/registry.npmjs.org/lib/1.0.0/i.js\nexport const x = 1;\n" +
    "/*!\n * lib (c) someone\n * @license MIT\n */\n";
  const path = "./lib/stores/passwdfile/backend.ts";
  const modules = [{ path, fn: "embeddedPasswdFileModule" }];
  const joined = embed(outer, new Map([[path, inner]]), modules);
  assert.ok(
    joined.includes("await import(embeddedPasswdFileModule());"),
    joined,
  );
  const url = /return "(data:text\/javascript;base64,[A-Za-z0-9+/=]+)";/
    .exec(joined)?.[1];
  assert.ok(url, joined);
  assert.equal(atob(url.slice(url.indexOf(",") + 1)), inner);
  assert.ok(joined.includes("// ../x/registry.npmjs.org/lib/1.0.0/i.js\n"));
  assert.ok(joined.includes(" * @license MIT\n"));
  const one = new Map([[path, inner]]);
  assert.throws(() => embed("no import here", one, modules), /exactly one/);
  assert.throws(() => embed(outer + outer, one, modules), /exactly one/);
  assert.throws(() => embed(outer, new Map(), modules), /no bundle/);
});

Deno.test("the bundle runs with the launcher's flags and changes a passwd-file password and (as root) a PAM one", async () => {
  const dir = await Deno.makeTempDir({ prefix: "bundle-test-" });
  try {
    const bundle = `${dir}/qmail-poppass.js`;
    const built = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "packaging/bundle.ts", bundle],
      cwd: ROOT,
      stdin: "null",
      stdout: "null",
      stderr: "piped",
      signal: AbortSignal.timeout(120_000),
    }).output();
    assert.ok(built.success, new TextDecoder().decode(built.stderr));
    const text = await Deno.readTextFile(bundle);
    // The back end and its hash library are not in the code every start loads.
    assert.ok(!text.includes('import("data:'), "a literal data: import");
    assert.equal(
      text.match(/data:text\/javascript;base64,/g)?.length,
      LAZY_MODULES.filter((m) => !m.compress).length,
    );
    // Big modules are embedded compressed, behind an async function.
    for (const { fn } of LAZY_MODULES.filter((m) => m.compress)) {
      assert.ok(text.includes(`import(await ${fn}())`), fn);
      assert.ok(text.includes(`async function ${fn}() {`), fn);
    }
    assert.ok(/registry\.npmjs\.org\/hash-wasm\/\d/.test(text));
    assert.ok(
      text.includes("hash-wasm (https://www.npmjs.com/package/hash-wasm)"),
    );

    await Deno.writeTextFile(`${dir}/passwd`, "alice:{PLAIN}old-Bq7-secret\n");
    const session = new Deno.Command(Deno.execPath(), {
      args: [
        ...LAUNCHER_FLAGS,
        `--allow-write=${dir}`,
        bundle,
        ...[
          "--passwd-file",
          `${dir}/passwd`,
          "--passwd-scheme",
          "SHA512-CRYPT",
        ],
        ...["--fail-delay", "0", "bundle.test"],
      ],
      env: {
        NO_COLOR: "1",
        DENO_NO_UPDATE_CHECK: "1",
        DENO_DIR: `${dir}/deno`,
      },
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(60_000),
    }).spawn();
    const writer = session.stdin.getWriter();
    await writer.write(new TextEncoder().encode(
      "user alice\r\npass old-Bq7-secret\r\nnewpass new-Bq7-secret\r\nquit\r\n",
    ));
    await writer.close();
    const out = await session.output();
    assert.equal(
      new TextDecoder().decode(out.stdout),
      "200 bundle.test hello, who are you?\r\n200 Your password please.\r\n" +
        "200 Your new password please.\r\n200 Password changed, thank-you.\r\n" +
        "200 Bye.\r\n",
      new TextDecoder().decode(out.stderr),
    );
    assert.equal(out.code, 0);
    const line = await Deno.readTextFile(`${dir}/passwd`);
    assert.match(line, /^alice:\{SHA512-CRYPT\}\$6\$[^\n]+\n$/);
    if (SKIP_REASON) console.error(`bundle with --pam: ${SKIP_REASON}`);
    else await pamSession(bundle, dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/**
 * The PAM store from the bundle, as the launcher runs it with --pam
 * (--allow-ffi added): its worker is the embedded data: module itself.
 */
async function pamSession(bundle: string, dir: string): Promise<void> {
  await using unix = await UnixFixture.create();
  const dave = await unix.add("Dave-old-1");
  const session = new Deno.Command(Deno.execPath(), {
    args: [
      ...LAUNCHER_FLAGS,
      "--allow-ffi",
      bundle,
      ...["--pam", unix.service, "--fail-delay", "0", "bundle.test"],
    ],
    env: {
      NO_COLOR: "1",
      DENO_NO_UPDATE_CHECK: "1",
      DENO_DIR: `${dir}/deno`,
    },
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(60_000),
  }).spawn();
  const writer = session.stdin.getWriter();
  await writer.write(new TextEncoder().encode(
    `user ${dave.name}\r\npass Dave-old-1\r\nnewpass Dave new 2\r\nquit\r\n`,
  ));
  await writer.close();
  const out = await session.output();
  assert.equal(
    new TextDecoder().decode(out.stdout),
    "200 bundle.test hello, who are you?\r\n200 Your password please.\r\n" +
      "200 Your new password please.\r\n200 Password changed, thank-you.\r\n" +
      "200 Bye.\r\n",
    new TextDecoder().decode(out.stderr),
  );
  assert.equal(out.code, 0);
  assert.ok(cryptMatches("Dave new 2", await shadowHash(dave.name)));
}
