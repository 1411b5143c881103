/**
 * Test data for transfers: a fixed pseudo-random chunk (xorshift32), the same in every process,
 * so a sender and a receiver started apart agree on the bytes and their hash.
 *
 * @module
 */

/**
 * A chunk of the test pattern.
 *
 * @param chunkBytes its length
 * @returns the bytes (callers stamp the chunk number into the first 8 bytes)
 */
export function patternChunk(chunkBytes: number): Uint8Array {
  const chunk = new Uint8Array(chunkBytes);
  let x = 0x9e3779b9;
  for (let i = 0; i < chunk.length; i++) {
    x = (x ^ (x << 13)) >>> 0;
    x = (x ^ (x >>> 17)) >>> 0;
    x = (x ^ (x << 5)) >>> 0;
    chunk[i] = x & 0xff;
  }
  return chunk;
}
