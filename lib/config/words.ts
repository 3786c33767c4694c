/**
 * `PASSWORD_COMMAND` splitting (`doc/protocol.md` §1): words
 * separated by white space; a word that starts with `"` or `'` runs to the
 * matching quote, quotes removed; a whole word `$NAME` becomes that
 * variable's value. Nothing else is expanded. Mistakes are errors, never
 * guesses (the C original silently truncated argv at an unset variable).
 *
 * @module
 */

const NAME = /^\$([A-Za-z_][A-Za-z0-9_]*)$/;
const SPACE = /\s/;

/** Split `PASSWORD_COMMAND` into argv words; throws `SyntaxError` with a clear message. */
export function splitCommand(
  text: string,
  env: (name: string) => string | undefined,
): string[] {
  const words: string[] = [];
  let i = 0;
  while (i < text.length) {
    if (SPACE.test(text[i]!)) {
      i++;
      continue;
    }
    const quote = text[i];
    if (quote === '"' || quote === "'") {
      const close = text.indexOf(quote, i + 1);
      if (close < 0) {
        throw new SyntaxError(`unterminated ${quote} quote at offset ${i}`);
      }
      const after = text[close + 1];
      if (after !== undefined && !SPACE.test(after)) {
        throw new SyntaxError(
          `text right after the closing ${quote} at offset ${close}`,
        );
      }
      words.push(text.slice(i + 1, close));
      i = close + 1;
      continue;
    }
    let end = i;
    while (end < text.length && !SPACE.test(text[end]!)) end++;
    words.push(expand(text.slice(i, end), env));
    i = end;
  }
  return words;
}

function expand(
  word: string,
  env: (name: string) => string | undefined,
): string {
  const match = NAME.exec(word);
  if (!match) return word;
  const value = env(match[1]!);
  if (value === undefined) {
    throw new SyntaxError(`${word} names an unset variable`);
  }
  return value;
}
