/**
 * Conformance suite of a framing: length-prefixed frames on a byte stream, with a largest
 * payload. At the boundary: a payload of exactly the maximum is written and read whole, one byte
 * more is refused with EMSGSIZE by the writer (sending nothing) and, announced by a forged
 * header, by the reader before it reads a byte of that payload. The stream is an in-memory pipe
 * whose reads are cut anywhere, so a framing is also held to short reads. Runtime-agnostic.
 *
 * @module
 */

import fc from "fast-check";
import { SocketError } from "../src/core/dispatch/errors.ts";
import type { Sockets } from "../src/core/dispatch/sockets.ts";
import { defineProperty, type Suite } from "./_suite.ts";

/** One framing under test, as the suite drives it. */
export interface FrameCodec {
  /** Names the framing (`"wire/frame"`, `"session messages"`). */
  readonly name: string;
  /** The smallest payload this framing carries as a frame of its own. */
  readonly payloadBytesMin: number;
  /** The largest payload: accepted; one byte more is EMSGSIZE. */
  readonly payloadBytesMax: number;
  /**
   * A payload of exactly `length` bytes this framing carries (any bytes, or a well-formed
   * message), varied by `seed`.
   */
  payload(length: number, seed: number): Uint8Array;
  /**
   * The header this framing writes before a payload of `length` bytes, to forge frames: with
   * `payload` given, exactly the writer's (checksums included); without it (a header announcing
   * more than the maximum, whose payload is never read), fields after the length may be
   * anything.
   */
  header(length: number, payload?: Uint8Array): Uint8Array;
  /**
   * Opens a writing end on `writeFd` and a reading end on `readFd`, both of `sockets` (the two
   * ends of one stream).
   */
  open(sockets: Sockets, writeFd: number, readFd: number): FrameEnds;
}

/** The two ends of a framed stream. */
export interface FrameEnds {
  /** Writes one frame; rejects with a `SocketError` EMSGSIZE, sending nothing, over the maximum. */
  write(payload: Uint8Array): Promise<void>;
  /**
   * Reads one frame's payload; rejects with a `SocketError`: EMSGSIZE for a header announcing
   * more than the maximum (before reading any of that payload), another code when the stream
   * ends early.
   */
  read(): Promise<Uint8Array>;
  /** Stops whatever the ends run (the pipe is closed by the suite). */
  close(): void;
}

/** How the pipe cuts what a reader receives: a few small reads first, then large ones. */
export interface Cuts {
  /** Sizes of the first reads (header splits). */
  readonly small: readonly number[];
  /** Size of every later read. */
  readonly bulkBytes: number;
}

/** The writing end's descriptor in the suite's pipe (a network-range value). */
const WRITE_FD = 3;
/** The reading end's descriptor. */
const READ_FD = 4;

interface PipeEnd {
  readonly inbox: Uint8Array[];
  closed: boolean;
  received: number;
  sent: number;
  wake: (() => void) | undefined;
  readonly cuts: number[];
}

/** An in-memory stream between two descriptors, {@link WRITE_FD} and {@link READ_FD}. */
export interface MemoryPipe {
  /** Send, recv and close on the two descriptors; every other call is ENOTSUP. */
  readonly sockets: Sockets;
  /** Bytes received so far on a descriptor. */
  received(fd: number): number;
  /** Bytes sent so far from a descriptor. */
  sent(fd: number): number;
  /** Puts bytes into the stream as if written on `fd` (for forged frames). */
  inject(fd: number, bytes: Uint8Array): void;
}

/**
 * Makes a pipe whose reads on the reading end are cut as `cuts` says.
 *
 * @param cuts read sizes
 * @returns the pipe
 */
export function memoryPipe(cuts: Cuts): MemoryPipe {
  const end = (): PipeEnd => ({
    inbox: [],
    closed: false,
    received: 0,
    sent: 0,
    wake: undefined,
    cuts: [...cuts.small],
  });
  const ends = new Map<number, PipeEnd>([[WRITE_FD, end()], [READ_FD, end()]]);
  const endOf = (fd: number, call: "send" | "recv"): PipeEnd => {
    const found = ends.get(fd);
    if (found === undefined || found.closed) {
      throw new SocketError("EBADF", `descriptor ${fd} is not open in the pipe`, { call, fd });
    }
    return found;
  };
  const peerOf = (fd: number) => ends.get(fd === WRITE_FD ? READ_FD : WRITE_FD)!;
  const push = (fd: number, bytes: Uint8Array) => {
    const peer = peerOf(fd);
    if (bytes.length > 0) peer.inbox.push(bytes.slice());
    peer.wake?.();
  };
  const unsupported = (call: string) => () =>
    Promise.reject(new SocketError("ENOTSUP", `the frames suite's pipe has no ${call}`));
  const sockets: Sockets = {
    socket: unsupported("socket"),
    bind: unsupported("bind"),
    listen: unsupported("listen"),
    getsockname: unsupported("getsockname"),
    accept: unsupported("accept"),
    connect: unsupported("connect"),
    send(fd, bytes) {
      const own = endOf(fd, "send");
      if (peerOf(fd).closed) {
        return Promise.reject(new SocketError("EPIPE", "the pipe's other end is closed", { fd }));
      }
      own.sent += bytes.length;
      push(fd, bytes);
      return Promise.resolve();
    },
    async recv(fd, into) {
      const own = endOf(fd, "recv");
      // Bounded: each wake follows a push or a close.
      while (own.inbox.length === 0 && !own.closed && !peerOf(fd).closed) {
        await new Promise<void>((resolve) => (own.wake = resolve));
        own.wake = undefined;
      }
      const head = own.inbox[0];
      if (head === undefined || own.closed) return null;
      const count = Math.min(into.length, head.length, own.cuts.shift() ?? cuts.bulkBytes);
      into.set(head.subarray(0, count));
      if (count === head.length) own.inbox.shift();
      else own.inbox[0] = head.subarray(count);
      own.received += count;
      return count;
    },
    close(fd) {
      const own = ends.get(fd);
      if (own === undefined) return Promise.reject(new SocketError("EBADF", `no descriptor ${fd}`));
      own.closed = true;
      own.wake?.();
      peerOf(fd).wake?.();
      return Promise.resolve();
    },
  };
  return {
    sockets,
    received: (fd) => ends.get(fd)?.received ?? 0,
    sent: (fd) => ends.get(fd)?.sent ?? 0,
    inject: push,
  };
}

/** Runs `body` over a fresh pipe and the codec's ends on it; closes both afterwards. */
async function withEnds<T>(
  codec: FrameCodec,
  cuts: Cuts,
  body: (ends: FrameEnds, pipe: MemoryPipe) => Promise<T>,
): Promise<T> {
  const pipe = memoryPipe(cuts);
  const ends = codec.open(pipe.sockets, WRITE_FD, READ_FD);
  try {
    return await body(ends, pipe);
  } finally {
    ends.close();
    await pipe.sockets.close(WRITE_FD);
    await pipe.sockets.close(READ_FD);
  }
}

/** Throws unless `error` is a `SocketError` with code EMSGSIZE. */
function expectMessageSize(error: unknown, what: string): void {
  const code = (error as { code?: unknown } | null)?.code;
  if (!(error instanceof Error) || code !== "EMSGSIZE") {
    throw new Error(`${what}: expected a SocketError EMSGSIZE, got ${String(error)}`);
  }
}

/** Reads that are cut anywhere: a few small ones (splitting headers), then large ones. */
function cutsArbitrary(codec: FrameCodec): fc.Arbitrary<Cuts> {
  return fc.record({
    small: fc.array(fc.integer({ min: 1, max: 16 }), { maxLength: 6 }),
    bulkBytes: fc.integer({
      min: Math.ceil(codec.payloadBytesMax / 8),
      max: codec.payloadBytesMax + 16,
    }),
  });
}

/** Longest payload drawn apart from the maximum and the maximum less one (keeps runs cheap). */
const SHORT_BYTES_MAX = 64 * 1024;

/** Lengths at and just under the maximum, the minimum, and short ones. */
function acceptedLength(codec: FrameCodec): fc.Arbitrary<number> {
  const { payloadBytesMin: min, payloadBytesMax: max } = codec;
  return fc.oneof(
    fc.constantFrom(max, Math.max(min, max - 1), min),
    fc.integer({ min, max: Math.min(max, min + SHORT_BYTES_MAX) }),
  );
}

/** Lengths over the maximum: one byte over, or more (within a few KiB). */
function refusedLength(codec: FrameCodec): fc.Arbitrary<number> {
  const max = codec.payloadBytesMax;
  return fc.oneof(fc.constant(max + 1), fc.integer({ min: max + 1, max: max + 4096 }));
}

/**
 * The frames suite.
 *
 * @param codec the framing under test
 * @returns the suite
 */
export function framesSuite(codec: FrameCodec): Suite {
  return {
    name: `frames (${codec.name})`,
    properties: [
      defineProperty(
        "a payload of exactly the maximum, or any shorter one, arrives whole through reads cut anywhere",
        { numRuns: 20 },
        () =>
          fc.asyncProperty(
            acceptedLength(codec),
            fc.nat(),
            fc.boolean(),
            cutsArbitrary(codec),
            (length, seed, forged, cuts) => arrivesWhole(codec, length, seed, forged, cuts),
          ),
      ),
      defineProperty(
        "a payload over the maximum (by one byte or more) is refused by the writer with EMSGSIZE, sending nothing",
        { numRuns: 20 },
        () =>
          fc.asyncProperty(
            refusedLength(codec),
            fc.nat(),
            (length, seed) =>
              withEnds(codec, { small: [], bulkBytes: 1 << 20 }, async (ends, pipe) => {
                const refused = await ends.write(codec.payload(length, seed)).then(
                  () => new Error(`a ${length}-byte payload was written`),
                  (error) => error,
                );
                expectMessageSize(refused, `writing ${length} bytes`);
                if (pipe.sent(WRITE_FD) !== 0) {
                  throw new Error(`the refused write sent ${pipe.sent(WRITE_FD)} bytes`);
                }
              }),
          ),
      ),
      defineProperty(
        "a header announcing more than the maximum is refused by the reader with EMSGSIZE before any of its payload is read",
        { numRuns: 20 },
        () =>
          fc.asyncProperty(
            refusedLength(codec),
            fc.integer({ min: 0, max: 64 }),
            cutsArbitrary(codec),
            (length, following, cuts) => refusedByReader(codec, length, following, cuts),
          ),
      ),
    ],
  };
}

async function arrivesWhole(
  codec: FrameCodec,
  length: number,
  seed: number,
  forged: boolean,
  cuts: Cuts,
): Promise<void> {
  const payload = codec.payload(length, seed);
  if (payload.length !== length) {
    throw new Error(`the codec made a ${payload.length}-byte payload for ${length}`);
  }
  await withEnds(codec, cuts, async (ends, pipe) => {
    if (forged) {
      pipe.inject(WRITE_FD, codec.header(length, payload));
      pipe.inject(WRITE_FD, payload);
    } else await ends.write(payload);
    // The writer is done: a reader wanting more than was sent sees the end, never hangs.
    await pipe.sockets.close(WRITE_FD);
    const got = await ends.read();
    if (got.length !== length) {
      throw new Error(`a ${length}-byte payload arrived as ${got.length} bytes`);
    }
    for (let i = 0; i < length; i++) {
      if (got[i] !== payload[i]) throw new Error(`a ${length}-byte payload changed at byte ${i}`);
    }
  });
}

async function refusedByReader(
  codec: FrameCodec,
  length: number,
  following: number,
  cuts: Cuts,
): Promise<void> {
  await withEnds(codec, cuts, async (ends, pipe) => {
    const header = codec.header(length);
    pipe.inject(WRITE_FD, header);
    pipe.inject(WRITE_FD, new Uint8Array(following).fill(0x61));
    await pipe.sockets.close(WRITE_FD);
    const refused = await ends.read().then(
      (got) => new Error(`a frame announcing ${length} bytes was read (${got.length} bytes)`),
      (error) => error,
    );
    expectMessageSize(refused, `reading a header announcing ${length} bytes`);
    if (pipe.received(READ_FD) > header.length) {
      throw new Error(
        `the reader took ${pipe.received(READ_FD) - header.length} payload bytes before refusing`,
      );
    }
  });
}
