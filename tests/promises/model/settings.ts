/**
 * The model tests' knobs: the fast-check seed, runs and replay path from
 * the environment (MODEL_SEED, MODEL_RUNS, MODEL_PATH, MODEL_SHRINK=0), and
 * the short timings the servers under test run with.
 *
 * @module
 */

import { QUICK } from "../../support/sandbox.ts";

/** fast-check seed of the first mode (each mode adds one). */
export const SEED = Number(Deno.env.get("MODEL_SEED") ?? 20261204);
/** Property runs per mode. */
export const RUNS = Number(Deno.env.get("MODEL_RUNS") ?? 25);
/** A failure's path to replay, from fast-check's report. */
export const PATH = Deno.env.get("MODEL_PATH");
/** MODEL_SHRINK=0 stops at the first failure without shrinking it. */
export const SHRINK = Deno.env.get("MODEL_SHRINK") !== "0";

/** The servers' short deadlines (idle 2 s, child 1 s, …). */
export const TIMINGS = QUICK;
/** The failure delay the servers run with. */
export const FAIL_DELAY_MS = 100;
/** Timer slack when comparing the failure delay across two processes' clocks. */
export const DELAY_SLACK_MS = 5;
/** The servers' line limit (the default). */
export const MAX_LINE = 512;
/** The fd-3 payload cap of `doc/protocol.md` §4. */
export const PAYLOAD_MAX = 512;
/** Longest any reply or close may take: idle deadline 2 s + child 1 s + slack. */
export const WAIT_MS = 8_000;
