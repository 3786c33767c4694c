/**
 * The one interface behind which a checkpassword or setpassword program
 * is started: the `/bin/sh` shim or `fd3exec` (`command.ts`, from the
 * Deno process) or one long-lived `fd3spawn` (`fd3spawn.ts`). `main.ts`
 * opens one starter at startup (`openStarter` in `programs.ts`); the
 * dispatcher in `programs.ts` runs every program through it and turns
 * what the program printed into log lines (`output.ts`).
 *
 * @module
 */

/** How a program run ended. */
export type ChildResult =
  | {
    readonly kind: "exited";
    readonly code: number;
    /** False when the program left part of its fd-3 payload unread. */
    readonly delivered: boolean;
  }
  | { readonly kind: "signaled"; readonly signal: string }
  | { readonly kind: "timeout"; readonly ms: number }
  | { readonly kind: "spawnFailed"; readonly message: string };

/** One program run, as a starter gets it. */
export interface RunRequest {
  /** The program (an absolute path) and its arguments. */
  readonly argv: readonly string[];
  /** Octets the program reads on fd 3, then EOF (at most `PAYLOAD_MAX`). */
  readonly payload: Uint8Array;
  /** The starter's own deadline for the run, payload write included. */
  readonly timeoutMs: number;
  /** Variables added to the inherited environment. */
  readonly env?: Readonly<Record<string, string>>;
  /** Octets of each output stream to keep (`keepFor` in `output.ts`). */
  readonly keep: number;
}

/** The first octets a program printed on one stream, and how many in all. */
export interface Captured {
  /** At most `RunRequest.keep` octets; the caller wipes them. */
  readonly kept: Uint8Array;
  /** Octets printed in all. */
  readonly total: number;
}

/** How a run ended and what it printed. */
export interface RunResult {
  readonly ending: ChildResult;
  readonly stdout: Captured;
  readonly stderr: Captured;
}

/** Starts programs with a payload on fd 3, fds 0-3 only, in their own process group. */
export interface Starter {
  /** For the startup line: `fd-3 shim /bin/sh`, `fd-3 helper PATH`, `fd-3 spawner PATH`. */
  readonly name: string;
  /** Run one program; never throws. */
  run(request: RunRequest): Promise<RunResult>;
  /** Let running programs finish, then release what the starter holds. */
  close(): Promise<void>;
}

/** Which starter the configuration chose. */
export type StarterChoice =
  | { readonly kind: "shim" }
  | { readonly kind: "fd3exec"; readonly path: string }
  | { readonly kind: "fd3spawn"; readonly path: string };

/** Nothing printed. */
export const NOTHING: Captured = { kept: new Uint8Array(0), total: 0 };
