/**
 * One frame codec for lanfree's two framings, as data: the handshake's control frames
 * (`control`: a 4-byte big-endian payload length) and the session's frames (`session`: a tag
 * byte, the 4-byte length, and a 4-byte CRC-32 of the payload). Both write and read their
 * headers here, and both check a length against the maximum here, so a frame of exactly the
 * maximum passes and one byte more is EMSGSIZE on either side (the reader before any payload is
 * read).
 *
 * Session tags: 1 message (JSON `{ channel, body }`, at most {@link MESSAGE_BYTES_MAX}), 2 data
 * chunk (at most {@link DATA_CHUNK_BYTES_MAX}), 3 end of data, 4 keepalive (both empty).
 *
 * Pure: the checksum is computed by the caller (the session uses `node:zlib`'s CRC-32) and
 * passed in, so the core imports nothing from the runtime.
 *
 * @module
 */

import { fail, ok, type Result } from "../dispatch/errors.ts";

/** The session's frame tags. */
export const SessionTag = {
  message: 1,
  data: 2,
  end: 3,
  keepalive: 4,
} as const;
/** One session frame tag. */
export type SessionTag = typeof SessionTag[keyof typeof SessionTag];

/** Largest session message payload. */
export const MESSAGE_BYTES_MAX = 64 * 1024;
/** Largest session data chunk. */
export const DATA_CHUNK_BYTES_MAX = 8 * 1024 * 1024;

/** A framing: how long its header is and what it carries. */
export interface Framing {
  readonly name: "control" | "session";
  /** Header bytes before the payload. */
  readonly headerBytes: number;
  /** Whether the header starts with a tag byte. */
  readonly tagged: boolean;
  /** Whether the header ends with a CRC-32 of the payload. */
  readonly checksummed: boolean;
}

/** The handshake's control frames: a 4-byte length. */
export const CONTROL_FRAMING: Framing = {
  name: "control",
  headerBytes: 4,
  tagged: false,
  checksummed: false,
};

/** The session's frames: tag, 4-byte length, 4-byte CRC-32. */
export const SESSION_FRAMING: Framing = {
  name: "session",
  headerBytes: 9,
  tagged: true,
  checksummed: true,
};

/** What a header says. */
export interface FrameHeader {
  /** The tag (0 for an untagged framing). */
  readonly tag: number;
  /** Payload bytes that follow. */
  readonly length: number;
  /** The payload's CRC-32 (0 for a framing without one). */
  readonly checksum: number;
}

/**
 * The largest payload a session frame of `tag` may carry; undefined for an unknown tag.
 *
 * @param tag a session tag
 * @returns its maximum
 */
export function sessionPayloadBytesMax(tag: number): number | undefined {
  switch (tag) {
    case SessionTag.message:
      return MESSAGE_BYTES_MAX;
    case SessionTag.data:
      return DATA_CHUNK_BYTES_MAX;
    case SessionTag.end:
    case SessionTag.keepalive:
      return 0;
    default:
      return undefined;
  }
}

/**
 * Writes a header.
 *
 * @param framing which framing
 * @param header tag, length and checksum (tag and checksum ignored where the framing has none)
 * @param bytesMax the largest payload allowed
 * @returns the header bytes, or EMSGSIZE when `length` is over `bytesMax`
 *
 * @example A session message header
 * ```ts
 * import { encodeHeader, SESSION_FRAMING, SessionTag } from "./frame.ts";
 * const header = encodeHeader(SESSION_FRAMING, { tag: SessionTag.message, length: 2, checksum: 7 }, 10);
 * console.assert(header.ok && header.value.length === 9 && header.value[0] === 1);
 * ```
 */
export function encodeHeader(
  framing: Framing,
  header: FrameHeader,
  bytesMax: number,
): Result<Uint8Array> {
  if (header.length > bytesMax) {
    return fail(
      "EMSGSIZE",
      `frame of ${header.length} bytes (${framing.name}) exceeds the ${bytesMax}-byte maximum`,
    );
  }
  const bytes = new Uint8Array(framing.headerBytes);
  const view = new DataView(bytes.buffer);
  const at = framing.tagged ? 1 : 0;
  if (framing.tagged) bytes[0] = header.tag;
  view.setUint32(at, header.length, false);
  if (framing.checksummed) view.setUint32(at + 4, header.checksum >>> 0, false);
  return ok(bytes);
}

/**
 * Reads a header: the length is checked against the maximum before any payload is read.
 *
 * @param framing which framing
 * @param bytes exactly `framing.headerBytes` bytes
 * @param bytesMax the largest payload allowed (for a session frame, further bounded by its tag)
 * @returns what the header says; EINVAL for a wrong header size, EPROTO for an unknown session
 *   tag, EMSGSIZE for a length over the maximum
 */
export function decodeHeader(
  framing: Framing,
  bytes: Uint8Array,
  bytesMax: number,
): Result<FrameHeader> {
  if (bytes.length !== framing.headerBytes) {
    return fail(
      "EINVAL",
      `a ${framing.name} frame header is ${framing.headerBytes} bytes, got ${bytes.length}`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const at = framing.tagged ? 1 : 0;
  const tag = framing.tagged ? bytes[0]! : 0;
  let max = bytesMax;
  if (framing.name === "session") {
    const tagMax = sessionPayloadBytesMax(tag);
    if (tagMax === undefined) return fail("EPROTO", `unknown session frame tag ${tag}`);
    max = Math.min(max, tagMax);
  }
  const length = view.getUint32(at, false);
  if (length > max) {
    const kind = framing.tagged ? `${framing.name}, tag ${tag}` : framing.name;
    return fail(
      "EMSGSIZE",
      `peer announced a ${length}-byte frame (${kind}); the maximum is ${max}`,
    );
  }
  const checksum = framing.checksummed ? view.getUint32(at + 4, false) : 0;
  return ok({ tag, length, checksum });
}
