/**
 * `lib/common/version.ts` is the one version source: `--version`, the
 * startup line and the Debian package read it; deno.json, the man page's
 * header and the README's package file name must say the same.
 */
import assert from "node:assert/strict";
import { VERSION } from "../../lib/common/version.ts";

const ROOT = new URL("../../", import.meta.url);
const read = (path: string) => Deno.readTextFile(new URL(path, ROOT));

Deno.test("deno.json, the man page and the README carry VERSION", async (t) => {
  await t.step("deno.json", async () => {
    assert.equal(JSON.parse(await read("deno.json")).version, VERSION);
  });
  await t.step("qmail-poppass.8 .TH", async () => {
    const th = (await read("qmail-poppass.8")).split("\n")
      .find((line) => line.startsWith(".TH "));
    assert.match(th ?? "", new RegExp(`"qmail-poppass ${VERSION}"`));
  });
  await t.step("README .deb file names", async () => {
    const names = (await read("README.md")).match(
      /qmail-poppass_[0-9][^_\s]*_/g,
    );
    assert.ok(names && names.length > 0);
    for (const name of names) assert.equal(name, `qmail-poppass_${VERSION}_`);
  });
});
