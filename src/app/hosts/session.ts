/**
 * A backup session over the channels a handshake set up: control and error messages (JSON) and
 * a stream of data chunks, each on the descriptor the handshake gave it. When two channels share
 * one descriptor (the database flow puts everything on storage; the network fallback puts data
 * on the control connection) the frames carry what they are, so one descriptor serves several.
 *
 * Frame (`src/core/session/frame.ts`, the one codec of both framings): 1 tag byte (1 message,
 * 2 data chunk, 3 end of data, 4 keepalive), 4-byte big-endian payload length, 4-byte
 * big-endian CRC-32 of the payload, payload. The storage transport checks
 * every control word of the region but not the bytes in its rings (a stray write by another
 * process mapping the region reaches the receiver), so the receiver checks each payload's CRC-32
 * and fails the channel with EPROTO on a mismatch: a corrupted backup is never committed. Every wait on a socket is bounded by its I/O timeout, and a channel
 * may rightly stay quiet for longer (the client's data channel carries nothing back; the
 * client's control channel is quiet while the archive streams), so each side sends a keepalive
 * frame on every descriptor it has not written to for `keepaliveMs`. Messages are JSON `{ channel, body }` of at most 64 KiB; data chunks at most 8 MiB.
 * Sends on one descriptor are serialised; receive queues are bounded and apply back-pressure to
 * the sender through the socket (a full data queue stops reading).
 *
 * @module
 */

import { kindOfDescriptor } from "../../core/dispatch/descriptor.ts";
import { SocketError } from "../../core/dispatch/errors.ts";
import type { Sockets } from "../../core/dispatch/sockets.ts";
import { recvExactly } from "../../core/wire/frame.ts";
import {
  MESSAGE_BYTES_MAX as HANDSHAKE_MESSAGE_BYTES_MAX,
  MESSAGE_TAGS,
} from "../../core/wire/messages.ts";
import {
  CONTROL_FRAMING,
  DATA_CHUNK_BYTES_MAX,
  decodeHeader,
  encodeHeader,
  MESSAGE_BYTES_MAX,
  SESSION_FRAMING,
  sessionPayloadBytesMax,
  SessionTag,
} from "../../core/session/frame.ts";
import { crc32 } from "node:zlib";
import type { ZeroCopySockets } from "../../adapters/shm_zero_copy.ts";
import { Yielder } from "../_file_side.ts";

/** The named channels of a session and their descriptors (several may be the same). */
export interface SessionChannels {
  readonly control: number;
  readonly error: number;
  readonly data: number;
}

/** A message channel. */
export type MessageChannel = "control" | "error";

/** Sessions made by this process so far: the default label of the next one. */
let sessionsMade = 0;

/** Bytes of the previous frame's payload end kept per descriptor for a failure's message. */
const TAIL_BYTES_KEPT = 16;

/** What a descriptor received so far: where the next frame starts, and the last frame. */
interface ReceivedSoFar {
  /** Bytes received on the descriptor (headers included) before the frame being read. */
  bytes: number;
  /** Frames received on it. */
  frames: number;
  /** The last whole frame: its tag, payload length and the last bytes of its payload. */
  last: { readonly tag: number; readonly length: number; readonly tail: Uint8Array } | undefined;
}

const TAG_MESSAGE = SessionTag.message;
const TAG_DATA = SessionTag.data;
const TAG_END = SessionTag.end;
const TAG_KEEPALIVE = SessionTag.keepalive;
const HEADER_BYTES = SESSION_FRAMING.headerBytes;
export { DATA_CHUNK_BYTES_MAX, MESSAGE_BYTES_MAX };
const MESSAGES_QUEUED_MAX = 1024;
/** Data frames received ahead of the consumer (the ring behind them buffers more). */
const DATA_QUEUED_MAX = 2;
/** Receive buffers handed back by the consumer and kept for the next data frames. */
const SPARE_BUFFERS_MAX = 2;

/**
 * A data frame written in place in the send ring is at least this big (payload); a smaller
 * contiguous span at the ring's end sends that frame from a buffer instead (a copy).
 */
export const IN_PLACE_FRAME_MIN_BYTES = 512;

/**
 * A reserved data frame waits for this much contiguous ring space (payload) unless the span
 * reaches the ring's end: a consumer that freed only a frame header does not make the next
 * frame small or send it by copy (without it, about one frame in six went by copy).
 */
const IN_PLACE_FRAME_WANT_BYTES = 256 * 1024;

/** Data frames sent: written in place in the ring (`inPlace`) or copied from a buffer. */
export interface DataFrameCounts {
  inPlace: number;
  copied: number;
}

/** Data frames received: handed out as views of the ring (`lent`) or copied into a buffer. */
export interface ReceivedFrameCounts {
  lent: number;
  copied: number;
}

/** A data frame handed out by `nextData` as a view of the receive ring, until `releaseData`. */
interface LentFrame {
  readonly view: Uint8Array;
  readonly fd: number;
  readonly checksum: number;
  /** Lets the receive loop go on (or stop, with the failure). */
  readonly done: (failure?: Error) => void;
}

/** A data frame reserved by `reserveData` and not yet committed. */
interface OpenFrame {
  /** In place: header and payload space in the ring; else the payload buffer. */
  readonly view: Uint8Array;
  readonly inPlace: boolean;
  /** Lets the next send on the data descriptor go. */
  readonly done: () => void;
}

/** Bytes moved per channel kind (sent and received, frame headers included). */
export interface ChannelBytes {
  storage: number;
  network: number;
}

interface Waiter<T> {
  resolve(value: T): void;
  reject(error: Error): void;
}

/** A bounded queue with waiters; closed with an error once its source ends. */
class Inbox<T> {
  readonly #items: T[] = [];
  readonly #waiters: Waiter<T>[] = [];
  #failure: Error | undefined;
  #spaceWaiter: (() => void) | undefined;

  get length(): number {
    return this.#items.length;
  }

  push(item: T): void {
    const waiter = this.#waiters.shift();
    if (waiter !== undefined) waiter.resolve(item);
    else this.#items.push(item);
  }

  next(): Promise<T> {
    if (this.#items.length > 0) {
      const item = this.#items.shift()!;
      this.#spaceWaiter?.();
      return Promise.resolve(item);
    }
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  /** Resolves once the queue is below `max` items. */
  async space(max: number): Promise<void> {
    // Bounded: each wake-up follows one item taken out.
    for (
      let waits = 0;
      this.#items.length >= max && this.#failure === undefined && waits <= max;
      waits++
    ) {
      await new Promise<void>((resolve) => (this.#spaceWaiter = resolve));
    }
  }

  fail(error: Error): void {
    this.#failure ??= error;
    for (const waiter of this.#waiters.splice(0)) waiter.reject(this.#failure);
    this.#spaceWaiter?.();
  }
}

/** One session over a handshake's channels. */
export class Session {
  readonly #sockets: Sockets;
  readonly #channels: SessionChannels;
  readonly #sendLocks = new Map<number, Promise<void>>();
  readonly #messages: Record<MessageChannel, Inbox<unknown>> = {
    control: new Inbox(),
    error: new Inbox(),
  };
  readonly #data = new Inbox<Uint8Array | null>();
  readonly #spare: Uint8Array[] = [];
  readonly #bytes: ChannelBytes = { storage: 0, network: 0 };
  readonly #pumps: Promise<void>[];
  readonly #lastSentMs = new Map<number, number>();
  #keepalive: ReturnType<typeof setInterval> | undefined;
  readonly #keepaliveMs: number;
  #framesReceived = 0;
  #closed = false;
  readonly #zeroCopy: ZeroCopySockets | undefined;
  readonly #frames: DataFrameCounts = { inPlace: 0, copied: 0 };
  readonly #received: ReceivedFrameCounts = { lent: 0, copied: 0 };
  #open: OpenFrame | undefined;
  #lend = false;
  #lent: LentFrame | undefined;
  /** Views of the ring handed out: never kept as receive buffers. */
  readonly #lentViews = new WeakSet<Uint8Array>();
  #scratch = new Uint8Array(0);
  readonly #label: string;
  readonly #receivedSoFar = new Map<number, ReceivedSoFar>();

  /**
   * @param sockets the router the channels belong to
   * @param channels the descriptors of control, error and data
   * @param options `keepaliveMs`: send a keepalive on a descriptor quiet for this long; keep
   *   it well under the peer's I/O timeout (default 2 000; 0 sends none). `zeroCopy`: the
   *   storage sockets' reserve/commit calls; with them, {@link reserveData} on a storage data
   *   descriptor hands out ring space. `label`: names the session in receive errors (which job
   *   and side; default `session`), followed by N, counting this process's sessions
   */
  constructor(
    sockets: Sockets,
    channels: SessionChannels,
    options: { keepaliveMs?: number; zeroCopy?: ZeroCopySockets; label?: string } = {},
  ) {
    this.#sockets = sockets;
    this.#channels = channels;
    this.#zeroCopy = options.zeroCopy;
    this.#label = `${options.label ?? "session"} ${++sessionsMade}`;
    const distinct = [...new Set([channels.control, channels.error, channels.data])];
    this.#pumps = distinct.map((fd) => this.#pump(fd));
    const keepaliveMs = options.keepaliveMs ?? 2_000;
    this.#keepaliveMs = keepaliveMs;
    if (keepaliveMs > 0) {
      for (const fd of distinct) this.#lastSentMs.set(fd, performance.now());
      this.#startKeepalives();
      Promise.allSettled(this.#pumps).then(() => this.close());
    }
  }

  /** Stops the keepalives (the receive loops end when the descriptors close). */
  close(): void {
    this.#closed = true;
    clearInterval(this.#keepalive);
    this.#keepalive = undefined;
    const lent = this.#lent;
    this.#lent = undefined;
    lent?.done(
      new SocketError("ECONNRESET", `session closed with a data frame lent on ${lent.fd}`),
    );
  }

  /**
   * Fails every pending and later receive with `reason` (the job was cancelled) and stops the
   * keepalives. Sends still in flight end when the caller closes the descriptors.
   */
  abort(reason: Error): void {
    for (const inbox of [this.#messages.control, this.#messages.error, this.#data]) {
      (inbox as Inbox<unknown>).fail(reason);
    }
    this.close();
  }

  /**
   * Hands the keepalives to a pump whose session machine has keepalive rows (the backup
   * runners): the session's own interval stops, and the pump sends {@link sendKeepalives} when
   * its machine says so. The sockets' I/O timeout stays the bound on each descriptor's silence.
   *
   * @returns the keepalive period the session was given (0: none are to be sent)
   */
  ownKeepalives(): number {
    clearInterval(this.#keepalive);
    this.#keepalive = undefined;
    return this.#keepaliveMs;
  }

  /**
   * Hands the keepalives back once the pump ended: the session's own interval runs again (the
   * job channel of the network path carries the job's last messages after the backup), unless
   * the session was closed.
   */
  resumeKeepalives(): void {
    if (this.#closed || this.#keepaliveMs <= 0 || this.#keepalive !== undefined) return;
    this.#startKeepalives();
  }

  /** The session's own keepalives: each descriptor idle for the period gets one. */
  #startKeepalives(): void {
    const keepaliveMs = this.#keepaliveMs;
    this.#keepalive = setInterval(() => this.#sendKeepalives(keepaliveMs), keepaliveMs / 2);
  }

  /**
   * Sends one keepalive frame on every descriptor of the session (for a pump that owns the
   * keepalives, see {@link ownKeepalives}). A failed send is dropped: the broken descriptor's
   * receive reports it.
   */
  sendKeepalives(): void {
    const nowMs = performance.now();
    for (const fd of new Set(Object.values(this.#channels))) {
      this.#lastSentMs.set(fd, nowMs);
      this.#send(fd, TAG_KEEPALIVE, new Uint8Array(0)).catch(() => {});
    }
  }

  /** Frames received so far on every descriptor (keepalives included): the peer is alive. */
  get framesReceived(): number {
    return this.#framesReceived;
  }

  #sendKeepalives(keepaliveMs: number): void {
    const nowMs = performance.now();
    for (const [fd, lastMs] of this.#lastSentMs) {
      if (nowMs - lastMs >= keepaliveMs) {
        this.#lastSentMs.set(fd, nowMs);
        this.#send(fd, TAG_KEEPALIVE, new Uint8Array(0)).catch(() => {});
      }
    }
  }

  /** Bytes moved so far, per channel kind. */
  get bytes(): Readonly<ChannelBytes> {
    return this.#bytes;
  }

  /** Sends a JSON message on a channel. */
  async sendMessage(channel: MessageChannel, body: unknown): Promise<void> {
    const payload = new TextEncoder().encode(JSON.stringify({ channel, body }));
    if (payload.length > MESSAGE_BYTES_MAX) {
      throw new SocketError(
        "EMSGSIZE",
        `${channel} message of ${payload.length} bytes exceeds ${MESSAGE_BYTES_MAX}`,
      );
    }
    await this.#send(this.#channels[channel], TAG_MESSAGE, payload);
  }

  /** Sends one data chunk (at most {@link DATA_CHUNK_BYTES_MAX} bytes; EMSGSIZE over it). */
  async sendData(chunk: Uint8Array): Promise<void> {
    if (chunk.length > DATA_CHUNK_BYTES_MAX) {
      throw new SocketError(
        "EMSGSIZE",
        `data chunk of ${chunk.length} bytes exceeds ${DATA_CHUNK_BYTES_MAX}`,
      );
    }
    await this.sendDataParts([chunk]);
  }

  /**
   * Sends one data frame made of several parts (a record's prefix and its bytes, say) without
   * joining them: the receiver gets them as one chunk. When {@link dataInPlace}, the parts are
   * copied into one ring reservation and committed with their header at once (the copy `send`
   * would make), so a receiver that lends frames gets this one whole in the ring; where the
   * ring's contiguous span is too short, the frame goes by `send`.
   */
  async sendDataParts(parts: readonly Uint8Array[]): Promise<void> {
    const length = parts.reduce((sum, part) => sum + part.length, 0);
    if (length > DATA_CHUNK_BYTES_MAX) {
      throw new RangeError(`data frame of ${length} bytes exceeds ${DATA_CHUNK_BYTES_MAX}`);
    }
    if (length === 0) return;
    if (this.dataInPlace) {
      const room = await this.reserveData(length);
      if (room.length >= length) {
        let at = 0;
        for (const part of parts) at += (room.set(part, at), part.length);
        return await this.commitData(length);
      }
      await this.commitData(0);
      await this.#send(this.#channels.data, TAG_DATA, ...parts);
      this.#frames.copied++;
      return;
    }
    await this.#send(this.#channels.data, TAG_DATA, ...parts);
  }

  /**
   * True when {@link reserveData} writes data frames in place in the ring: the data channel is
   * a storage descriptor and the session has the zero-copy calls.
   */
  get dataInPlace(): boolean {
    return this.#zeroCopy !== undefined && kindOfDescriptor(this.#channels.data) === "storage";
  }

  /** Data frames sent through {@link reserveData}, in place and copied (a test hook too). */
  get dataFrames(): Readonly<DataFrameCounts> {
    return this.#frames;
  }

  /**
   * Reserves the payload space of one data frame: in place in the send ring when
   * {@link dataInPlace} and the ring's contiguous free span holds at least
   * {@link IN_PLACE_FRAME_MIN_BYTES}; else a buffer of this session's (sent with a copy). Fill
   * it, then {@link commitData}; other sends on the data descriptor wait until then.
   *
   * @param maxBytes the most payload wanted (1 to {@link DATA_CHUNK_BYTES_MAX})
   * @returns the writable payload space, 1 to `maxBytes` bytes
   */
  async reserveData(maxBytes: number): Promise<Uint8Array> {
    if (!(maxBytes >= 1 && maxBytes <= DATA_CHUNK_BYTES_MAX)) {
      throw new RangeError(`data frame of ${maxBytes} bytes: 1 to ${DATA_CHUNK_BYTES_MAX}`);
    }
    if (this.#open !== undefined) throw new SocketError("EALREADY", "a data frame is reserved");
    const fd = this.#channels.data;
    const previous = this.#sendLocks.get(fd) ?? Promise.resolve();
    let done = () => {};
    this.#sendLocks.set(fd, new Promise<void>((resolve) => (done = resolve)));
    this.#lastSentMs.set(fd, performance.now());
    try {
      await previous;
      // A span shorter than IN_PLACE_FRAME_WANT_BYTES waits for the consumer to free more,
      // unless it reaches the ring's end: only a frame at the end goes by copy.
      const want = HEADER_BYTES + Math.min(maxBytes, IN_PLACE_FRAME_WANT_BYTES);
      const span = this.dataInPlace
        ? await this.#zeroCopy!.reserve(fd, HEADER_BYTES + maxBytes, want)
        : undefined;
      if (span !== undefined && span.length >= HEADER_BYTES + IN_PLACE_FRAME_MIN_BYTES) {
        this.#open = { view: span, inPlace: true, done };
        return span.subarray(HEADER_BYTES);
      }
      if (span !== undefined) this.#zeroCopy!.commit(fd, 0);
      if (this.#scratch.length < maxBytes) this.#scratch = new Uint8Array(maxBytes);
      this.#open = { view: this.#scratch.subarray(0, maxBytes), inPlace: false, done };
      return this.#open.view;
    } catch (error) {
      done();
      throw error;
    }
  }

  /**
   * Sends the first `bytes` of the payload space {@link reserveData} gave as one data frame
   * (0 sends nothing): in place, the frame header with the payload's CRC-32 goes in front of it
   * and the ring commits both.
   *
   * @param bytes payload bytes written, at most the reserved length
   */
  async commitData(bytes: number): Promise<void> {
    const open = this.#open;
    if (open === undefined) throw new SocketError("EINVAL", "commitData without reserveData");
    this.#open = undefined;
    const fd = this.#channels.data;
    try {
      const room = open.inPlace ? open.view.length - HEADER_BYTES : open.view.length;
      if (!Number.isInteger(bytes) || bytes < 0 || bytes > room) {
        if (open.inPlace) this.#zeroCopy!.commit(fd, 0); // gives the ring space up
        throw new RangeError(`commitData of ${bytes} bytes, but ${room} are reserved`);
      }
      if (!open.inPlace) {
        if (bytes === 0) return;
        await this.#sendFrame(fd, TAG_DATA, [open.view.subarray(0, bytes)]);
        this.#frames.copied++;
        return;
      }
      if (bytes === 0) {
        this.#zeroCopy!.commit(fd, 0);
        return;
      }
      const payload = open.view.subarray(HEADER_BYTES, HEADER_BYTES + bytes);
      open.view.set(this.#header(fd, TAG_DATA, bytes, crc32(payload)));
      this.#zeroCopy!.commit(fd, HEADER_BYTES + bytes);
      this.#count(fd, HEADER_BYTES + bytes);
      this.#frames.inPlace++;
    } finally {
      open.done();
    }
  }

  /** Marks the end of the data stream. */
  async endData(): Promise<void> {
    await this.#send(this.#channels.data, TAG_END, new Uint8Array(0));
  }

  /** The next message on a channel; rejects once the channel's connection has ended. */
  nextMessage(channel: MessageChannel): Promise<unknown> {
    return this.#messages[channel].next();
  }

  /** The next data chunk, or `null` at the end of the data stream. */
  nextData(): Promise<Uint8Array | null> {
    return this.#data.next();
  }

  /**
   * From now on, {@link nextData} hands out each data frame that lies whole in the receive ring
   * as a view of the ring itself (lent, no copy) when {@link dataInPlace}; other frames still
   * arrive copied. The caller must {@link releaseData} every chunk before it asks for the next:
   * the receive loop reads nothing more on the data descriptor until then.
   */
  lendData(): void {
    this.#lend = true;
  }

  /** Data frames received, lent from the ring and copied (a test hook too). */
  get receivedFrames(): Readonly<ReceivedFrameCounts> {
    return this.#received;
  }

  /**
   * Hands a chunk from {@link nextData} back once it is no longer needed. A copied chunk's
   * memory receives a later frame instead of a fresh allocation; a lent chunk's payload is
   * checked against its frame's CRC-32 now, after the caller used it and before the ring may
   * reuse the space, then given back to the sender's ring. The chunk must not be used after.
   *
   * @throws {SocketError} EPROTO when a lent chunk fails its CRC-32 check (the data channel
   *   fails with the same error)
   */
  releaseData(chunk: Uint8Array): void {
    const lent = this.#lent;
    if (lent !== undefined && chunk === lent.view) {
      this.#lent = undefined;
      const sum = crc32(lent.view);
      const failure = sum === lent.checksum
        ? undefined
        : this.#crcFailure(lent.fd, TAG_DATA, lent.view.length, sum, lent.checksum);
      try {
        if (failure === undefined) this.#zeroCopy!.release(lent.fd, lent.view.length);
      } finally {
        lent.done(failure);
      }
      if (failure !== undefined) throw failure;
      return;
    }
    if (this.#lentViews.has(chunk)) return; // the session closed while it was lent
    if (this.#spare.length >= SPARE_BUFFERS_MAX || !(chunk.buffer instanceof ArrayBuffer)) return;
    this.#spare.push(new Uint8Array(chunk.buffer));
  }

  /** Waits until every receive loop has stopped (after the peer closed or `close`). */
  async settled(): Promise<void> {
    await Promise.allSettled(this.#pumps);
  }

  async #send(fd: number, tag: number, ...payload: Uint8Array[]): Promise<void> {
    const previous = this.#sendLocks.get(fd) ?? Promise.resolve();
    this.#lastSentMs.set(fd, performance.now());
    const length = payload.reduce((sum, part) => sum + part.length, 0);
    const sending = previous.then(() => this.#sendFrame(fd, tag, payload, length));
    this.#sendLocks.set(fd, sending.catch(() => {}));
    await sending;
  }

  /** Sends one frame by copy (the caller holds the descriptor's send lock). */
  async #sendFrame(
    fd: number,
    tag: number,
    payload: readonly Uint8Array[],
    length = payload.reduce((sum, part) => sum + part.length, 0),
  ): Promise<void> {
    let sum = 0;
    for (const part of payload) if (part.length > 0) sum = crc32(part, sum);
    await this.#sockets.send(fd, this.#header(fd, tag, length, sum));
    for (const part of payload) if (part.length > 0) await this.#sockets.send(fd, part);
    this.#count(fd, HEADER_BYTES + length);
  }

  /** A frame header; EMSGSIZE (say) when the payload does not fit the tag. */
  #header(fd: number, tag: number, length: number, checksum: number): Uint8Array {
    const header = encodeHeader(
      SESSION_FRAMING,
      { tag, length, checksum },
      sessionPayloadBytesMax(tag) ?? 0,
    );
    if (!header.ok) throw new SocketError(header.code, header.message, { call: "send", fd });
    return header.value;
  }

  #count(fd: number, bytes: number): void {
    this.#bytes[kindOfDescriptor(fd) === "storage" ? "storage" : "network"] += bytes;
  }

  async #pump(fd: number): Promise<void> {
    const header = new Uint8Array(HEADER_BYTES);
    const yielder = new Yielder();
    const so = { bytes: 0, frames: 0, last: undefined } as ReceivedSoFar;
    this.#receivedSoFar.set(fd, so);
    try {
      // Bounded by the peer: each turn consumes one frame or ends the loop.
      for (;;) {
        if (fd === this.#channels.data) await this.#data.space(DATA_QUEUED_MAX);
        const got = await recvExactly(this.#sockets, fd, header);
        if (got === 0) throw new SocketError("ECONNRESET", `peer closed descriptor ${fd}`);
        if (got < HEADER_BYTES) {
          throw this.#receiveFailure(
            fd,
            "EPROTO",
            "the stream ended inside a frame header",
            header.subarray(0, got),
          );
        }
        const decoded = decodeHeader(SESSION_FRAMING, header, DATA_CHUNK_BYTES_MAX);
        if (!decoded.ok) throw this.#receiveFailure(fd, decoded.code, decoded.message, header);
        const { tag, length, checksum } = decoded.value;
        if (tag === TAG_DATA && length > 0 && (await this.#lendPayload(fd, length, checksum))) {
          continue; // handed out in place and given back
        }
        const payload = length === 0 ? new Uint8Array(0) : await this.#payload(fd, tag, length);
        const sum = length === 0 ? 0 : crc32(payload);
        if (sum !== checksum) throw this.#crcFailure(fd, tag, length, sum, checksum);
        if (tag === TAG_DATA) this.#received.copied++;
        this.#dispatch(fd, tag, payload);
        await yielder.maybe();
      }
    } catch (error) {
      const failure = error instanceof Error ? error : new Error(String(error));
      for (const inbox of this.#inboxesOf(fd)) inbox.fail(failure);
    }
  }

  /**
   * A receive failure that says where it happened: the session, the descriptor's kind and the
   * channels it carries, the byte offset of the frame on it, the header's bytes, and the frame
   * before (its tag, length and last payload bytes), so a next occurrence is diagnosable from
   * the message alone.
   */
  #receiveFailure(
    fd: number,
    code: SocketError["code"],
    what: string,
    headerBytes: Uint8Array,
  ): SocketError {
    const so = this.#receivedSoFar.get(fd);
    const last = so?.last === undefined
      ? "none"
      : `tag ${so.last.tag}, ${so.last.length} bytes, ending ${hex(so.last.tail)}`;
    const start = so === undefined || so.bytes === 0 ? handshakeFrameHint(headerBytes) : "";
    return new SocketError(
      code,
      `${this.#label}: ${this.#describe(fd)}: ${what} at byte ${so?.bytes ?? 0} ` +
        `(after ${so?.frames ?? 0} frames); header bytes ${hex(headerBytes)}${start}; ` +
        `the frame before: ${last}`,
      { call: "recv", fd },
    );
  }

  /** The failure of a frame whose payload does not hash to the CRC-32 its sender wrote. */
  #crcFailure(fd: number, tag: number, length: number, sum: number, checksum: number) {
    const at = this.#receivedSoFar.get(fd)?.bytes ?? 0;
    return new SocketError(
      "EPROTO",
      `${this.#label}: a ${length}-byte frame (tag ${tag}) at byte ${at} of ` +
        `${this.#describe(fd)} failed its CRC-32 check: the received bytes hash to ` +
        `${sum.toString(16)}, the sender's to ${checksum.toString(16)} (corrupted in transit)`,
      { call: "recv", fd },
    );
  }

  /** A descriptor as an error names it: its kind, value and the channels it carries. */
  #describe(fd: number): string {
    const carried = (["control", "error", "data"] as const).filter((c) => this.#channels[c] === fd);
    return `${kindOfDescriptor(fd) ?? "unknown"} descriptor ${fd} (${carried.join(", ")})`;
  }

  /**
   * Hands a data frame's payload out as a view of the receive ring and waits until the
   * consumer gives it back (its CRC-32 is checked then, see {@link releaseData}). False when
   * the frame is not lent: lending is off, or the payload is not whole and contiguous in the
   * ring (it wraps, or the sender has not written all of it yet); it is read by copy then.
   */
  async #lendPayload(fd: number, length: number, checksum: number): Promise<boolean> {
    if (!this.#lend || !this.dataInPlace || fd !== this.#channels.data) return false;
    const view = await this.#zeroCopy!.peek(fd, length);
    if (view === null) {
      throw new SocketError("EPROTO", `stream ended inside a ${length}-byte frame on ${fd}`);
    }
    if (view.length < length) {
      this.#zeroCopy!.release(fd, 0);
      return false;
    }
    let done: (failure?: Error) => void = () => {};
    const released = new Promise<Error | undefined>((resolve) => (done = resolve));
    this.#lent = { view, fd, checksum, done };
    this.#lentViews.add(view);
    this.#received.lent++;
    this.#dispatch(fd, TAG_DATA, view);
    const failure = await released;
    if (failure !== undefined) throw failure;
    return true;
  }

  /** Reads a payload whose length the header's decoding already checked. */
  async #payload(fd: number, tag: number, length: number): Promise<Uint8Array> {
    const payload = tag === TAG_DATA ? this.#receiveBuffer(length) : new Uint8Array(length);
    if (await recvExactly(this.#sockets, fd, payload) < length) {
      throw new SocketError("EPROTO", `stream ended inside a ${length}-byte frame on ${fd}`);
    }
    return payload;
  }

  /** A buffer of `length` bytes for a data frame: a spare one if big enough, else a new one. */
  #receiveBuffer(length: number): Uint8Array {
    const index = this.#spare.findIndex((buffer) => buffer.length >= length);
    if (index < 0) return new Uint8Array(length);
    return this.#spare.splice(index, 1)[0]!.subarray(0, length);
  }

  #dispatch(fd: number, tag: number, payload: Uint8Array): void {
    this.#count(fd, HEADER_BYTES + payload.length);
    this.#framesReceived++;
    const so = this.#receivedSoFar.get(fd);
    if (so !== undefined) {
      so.bytes += HEADER_BYTES + payload.length;
      so.frames++;
      so.last = { tag, length: payload.length, tail: payload.slice(-TAIL_BYTES_KEPT) };
    }
    if (tag === TAG_KEEPALIVE) return;
    if (tag === TAG_DATA || tag === TAG_END) {
      if (fd !== this.#channels.data) {
        throw new SocketError("EPROTO", `data frame on non-data descriptor ${fd}`);
      }
      this.#data.push(tag === TAG_DATA ? payload : null);
      return;
    }
    if (tag !== TAG_MESSAGE) throw new SocketError("EPROTO", `unknown frame tag ${tag} on ${fd}`);
    let parsed: { channel?: unknown; body?: unknown };
    try {
      parsed = JSON.parse(new TextDecoder().decode(payload));
    } catch {
      throw new SocketError("EPROTO", `message on ${fd} is not JSON`);
    }
    const channel = parsed.channel;
    if ((channel !== "control" && channel !== "error") || this.#channels[channel] !== fd) {
      throw new SocketError("EPROTO", `message for channel ${String(channel)} arrived on ${fd}`);
    }
    if (this.#messages[channel].length >= MESSAGES_QUEUED_MAX) {
      throw new SocketError(
        "ENOBUFS",
        `more than ${MESSAGES_QUEUED_MAX} unread ${channel} messages`,
      );
    }
    this.#messages[channel].push(parsed.body);
  }

  #inboxesOf(fd: number): Inbox<unknown>[] {
    const inboxes: Inbox<unknown>[] = [];
    if (this.#channels.control === fd) inboxes.push(this.#messages.control);
    if (this.#channels.error === fd) inboxes.push(this.#messages.error);
    if (this.#channels.data === fd) inboxes.push(this.#data as Inbox<unknown>);
    return inboxes;
  }
}

/**
 * What the first bytes of a stream say when they are a handshake's control frame (a 4-byte
 * length, then a message tag) rather than a session frame: the peer's handshake did not end as
 * this side's did (it failed after this side's last step and sent its error message).
 */
function handshakeFrameHint(bytes: Uint8Array): string {
  if (bytes.length < CONTROL_FRAMING.headerBytes + 1) return "";
  const length = new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0, false);
  const tag = bytes[CONTROL_FRAMING.headerBytes]!;
  const type = Object.entries(MESSAGE_TAGS).find(([, value]) => value === tag)?.[0];
  if (type === undefined || length < 1 || length > HANDSHAKE_MESSAGE_BYTES_MAX) return "";
  return ` (they read as a handshake frame: a ${length}-byte ${type} message; the peer's ` +
    "handshake did not end as this side's did)";
}

/** Bytes as hex pairs, for an error message. */
function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join(" ") || "(none)";
}
