/**
 * One PAM transaction through Deno FFI: `pam_start`, then
 * `pam_authenticate` + `pam_acct_mgmt` (check) and `pam_chauthtok`
 * (change), with a conversation function that answers PAM's prompts from
 * the passwords it was given. Every call blocks the thread it runs on
 * (pam_unix sleeps about 2 s after a failure), so this module runs only
 * inside a Worker (`worker.ts`).
 *
 * Linux-PAM layout on 64-bit: `msg` is an array of pointers to
 * `{ int msg_style; const char *msg }` (16 octets); `*resp` gets a
 * `calloc`'d array of `{ char *resp; int resp_retcode }` (16 octets each)
 * whose strings come from libc's `strdup`, because PAM frees them.
 *
 * @module
 */

/** PAM's return codes that the outcome mapping names. */
export const PAM = {
  SUCCESS: 0,
  SERVICE_ERR: 3,
  SYSTEM_ERR: 4,
  BUF_ERR: 5,
  PERM_DENIED: 6,
  AUTH_ERR: 7,
  CRED_INSUFFICIENT: 8,
  AUTHINFO_UNAVAIL: 9,
  USER_UNKNOWN: 10,
  MAXTRIES: 11,
  NEW_AUTHTOK_REQD: 12,
  ACCT_EXPIRED: 13,
  CONV_ERR: 19,
  AUTHTOK_ERR: 20,
  AUTHTOK_RECOVERY_ERR: 21,
  AUTHTOK_LOCK_BUSY: 22,
  AUTHTOK_DISABLE_AGING: 23,
  TRY_AGAIN: 24,
  ABORT: 26,
  AUTHTOK_EXPIRED: 27,
} as const;

/** The step of a transaction a code came from, for the log and the mapping. */
export type PamStep =
  | "start"
  | "authenticate"
  | "acct_mgmt"
  | "chauthtok"
  | "verify";

/** What one transaction came to, with PAM's own words for the log. */
export interface PamResult {
  /** The step that ended the transaction (the last one on success). */
  readonly step: PamStep;
  /** Its return code. */
  readonly code: number;
  /** `pam_strerror` of the code. */
  readonly error: string;
  /** `PAM_ERROR_MSG` / `PAM_TEXT_INFO` texts, raw; the caller sanitises them. */
  readonly messages: readonly Uint8Array[];
}

/** A request to {@link runTransaction}; the passwords are NUL-free octets. */
export interface PamRequest {
  readonly service: string;
  readonly user: Uint8Array;
  readonly oldPassword: Uint8Array;
  /** Present: change the password after the check. */
  readonly newPassword?: Uint8Array;
  /** The client's IP, set as `PAM_RHOST` for the modules' logs. */
  readonly remoteIp: string;
}

const PAM_RHOST = 4;
const CHANGE_EXPIRED_AUTHTOK = 0x20;
const PROMPT_ECHO_OFF = 1;
const ERROR_MSG = 3;
const TEXT_INFO = 4;
/** A stack that keeps asking is misconfigured or hostile; stop answering. */
const MAX_PROMPTS = 12;
/** PAM messages kept per transaction for the log. */
const MAX_MESSAGES = 8;

const PAM_SYMBOLS = {
  pam_start: {
    parameters: ["buffer", "buffer", "buffer", "buffer"],
    result: "i32",
  },
  pam_set_item: { parameters: ["pointer", "i32", "buffer"], result: "i32" },
  pam_authenticate: { parameters: ["pointer", "i32"], result: "i32" },
  pam_acct_mgmt: { parameters: ["pointer", "i32"], result: "i32" },
  pam_chauthtok: { parameters: ["pointer", "i32"], result: "i32" },
  pam_end: { parameters: ["pointer", "i32"], result: "i32" },
  pam_strerror: { parameters: ["pointer", "i32"], result: "pointer" },
} as const;

const LIBC_SYMBOLS = {
  calloc: { parameters: ["usize", "usize"], result: "pointer" },
  strdup: { parameters: ["buffer"], result: "pointer" },
  getpwnam_r: {
    parameters: ["buffer", "buffer", "buffer", "usize", "buffer"],
    result: "i32",
  },
} as const;

const CONV_DEFINITION = {
  parameters: ["i32", "pointer", "pointer", "pointer"],
  result: "i32",
} as const;

type PamLib = Deno.DynamicLibrary<typeof PAM_SYMBOLS>["symbols"];
type LibC = Deno.DynamicLibrary<typeof LIBC_SYMBOLS>["symbols"];

let libraries: { pam: PamLib; libc: LibC } | undefined;

/** Open libpam and libc once per worker. */
function open(): { pam: PamLib; libc: LibC } {
  libraries ??= {
    pam: Deno.dlopen("libpam.so.0", PAM_SYMBOLS).symbols,
    libc: Deno.dlopen("libc.so.6", LIBC_SYMBOLS).symbols,
  };
  return libraries;
}

/** `text` as a NUL-terminated C string. */
export function cString(text: Uint8Array | string): Uint8Array<ArrayBuffer> {
  const bytes = typeof text === "string"
    ? new TextEncoder().encode(text)
    : text;
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  return out;
}

/**
 * The account's uid through `getpwnam_r` (so NSS sources count), or
 * `undefined` when there is no such account.
 */
export function lookupUid(user: Uint8Array): number | undefined {
  const { libc } = open();
  const name = cString(user);
  const pwd = new Uint8Array(48); // struct passwd on 64-bit Linux
  const result = new BigUint64Array(1);
  for (let size = 4096; size <= 1 << 20; size *= 4) {
    const buffer = new Uint8Array(size);
    const error = libc.getpwnam_r(name, pwd, buffer, BigInt(size), result);
    if (error === 34) continue; // ERANGE: a bigger buffer
    if (error !== 0) throw new Error(`getpwnam_r failed with errno ${error}`);
    if (result[0] === 0n) return undefined;
    return new DataView(pwd.buffer).getUint32(16, true); // pw_uid
  }
  throw new Error("getpwnam_r: the entry is larger than 1 MiB");
}

/**
 * Check, or check and change, then prove the change: a module may take
 * `PAM_CHANGE_EXPIRED_AUTHTOK` to mean "only when expired" and succeed
 * without changing anything, so a change counts only once the new password
 * authenticates in a transaction of its own (step `verify` otherwise).
 * Throws only when PAM or libc cannot be loaded.
 */
export function runTransaction(request: PamRequest): PamResult {
  const result = transact(request);
  const { newPassword, ...rest } = request;
  if (newPassword === undefined || result.code !== PAM.SUCCESS) return result;
  const proof = transact({ ...rest, oldPassword: newPassword });
  const messages = [...result.messages, ...proof.messages];
  const authenticated = proof.step !== "start" &&
    proof.step !== "authenticate";
  return authenticated ? { ...result, messages } : {
    step: "verify",
    code: proof.code,
    error: proof.error,
    messages,
  };
}

function transact(request: PamRequest): PamResult {
  const { pam, libc } = open();
  const messages: Uint8Array[] = [];
  const conversation = new Conversation(libc, request, messages);
  const callback = new Deno.UnsafeCallback(
    CONV_DEFINITION,
    (count, msg, resp) => conversation.answer(count, msg, resp),
  );
  const conv = new BigUint64Array(2);
  conv[0] = BigInt(Deno.UnsafePointer.value(callback.pointer));
  const handleOut = new BigUint64Array(1);
  const finish = (step: PamStep, code: number): PamResult => ({
    step,
    code,
    error: strerror(pam, handle, code),
    messages,
  });
  let handle: Deno.PointerValue = null;
  try {
    const started = pam.pam_start(
      cString(request.service),
      cString(request.user),
      new Uint8Array(conv.buffer),
      new Uint8Array(handleOut.buffer),
    );
    handle = Deno.UnsafePointer.create(handleOut[0]!);
    if (started !== PAM.SUCCESS) return finish("start", started);
    if (request.remoteIp !== "unknown") {
      pam.pam_set_item(handle, PAM_RHOST, cString(request.remoteIp));
    }
    let code = pam.pam_authenticate(handle, 0);
    if (code !== PAM.SUCCESS) return finish("authenticate", code);
    code = pam.pam_acct_mgmt(handle, 0);
    const expired = code === PAM.NEW_AUTHTOK_REQD;
    // An expired password may still be changed: that is what we are for.
    if (code !== PAM.SUCCESS && !expired) return finish("acct_mgmt", code);
    if (request.newPassword === undefined) return finish("acct_mgmt", code);
    conversation.changing = true;
    // Modules treat a caller with uid 0 as the administrator: pam_unix
    // then asks no current password and skips its quality checks, and
    // pam_pwquality skips its own. PAM_CHANGE_EXPIRED_AUTHTOK is how they
    // are told that the user is changing their own password (as login
    // does for an expired one), so the system's policy applies.
    code = pam.pam_chauthtok(handle, CHANGE_EXPIRED_AUTHTOK);
    return finish("chauthtok", code);
  } finally {
    if (handle !== null) pam.pam_end(handle, 0);
    callback.close();
    conversation.wipe();
  }
}

function strerror(pam: PamLib, handle: Deno.PointerValue, code: number) {
  const text = pam.pam_strerror(handle, code);
  return text === null
    ? `PAM error ${code}`
    : Deno.UnsafePointerView.getCString(text);
}

/** Answers PAM's prompts: the old password, or while changing, the new one. */
class Conversation {
  /** Set once `pam_chauthtok` runs: prompts then ask for the new password. */
  changing = false;
  #prompts = 0;
  readonly #old: Uint8Array<ArrayBuffer>;
  readonly #new: Uint8Array<ArrayBuffer> | undefined;

  constructor(
    readonly libc: LibC,
    request: PamRequest,
    readonly messages: Uint8Array[],
  ) {
    this.#old = cString(request.oldPassword);
    this.#new = request.newPassword && cString(request.newPassword);
  }

  /** Our copies of the passwords, wiped. */
  wipe(): void {
    this.#old.fill(0);
    this.#new?.fill(0);
  }

  /** The conversation function: fill `*resp`, or refuse with PAM_CONV_ERR. */
  answer(
    count: number,
    msg: Deno.PointerValue,
    resp: Deno.PointerValue,
  ): number {
    if (count <= 0 || count > 32 || msg === null || resp === null) {
      return PAM.CONV_ERR;
    }
    const view = new Deno.UnsafePointerView(msg);
    const answers: (Uint8Array<ArrayBuffer> | null)[] = [];
    for (let i = 0; i < count; i++) {
      const message = view.getPointer(i * 8);
      if (message === null) return PAM.CONV_ERR;
      const item = new Deno.UnsafePointerView(message);
      const style = item.getInt32(0);
      const textPointer = item.getPointer(8);
      const text = textPointer === null
        ? new Uint8Array(0)
        : new TextEncoder().encode(
          Deno.UnsafePointerView.getCString(textPointer),
        );
      const answer = this.#reply(style, text);
      if (answer === undefined) return PAM.CONV_ERR;
      answers.push(answer);
    }
    return this.#respond(answers, resp);
  }

  #reply(
    style: number,
    text: Uint8Array,
  ): Uint8Array<ArrayBuffer> | null | undefined {
    if (style === ERROR_MSG || style === TEXT_INFO) {
      if (this.messages.length < MAX_MESSAGES) this.messages.push(text);
      return null;
    }
    // Echo-on prompts (PAM_PROMPT_ECHO_ON) ask for a name or a token we
    // do not have; unknown styles are refused too.
    if (style !== PROMPT_ECHO_OFF) return undefined;
    if (++this.#prompts > MAX_PROMPTS) return undefined;
    if (!this.changing || this.#new === undefined) return this.#old;
    // With PAM_CHANGE_EXPIRED_AUTHTOK pam_unix first asks "Current
    // password: " (older versions "(current) UNIX password: "); every
    // other prompt of pam_chauthtok wants the new password or its retype.
    const prompt = new TextDecoder().decode(text).toLowerCase();
    return /\b(current|old)\b/.test(prompt) ? this.#old : this.#new;
  }

  /** `calloc` the response array and `strdup` each answer into it. */
  #respond(
    answers: readonly (Uint8Array<ArrayBuffer> | null)[],
    resp: NonNullable<Deno.PointerValue>,
  ): number {
    const array = this.libc.calloc(BigInt(answers.length), 16n);
    if (array === null) return PAM.BUF_ERR;
    const target = new BigUint64Array(
      Deno.UnsafePointerView.getArrayBuffer(array, answers.length * 16),
    );
    for (const [i, answer] of answers.entries()) {
      if (answer === null) continue;
      // On failure PAM gets a NULL string here and rejects the answer.
      const copy = this.libc.strdup(answer);
      target[i * 2] = BigInt(Deno.UnsafePointer.value(copy));
    }
    new BigUint64Array(
      Deno.UnsafePointerView.getArrayBuffer(resp, 8),
    )[0] = BigInt(Deno.UnsafePointer.value(array));
    return PAM.SUCCESS;
  }
}
