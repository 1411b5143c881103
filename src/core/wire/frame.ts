/**
 * Length-prefixed frames for the control channel.
 *
 * A frame is a 4-byte big-endian unsigned payload length followed by the payload. Every reader
 * and writer has a maximum payload size (`frameBytesMax`): a larger frame is EMSGSIZE before a
 * byte of its payload is read, so a hostile length cannot make a reader allocate or wait for
 * gigabytes. A stream that ends inside a frame (a peer that closes mid-frame) is EPROTO.
 *
 * The helpers read and write through the `Sockets` interface only, so they work on network and
 * storage descriptors alike.
 *
 * @module
 */

import { ok, type Result, SocketError } from "../dispatch/errors.ts";
import { CONTROL_FRAMING, decodeHeader, encodeHeader } from "../session/frame.ts";
import type { Sockets } from "../dispatch/sockets.ts";

/** Bytes of the length prefix. */
export const FRAME_HEADER_BYTES: number = CONTROL_FRAMING.headerBytes;
/** Default largest payload: control messages are small. */
export const FRAME_BYTES_MAX_DEFAULT = 64 * 1024;
/** Largest payload any reader may be configured for (16 MiB). */
export const FRAME_BYTES_LIMIT = 16 * 1024 * 1024;

function checkFrameBytesMax(frameBytesMax: number): void {
  if (!Number.isInteger(frameBytesMax) || frameBytesMax < 0 || frameBytesMax > FRAME_BYTES_LIMIT) {
    throw new RangeError(
      `frameBytesMax must be an integer in [0, ${FRAME_BYTES_LIMIT}], got ${frameBytesMax}`,
    );
  }
}

/**
 * Encodes one frame.
 *
 * @param payload the bytes to frame
 * @param frameBytesMax the largest payload allowed
 * @returns header and payload in one buffer, or EMSGSIZE
 *
 * @example
 * ```ts
 * import { encodeFrame } from "./frame.ts";
 * const framed = encodeFrame(new Uint8Array([1, 2, 3]));
 * console.assert(framed.ok && framed.value.length === 7);
 * ```
 */
export function encodeFrame(
  payload: Uint8Array,
  frameBytesMax: number = FRAME_BYTES_MAX_DEFAULT,
): Result<Uint8Array> {
  checkFrameBytesMax(frameBytesMax);
  const header = encodeHeader(
    CONTROL_FRAMING,
    { tag: 0, length: payload.length, checksum: 0 },
    frameBytesMax,
  );
  if (!header.ok) return header;
  const framed = new Uint8Array(FRAME_HEADER_BYTES + payload.length);
  framed.set(header.value);
  framed.set(payload, FRAME_HEADER_BYTES);
  return ok(framed);
}

/**
 * Decodes a frame header.
 *
 * @param header exactly {@link FRAME_HEADER_BYTES} bytes
 * @param frameBytesMax the largest payload allowed
 * @returns the payload length, or EMSGSIZE
 */
export function decodeFrameHeader(
  header: Uint8Array,
  frameBytesMax: number = FRAME_BYTES_MAX_DEFAULT,
): Result<number> {
  checkFrameBytesMax(frameBytesMax);
  const decoded = decodeHeader(CONTROL_FRAMING, header, frameBytesMax);
  return decoded.ok ? ok(decoded.value.length) : decoded;
}

/**
 * Fills `into` completely from the socket.
 *
 * @returns the number of bytes read: `into.length`, or less when the stream ended first
 */
export async function recvExactly(sockets: Sockets, fd: number, into: Uint8Array): Promise<number> {
  let filled = 0;
  // Bounded: each successful recv moves at least one byte.
  while (filled < into.length) {
    const got = await sockets.recv(fd, into.subarray(filled));
    if (got === null) return filled;
    filled += got;
  }
  return filled;
}

/**
 * Sends one frame on a descriptor.
 *
 * @throws SocketError EMSGSIZE when the payload is over the maximum, or the send's own error
 */
export async function writeFrame(
  sockets: Sockets,
  fd: number,
  payload: Uint8Array,
  frameBytesMax: number = FRAME_BYTES_MAX_DEFAULT,
): Promise<void> {
  const framed = encodeFrame(payload, frameBytesMax);
  if (!framed.ok) throw new SocketError(framed.code, framed.message, { call: "send", fd });
  await sockets.send(fd, framed.value);
}

/**
 * Reads one frame from a descriptor.
 *
 * @returns the payload, or `null` when the stream ended cleanly between frames
 * @throws SocketError EMSGSIZE for an oversized frame, EPROTO when the stream ends inside a
 *   frame, or the recv's own error
 *
 * @example Round trip through any Sockets
 * ```ts ignore
 * await writeFrame(sockets, a, new TextEncoder().encode("hello"));
 * const payload = await readFrame(sockets, b);
 * ```
 */
export async function readFrame(
  sockets: Sockets,
  fd: number,
  frameBytesMax: number = FRAME_BYTES_MAX_DEFAULT,
): Promise<Uint8Array | null> {
  const header = new Uint8Array(FRAME_HEADER_BYTES);
  const headerBytes = await recvExactly(sockets, fd, header);
  if (headerBytes === 0) return null;
  if (headerBytes < FRAME_HEADER_BYTES) {
    throw new SocketError(
      "EPROTO",
      `truncated frame: stream ended after ${headerBytes} of ${FRAME_HEADER_BYTES} header bytes`,
      { call: "recv", fd },
    );
  }
  const length = decodeFrameHeader(header, frameBytesMax);
  if (!length.ok) throw new SocketError(length.code, length.message, { call: "recv", fd });
  const payload = new Uint8Array(length.value);
  const payloadBytes = await recvExactly(sockets, fd, payload);
  if (payloadBytes < length.value) {
    throw new SocketError(
      "EPROTO",
      `truncated frame: stream ended after ${payloadBytes} of ${length.value} payload bytes`,
      { call: "recv", fd },
    );
  }
  return payload;
}
