/**
 * `deno task bundle`: the single file `dist/qmail-poppass.js` (or the path
 * given as the first argument).
 *
 * A plain `deno bundle main.ts` would put the passwd-file back end and its
 * hash library (120 KB of the 170 KB) in the part V8 loads on every start,
 * and under tcpserver every connection is a start: it cost 1.6 ms of each
 * one (median of 60 starts each way). So each store main.ts loads by
 * dynamic import (`LAZY_MODULES`) is bundled on its own and embedded as a
 * base64 `data:` module in place of that import, which only its own option
 * reaches. Their licence notices and the npm packages they hold are
 * repeated as plain comments at the end.
 *
 * @module
 */

/**
 * The stores main.ts loads by dynamic import, each bundled on its own and
 * embedded as a `data:` module behind a function of its own name. A new
 * store adds one line here.
 */
export const LAZY_MODULES: readonly { path: string; fn: string }[] = [
  {
    path: "./lib/stores/passwdfile/backend.ts",
    fn: "embeddedPasswdFileModule",
  },
  { path: "./lib/stores/sql/backend.ts", fn: "embeddedSqlModule" },
];

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

/**
 * Join the main bundle and the lazily loaded ones (`inner` maps a module
 * path of `LAZY_MODULES` to its bundle); throws if main.ts does not import
 * each exactly once.
 */
export function embed(
  outer: string,
  inner: ReadonlyMap<string, string>,
  modules: readonly { path: string; fn: string }[] = LAZY_MODULES,
): string {
  let main = outer;
  const tail: string[] = [];
  for (const { path, fn } of modules) {
    const text = inner.get(path);
    if (text === undefined) throw new Error(`no bundle for ${path}`);
    const call = `import(${JSON.stringify(path)})`;
    const parts = main.split(call);
    if (parts.length !== 2) {
      throw new Error(`expected exactly one ${call} in the main bundle`);
    }
    // Through a function, not a literal import(): `deno run` parses the
    // literal specifiers of dynamic imports at every start to load them
    // ahead, which would decode and parse the embedded module each time.
    main = parts[0] + `import(${fn}())` + parts[1];
    const url = `data:text/javascript;base64,${base64(text)}`;
    const notices = [...text.matchAll(/\/\*![\s\S]*?\*\//g)].map((m) => m[0]);
    const packages = [
      ...new Set(text.match(/^\/\/ .*registry\.npmjs\.org\/.*$/gm) ?? []),
    ];
    tail.push(
      "",
      `// ${path} as a data: module, loaded on first use, with`,
      ...packages,
      ...notices,
      `function ${fn}() {`,
      `  return ${JSON.stringify(url)};`,
      "}",
    );
  }
  return [main.trimEnd(), ...tail, ""].join("\n");
}

if (import.meta.main) {
  const output = Deno.args[0] ?? "dist/qmail-poppass.js";
  const work = await Deno.makeTempDir({ prefix: "qmail-poppass-bundle-" });
  try {
    const inner = new Map<string, string>();
    for (const [i, { path }] of LAZY_MODULES.entries()) {
      await bundle(["-o", `${work}/lazy${i}.js`, path]);
      inner.set(path, await Deno.readTextFile(`${work}/lazy${i}.js`));
    }
    await bundle([
      ...LAZY_MODULES.flatMap(({ path }) => ["--external", path]),
      "-o",
      `${work}/main.js`,
      "main.ts",
    ]);
    const joined = embed(await Deno.readTextFile(`${work}/main.js`), inner);
    const folder = output.includes("/") ? output.replace(/\/[^/]*$/, "") : ".";
    await Deno.mkdir(folder, { recursive: true });
    await Deno.writeTextFile(output, joined);
    console.error(`bundle: ${output}, ${joined.length} octets`);
  } finally {
    await Deno.remove(work, { recursive: true });
  }
}
