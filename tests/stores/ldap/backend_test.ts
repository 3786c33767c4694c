/**
 * The LDAP store against a real OpenLDAP slapd on loopback: checks and
 * changes through `createLdapBackend`, results confirmed with `ldapwhoami`
 * binds. One slapd serves the tests that need no special configuration;
 * StartTLS and ppolicy start their own.
 */

import assert from "node:assert/strict";
import type { Backend, Outcome, Peer } from "../../../lib/stores/backend.ts";
import { createLdapBackend } from "../../../lib/stores/ldap/backend.ts";
import type { LdapConfig } from "../../../lib/stores/ldap/config.ts";
import {
  ADMIN_DN,
  type LdapUser,
  makeTestCa,
  PEOPLE,
  SEARCH_DN,
  SEARCH_PW,
  Slapd,
  SLAPD_TOOLS,
  SUFFIX,
  userDn,
} from "../../support/slapd.ts";
import { freePort } from "../../support/client.ts";
import { needs } from "../../support/tools.ts";

const TEMPLATE = `uid=%n,${PEOPLE}`;
const enc = (text: string) => new TextEncoder().encode(text);
const peer: Peer = { remoteIp: "127.0.0.1", env: {} };

function templateConfig(urls: string[], extra: Partial<LdapConfig> = {}) {
  return {
    kind: "ldap",
    urls,
    userDn: { kind: "template", template: TEMPLATE },
    startTls: false,
    ...extra,
  } as LdapConfig;
}

function check(backend: Backend, user: string, password: string) {
  return backend.check(enc(user), enc(password), peer);
}

function change(backend: Backend, user: string, old: string, next: string) {
  return backend.change(enc(user), enc(old), enc(next), peer);
}

function kind(outcome: Outcome): string {
  return outcome.kind;
}

const sanitizer = {
  sanitizeOps: true,
  sanitizeResources: true,
  ...needs(import.meta.url, ...SLAPD_TOOLS),
};

Deno.test(
  "LDAP store against slapd: template and search forms",
  sanitizer,
  async (t) => {
    await using slapd = await Slapd.start();
    const users: LdapUser[] = [
      { uid: "alice", password: "alice-old-1", mail: "alice@example.org" },
      { uid: "bob", password: "bob-old-1", mail: "bob@example.org" },
      { uid: "carol", password: "carol-old-1", mail: "carol@example.org" },
      // Two entries with one mail: the search must refuse to guess.
      { uid: "dup1", password: "dup-old-1", mail: "dup@example.org" },
      { uid: "dup2", password: "dup-old-1", mail: "dup@example.org" },
      // DN specials in the RDN value, stored escaped.
      { uid: "o,ou=x", rdn: "o\\,ou\\=x", password: "odd-old-1" },
      // UTF-8 in the name: hex pairs in both the DN and the filter.
      { uid: "josé", password: "jose-old-1" },
      ...Array.from({ length: 20 }, (_, i) => ({
        uid: `many${i}`,
        password: `many-old-${i}`,
      })),
    ];
    await slapd.addUsers(users);
    const template = await createLdapBackend({
      config: templateConfig([slapd.url]),
    });

    await t.step(
      "check: right password ok, wrong and unknown rejected alike",
      async () => {
        assert.equal(kind(await check(template, "alice", "alice-old-1")), "ok");
        const wrong = await check(template, "alice", "alice-old-2");
        const unknown = await check(template, "nobody", "alice-old-1");
        assert.deepEqual(wrong, unknown);
        assert.deepEqual(wrong, {
          kind: "rejected",
          reason: "wrong password or unknown user",
        });
        // %n drops the domain: alice@anything is alice.
        assert.equal(
          kind(await check(template, "alice@example.org", "alice-old-1")),
          "ok",
        );
      },
    );

    await t.step("an empty password never reaches the server", async () => {
      // Anonymous-bind semantics would say "ok"; no server is even needed.
      const nowhere = await createLdapBackend({
        config: templateConfig([`ldap://127.0.0.1:${freePort()}`]),
      });
      assert.deepEqual(await check(nowhere, "alice", ""), {
        kind: "rejected",
        reason: "empty password, not sent",
      });
      assert.equal(kind(await check(nowhere, "alice", "x")), "temporary");
    });

    await t.step(
      "change by uid (%n): slapd hashes it, old no longer binds",
      async () => {
        assert.equal(
          kind(await change(template, "bob", "bob-old-1", "bob-new-Q7")),
          "ok",
        );
        const dn = userDn({ uid: "bob" });
        assert.equal(await slapd.whoami(dn, "bob-new-Q7"), `dn:${dn}`);
        assert.equal(await slapd.whoami(dn, "bob-old-1"), undefined);
        assert.match((await slapd.storedPassword(dn))!, /^\{SSHA\}/);
        // A change with a wrong old password changes nothing.
        assert.equal(
          kind(await change(template, "bob", "bob-old-1", "bob-evil-1")),
          "rejected",
        );
        assert.equal(await slapd.whoami(dn, "bob-new-Q7"), `dn:${dn}`);
      },
    );

    await t.step(
      "change by address (%u) through the search form, anonymous",
      async () => {
        const search = await createLdapBackend({
          config: {
            kind: "ldap",
            urls: [slapd.url],
            userDn: { kind: "search", base: SUFFIX, filter: "(mail=%u)" },
            startTls: false,
          },
        });
        assert.equal(
          kind(
            await change(
              search,
              "carol@example.org",
              "carol-old-1",
              "carol-new-Q7",
            ),
          ),
          "ok",
        );
        const dn = userDn({ uid: "carol" });
        assert.equal(await slapd.whoami(dn, "carol-new-Q7"), `dn:${dn}`);
        assert.deepEqual(await check(search, "carol", "carol-new-Q7"), {
          kind: "rejected",
          reason: "unknown user (no entry matches)",
        });
        assert.deepEqual(await check(search, "dup@example.org", "dup-old-1"), {
          kind: "rejected",
          reason: "unknown user (several entries match)",
        });
      },
    );

    await t.step(
      "the search form with a bind DN and the default filter",
      async () => {
        const config = (password: string): LdapConfig => ({
          kind: "ldap",
          urls: [slapd.url],
          userDn: {
            kind: "search",
            base: PEOPLE,
            filter: "(uid=%n)",
            bindDn: SEARCH_DN,
            bindPassword: { kind: "env", value: password },
          },
          startTls: false,
        });
        const search = await createLdapBackend({ config: config(SEARCH_PW) });
        assert.equal(kind(await check(search, "alice", "alice-old-1")), "ok");
        assert.equal(kind(await check(search, "alice", "wrong-1")), "rejected");
        // A wrong bind password is the operator's problem: temporary, logged.
        const broken = await createLdapBackend({ config: config("not-it") });
        const outcome = await check(broken, "alice", "alice-old-1");
        assert.equal(outcome.kind, "temporary");
        assert.match(
          (outcome as { reason: string }).reason,
          /^search bind as cn=search,dc=example,dc=org failed: InvalidCredentials \(49\)/,
        );
      },
    );

    await t.step(
      "user names cannot inject into the DN or the filter",
      async () => {
        const search = await createLdapBackend({
          config: {
            kind: "ldap",
            urls: [slapd.url],
            userDn: { kind: "search", base: SUFFIX, filter: "(uid=%n)" },
            startTls: false,
          },
        });
        // Each would match alice (or everyone) if it were not escaped.
        for (
          const user of [
            "*",
            "ali*",
            "*)(uid=*",
            "alice)(uid=*",
            "alice)(|(uid=*",
            "alice\\",
            "alice\0",
          ]
        ) {
          assert.deepEqual(
            await check(search, user, "alice-old-1"),
            { kind: "rejected", reason: "unknown user (no entry matches)" },
            user,
          );
        }
        for (
          const user of [
            "alice,ou=x",
            "alice,ou=people,dc=example,dc=org",
            "*",
            "alice+cn=alice",
            "#alice",
          ]
        ) {
          assert.equal(
            kind(await check(template, user, "alice-old-1")),
            "rejected",
            user,
          );
        }
        // (" alice" does bind as alice: uid matching ignores insignificant
        // spaces, RFC 4518, as it ignores case; that is slapd's rule, not
        // an injection.)
        // The escaping is right, not merely strict: a name with DN specials works.
        assert.equal(kind(await check(template, "o,ou=x", "odd-old-1")), "ok");
        assert.equal(kind(await check(search, "o,ou=x", "odd-old-1")), "ok");
        assert.equal(
          kind(await check(template, "o,ou=x", "alice-old-1")),
          "rejected",
        );
        assert.equal(kind(await check(template, "josé", "jose-old-1")), "ok");
        assert.equal(kind(await check(search, "josé", "jose-old-1")), "ok");
        // Latin-1 "josé": not UTF-8, so no filter value can hold it.
        assert.deepEqual(
          await search.check(
            new Uint8Array([0x6a, 0x6f, 0x73, 0xe9]),
            enc("jose-old-1"),
            peer,
          ),
          { kind: "rejected", reason: "unknown user (the name is not UTF-8)" },
        );
        assert.equal(
          kind(
            await template.check(
              new Uint8Array([0x6a, 0x6f, 0x73, 0xe9]),
              enc("jose-old-1"),
              peer,
            ),
          ),
          "rejected",
        );
        // The administrator's DN cannot be reached through a user name either.
        assert.equal(
          kind(await check(template, `x,${ADMIN_DN}`, "admin-secret-Q7")),
          "rejected",
        );
      },
    );

    await t.step("20 changes at once, each on its own connection", async () => {
      const outcomes = await Promise.all(
        Array.from(
          { length: 20 },
          (_, i) =>
            change(template, `many${i}`, `many-old-${i}`, `many-new-${i}`),
        ),
      );
      assert.deepEqual(outcomes.map(kind), Array(20).fill("ok"));
      for (let i = 0; i < 20; i++) {
        const dn = userDn({ uid: `many${i}` });
        assert.equal(await slapd.whoami(dn, `many-new-${i}`), `dn:${dn}`);
        // Nobody got a neighbour's password.
        assert.equal(
          await slapd.whoami(dn, `many-new-${(i + 1) % 20}`),
          undefined,
        );
      }
    });

    await t.step(
      "slapd killed: temporary; restarted: works again",
      async () => {
        await slapd.kill();
        const down = await check(template, "alice", "alice-old-1");
        assert.equal(down.kind, "temporary");
        assert.match(
          (down as { reason: string }).reason,
          /^no LDAP server reached \(ldap:\/\/127\.0\.0\.1:\d+: connect ECONNREFUSED/,
        );
        assert.equal(
          kind(await change(template, "alice", "alice-old-1", "alice-new-Q7")),
          "temporary",
        );
        await slapd.restart();
        assert.equal(kind(await check(template, "alice", "alice-old-1")), "ok");
      },
    );

    await t.step("several URLs: a dead one first, then slapd", async () => {
      const failover = await createLdapBackend({
        config: templateConfig([`ldap://127.0.0.1:${freePort()}`, slapd.url]),
      });
      assert.equal(kind(await check(failover, "alice", "alice-old-1")), "ok");
    });

    await t.step(
      "a frozen slapd: the operation timeout makes it temporary",
      async () => {
        const quick = await createLdapBackend({
          config: templateConfig([slapd.url]),
          connectTimeoutMs: 500,
          operationTimeoutMs: 500,
        });
        await slapd.freeze(true);
        try {
          const started = performance.now();
          const outcome = await check(quick, "alice", "alice-old-1");
          const ms = performance.now() - started;
          assert.equal(outcome.kind, "temporary");
          assert.match((outcome as { reason: string }).reason, /timed out/);
          assert.ok(ms >= 450 && ms < 10_000, `${ms} ms`);
        } finally {
          await slapd.freeze(false);
        }
        assert.equal(kind(await check(quick, "alice", "alice-old-1")), "ok");
      },
    );
  },
);

Deno.test(
  "LDAP store: a policy refusal (ppolicy pwdMinLength 8) is rejected with slapd's message",
  sanitizer,
  async () => {
    await using slapd = await Slapd.start({ ppolicy: true });
    await slapd.addUsers([{ uid: "dave", password: "dave-old-1" }]);
    const backend = await createLdapBackend({
      config: templateConfig([slapd.url]),
    });
    const outcome = await change(backend, "dave", "dave-old-1", "short");
    assert.deepEqual(outcome, {
      kind: "rejected",
      reason:
        "the server refused the new password: ConstraintViolation (19): Password fails quality checking policy",
    });
    const dn = userDn({ uid: "dave" });
    assert.equal(await slapd.whoami(dn, "dave-old-1"), `dn:${dn}`);
    assert.equal(
      kind(await change(backend, "dave", "dave-old-1", "long-enough-1")),
      "ok",
    );
    assert.equal(await slapd.whoami(dn, "long-enough-1"), `dn:${dn}`);
  },
);

Deno.test(
  "LDAP store: StartTLS and ldaps:// with a test CA; a wrong CA or name is a temporary failure",
  sanitizer,
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "ldap-tls-" });
    try {
      const ca = await makeTestCa(dir);
      await using slapd = await Slapd.start({
        tls: { cert: ca.cert, key: ca.key },
      });
      await slapd.addUsers([{ uid: "erin", password: "erin-old-1" }]);
      const tls = await createLdapBackend({
        config: templateConfig([slapd.url], { startTls: true, caFile: ca.ca }),
      });
      assert.equal(
        kind(await change(tls, "erin", "erin-old-1", "erin-new-Q7")),
        "ok",
      );
      const dn = userDn({ uid: "erin" });
      assert.equal(await slapd.whoami(dn, "erin-new-Q7"), `dn:${dn}`);
      // ldaps:// (TLS from the first octet) with the same CA.
      const ldaps = await createLdapBackend({
        config: templateConfig([slapd.ldapsUrl], { caFile: ca.ca }),
      });
      assert.equal(kind(await check(ldaps, "erin", "erin-new-Q7")), "ok");
      const ldapsUntrusted = await createLdapBackend({
        config: templateConfig([slapd.ldapsUrl], { caFile: ca.otherCa }),
      });
      const notTrusted = await check(ldapsUntrusted, "erin", "erin-new-Q7");
      assert.equal(notTrusted.kind, "temporary");
      assert.match((notTrusted as { reason: string }).reason, /certificate/i);
      // The right CA, but a certificate for another name.
      await using misnamed = await Slapd.start({
        tls: { cert: ca.wrongNameCert, key: ca.key },
      });
      const wrongName = await createLdapBackend({
        config: templateConfig([misnamed.url], {
          startTls: true,
          caFile: ca.ca,
        }),
      });
      const refused = await check(wrongName, "erin", "erin-old-1");
      assert.equal(refused.kind, "temporary");
      assert.match(
        (refused as { reason: string }).reason,
        /IP: 127\.0\.0\.1 is not in the cert's list|altnames/,
      );
      for (const caFile of [ca.otherCa, undefined]) {
        const untrusted = await createLdapBackend({
          config: templateConfig([slapd.url], {
            startTls: true,
            ...(caFile ? { caFile } : {}),
          }),
        });
        const outcome = await check(untrusted, "erin", "erin-new-Q7");
        assert.equal(outcome.kind, "temporary");
        assert.match(
          (outcome as { reason: string }).reason,
          /certificate/i,
        );
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

Deno.test(
  "LDAP store: an ACL that refuses the write is a failed change, logged",
  sanitizer,
  async () => {
    await using slapd = await Slapd.start({ readOnlyPasswords: true });
    await slapd.addUsers([{ uid: "fred", password: "fred-old-1" }]);
    const backend = await createLdapBackend({
      config: templateConfig([slapd.url]),
    });
    assert.equal(kind(await check(backend, "fred", "fred-old-1")), "ok");
    assert.deepEqual(
      await change(backend, "fred", "fred-old-1", "fred-new-Q7"),
      {
        kind: "rejected",
        reason: "the server refused the new password: InsufficientAccess (50)",
      },
    );
    const dn = userDn({ uid: "fred" });
    assert.equal(await slapd.whoami(dn, "fred-old-1"), `dn:${dn}`);
  },
);

Deno.test(
  "LDAP store: a server that stalls the StartTLS handshake: the handshake timeout or the overall deadline",
  {
    sanitizeOps: true,
    sanitizeResources: true,
  },
  async () => {
    // Answers the StartTLS request with success, then never speaks TLS: only
    // the deadline for the whole check can end this.
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const conns: Deno.Conn[] = [];
    const serving = (async () => {
      for await (const conn of listener) {
        conns.push(conn);
        const request = new Uint8Array(256);
        const n = await conn.read(request);
        // LDAPMessage: 30 len 02 01 messageID 77 (ExtendedRequest) …
        assert.ok(n !== null && request[2] === 0x02 && request[5] === 0x77);
        const id = request[4]!;
        await conn.write(
          new Uint8Array([
            0x30,
            0x0c,
            0x02,
            0x01,
            id,
            0x78,
            0x07,
            0x0a,
            0x01,
            0x00,
            0x04,
            0x00,
            0x04,
            0x00,
          ]),
        );
        // Read (and ignore) the ClientHello until the client gives up.
        while ((await conn.read(request).catch(() => null)) !== null);
        conn.close();
      }
    })();
    try {
      const url = `ldap://127.0.0.1:${listener.addr.port}`;
      const rows = [
        // The whole check's deadline comes first…
        [{ deadlineMs: 700 }, "LDAP deadline of 0.7 s passed"],
        // …or the handshake's own (the operation timeout).
        [
          { operationTimeoutMs: 700 },
          `no LDAP server reached (${url}: StartTLS: timed out after 700 ms)`,
        ],
      ] as const;
      for (const [limits, reason] of rows) {
        const backend = await createLdapBackend({
          config: templateConfig([url], { startTls: true }),
          ...limits,
        });
        const started = performance.now();
        const outcome = await check(backend, "alice", "alice-old-1");
        const ms = performance.now() - started;
        assert.deepEqual(outcome, { kind: "temporary", reason });
        assert.ok(ms >= 650 && ms < 10_000, `${ms} ms`);
      }
    } finally {
      listener.close();
      await serving.catch(() => {});
    }
  },
);
