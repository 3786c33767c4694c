/**
 * Self-signed certificates for TLS tests, made with `openssl` in a
 * sandbox, and the fingerprint of the certificate a server presents.
 *
 * @module
 */

import { run } from "./tools.ts";

/** A certificate and its key, as files and PEM text, with its SHA-256 fingerprint. */
export interface Cert {
  readonly certFile: string;
  readonly keyFile: string;
  readonly pem: string;
  /** `AB:CD:…` as `openssl x509 -fingerprint -sha256` prints it. */
  readonly fingerprint: string;
}

/**
 * A self-signed certificate for `localhost`. Deno's TLS client (rustls)
 * ignores the CN when it checks the name, so the SAN is needed, and it
 * refuses a CA certificate as a server's own (`CaUsedAsEndEntity`), so
 * `CA:FALSE` replaces `req -x509`'s default `CA:TRUE`.
 */
export async function makeCert(
  box: { path(name: string): string },
  name: string,
): Promise<Cert> {
  const certFile = box.path(`${name}.crt`);
  const keyFile = box.path(`${name}.key`);
  const subject = "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1";
  const usage = "basicConstraints=critical,CA:FALSE";
  await run(
    ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"]
      .concat(["-subj", "/CN=localhost", "-addext", subject, "-addext", usage])
      .concat(["-keyout", keyFile, "-out", certFile]),
  );
  const text = await run([
    "openssl",
    "x509",
    "-noout",
    "-fingerprint",
    "-sha256",
    "-in",
    certFile,
  ]);
  return {
    certFile,
    keyFile,
    pem: await Deno.readTextFile(certFile),
    fingerprint: text.trim().replace(/^.*=/, "").toUpperCase(),
  };
}

/** The SHA-256 fingerprint of the certificate a TLS server presents now. */
export async function servedFingerprint(port: number): Promise<string> {
  const child = new Deno.Command("sh", {
    args: [
      "-c",
      `timeout 10 openssl s_client -connect 127.0.0.1:${port} -servername localhost </dev/null 2>/dev/null |
       openssl x509 -noout -fingerprint -sha256`,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
  const out = await child.output();
  return new TextDecoder().decode(out.stdout).trim().replace(/^.*=/, "")
    .toUpperCase();
}
