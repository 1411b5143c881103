/**
 * Where the packer writes archive bytes: a stage hands out writable room, file bytes are read
 * straight into it and hashed there, and `commit` marks them as archive bytes. Two stages:
 * the staging buffers of `tar_pack.ts` (a `ChunkSink` then copies each buffer on), and
 * {@link FrameStage}, whose room is space a {@link FrameSink} reserved (a data frame's payload in
 * the storage ring), so the bytes read from a file are the bytes the peer reads.
 *
 * @module
 */

import type { Hasher } from "./_pack_hash.ts";

/**
 * Archive bytes written in place: `reserve` gives writable space (a data frame's payload in
 * the send ring, say), `commit` sends its first bytes on. One reservation at a time.
 */
export interface FrameSink {
  /** Writable space for 1 to `maxBytes` archive bytes. */
  reserve(maxBytes: number): Promise<Uint8Array>;
  /** Sends the first `bytes` of the reserved space on (0 gives the reservation up). */
  commit(bytes: number): Promise<void>;
}

/** The packer's output: room to fill, commit, flush; `append` and `zeros` on top of them. */
export abstract class PackStage {
  /** Archive bytes handed on so far. */
  archiveBytes = 0;

  constructor(readonly hasher: Hasher) {}

  /** Free room to write into (never empty); hands full room on first. */
  abstract room(): Promise<Uint8Array>;
  /**
   * The free room at hand without waiting (nothing handed on, nothing reserved): possibly
   * empty, or undefined when there is none until {@link room} gets it.
   */
  abstract roomNow(): Uint8Array | undefined;
  /** Marks `n` bytes of {@link room} as archive bytes, hashed as file `file`'s if given. */
  abstract commit(n: number, file?: number): void;
  /** Archive offset of the next byte appended. */
  abstract position(): number;
  /** Hands what was written on. */
  abstract flush(): Promise<void>;
  /** Ends what is in flight, whatever its outcome (after a failure too). */
  abstract settle(): Promise<void>;

  /** Appends bytes (hashed as file `file`'s if given). */
  async append(bytes: Uint8Array, file?: number): Promise<void> {
    // Bounded: each turn copies at least one byte (room() is never empty).
    for (let offset = 0; offset < bytes.length;) {
      const room = await this.room();
      const n = Math.min(room.length, bytes.length - offset);
      room.set(bytes.subarray(offset, offset + n));
      this.commit(n, file);
      offset += n;
    }
  }

  /** Appends zeros (hashed as file `file`'s if given). */
  async zeros(count: number, file?: number): Promise<void> {
    // Bounded: each turn zeroes at least one byte.
    for (let left = count; left > 0;) {
      const room = await this.room();
      const n = Math.min(room.length, left);
      room.fill(0, 0, n);
      this.commit(n, file);
      left -= n;
    }
  }
}

/**
 * The archive written straight into reserved frames: each room is one reservation of at most
 * `frameBytes`, committed when full or flushed. The hasher must hash at `update` (the bytes
 * are gone once committed): an `InlineHasher`.
 */
export class FrameStage extends PackStage {
  #view: Uint8Array | undefined;
  #used = 0;

  constructor(readonly frames: FrameSink, hasher: Hasher, readonly frameBytes: number) {
    super(hasher);
  }

  async room(): Promise<Uint8Array> {
    if (this.#view !== undefined && this.#used === this.#view.length) await this.flush();
    this.#view ??= await this.frames.reserve(this.frameBytes);
    return this.#view.subarray(this.#used);
  }

  roomNow(): Uint8Array | undefined {
    return this.#view?.subarray(this.#used);
  }

  commit(n: number, file?: number): void {
    const view = this.#view;
    if (view === undefined || n < 0 || this.#used + n > view.length) {
      throw new RangeError(`commit of ${n} bytes beyond the reserved room`);
    }
    if (file !== undefined && n > 0) {
      this.hasher.update(file, view.subarray(this.#used, this.#used + n));
    }
    this.#used += n;
  }

  position(): number {
    return this.archiveBytes + this.#used;
  }

  async flush(): Promise<void> {
    if (this.#view === undefined) return;
    const used = this.#used;
    this.#view = undefined;
    this.#used = 0;
    await this.frames.commit(used);
    this.archiveBytes += used;
  }

  async settle(): Promise<void> {
    if (this.#view === undefined) return;
    this.#view = undefined;
    this.#used = 0;
    await this.frames.commit(0).catch(() => {});
  }
}
