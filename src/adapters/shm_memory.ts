/**
 * The SharedArrayBuffer region memory: the core's {@link RegionMemory} with Atomics, and the
 * bounded wait a region over it offers.
 *
 * @module
 */

import type { RegionMemory } from "../core/stp/memory.ts";
import type { WaitResult } from "../core/stp/region.ts";

/**
 * A {@link RegionMemory} over a region's bytes: every word access is an Atomics operation,
 * every publish is followed by a notify (`Atomics.notify` on a SharedArrayBuffer). Atomics
 * load, store, compareExchange and add work on any buffer, a file mapping shared by several
 * processes included; `Atomics.notify` wakes only waiters of this process, so such a region
 * passes its own `notify` (a futex wake).
 *
 * @param buffer the region
 * @param notify wakes every waiter on a word (default `Atomics.notify`)
 * @returns the memory and the Int32 view waits use
 *
 * @example
 * ```ts
 * import { atomicsMemory } from "./shm_memory.ts";
 * const { memory } = atomicsMemory(new SharedArrayBuffer(64));
 * memory.store(2, 5);
 * console.assert(memory.add(2, 1) === 5 && memory.load(2) === 6);
 * ```
 */
export function atomicsMemory(
  buffer: ArrayBufferLike,
  notify?: (index: number) => void,
): { memory: RegionMemory; words: Int32Array } {
  const words = new Int32Array(buffer, 0, buffer.byteLength >>> 2);
  const bytes = new Uint8Array(buffer);
  const memory: RegionMemory = {
    byteLength: buffer.byteLength,
    load: (index) => Atomics.load(words, index),
    store: (index, value) => {
      Atomics.store(words, index, value);
    },
    compareExchange: (index, expected, replacement) =>
      Atomics.compareExchange(words, index, expected, replacement),
    add: (index, delta) => Atomics.add(words, index, delta),
    notify: notify ?? ((index) => {
      Atomics.notify(words, index);
    }),
    readBytes: (byteOffset, into) => {
      into.set(bytes.subarray(byteOffset, byteOffset + into.length));
    },
    writeBytes: (byteOffset, from) => {
      bytes.set(from, byteOffset);
    },
  };
  return { memory, words };
}

/**
 * How a host waits: blocking `Atomics.wait` (Workers), `Atomics.waitAsync` (main thread), or
 * `poll`: re-reading the word on a timer (runtimes where `waitAsync` cannot be used).
 */
export type WaitMode = "sync" | "async" | "poll";

/**
 * The default wait mode: `async` everywhere but workerd. On Deno 2.9 a Worker that loops on a
 * blocking `Atomics.wait` is not stopped by `Worker.terminate()` (it keeps renewing its lease),
 * which would hide a dead host from its peers; `sync` stays available for callers that never
 * terminate their Workers. On workerd (1.2026) an `Atomics.notify` that meets a pending
 * `Atomics.waitAsync` fails the whole request ("Promise will never complete"), so there the
 * region is waited on by polling.
 *
 * @returns the wait mode for this runtime
 */
export function defaultWaitMode(): WaitMode {
  const agent = (globalThis as { navigator?: { userAgent?: string } }).navigator?.userAgent;
  return agent === "Cloudflare-Workers" ? "poll" : "async";
}

/**
 * The wait of a SharedArrayBuffer region: `Atomics.wait` or `Atomics.waitAsync` on its words.
 * The main thread keeps a timer alive while waiting, since a pending `waitAsync` alone does not
 * keep Deno running.
 *
 * @param words the region's Int32 view
 * @param mode blocking or asynchronous
 * @returns the `Region.wait` function
 */
export function atomicsWait(
  words: Int32Array,
  mode: WaitMode,
): (index: number, value: number, timeoutMs: number) => Promise<WaitResult> {
  return async (index, value, timeoutMs) => {
    if (mode === "sync") return Atomics.wait(words, index, value, timeoutMs);
    if (mode === "poll") {
      if (Atomics.load(words, index) !== value) return "not-equal";
      return await pollWord(() => Atomics.load(words, index), value, timeoutMs);
    }
    const waited = Atomics.waitAsync(words, index, value, timeoutMs);
    if (!waited.async) return waited.value;
    // Kept alive until the wait settles, not for timeoutMs + 1 only: under load the wait's own
    // timeout can resolve after a timer of the same length, and the event loop would end first
    // ("Promise resolution is still pending"). waitAsync with a finite timeout always settles.
    const keepAlive = setInterval(() => {}, KEEP_ALIVE_TICK_MS);
    try {
      return await waited.value;
    } finally {
      clearInterval(keepAlive);
    }
  };
}

/** Period of the timer that keeps the event loop alive during an asynchronous wait, ms. */
const KEEP_ALIVE_TICK_MS = 1_000;

/** Sleep between two reads of a polling wait, ms. */
export const POLL_SLEEP_MS = 1;

/**
 * Waits by re-reading a word every {@link POLL_SLEEP_MS} until it differs from `value`, `stop`
 * says so, or `timeoutMs` has passed: the wait of a region that has no way to be woken.
 *
 * @param read reads the word
 * @param value the value to wait past
 * @param timeoutMs how long at most
 * @param stop ends the wait early (a closed region)
 * @returns `ok` when the word changed (or `stop`), `timed-out` otherwise
 */
export async function pollWord(
  read: () => number,
  value: number,
  timeoutMs: number,
  stop: () => boolean = () => false,
): Promise<WaitResult> {
  const deadlineMs = performance.now() + timeoutMs;
  const roundsMax = Math.ceil(timeoutMs / POLL_SLEEP_MS) + 1;
  for (let round = 0; round < roundsMax; round++) {
    await new Promise((resolve) => setTimeout(resolve, POLL_SLEEP_MS));
    if (stop() || read() !== value) return "ok";
    if (performance.now() >= deadlineMs) break;
  }
  return "timed-out";
}

/**
 * The wait of a region that brings none (`Region.wait` is optional): poll the word.
 *
 * @param memory the region's memory
 * @returns a `Region.wait` function
 *
 * @example
 * ```ts
 * import { atomicsMemory, pollingWait } from "./shm_memory.ts";
 * const { memory } = atomicsMemory(new SharedArrayBuffer(64));
 * console.assert(await pollingWait(memory)(0, 0, 3) === "timed-out");
 * ```
 */
export function pollingWait(
  memory: RegionMemory,
): (index: number, value: number, timeoutMs: number) => Promise<WaitResult> {
  return (index, value, timeoutMs) =>
    memory.load(index) !== value
      ? Promise.resolve("not-equal")
      : pollWord(() => memory.load(index), value, timeoutMs);
}
