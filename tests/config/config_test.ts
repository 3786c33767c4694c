import assert from "node:assert/strict";
import {
  type FileProbe,
  parseInvocation,
  parseListen,
  resolveProgram,
  UsageError,
} from "../../lib/config/config.ts";
import { DEFAULT_LIMITS } from "../../lib/common/limits.ts";
import { stdioPeer } from "../../lib/serve/stdio.ts";
import { splitCommand } from "../../lib/config/words.ts";

const PROGRAMS = new Set([
  "/bin/check",
  "/usr/bin/vsetpass",
  "/bin/true",
  "/bin/false",
  "/opt/x/checkpassword",
]);
const probe: FileProbe = {
  executable: (path) =>
    PROGRAMS.has(path)
      ? "ok"
      : path === "/etc/passwd"
      ? "notExecutable"
      : "missing",
};
const envOf = (vars: Record<string, string>) => (name: string) => vars[name];
const BASE = {
  PASSWORD_COMMAND: "/usr/bin/vsetpass /bin/false",
  PATH: "/usr/bin:/bin",
};

function run(args: string[], vars: Record<string, string> = BASE) {
  const invocation = parseInvocation(args, envOf(vars), probe);
  if (invocation.kind !== "run") {
    throw new Error(`expected run, got ${invocation.kind}`);
  }
  return invocation.config;
}

function usage(args: string[], vars: Record<string, string> = BASE): string {
  try {
    parseInvocation(args, envOf(vars), probe);
  } catch (error) {
    assert.ok(error instanceof UsageError, String(error));
    return error.message;
  }
  assert.fail("expected a UsageError");
}

Deno.test("parseInvocation() stops option parsing at the hostname", () => {
  const config = run([
    "--fail-delay",
    "1.5",
    "host",
    "/opt/x/checkpassword",
    "-s",
    "--fail-delay",
    "/bin/true",
  ]);
  assert.equal(config.hostname, "host");
  assert.equal(config.limits.failDelayMs, 1500);
  assert.deepEqual(config.backend, {
    kind: "programs",
    checkArgv: ["/opt/x/checkpassword", "-s", "--fail-delay", "/bin/true"],
    setArgv: ["/usr/bin/vsetpass", "/bin/false"],
    starter: { kind: "shim" },
  });
  assert.equal(config.mode.kind, "stdio");
});

Deno.test("parseInvocation() resolves a bare program name through PATH once", () => {
  const config = run(["host", "check", "/bin/false"], {
    ...BASE,
    PATH: "/nope:/bin:/usr/bin/",
    PASSWORD_COMMAND: "vsetpass x",
  });
  assert.deepEqual(config.backend, {
    kind: "programs",
    checkArgv: ["/bin/check", "/bin/false"],
    setArgv: ["/usr/bin/vsetpass", "x"],
    starter: { kind: "shim" },
  });
});

Deno.test("parseInvocation() takes every limit from options or POPPASS_* variables; the command line wins", () => {
  const vars = {
    ...BASE,
    POPPASS_FAIL_DELAY: "2",
    POPPASS_MAX_LINE: "1024",
    POPPASS_IDLE_TIMEOUT: "30",
    POPPASS_SESSION_TIMEOUT: "90",
    POPPASS_CHILD_TIMEOUT: "10",
    POPPASS_MAX_SESSIONS: "5",
    POPPASS_MAX_PER_IP: "0",
    POPPASS_PER_IP_PREFIX6: "56",
  };
  const config = run([
    "--idle-timeout=7",
    "--per-ip-prefix4",
    "24",
    "--max-line",
    "600",
    "host",
    "/bin/check",
  ], vars);
  assert.deepEqual(config.limits, {
    failDelayMs: 2000,
    maxLine: 600,
    idleTimeoutMs: 7000,
    sessionTimeoutMs: 90_000,
    childTimeoutMs: 10_000,
    maxSessions: 5,
    maxPerIp: 0,
    perIpPrefix4: 24,
    perIpPrefix6: 56,
  });
  assert.deepEqual(
    run(["host", "/bin/check"], { ...BASE, POPPASS_FAIL_DELAY: "" }).limits,
    DEFAULT_LIMITS,
  );
});

Deno.test("parseInvocation() answers --check-config with the checked config", () => {
  const invocation = parseInvocation(
    ["--check-config", "host", "/bin/check", "/bin/true"],
    envOf(BASE),
    probe,
  );
  assert.equal(invocation.kind, "check");
  assert.equal(
    invocation.kind === "check" ? invocation.config.warnings.length : -1,
    1,
  );
});

Deno.test("parseInvocation() warns when PASSWORD_COMMAND is set beside --passwd-file", () => {
  const warnings = (vars: Record<string, string>) =>
    run(["--passwd-file", "/etc/users", "host"], vars).warnings;
  assert.deepEqual(warnings(BASE), [
    "PASSWORD_COMMAND is set but not used: the passwd-file store writes new passwords itself; unset it to silence this",
  ]);
  assert.deepEqual(warnings({ PATH: "/bin", PASSWORD_COMMAND: " " }), []);
  assert.deepEqual(warnings({ PATH: "/bin" }), []);
});

Deno.test("parseInvocation() warns when the chain ends in true", () => {
  assert.equal(run(["host", "/bin/check", "/bin/true"]).warnings.length, 1);
  assert.equal(run(["host", "/bin/check", "/bin/false"]).warnings.length, 0);
});

Deno.test("parseInvocation() reads listen mode, TLS and the plaintext guard", () => {
  const config = run([
    "--listen",
    "127.0.0.1:106",
    "--listen",
    "[::1]:0",
    "host",
    "/bin/check",
  ]);
  assert.deepEqual(config.mode, {
    kind: "listen",
    addresses: [{ hostname: "127.0.0.1", port: 106 }, {
      hostname: "::1",
      port: 0,
    }],
  });
  const fromEnv = run(["host", "/bin/check"], {
    ...BASE,
    POPPASS_LISTEN: "127.0.0.1:1 localhost:2",
  });
  assert.equal(
    fromEnv.mode.kind === "listen" && fromEnv.mode.addresses.length,
    2,
  );
  assert.match(
    usage(["--listen", "0.0.0.0:106", "host", "/bin/check"]),
    /refusing a plaintext listener on 0\.0\.0\.0:106/,
  );
  assert.equal(
    run(["--allow-plaintext", "--listen", "0.0.0.0:106", "host", "/bin/check"])
      .mode.kind,
    "listen",
  );
  const tls = run([
    "--listen",
    "[::]:106",
    "--tls-cert",
    "c.pem",
    "--tls-key",
    "k.pem",
    "host",
    "/bin/check",
  ]);
  assert.deepEqual(tls.mode, {
    kind: "listen",
    addresses: [{ hostname: "::", port: 106 }],
    tls: { certFile: "c.pem", keyFile: "k.pem" },
  });
});

Deno.test("parseInvocation() takes the fd-3 helper from --fd3-helper or POPPASS_FD3_HELPER", () => {
  const starter = (args: string[], vars: Record<string, string>) => {
    const backend = run(args, vars).backend;
    assert.equal(backend.kind, "programs");
    return backend.kind === "programs" ? backend.starter : undefined;
  };
  const fd3exec = (path: string) => ({ kind: "fd3exec", path });
  assert.deepEqual(starter(["host", "/bin/check"], BASE), { kind: "shim" });
  assert.deepEqual(
    starter(["--fd3-helper", "/bin/true", "host", "/bin/check"], BASE),
    fd3exec("/bin/true"),
  );
  assert.deepEqual(
    starter(["host", "/bin/check"], {
      ...BASE,
      POPPASS_FD3_HELPER: "/opt/x/checkpassword",
    }),
    fd3exec("/opt/x/checkpassword"),
  );
  assert.deepEqual(
    starter(["--fd3-helper=/bin/true", "host", "/bin/check"], {
      ...BASE,
      POPPASS_FD3_HELPER: "/opt/x/checkpassword",
    }),
    fd3exec("/bin/true"),
  );
});

Deno.test("parseInvocation() takes fd3spawn from --fd3-spawner or POPPASS_FD3_SPAWNER, in listen mode only", () => {
  const starter = (args: string[], vars: Record<string, string>) => {
    const backend = run(args, vars).backend;
    assert.equal(backend.kind, "programs");
    return backend.kind === "programs" ? backend.starter : undefined;
  };
  const listen = ["--listen", "127.0.0.1:106"];
  const chain = ["host", "/bin/check"];
  const fd3spawn = (path: string) => ({ kind: "fd3spawn", path });
  assert.deepEqual(starter([...listen, ...chain], BASE), { kind: "shim" });
  assert.deepEqual(
    starter([...listen, "--fd3-spawner", "/bin/true", ...chain], BASE),
    fd3spawn("/bin/true"),
  );
  const fromEnv = { ...BASE, POPPASS_FD3_SPAWNER: "/bin/true" };
  assert.deepEqual(
    starter([...listen, ...chain], fromEnv),
    fd3spawn("/bin/true"),
  );
  // Stdio mode does not use it, so it neither checks nor keeps it.
  const missing = { ...BASE, POPPASS_FD3_SPAWNER: "/opt/x/fd3spawn" };
  assert.deepEqual(starter(chain, missing), { kind: "shim" });
  assert.deepEqual(
    starter(["--fd3-spawner", "relative", ...chain], BASE),
    { kind: "shim" },
  );
  // Both given: both are checked; listen mode uses the spawner.
  assert.deepEqual(
    starter(
      [...listen, "--fd3-helper", "/bin/true", "--fd3-spawner", "/bin/true"]
        .concat(chain),
      BASE,
    ),
    fd3spawn("/bin/true"),
  );
});

Deno.test("parseInvocation() answers --help and --version", () => {
  assert.equal(parseInvocation(["--help"], envOf({}), probe).kind, "help");
  assert.equal(parseInvocation(["-h"], envOf({}), probe).kind, "help");
  assert.equal(
    parseInvocation(["--version"], envOf({}), probe).kind,
    "version",
  );
});

Deno.test("parseInvocation() refuses mistakes with one clear message", async (t) => {
  const rows: [string, string[], Record<string, string>, RegExp][] = [
    ["no hostname", [], BASE, /^missing hostname/],
    ["no checkprogram", ["host"], BASE, /^missing checkprogram/],
    [
      "PASSWORD_COMMAND unset",
      ["host", "/bin/check"],
      { PATH: "/bin" },
      /^PASSWORD_COMMAND is not set/,
    ],
    ["PASSWORD_COMMAND blank", ["host", "/bin/check"], {
      PASSWORD_COMMAND: "  ",
    }, /^PASSWORD_COMMAND is not set/],
    ["an unset $NAME", ["host", "/bin/check"], {
      PASSWORD_COMMAND: "/usr/bin/vsetpass $NOPE",
    }, /\$NOPE names an unset variable/],
    [
      "a missing checkprogram",
      ["host", "/bin/nope"],
      BASE,
      /checkprogram "\/bin\/nope" does not exist/,
    ],
    [
      "a checkprogram not in PATH",
      ["host", "nope"],
      BASE,
      /checkprogram "nope" was not found in PATH/,
    ],
    [
      "a checkprogram not executable",
      ["host", "/etc/passwd"],
      BASE,
      /is not an executable file/,
    ],
    ["a setpassword not executable", ["host", "/bin/check"], {
      PASSWORD_COMMAND: "/etc/passwd",
    }, /PASSWORD_COMMAND "\/etc\/passwd" is not/],
    [
      "CR in the hostname",
      ["a\rb", "/bin/check"],
      BASE,
      /hostname must not contain CR, LF or NUL/,
    ],
    [
      "an unknown option",
      ["--nope", "host", "/bin/check"],
      BASE,
      /^unknown option "--nope"/,
    ],
    [
      "an unknown short option",
      ["-x", "host", "/bin/check"],
      BASE,
      /^unknown option "-x"/,
    ],
    [
      "an option without value",
      ["--fail-delay"],
      BASE,
      /--fail-delay needs a value/,
    ],
    [
      "a bad number",
      ["--fail-delay", "5s", "host", "/bin/check"],
      BASE,
      /--fail-delay: expected seconds/,
    ],
    [
      "a negative number",
      ["--max-line", "-1", "host", "/bin/check"],
      BASE,
      /--max-line: expected a whole number/,
    ],
    ["a bad variable", ["host", "/bin/check"], {
      ...BASE,
      POPPASS_MAX_SESSIONS: "lots",
    }, /--max-sessions/],
    [
      "an IPv4 prefix over 32",
      ["--per-ip-prefix4", "33", "host", "/bin/check"],
      BASE,
      /--per-ip-prefix4: expected a whole number from 1 to 32, got "33"/,
    ],
    ["an IPv6 prefix of 0", ["host", "/bin/check"], {
      ...BASE,
      POPPASS_PER_IP_PREFIX6: "0",
    }, /--per-ip-prefix6: expected a whole number from 1 to 128, got "0"/],
    [
      "--passwd-file without a hostname: the passwd-file usage",
      ["--passwd-file", "/etc/users"],
      BASE,
      /^missing hostname \(usage: qmail-poppass \[options\] --passwd-file FILE hostname\)$/,
    ],
    [
      "--check-config takes no value",
      ["--check-config=1", "host", "/bin/check"],
      BASE,
      /--check-config takes no value/,
    ],
    [
      "a zero deadline",
      ["--idle-timeout", "0", "host", "/bin/check"],
      BASE,
      /--idle-timeout: a deadline of 0 s/,
    ],
    [
      "a bad listen address",
      ["--listen", "106", "host", "/bin/check"],
      BASE,
      /cannot parse --listen "106"/,
    ],
    [
      "a cert without key",
      ["--listen", "127.0.0.1:1", "--tls-cert", "c", "host", "/bin/check"],
      BASE,
      /go together/,
    ],
    [
      "TLS without listen",
      ["--tls-cert", "c", "--tls-key", "k", "host", "/bin/check"],
      BASE,
      /needs --listen/,
    ],
    [
      "a flag with a value",
      ["--allow-plaintext=yes", "host", "/bin/check"],
      BASE,
      /takes no value/,
    ],
    [
      "a relative --fd3-helper",
      ["--fd3-helper", "fd3exec", "host", "/bin/check"],
      BASE,
      /^--fd3-helper "fd3exec": give an absolute path$/,
    ],
    [
      "a missing --fd3-helper",
      ["--fd3-helper", "/opt/x/fd3exec", "host", "/bin/check"],
      BASE,
      /^--fd3-helper "\/opt\/x\/fd3exec" does not exist$/,
    ],
    [
      "a POPPASS_FD3_HELPER that cannot run",
      ["host", "/bin/check"],
      { ...BASE, POPPASS_FD3_HELPER: "/etc/passwd" },
      /^--fd3-helper "\/etc\/passwd" is not an executable file$/,
    ],
    [
      "a relative --fd3-spawner in listen mode",
      [
        "--listen",
        "127.0.0.1:1",
        "--fd3-spawner",
        "fd3spawn",
        "host",
        "/bin/check",
      ],
      BASE,
      /^--fd3-spawner "fd3spawn": give an absolute path$/,
    ],
    [
      "a missing POPPASS_FD3_SPAWNER in listen mode",
      ["--listen", "127.0.0.1:1", "host", "/bin/check"],
      { ...BASE, POPPASS_FD3_SPAWNER: "/opt/x/fd3spawn" },
      /^--fd3-spawner "\/opt\/x\/fd3spawn" does not exist$/,
    ],
    [
      "--fd3-spawner with --passwd-file in listen mode",
      ["--listen", "127.0.0.1:1", "--fd3-spawner", "/bin/true"]
        .concat(["--passwd-file", "/x", "host"]),
      BASE,
      /^--fd3-spawner starts the checkpassword chain; --passwd-file runs no programs$/,
    ],
    [
      "--fd3-helper with --passwd-file",
      ["--fd3-helper", "/bin/true", "--passwd-file", "/x", "host"],
      BASE,
      /^--fd3-helper starts the checkpassword chain; --passwd-file runs no programs$/,
    ],
  ];
  for (const [name, args, vars, pattern] of rows) {
    await t.step(name, () => assert.match(usage(args, vars), pattern));
  }
});

Deno.test("parseListen() reads IPv4, IPv6 and names", () => {
  assert.deepEqual(parseListen("[::1]:106"), { hostname: "::1", port: 106 });
  assert.deepEqual(parseListen("localhost:0"), {
    hostname: "localhost",
    port: 0,
  });
  assert.throws(() => parseListen("::1:106"), UsageError);
  assert.throws(() => parseListen("127.0.0.1:65536"), UsageError);
});

Deno.test("resolveProgram() keeps a path with a slash as given", () => {
  assert.equal(resolveProgram("x", "/bin/true", envOf({}), probe), "/bin/true");
});

Deno.test("splitCommand() splits PASSWORD_COMMAND as documented", async (t) => {
  const env = envOf({ SETP: "/usr/bin/vsetpass", EMPTY: "", SPACED: "a b" });
  const rows: [string, string, string[]][] = [
    ["plain words", "/usr/bin/vsetpass /bin/false", [
      "/usr/bin/vsetpass",
      "/bin/false",
    ]],
    ["any white space", " \t/a\t\n/b  ", ["/a", "/b"]],
    ["double quotes keep spaces", '/a "b c" d', ["/a", "b c", "d"]],
    ["single quotes keep spaces", "/a 'b \"c' d", ["/a", 'b "c', "d"]],
    ["an empty quoted word", '/a ""', ["/a", ""]],
    ["a quote inside a word is literal", "/a c'd", ["/a", "c'd"]],
    ["$NAME in any position", "$SETP /bin/false", [
      "/usr/bin/vsetpass",
      "/bin/false",
    ]],
    ["an expanded value stays one word", "/a $SPACED", ["/a", "a b"]],
    ["an empty variable is an empty word", "/a $EMPTY", ["/a", ""]],
    ["no expansion inside quotes", "/a '$SETP'", ["/a", "$SETP"]],
    ["$ inside a word is literal", "/a x$SETP $1", ["/a", "x$SETP", "$1"]],
  ];
  for (const [name, text, expected] of rows) {
    await t.step(
      name,
      () => assert.deepEqual(splitCommand(text, env), expected),
    );
  }
  await t.step(
    "an unterminated quote is an error",
    () => assert.throws(() => splitCommand('/a "b', env), /unterminated/),
  );
  await t.step(
    "text after a closing quote is an error",
    () => assert.throws(() => splitCommand('/a "b"c', env), /right after/),
  );
  await t.step(
    "an unset variable is an error",
    () => assert.throws(() => splitCommand("/a $NOPE", env), /unset/),
  );
});

Deno.test("stdioPeer() takes the client from TCPREMOTEIP, else from systemd's REMOTE_ADDR", async (t) => {
  const rows: [
    string,
    Record<string, string>,
    { remoteIp: string; env: Record<string, string> },
  ][] = [
    ["tcpserver", { TCPREMOTEIP: "192.0.2.1", REMOTE_ADDR: "192.0.2.2" }, {
      remoteIp: "192.0.2.1",
      env: {},
    }],
    [
      "systemd Accept=yes",
      { REMOTE_ADDR: "2001:db8::7", REMOTE_PORT: "40106" },
      {
        remoteIp: "2001:db8::7",
        env: { TCPREMOTEIP: "2001:db8::7", TCPREMOTEPORT: "40106" },
      },
    ],
    ["neither", {}, { remoteIp: "unknown", env: {} }],
  ];
  for (const [name, vars, expected] of rows) {
    await t.step(
      name,
      () => assert.deepEqual(stdioPeer(envOf(vars)), expected),
    );
  }
});
