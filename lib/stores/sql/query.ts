/**
 * Query templates with `%u %n %d %w` placeholders, compiled once at
 * startup into text with bound parameters (`$1` for PostgreSQL, `?` for
 * MySQL and SQLite). A user name never becomes part of the SQL text.
 *
 * @module
 */

import { quote, UsageError } from "../../config/options.ts";

/** A placeholder: whole user, part before `@`, part after `@`, new hash. */
export type Placeholder = "u" | "n" | "d" | "w";

/** How a driver writes parameter markers. */
export type Dialect = "postgresql" | "mysql" | "sqlite";

/** A compiled template: `parts.length === params.length + 1`. */
export interface Query {
  readonly parts: readonly string[];
  readonly params: readonly Placeholder[];
}

/** PostfixAdmin's `mailbox` table (the default `--sql-password-query`). */
export const DEFAULT_PASSWORD_QUERY =
  "SELECT password FROM mailbox WHERE username = %u AND active = '1'";

/** PostfixAdmin's `mailbox` table (the default `--sql-update-query`). */
export const DEFAULT_UPDATE_QUERY =
  "UPDATE mailbox SET password = %w, modified = CURRENT_TIMESTAMP WHERE username = %u AND active = '1'";

/**
 * Compile `text`; `allowed` lists the placeholders this query may use.
 * `%u` and the Dovecot-style quoted `'%u'` both become one bound
 * parameter; `%%` is a literal `%`; any other `%` sequence, a placeholder
 * inside a longer quoted string, or a driver's own marker (`?`, `$1`) is
 * a `UsageError`.
 */
export function compileQuery(
  option: string,
  text: string,
  allowed: readonly Placeholder[],
): Query {
  const fail = (why: string): never => {
    throw new UsageError(`--${option} ${quote(text)}: ${why}`);
  };
  if (text.trim() === "") fail("empty query");
  if (text.includes("\0")) fail("contains NUL");
  const parts: string[] = [];
  const params: Placeholder[] = [];
  let current = "";
  let inQuote: string | undefined;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (ch === "%") {
      const next = text[i + 1];
      if (next === "%") {
        current += "%";
        i++;
        continue;
      }
      if (next === undefined || !"undw".includes(next)) {
        fail(
          `unknown placeholder ${
            quote("%" + (next ?? ""))
          } at offset ${i}: only %u %n %d %w (and %% for a literal %)`,
        );
      }
      const name = next as Placeholder;
      if (!allowed.includes(name)) {
        fail(
          `%${name} has no value in this query (it may use ${
            allowed.map((p) => "%" + p).join(" ")
          })`,
        );
      }
      // Dovecot-style '%u': the quotes go, the value is still a parameter.
      if (inQuote === "'" && current.endsWith("'") && text[i + 2] === "'") {
        current = current.slice(0, -1);
        inQuote = undefined;
        i += 2;
      } else if (inQuote !== undefined) {
        fail(
          `%${name} inside a quoted string: write %${name} or '%${name}' alone; values are bound parameters`,
        );
      } else {
        i++;
      }
      parts.push(current);
      params.push(name);
      current = "";
      continue;
    }
    if (inQuote === undefined) {
      if (ch === "'" || ch === '"' || ch === "`") inQuote = ch;
      else if (ch === "?") {
        fail("a bare ? would be taken for a parameter: use %u %n %d %w");
      } else if (ch === "$" && /\d/.test(text[i + 1] ?? "")) {
        fail(
          `${
            quote(text.slice(i, i + 2))
          } would be taken for a parameter: use %u %n %d %w`,
        );
      } else if (ch === ";" && text.slice(i + 1).trim() !== "") {
        fail("one statement only");
      }
    } else if (ch === inQuote) {
      inQuote = undefined;
    }
    current += ch;
  }
  if (inQuote !== undefined) fail(`unterminated ${inQuote} quote`);
  parts.push(current.replace(/;\s*$/, ""));
  return { parts, params };
}

/** The SQL text for `dialect`: markers in place of the placeholders. */
export function render(query: Query, dialect: Dialect): string {
  let out = query.parts[0]!;
  for (let i = 0; i < query.params.length; i++) {
    out += (dialect === "postgresql" ? `$${i + 1}` : "?") + query.parts[i + 1]!;
  }
  return out;
}

/** The values of a user name's placeholders. */
export interface Values {
  readonly u: string;
  readonly n: string;
  readonly d: string;
  readonly w?: string;
}

/** Split a user name as Dovecot does: `%n` before the first `@`, `%d` after it. */
export function valuesOf(user: string, hash?: string): Values {
  const at = user.indexOf("@");
  const base = at < 0
    ? { u: user, n: user, d: "" }
    : { u: user, n: user.slice(0, at), d: user.slice(at + 1) };
  return hash === undefined ? base : { ...base, w: hash };
}

/** The parameter list for `query`, in marker order. */
export function bind(query: Query, values: Values): string[] {
  return query.params.map((p) => {
    const v = values[p];
    if (v === undefined) throw new Error(`no value for %${p}`);
    return v;
  });
}
