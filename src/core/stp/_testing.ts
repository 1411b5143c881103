/**
 * Helpers shared by the STP core's unit tests.
 *
 * @module
 */

import type { Result } from "../dispatch/errors.ts";
import type { RegionMemory } from "./memory.ts";

/** Unwraps a result or throws its failure (in tests only). */
export function value<T>(result: Result<T>): T {
  if (!result.ok) throw new Error(`${result.code}: ${result.message}`);
  return result.value;
}

/**
 * A memory that throws on any access outside the region, as Atomics on a real buffer do, so a
 * test over {@link plainMemory} sees an out-of-bounds access instead of reading `undefined`.
 */
export function strictMemory(inner: RegionMemory): RegionMemory {
  const words = inner.byteLength >>> 2;
  const word = (index: number) => {
    if (!(index >= 0 && index < words)) throw new RangeError(`word ${index} is outside`);
  };
  const bytes = (offset: number, length: number) => {
    if (!(offset >= 0 && offset + length <= inner.byteLength)) {
      throw new RangeError(`bytes at ${offset} are outside`);
    }
  };
  return {
    byteLength: inner.byteLength,
    load: (i) => (word(i), inner.load(i)),
    store: (i, v) => (word(i), inner.store(i, v)),
    compareExchange: (i, e, r) => (word(i), inner.compareExchange(i, e, r)),
    add: (i, d) => (word(i), inner.add(i, d)),
    notify: (i) => (word(i), inner.notify(i)),
    readBytes: (o, into) => (bytes(o, into.length), inner.readBytes(o, into)),
    writeBytes: (o, from) => (bytes(o, from.length), inner.writeBytes(o, from)),
  };
}
