import assert from "node:assert/strict";
import type { Outcome } from "../../lib/stores/backend.ts";
import {
  INITIAL,
  isValidPassword,
  isValidUser,
  settle,
  type State,
  step,
} from "../../lib/protocol/protocol.ts";

const enc = (text: string) => new TextEncoder().encode(text);
const bytes = (...octets: number[]) => new Uint8Array(octets);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);
const OK: Outcome = { kind: "ok" };
const NO: Outcome = { kind: "rejected", reason: "exit 1" };
const TEMP: Outcome = { kind: "temporary", reason: "exit 111" };

/**
 * Play client lines through the machine. Effects are answered from
 * `outcomes` in order; the transcript lists each reply and each effect.
 */
function play(
  lines: (string | Uint8Array)[],
  outcomes: Outcome[] = [],
): string[] {
  let state: State = INITIAL;
  const out: string[] = [];
  for (const line of lines) {
    if (state.kind === "closed") break;
    const next = step(state, typeof line === "string" ? enc(line) : line);
    if (next.kind === "reply") {
      out.push(next.reply);
      state = next.state;
      continue;
    }
    const e = next.effect;
    out.push(
      e.kind === "check"
        ? `check(${dec(e.user)},${dec(e.old)})`
        : `change(${dec(e.user)},${dec(e.old)},${dec(e.next)})`,
    );
    const settled = settle(e, outcomes.shift() ?? OK);
    out.push(settled.delay ? `${settled.reply}+delay` : settled.reply);
    state = settled.state;
  }
  out.push(state.kind);
  return out;
}

type Row = [
  name: string,
  lines: (string | Uint8Array)[],
  outcomes: Outcome[],
  expected: string[],
];

const TABLE: Row[] = [
  [
    "a full change with lower-case keywords",
    ["user bob", "pass old", "newpass new", "quit"],
    [OK, OK],
    [
      "userOk",
      "check(bob,old)",
      "passOk",
      "change(bob,old,new)",
      "changed",
      "bye",
      "closed",
    ],
  ],
  [
    "keywords in upper and mixed case",
    ["USER bob", "Pass old", "NEWPASS new", "QuIt"],
    [OK, OK],
    [
      "userOk",
      "check(bob,old)",
      "passOk",
      "change(bob,old,new)",
      "changed",
      "bye",
      "closed",
    ],
  ],
  [
    "no quit after success leaves the session in DONE",
    ["user bob", "pass old", "newpass new"],
    [OK, OK],
    [
      "userOk",
      "check(bob,old)",
      "passOk",
      "change(bob,old,new)",
      "changed",
      "done",
    ],
  ],
  ["the argument is everything after exactly one space", ["user  bob"], [], [
    "usernameRequired",
    "closed",
  ]],
  [
    "spaces in passwords survive verbatim",
    ["user bob", "pass  old pw ", "newpass new pw  "],
    [OK, OK],
    [
      "userOk",
      "check(bob, old pw )",
      "passOk",
      "change(bob, old pw ,new pw  )",
      "changed",
      "done",
    ],
  ],
  [
    "a rejected check closes after the delay",
    ["user bob", "pass bad", "newpass x"],
    [NO],
    [
      "userOk",
      "check(bob,bad)",
      "authFailed+delay",
      "closed",
    ],
  ],
  ["a temporary check failure has its own reply", ["user bob", "pass old"], [
    TEMP,
  ], [
    "userOk",
    "check(bob,old)",
    "authTemporary+delay",
    "closed",
  ]],
  [
    "a failed change closes after the delay",
    ["user bob", "pass old", "newpass new"],
    [OK, NO],
    [
      "userOk",
      "check(bob,old)",
      "passOk",
      "change(bob,old,new)",
      "changeFailed+delay",
      "closed",
    ],
  ],
  [
    "a temporary change failure is a failed change",
    ["user bob", "pass old", "newpass new"],
    [OK, TEMP],
    [
      "userOk",
      "check(bob,old)",
      "passOk",
      "change(bob,old,new)",
      "changeFailed+delay",
      "closed",
    ],
  ],
  ["pass before user", ["pass old"], [], ["usernameRequired", "closed"]],
  ["newpass before user", ["newpass new"], [], ["usernameRequired", "closed"]],
  ["newpass instead of pass", ["user bob", "newpass new"], [], [
    "userOk",
    "passwordRequired",
    "closed",
  ]],
  ["user again after authentication", ["user bob", "pass old", "user eve"], [
    OK,
  ], [
    "userOk",
    "check(bob,old)",
    "passOk",
    "newPasswordRequired",
    "closed",
  ]],
  ["user again before pass", ["user bob", "user eve"], [], [
    "userOk",
    "passwordRequired",
    "closed",
  ]],
  [
    "a second newpass after success",
    ["user bob", "pass old", "newpass a", "newpass b"],
    [OK, OK],
    [
      "userOk",
      "check(bob,old)",
      "passOk",
      "change(bob,old,a)",
      "changed",
      "quitRequired",
      "closed",
    ],
  ],
  ["quit in USER state", ["quit"], [], ["bye", "closed"]],
  ["quit in PASS state", ["user bob", "QUIT"], [], ["userOk", "bye", "closed"]],
  ["quit in NEWPASS state", ["user bob", "pass old", "quit"], [OK], [
    "userOk",
    "check(bob,old)",
    "passOk",
    "bye",
    "closed",
  ]],
  ["quit with an argument is still quit", ["quit now"], [], ["bye", "closed"]],
  ["quitx is not quit", ["quitx"], [], ["usernameRequired", "closed"]],
  ["an empty line", [""], [], ["usernameRequired", "closed"]],
  ["user without argument", ["user"], [], ["usernameRequired", "closed"]],
  ["user with an empty argument", ["user "], [], [
    "usernameRequired",
    "closed",
  ]],
  ["pass without argument", ["user bob", "pass"], [], [
    "userOk",
    "passwordRequired",
    "closed",
  ]],
  ["pass with an empty argument", ["user bob", "pass "], [], [
    "userOk",
    "passwordRequired",
    "closed",
  ]],
  [
    "newpass with an empty argument",
    ["user bob", "pass old", "newpass "],
    [OK],
    [
      "userOk",
      "check(bob,old)",
      "passOk",
      "newPasswordRequired",
      "closed",
    ],
  ],
  ["a tab is not a separator", ["user\tbob"], [], [
    "usernameRequired",
    "closed",
  ]],
  [
    "NUL in a user name",
    [bytes(0x75, 0x73, 0x65, 0x72, 0x20, 0x61, 0x00, 0x62)],
    [],
    [
      "usernameRequired",
      "closed",
    ],
  ],
  ["a space inside a user name", ["user a b"], [], [
    "usernameRequired",
    "closed",
  ]],
  ["DEL inside a user name", ["user a\x7fb"], [], [
    "usernameRequired",
    "closed",
  ]],
  ["NUL in the old password", ["user bob", enc("pass a\0b")], [], [
    "userOk",
    "passwordRequired",
    "closed",
  ]],
  ["a lone CR in the old password", ["user bob", "pass a\rb"], [], [
    "userOk",
    "passwordRequired",
    "closed",
  ]],
  ["NUL in the new password", ["user bob", "pass old", "newpass a\0b"], [OK], [
    "userOk",
    "check(bob,old)",
    "passOk",
    "newPasswordRequired",
    "closed",
  ]],
  [
    "UTF-8 in names and passwords passes through",
    ["user jürgen", "pass ölé", "newpass 密码"],
    [OK, OK],
    [
      "userOk",
      "check(jürgen,ölé)",
      "passOk",
      "change(jürgen,ölé,密码)",
      "changed",
      "done",
    ],
  ],
  ["an unknown command", ["helo x"], [], ["usernameRequired", "closed"]],
  [
    "anything but quit in DONE",
    ["user bob", "pass old", "newpass n", "user bob"],
    [OK, OK],
    [
      "userOk",
      "check(bob,old)",
      "passOk",
      "change(bob,old,n)",
      "changed",
      "quitRequired",
      "closed",
    ],
  ],
  ["a prototype key is no command", ["constructor x", "user bob"], [], [
    "usernameRequired",
    "closed",
  ]],
];

Deno.test("step() and settle() follow the spec's state table", async (t) => {
  for (const [name, lines, outcomes, expected] of TABLE) {
    await t.step(
      name,
      () => assert.deepEqual(play(lines, [...outcomes]), expected),
    );
  }
});

Deno.test("step() copies arguments, so the caller may wipe the line", () => {
  const line = enc("user bob");
  const next = step(INITIAL, line);
  line.fill(0);
  assert.equal(next.kind, "reply");
  if (next.kind === "reply" && next.state.kind === "pass") {
    assert.equal(dec(next.state.user), "bob");
  } else assert.fail("expected the PASS state");
});

Deno.test("isValidUser() takes 1..255 octets from 0x21 upwards, without DEL", async (t) => {
  const rows: [string, Uint8Array, boolean][] = [
    ["one octet", enc("a"), true],
    ["255 octets", new Uint8Array(255).fill(0x61), true],
    ["256 octets", new Uint8Array(256).fill(0x61), false],
    ["empty", new Uint8Array(0), false],
    ["0x21", bytes(0x21), true],
    ["0x20", bytes(0x20), false],
    ["0x7e", bytes(0x7e), true],
    ["0x7f", bytes(0x7f), false],
    ["0x80 and up", bytes(0x80, 0xff), true],
    ["control octet", bytes(0x61, 0x01), false],
  ];
  for (const [name, user, ok] of rows) {
    await t.step(name, () => assert.equal(isValidUser(user), ok));
  }
});

Deno.test("isValidPassword() refuses only empty, NUL, CR and LF", async (t) => {
  const rows: [string, Uint8Array, boolean][] = [
    ["one octet", enc("a"), true],
    ["spaces only", enc("   "), true],
    ["tab and DEL", bytes(0x09, 0x7f), true],
    ["8-bit octets", bytes(0xff, 0xfe), true],
    ["empty", new Uint8Array(0), false],
    ["NUL", bytes(0x61, 0x00), false],
    ["CR", bytes(0x61, 0x0d), false],
    ["LF", bytes(0x0a), false],
  ];
  for (const [name, pw, ok] of rows) {
    await t.step(name, () => assert.equal(isValidPassword(pw), ok));
  }
});

Deno.test("the pure core uses no Deno API, timers or await", async () => {
  for (
    const file of [
      "protocol/protocol.ts",
      "protocol/replies.ts",
      "stores/programs/fd3.ts",
      "common/limits.ts",
      "config/words.ts",
    ]
  ) {
    const text = await Deno.readTextFile(
      new URL(`../../lib/${file}`, import.meta.url),
    );
    for (const banned of ["Deno.", "setTimeout", "await ", "performance."]) {
      assert.ok(!text.includes(banned), `${file} mentions ${banned}`);
    }
  }
});
