/**
 * lanfree's framings bound to the frames suite: the handshake's control frames
 * (`src/core/wire/frame.ts`, 4-byte length) and the backup session's tagged frames
 * (`src/app/hosts/session.ts`: tag, 4-byte length, CRC-32), its messages and its data chunks;
 * both framings' headers come from the one codec, `src/core/session/frame.ts`.
 *
 * @module
 */

import { SocketError } from "../src/core/dispatch/errors.ts";
import { FRAME_BYTES_MAX_DEFAULT, readFrame, writeFrame } from "../src/core/wire/frame.ts";
import { DATA_CHUNK_BYTES_MAX, MESSAGE_BYTES_MAX, Session } from "../src/app/hosts/session.ts";
import type { FrameCodec, FrameEnds } from "./frames_suite.ts";
import {
  CONTROL_FRAMING,
  encodeHeader,
  type Framing,
  SESSION_FRAMING,
  SessionTag,
} from "../src/core/session/frame.ts";
import { crc32 } from "node:zlib";

/** The pattern payloads are views of (period 256), grown to the longest asked for. */
let pattern = new Uint8Array(0);

/**
 * `length` bytes of a pattern that differs with `seed`: a view of one shared buffer (payloads
 * are read, never written; allocating megabytes per run would cost more than the run).
 */
function patternOf(length: number, seed: number): Uint8Array {
  const start = seed & 0xff;
  if (pattern.length < start + length) {
    pattern = new Uint8Array(Math.max(start + length, 2 * pattern.length));
    for (let i = 0; i < 256; i++) pattern[i] = (i * 131) & 0xff;
    for (let filled = 256; filled < pattern.length; filled *= 2) {
      pattern.copyWithin(filled, 0, filled);
    }
  }
  return pattern.subarray(start, start + length);
}

/**
 * A header of `framing` as its writer makes it (`core/session/frame.ts`), for any length (over
 * the maximum too, to forge a frame a reader must refuse); the session's carries the payload's
 * CRC-32 when the payload is given.
 */
function headerOf(framing: Framing, tag: number, length: number, payload?: Uint8Array) {
  const checksum = payload === undefined || payload.length === 0 ? 0 : crc32(payload);
  const header = encodeHeader(framing, { tag, length, checksum }, Number.MAX_SAFE_INTEGER);
  if (!header.ok) throw new Error(header.message);
  return header.value;
}

/**
 * `wire/frame.ts` with a given maximum.
 *
 * @param frameBytesMax the largest payload its reader and writer accept
 * @param readBytesMax the reader's own maximum (a test sets it apart to make a mutant)
 * @returns the codec
 */
export function wireFrames(
  frameBytesMax: number = FRAME_BYTES_MAX_DEFAULT,
  readBytesMax: number = frameBytesMax,
): FrameCodec {
  return {
    name: "wire/frame",
    payloadBytesMin: 0,
    payloadBytesMax: frameBytesMax,
    payload: patternOf,
    header: (length) => headerOf(CONTROL_FRAMING, 0, length),
    open: (sockets, writeFd, readFd) => ({
      write: (payload) => writeFrame(sockets, writeFd, payload, frameBytesMax),
      async read() {
        const payload = await readFrame(sockets, readFd, readBytesMax);
        if (payload === null) throw new SocketError("EPROTO", "the stream ended before a frame");
        return payload;
      },
      close() {},
    }),
  };
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
/** What a message frame's payload is: `{"channel":...,"body":...}`, here on `control`. */
const messageText = (body: string) => JSON.stringify({ channel: "control", body });
const MESSAGE_OVERHEAD_BYTES = encoder.encode(messageText("")).length;

/** Two sessions over the pipe, one per end, every channel on its one descriptor. */
function sessionEnds(
  sockets: Parameters<FrameCodec["open"]>[0],
  writeFd: number,
  readFd: number,
  kind: "message" | "data",
): FrameEnds {
  const on = (fd: number) =>
    new Session(sockets, { control: fd, error: fd, data: fd }, {
      keepaliveMs: 0,
    });
  const writer = on(writeFd);
  const reader = on(readFd);
  return {
    write: (payload) =>
      kind === "data"
        ? writer.sendData(payload)
        : writer.sendMessage("control", JSON.parse(decoder.decode(payload)).body),
    async read() {
      if (kind === "message") {
        return encoder.encode(messageText(await reader.nextMessage("control") as string));
      }
      const chunk = await reader.nextData();
      if (chunk === null) throw new SocketError("EPROTO", "end of data instead of a chunk");
      return chunk;
    },
    close() {
      writer.close();
      reader.close();
    },
  };
}

/**
 * The session's message frames: payloads are `{"channel":"control","body":"..."}` texts.
 *
 * @returns the codec
 */
export function sessionMessageFrames(): FrameCodec {
  return {
    name: "session messages",
    payloadBytesMin: MESSAGE_OVERHEAD_BYTES,
    payloadBytesMax: MESSAGE_BYTES_MAX,
    payload(length, seed) {
      const letters = Array.from(
        { length: length - MESSAGE_OVERHEAD_BYTES },
        (_, i) => String.fromCharCode(97 + ((i * 7 + seed) % 26)),
      );
      return encoder.encode(messageText(letters.join("")));
    },
    header: (length, payload) => headerOf(SESSION_FRAMING, SessionTag.message, length, payload),
    open: (sockets, writeFd, readFd) => sessionEnds(sockets, writeFd, readFd, "message"),
  };
}

/**
 * The session's data frames (an empty chunk is never sent, so the smallest is one byte).
 *
 * @returns the codec
 */
export function sessionDataFrames(): FrameCodec {
  return {
    name: "session data",
    payloadBytesMin: 1,
    payloadBytesMax: DATA_CHUNK_BYTES_MAX,
    payload: patternOf,
    header: (length, payload) => headerOf(SESSION_FRAMING, SessionTag.data, length, payload),
    open: (sockets, writeFd, readFd) => sessionEnds(sockets, writeFd, readFd, "data"),
  };
}

/**
 * Every framing of lanfree's.
 *
 * @returns the handshake's control frames, the session's messages and data chunks
 */
export function lanfreeFrameCodecs(): FrameCodec[] {
  return [wireFrames(), sessionMessageFrames(), sessionDataFrames()];
}
