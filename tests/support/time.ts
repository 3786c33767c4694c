/**
 * Bounded waiting for every test: each wait has a deadline, and every
 * timer is cleared so the op sanitizer stays quiet.
 *
 * @module
 */

/** Resolve after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Race `promise` against a deadline; rejects with a message naming `what`. */
export async function within<T>(
  promise: Promise<T>,
  ms: number,
  what: string,
): Promise<T> {
  let id: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    id = setTimeout(
      () => reject(new Error(`timed out after ${ms} ms: ${what}`)),
      ms,
    );
  });
  try {
    return await Promise.race([promise, expired]);
  } finally {
    clearTimeout(id);
  }
}

/**
 * Poll `probe` every `every` ms until it returns a value other than
 * `undefined`; throws after `ms` with the last value seen in the message.
 */
export async function until<T>(
  probe: () => T | undefined | Promise<T | undefined>,
  ms: number,
  what: string,
  every = 50,
): Promise<T> {
  const stop = performance.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (performance.now() > stop) {
      throw new Error(`gave up after ${ms} ms: ${what}`);
    }
    await sleep(every);
  }
}

/**
 * Poll `ready` every `stepMs` until it holds or `ms` pass; returns whether
 * it held (never throws: the caller words the failure).
 */
export async function waitUntil(
  ready: () => boolean,
  ms: number,
  stepMs = 25,
): Promise<boolean> {
  const end = performance.now() + ms;
  while (!ready()) {
    if (performance.now() >= end) return false;
    await sleep(stepMs);
  }
  return true;
}

/** Milliseconds `fn` took, with its result. */
export async function timed<T>(
  fn: () => Promise<T>,
): Promise<{ value: T; ms: number }> {
  const start = performance.now();
  const value = await fn();
  return { value, ms: performance.now() - start };
}

/** Run `fn` over `items` with at most `width` in flight; results in order. */
export async function pool<T, R>(
  items: readonly T[],
  width: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await fn(items[index]!, index);
    }
  };
  await Promise.all(
    Array.from({ length: Math.min(width, items.length) }, worker),
  );
  return results;
}
