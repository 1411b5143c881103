/**
 * The memory a region lives in, as the core sees it: Int32 words with load, store,
 * compare-exchange and add, a notify after publishing, and byte copies in and out of the device
 * area. The shm adapter implements it with Atomics over a SharedArrayBuffer; tests use
 * {@link plainMemory} (one thread) or an instrumented wrapper. The core never waits: a step that
 * cannot proceed returns the word to wait on, and the adapter waits.
 *
 * @module
 */

/** Word and byte access to one region. Word indices are Int32 indices from the region start. */
export interface RegionMemory {
  /** Size of the region in bytes. */
  readonly byteLength: number;
  /** Reads a word. */
  load(index: number): number;
  /** Writes a word (a publish when other hosts read it). */
  store(index: number, value: number): void;
  /** Writes `replacement` when the word equals `expected`; returns the word as it was. */
  compareExchange(index: number, expected: number, replacement: number): number;
  /** Adds `delta` (wrapping at 32 bits); returns the word as it was. */
  add(index: number, delta: number): number;
  /** Wakes every waiter on a word (after a publish). */
  notify(index: number): void;
  /** Copies `into.length` bytes from the region at `byteOffset` into `into`. */
  readBytes(byteOffset: number, into: Uint8Array): void;
  /** Copies `from` into the region at `byteOffset`. */
  writeBytes(byteOffset: number, from: Uint8Array): void;
}

/**
 * A single-threaded {@link RegionMemory} over any buffer: plain reads and writes, no Atomics.
 * For tests and simulations where every "host" runs on one thread.
 *
 * @param buffer the region's bytes (length a multiple of 4)
 * @returns the memory
 *
 * @example Words and bytes
 * ```ts
 * import { plainMemory } from "./memory.ts";
 * const memory = plainMemory(new ArrayBuffer(64));
 * memory.store(1, 7);
 * console.assert(memory.compareExchange(1, 7, 9) === 7 && memory.load(1) === 9);
 * ```
 */
export function plainMemory(buffer: ArrayBufferLike): RegionMemory {
  const words = new Int32Array(buffer, 0, buffer.byteLength >>> 2);
  const bytes = new Uint8Array(buffer);
  return {
    byteLength: buffer.byteLength,
    load: (index) => words[index] ?? 0,
    store: (index, value) => {
      words[index] = value;
    },
    compareExchange: (index, expected, replacement) => {
      const old = words[index] ?? 0;
      if (old === (expected | 0)) words[index] = replacement;
      return old;
    },
    add: (index, delta) => {
      const old = words[index] ?? 0;
      words[index] = (old + delta) | 0;
      return old;
    },
    notify: () => {},
    readBytes: (byteOffset, into) => {
      into.set(bytes.subarray(byteOffset, byteOffset + into.length));
    },
    writeBytes: (byteOffset, from) => {
      bytes.set(from, byteOffset);
    },
  };
}
