/**
 * A Worker that computes SHA-256 for the packer off its thread: it hashes file pieces that sit
 * in the packer's shared staging buffers and answers each request in order, so the packer knows
 * when a piece's memory may be reused. Requests come on the Worker itself or, after
 * `{ port }`, on that MessagePort (a backup host gets a port to a hash worker its job started,
 * since a Worker started inside a Worker takes about a second to come up on Deno 2.9).
 *
 * In: `{ seq, file, buffer, offset, length }` (hash a piece) or `{ seq, file, end: true }`
 * (finish a file). Out: `{ seq }`, or `{ seq, sha256 }` for an end.
 *
 * @module
 */

import { createHash, type Hash } from "node:crypto";

/** A request to the hash worker. */
export type HashRequest =
  | {
    readonly seq: number;
    readonly file: number;
    readonly buffer: SharedArrayBuffer;
    readonly offset: number;
    readonly length: number;
  }
  | { readonly seq: number; readonly file: number; readonly end: true };

/** The worker's answer to one request. */
export interface HashReply {
  readonly seq: number;
  readonly sha256?: string;
}

interface Endpoint {
  postMessage(message: HashReply): void;
  onmessage: ((event: MessageEvent<HashRequest | { port: MessagePort }>) => void) | null;
}

const scope = self as unknown as Endpoint;
const hashes = new Map<number, Hash>();

function answer(endpoint: Endpoint, request: HashRequest): void {
  let hash = hashes.get(request.file);
  if (hash === undefined) {
    hash = createHash("sha256");
    hashes.set(request.file, hash);
  }
  if ("end" in request) {
    hashes.delete(request.file);
    endpoint.postMessage({ seq: request.seq, sha256: hash.digest("hex") });
    return;
  }
  hash.update(new Uint8Array(request.buffer, request.offset, request.length));
  endpoint.postMessage({ seq: request.seq });
}

scope.onmessage = (event) => {
  const message = event.data;
  if ("port" in message) {
    const port = message.port as unknown as Endpoint;
    port.onmessage = (e) => answer(port, e.data as HashRequest);
    return;
  }
  answer(scope, message);
};
