/**
 * SHA-256 of the files being packed, whose pieces sit in the packer's two staging buffers:
 * inline on the packing thread (small archives), or batched to a hash worker (one message per
 * staging buffer, see `_hash_worker.ts`), so reading, hashing and sending overlap.
 *
 * @module
 */

import { createHash, type Hash } from "node:crypto";
import type { HashBatch, HashReply } from "./_hash_worker.ts";

/**
 * Hashes file pieces of the staging buffers. `update` and `end` concern the buffer being
 * filled; `seal` is called when that buffer goes to the sink and returns a ticket; the buffer
 * is refilled only once `released(ticket)` resolves.
 */
export interface Hasher {
  /** Adds a piece of file `file` (a view of the buffer being filled). */
  update(file: number, piece: Uint8Array): void;
  /** Ends file `file`; its digest (lowercase hex) once its pieces are hashed. */
  end(file: number): Promise<string>;
  /**
   * Ends file `file` and gives its digest at once: only a hasher that hashes at `update` has it
   * (the packer's per-file path without promises for files that fit the room at hand).
   */
  endNow?(file: number): string;
  /** The buffer being filled goes to the sink: hash what it holds. */
  seal(buffer: SharedArrayBuffer): number;
  /** Resolves once the pieces of the sealed buffer with `ticket` are hashed. */
  released(ticket: number): Promise<void>;
  close(): void;
}

/** Hashes on this thread, at once. */
export class InlineHasher implements Hasher {
  readonly #hashes = new Map<number, Hash>();

  update(file: number, piece: Uint8Array): void {
    let hash = this.#hashes.get(file);
    if (hash === undefined) this.#hashes.set(file, hash = createHash("sha256"));
    hash.update(piece);
  }

  end(file: number): Promise<string> {
    return Promise.resolve(this.endNow(file));
  }

  endNow(file: number): string {
    const hash = this.#hashes.get(file) ?? createHash("sha256");
    this.#hashes.delete(file);
    return hash.digest("hex");
  }

  seal(): number {
    return 0;
  }

  released(): Promise<void> {
    return Promise.resolve();
  }

  close(): void {}
}

/** What a hash worker is reached through: the Worker itself or a port to it. */
interface HashEndpoint {
  postMessage(message: HashBatch): void;
  onmessage: ((event: MessageEvent<HashReply>) => void) | null;
}

/** Starts a hash worker (`_hash_worker.ts`). */
export function startHashWorker(): Worker {
  return new Worker(new URL("./_hash_worker.ts", import.meta.url), { type: "module" });
}

interface Waiter<T> {
  resolve(value: T): void;
  reject(error: Error): void;
}

/** Hashes in a hash worker, one batch per sealed buffer, answered in order. */
export class WorkerHasher implements Hasher {
  #posted = 0;
  #answered = 0;
  #failure: Error | undefined;
  #pieces: number[] = [];
  #ends: number[] = [];
  /** Waiters by ticket, in ticket order (answers arrive in order). */
  readonly #waiters: Array<{ ticket: number } & Waiter<void>> = [];
  readonly #digests = new Map<number, Waiter<string>>();

  constructor(readonly endpoint: HashEndpoint, readonly onClose: () => void) {
    endpoint.onmessage = (event: MessageEvent<HashReply>) => {
      const reply = event.data;
      this.#answered = reply.seq;
      for (const [file, sha256] of reply.digests) {
        this.#digests.get(file)?.resolve(sha256);
        this.#digests.delete(file);
      }
      // Bounded by the waiters present.
      while (this.#waiters.length > 0 && this.#waiters[0]!.ticket <= this.#answered) {
        this.#waiters.shift()!.resolve();
      }
    };
  }

  /** A hasher on a port from `source`, or on a Worker of its own. */
  static async open(source: (() => Promise<MessagePort>) | undefined): Promise<WorkerHasher> {
    if (source !== undefined) {
      const port = await source();
      return new WorkerHasher(port as unknown as HashEndpoint, () => port.close());
    }
    const worker = startHashWorker();
    const hasher: WorkerHasher = new WorkerHasher(
      worker as unknown as HashEndpoint,
      () => worker.terminate(),
    );
    worker.onerror = (event) => {
      event.preventDefault();
      hasher.#fail(new Error(`hash worker failed: ${event.message}`));
    };
    return hasher;
  }

  #fail(error: Error): void {
    this.#failure ??= error;
    for (const waiter of this.#waiters.splice(0)) waiter.reject(this.#failure);
    for (const digest of this.#digests.values()) digest.reject(this.#failure);
    this.#digests.clear();
  }

  update(file: number, piece: Uint8Array): void {
    this.#pieces.push(file, piece.byteOffset, piece.length);
  }

  end(file: number): Promise<string> {
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    const result = new Promise<string>((resolve, reject) => {
      this.#digests.set(file, { resolve, reject });
    });
    result.catch(() => {}); // awaited by whoever records the file
    this.#ends.push(file);
    return result;
  }

  seal(buffer: SharedArrayBuffer): number {
    if (this.#failure !== undefined) throw this.#failure;
    const seq = ++this.#posted;
    const pieces = this.#pieces;
    this.endpoint.postMessage({
      seq,
      buffer: pieces.length > 0 ? buffer : null,
      pieces,
      ends: this.#ends,
    });
    this.#pieces = [];
    this.#ends = [];
    return seq;
  }

  released(ticket: number): Promise<void> {
    if (ticket <= this.#answered) return Promise.resolve();
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    return new Promise((resolve, reject) => this.#waiters.push({ ticket, resolve, reject }));
  }

  close(): void {
    this.onClose();
    this.#fail(new Error("hash worker closed"));
  }
}
