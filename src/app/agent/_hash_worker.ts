/**
 * A Worker that computes SHA-256 for the packer off its thread. The packer's staging buffers
 * are shared memory; for each buffer it hands to its sink it posts one batch: the pieces of
 * files that buffer holds, in order, and the files that end with it. The worker hashes the
 * pieces where they are and answers each batch, in order, with the digests of the files that
 * ended: two messages per buffer, not per file (small files were a message each way, about a
 * third of a backup's time on a tree of small files). Requests come on the Worker itself or,
 * after `{ port }`, on that MessagePort (a backup host gets a port to a hash worker its job
 * started, since a Worker started inside a Worker takes about a second to come up on Deno 2.9).
 *
 * In: {@link HashBatch}. Out: {@link HashReply}.
 *
 * @module
 */

import { createHash, type Hash } from "node:crypto";

/**
 * One batch: `pieces` holds triples (file id, offset, length) into `buffer`, hashed in order;
 * after them, every file of `ends` is finished.
 */
export interface HashBatch {
  readonly seq: number;
  readonly buffer: SharedArrayBuffer | null;
  readonly pieces: readonly number[];
  readonly ends: readonly number[];
}

/** The worker's answer to one batch: each ended file with its digest (lowercase hex). */
export interface HashReply {
  readonly seq: number;
  readonly digests: ReadonlyArray<readonly [number, string]>;
}

interface Endpoint {
  postMessage(message: HashReply): void;
  onmessage: ((event: MessageEvent<HashBatch | { port: MessagePort }>) => void) | null;
}

const scope = self as unknown as Endpoint;
const hashes = new Map<number, Hash>();

function hashOf(file: number): Hash {
  let hash = hashes.get(file);
  if (hash === undefined) hashes.set(file, hash = createHash("sha256"));
  return hash;
}

function answer(endpoint: Endpoint, batch: HashBatch): void {
  if (batch.buffer !== null) {
    for (let i = 0; i < batch.pieces.length; i += 3) {
      const [file, offset, length] = [batch.pieces[i]!, batch.pieces[i + 1]!, batch.pieces[i + 2]!];
      hashOf(file).update(new Uint8Array(batch.buffer, offset, length));
    }
  }
  const digests = batch.ends.map((file) => {
    const digest = hashOf(file).digest("hex");
    hashes.delete(file);
    return [file, digest] as const;
  });
  endpoint.postMessage({ seq: batch.seq, digests });
}

scope.onmessage = (event) => {
  const message = event.data;
  if ("port" in message) {
    const port = message.port as unknown as Endpoint;
    port.onmessage = (e) => answer(port, e.data as HashBatch);
    return;
  }
  answer(scope, message);
};
