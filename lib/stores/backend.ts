/**
 * The interface between a session and whatever verifies and changes
 * passwords: the external checkpassword/setpassword programs
 * (`lib/stores/programs/programs.ts`) or a built-in back end. The session never learns how
 * a password is checked, only the outcome.
 *
 * @module
 */

/** What a check or a change came to. `reason` is for the log only. */
export type Outcome =
  | { readonly kind: "ok" }
  | { readonly kind: "rejected"; readonly reason: string }
  | { readonly kind: "temporary"; readonly reason: string };

/** The connection facts a back end may use (environment for children, logs). */
export interface Peer {
  /** Client IP address, or `"unknown"` when the transport does not say. */
  readonly remoteIp: string;
  /** The ucspi-tcp variables to add to children's environment (listen mode). */
  readonly env: Readonly<Record<string, string>>;
  /** Log a line about this session (already prefixed with its id and IP). */
  readonly log?: (message: string) => void;
}

/**
 * Verifies and changes passwords. All arguments are raw octets exactly as
 * the client sent them; the caller wipes them after the promise settles, so
 * an implementation must not keep references.
 */
export interface Backend {
  /** Does `oldPassword` belong to `user`? */
  check(
    user: Uint8Array,
    oldPassword: Uint8Array,
    peer: Peer,
  ): Promise<Outcome>;
  /** Set `newPassword` for `user`, who has just proved `oldPassword`. */
  change(
    user: Uint8Array,
    oldPassword: Uint8Array,
    newPassword: Uint8Array,
    peer: Peer,
  ): Promise<Outcome>;
  /** Release connections (a database pool) after the last session. */
  close?(): Promise<void>;
}
