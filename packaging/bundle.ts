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
 * Every octet of the file costs every start, embedded or not (measured:
 * 2.2 MB more, as a string or as a comment, took each `--version` from
 * 8-11 to 17-22 ms of CPU). So the SQL store's modules (`compress: true`;
 * the MySQL driver alone is 1.4 MB with its character-set tables) are
 * embedded Brotli-compressed and unpacked into blob: modules on first use.
 *
 * @module
 */

import zlib from "node:zlib";

/** One lazily loaded module: its path as main.ts imports it, the function name. */
export interface LazyModule {
  readonly path: string;
  readonly fn: string;
  /** Embed it Brotli-compressed (big modules); see the module comment. */
  readonly compress?: boolean;
}

/**
 * The stores main.ts loads by dynamic import, each bundled on its own and
 * embedded as a `data:` module behind a function of its own name. A new
 * store adds one line here.
 */
export const LAZY_MODULES: readonly LazyModule[] = [
  {
    path: "./lib/stores/passwdfile/backend.ts",
    fn: "embeddedPasswdFileModule",
  },
  { path: "./lib/stores/pam/backend.ts", fn: "embeddedPamModule" },
  { path: "./lib/stores/ldap/backend.ts", fn: "embeddedLdapModule" },
  {
    path: "./lib/stores/sql/backend.ts",
    fn: "embeddedSqlModule",
    compress: true,
  },
  {
    path: "./lib/stores/sql/postgres.ts",
    fn: "embeddedPostgresModule",
    compress: true,
  },
  {
    path: "./lib/stores/sql/mysql.ts",
    fn: "embeddedMysqlModule",
    compress: true,
  },
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

function base64(data: string | Uint8Array): string {
  const bytes = typeof data === "string"
    ? new TextEncoder().encode(data)
    : data;
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

/**
 * A module bundle made fit to run from a data: or blob: URL: npm code that
 * require()s Node built-ins is bundled with createRequire(import.meta.url),
 * which such a URL cannot serve as a base; built-ins resolve from any file
 * URL.
 */
export function detached(bundled: string): string {
  return bundled.replace(
    /createRequire\(import\.meta\.url\)/g,
    'createRequire("file:///")',
  );
}

/** Brotli-compress `text` as hard as Brotli can (a `compress: true` module). */
export function compress(text: string): Uint8Array {
  const bytes = new TextEncoder().encode(text);
  return new Uint8Array(zlib.brotliCompressSync(bytes, {
    params: {
      [zlib.constants.BROTLI_PARAM_QUALITY]: 11,
      [zlib.constants.BROTLI_PARAM_LGWIN]: 24,
      [zlib.constants.BROTLI_PARAM_SIZE_HINT]: bytes.length,
    },
  }));
}

/**
 * Join the main bundle and the lazily loaded ones (`inner` maps a module
 * path of `LAZY_MODULES` to its bundle, `packed` a `compress: true`
 * module's path to `compress(detached(its bundle))`); throws if main.ts does not import
 * each exactly once.
 */
export function embed(
  outer: string,
  inner: ReadonlyMap<string, string>,
  modules: readonly LazyModule[] = LAZY_MODULES,
  packed: ReadonlyMap<string, Uint8Array> = new Map(),
): string {
  let main = outer;
  const tail: string[] = [];
  for (const { path, fn, compress } of modules) {
    const bundled = inner.get(path);
    if (bundled === undefined) throw new Error(`no bundle for ${path}`);
    const text = detached(bundled);
    const call = `import(${JSON.stringify(path)})`;
    const parts = main.split(call);
    if (parts.length !== 2) {
      throw new Error(`expected exactly one ${call} in the main bundle`);
    }
    // Through a function, not a literal import(): `deno run` parses the
    // literal specifiers of dynamic imports at every start to load them
    // ahead, which would decode and parse the embedded module each time.
    main = parts[0] +
      (compress ? `import(await ${fn}())` : `import(${fn}())`) +
      parts[1];
    const notices = [...text.matchAll(/\/\*![\s\S]*?\*\//g)].map((m) => m[0]);
    const packages = [
      ...new Set(text.match(/^\/\/ .*registry\.npmjs\.org\/.*$/gm) ?? []),
    ];
    if (compress) {
      const bytes = packed.get(path);
      if (bytes === undefined) throw new Error(`no packed bundle for ${path}`);
      tail.push(
        "",
        `// ${path}, Brotli-compressed, unpacked into a blob: module on first use, with`,
        ...packages,
        ...notices,
        `async function ${fn}() {`,
        `  const packed = ${JSON.stringify(base64(bytes))};`,
        "  const bytes = Uint8Array.from(atob(packed), (c) => c.charCodeAt(0));",
        "  // Not a literal specifier: deno run would load it at every start.",
        '  const zlib = await import(["node", "zlib"].join(":"));',
        "  const text = new TextDecoder().decode(zlib.brotliDecompressSync(bytes));",
        '  return URL.createObjectURL(new Blob([text], { type: "text/javascript" }));',
        "}",
      );
      continue;
    }
    const url = `data:text/javascript;base64,${base64(text)}`;
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
    const packed = new Map<string, Uint8Array>();
    for (const { path, compress: packIt } of LAZY_MODULES) {
      if (packIt) packed.set(path, compress(detached(inner.get(path)!)));
    }
    const joined = embed(
      await Deno.readTextFile(`${work}/main.js`),
      inner,
      LAZY_MODULES,
      packed,
    );
    const folder = output.includes("/") ? output.replace(/\/[^/]*$/, "") : ".";
    await Deno.mkdir(folder, { recursive: true });
    await Deno.writeTextFile(output, joined);
    console.error(`bundle: ${output}, ${joined.length} octets`);
  } finally {
    await Deno.remove(work, { recursive: true });
  }
}
