/**
 * `deno task bundle`: the single file `dist/qmail-poppass.js` (or the path
 * given as the first argument).
 *
 * A plain `deno bundle main.ts` would put the passwd-file back end and its
 * hash library (120 KB of the 170 KB) in the part V8 loads on every start,
 * and under tcpserver every connection is a start: it cost 1.6 ms of each
 * one (median of 60 starts each way). So the back end is bundled on its
 * own and embedded as a base64 `data:` module in place of its dynamic
 * import, which only `--passwd-file` reaches. Its licence notices and the
 * npm packages it holds are repeated as plain comments at the end.
 *
 * @module
 */

/** The dynamic import in main.ts that the embedded module replaces. */
const PASSWD_FILE = "./lib/passwdfile/backend.ts";
/** The function at the end of the bundle that returns the embedded module's URL. */
const EMBEDDED = "embeddedPasswdFileModule";

async function bundle(args: string[]): Promise<void> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["bundle", "--quiet", "--platform", "deno", ...args],
    stdin: "null",
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (!out.success) throw new Error(`deno bundle ${args.at(-1)} failed`);
}

function base64(text: string): string {
  const bytes = new TextEncoder().encode(text);
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

/** Join the two bundles; throws if main.ts no longer imports the back end exactly once. */
export function embed(outer: string, inner: string): string {
  const call = `import(${JSON.stringify(PASSWD_FILE)})`;
  const parts = outer.split(call);
  if (parts.length !== 2) {
    throw new Error(`expected exactly one ${call} in the main bundle`);
  }
  const url = `data:text/javascript;base64,${base64(inner)}`;
  // Through a function, not a literal import(): `deno run` parses the
  // literal specifiers of dynamic imports at every start to load them
  // ahead, which would decode and parse the embedded module each time.
  const notices = [...inner.matchAll(/\/\*![\s\S]*?\*\//g)].map((m) => m[0]);
  const packages = [
    ...new Set(inner.match(/^\/\/ .*registry\.npmjs\.org\/.*$/gm) ?? []),
  ];
  return [
    parts[0] + `import(${EMBEDDED}())` + parts[1]!.trimEnd(),
    "",
    `// ${PASSWD_FILE} as a data: module, loaded on first use of --passwd-file, with`,
    ...packages,
    ...notices,
    `function ${EMBEDDED}() {`,
    `  return ${JSON.stringify(url)};`,
    "}",
    "",
  ].join("\n");
}

if (import.meta.main) {
  const output = Deno.args[0] ?? "dist/qmail-poppass.js";
  const work = await Deno.makeTempDir({ prefix: "qmail-poppass-bundle-" });
  try {
    await bundle(["-o", `${work}/passwdfile.js`, PASSWD_FILE]);
    await bundle([
      "--external",
      PASSWD_FILE,
      "-o",
      `${work}/main.js`,
      "main.ts",
    ]);
    const joined = embed(
      await Deno.readTextFile(`${work}/main.js`),
      await Deno.readTextFile(`${work}/passwdfile.js`),
    );
    const folder = output.includes("/") ? output.replace(/\/[^/]*$/, "") : ".";
    await Deno.mkdir(folder, { recursive: true });
    await Deno.writeTextFile(output, joined);
    console.error(`bundle: ${output}, ${joined.length} octets`);
  } finally {
    await Deno.remove(work, { recursive: true });
  }
}
