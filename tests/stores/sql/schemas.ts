/**
 * Test schemas for the SQL store: PostfixAdmin's `mailbox` table (with its
 * `domain` table) as PostfixAdmin's upgrade.php creates it on PostgreSQL
 * and MySQL/MariaDB, and a custom schema split into local part and domain.
 *
 * @module
 */

import type { TestDatabase } from "../../support/databases.ts";

/** SQL text quoting for test fixtures only (the store itself binds values). */
export function lit(text: string): string {
  return `'${text.replaceAll("\\", "\\\\").replaceAll("'", "''")}'`;
}

/** PostfixAdmin's tables, written after its upgrade.php, per dialect. */
export function postfixadminSchema(kind: TestDatabase["kind"]): string {
  if (kind === "postgresql") {
    return `
CREATE TABLE domain (
  domain varchar(255) NOT NULL PRIMARY KEY,
  description varchar(255) NOT NULL DEFAULT '',
  created timestamp with time zone DEFAULT now(),
  modified timestamp with time zone DEFAULT now(),
  active boolean NOT NULL DEFAULT true
);
CREATE TABLE mailbox (
  username varchar(255) NOT NULL,
  password varchar(255) NOT NULL DEFAULT '',
  name varchar(255) NOT NULL DEFAULT '',
  maildir varchar(255) NOT NULL DEFAULT '',
  quota bigint NOT NULL DEFAULT 0,
  local_part varchar(255) NOT NULL,
  domain varchar(255) NOT NULL REFERENCES domain,
  created timestamp with time zone DEFAULT now(),
  modified timestamp with time zone DEFAULT now(),
  active boolean NOT NULL DEFAULT true,
  password_expiry timestamp with time zone DEFAULT '2000-01-01 00:00:00+00',
  totp_secret varchar(255) DEFAULT NULL,
  smtp_active boolean NOT NULL DEFAULT true,
  CONSTRAINT mailbox_key PRIMARY KEY (username)
);
CREATE INDEX mailbox_username_active ON mailbox(username, active);
`;
  }
  return `
CREATE TABLE domain (
  domain varchar(255) NOT NULL,
  description varchar(255) NOT NULL DEFAULT '',
  created datetime NOT NULL DEFAULT '2000-01-01 00:00:00',
  modified datetime NOT NULL DEFAULT '2000-01-01 00:00:00',
  active tinyint(1) NOT NULL DEFAULT '1',
  PRIMARY KEY (domain)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
CREATE TABLE mailbox (
  username varchar(255) NOT NULL,
  password varchar(255) NOT NULL,
  name varchar(255) NOT NULL DEFAULT '',
  maildir varchar(255) NOT NULL DEFAULT '',
  quota bigint(20) NOT NULL DEFAULT '0',
  local_part varchar(255) NOT NULL,
  domain varchar(255) NOT NULL,
  created datetime NOT NULL DEFAULT '2000-01-01 00:00:00',
  modified datetime NOT NULL DEFAULT '2000-01-01 00:00:00',
  active tinyint(1) NOT NULL DEFAULT '1',
  password_expiry datetime NOT NULL DEFAULT '2000-01-01 00:00:00',
  totp_secret varchar(255) DEFAULT NULL,
  smtp_active tinyint(1) NOT NULL DEFAULT '1',
  PRIMARY KEY (username),
  KEY domain (domain)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
`;
}

/** One mailbox row for PostfixAdmin's schema. */
export function postfixadminMailbox(
  user: string,
  hash: string,
  active = true,
): string {
  const at = user.indexOf("@");
  const local = at < 0 ? user : user.slice(0, at);
  const domain = at < 0 ? "" : user.slice(at + 1);
  return `INSERT INTO mailbox (username, password, name, maildir, local_part, domain, active) VALUES (${
    lit(user)
  }, ${lit(hash)}, '', ${lit(`${domain}/${local}/`)}, ${lit(local)}, ${
    lit(domain)
  }, ${active ? "'1'" : "'0'"});`;
}

/** A hand-made schema: users split into local part and domain. */
export const CUSTOM_SCHEMA = `
CREATE TABLE accounts (
  id integer PRIMARY KEY,
  local varchar(64) NOT NULL,
  dom varchar(190) NOT NULL,
  secret varchar(255) NOT NULL,
  enabled integer NOT NULL DEFAULT 1,
  changes integer NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX accounts_addr ON accounts (local, dom);
`;

/** Queries for {@link CUSTOM_SCHEMA}, Dovecot-style quoted. */
export const CUSTOM_QUERIES = {
  password:
    "SELECT secret, 'extra column' FROM accounts WHERE local = '%n' AND dom = '%d' AND enabled = 1",
  update:
    "UPDATE accounts SET secret = '%w', changes = changes + 1 WHERE local = '%n' AND dom = '%d' AND enabled = 1",
};

/** The columns of mailcow's tables the recipe uses (init_db.inc.php). */
export const MAILCOW_SCHEMA = `
CREATE TABLE domain (
  domain varchar(255) NOT NULL PRIMARY KEY,
  active tinyint(1) NOT NULL DEFAULT '1'
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE mailbox (
  username varchar(255) NOT NULL PRIMARY KEY,
  password varchar(255) NOT NULL,
  local_part varchar(255) NOT NULL,
  domain varchar(255) NOT NULL,
  attributes json,
  kind varchar(100) NOT NULL DEFAULT '',
  authsource enum('mailcow', 'keycloak', 'generic-oidc', 'ldap') DEFAULT 'mailcow',
  created datetime(0) NOT NULL DEFAULT NOW(0),
  modified datetime ON UPDATE CURRENT_TIMESTAMP,
  active tinyint(1) NOT NULL DEFAULT '1'
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
`;

/** The README's mailcow recipe. */
export const MAILCOW_QUERIES = {
  password:
    "SELECT mailbox.password FROM mailbox JOIN domain ON mailbox.domain = domain.domain WHERE mailbox.username = %u AND mailbox.active = '1' AND domain.active = '1' AND mailbox.authsource = 'mailcow' AND mailbox.kind NOT REGEXP 'location|thing|group'",
  update:
    "UPDATE mailbox SET password = %w, attributes = JSON_SET(attributes, '$.force_pw_update', '0', '$.passwd_update', NOW()) WHERE username = %u AND active = '1' AND authsource = 'mailcow'",
};

/** The columns of iRedMail's tables the recipe uses (iredmail.mysql / .pgsql). */
export function iredmailSchema(kind: TestDatabase["kind"]): string {
  const flag = kind === "postgresql" ? "INT2" : "TINYINT(1)";
  const time = kind === "postgresql"
    ? "TIMESTAMP WITHOUT TIME ZONE NOT NULL DEFAULT '1970-01-01 01:01:01'"
    : "DATETIME NOT NULL DEFAULT '1970-01-01 01:01:01'";
  return `
CREATE TABLE domain (
  domain VARCHAR(255) NOT NULL PRIMARY KEY,
  backupmx ${flag} NOT NULL DEFAULT 0,
  active ${flag} NOT NULL DEFAULT 1
);
CREATE TABLE mailbox (
  username VARCHAR(255) NOT NULL PRIMARY KEY,
  password VARCHAR(255) NOT NULL DEFAULT '',
  domain VARCHAR(255) NOT NULL DEFAULT '',
  passwordlastchange ${time},
  active ${flag} NOT NULL DEFAULT 1
);
`;
}

/** The README's iRedMail recipe. */
export const IREDMAIL_QUERIES = {
  password:
    "SELECT mailbox.password FROM mailbox, domain WHERE mailbox.username = %u AND mailbox.active = 1 AND mailbox.domain = domain.domain AND domain.backupmx = 0 AND domain.active = 1",
  update:
    "UPDATE mailbox SET password = %w, passwordlastchange = NOW() WHERE username = %u AND active = 1",
};
