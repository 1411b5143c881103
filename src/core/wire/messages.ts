/**
 * The control messages of the handshakes and their binary codec.
 *
 * One message is one frame payload (the framing itself, a 4-byte length prefix, lives in
 * `frame.ts`). Every payload starts with a tag byte that names the message type; the rest is a
 * fixed big-endian layout per type:
 *
 * | tag | type        | body                                          | payload bytes |
 * | --- | ----------- | --------------------------------------------- | ------------- |
 * | 1   | `wellKnown` | the string's bytes (1..{@link WELL_KNOWN_BYTES_MAX}) | 2..65   |
 * | 2   | `descriptor`| u32 descriptor value                          | 5             |
 * | 3   | `stgId`     | u16 STG id                                    | 3             |
 * | 4   | `stgLength` | u64 STG length in bytes (1..2^53-1)           | 9             |
 * | 5   | `port`      | u8 kind (0 network, 1 storage), u16 port (1..65535) | 4       |
 * | 6   | `ack`       | nothing                                       | 1             |
 * | 7   | `error`     | u8 code index in `SOCKET_ERROR_CODES`, UTF-8 text (0..{@link ERROR_TEXT_BYTES_MAX}) | 2..202 |
 * | 8   | `regionId`  | the region's UUID, 16 bytes in order          | 17            |
 *
 * Decoding never throws: an empty payload, an unknown tag, a wrong length, an out-of-range
 * value or bad UTF-8 is an EPROTO failure, and a payload over {@link MESSAGE_BYTES_MAX} is
 * EMSGSIZE.
 *
 * @module
 */

import { z } from "zod";
import {
  fail,
  ok,
  type Result,
  SOCKET_ERROR_CODES,
  type SocketErrorCode,
} from "../dispatch/errors.ts";
import type { SameType } from "../assert.ts";

/** Largest payload of any control message, in bytes. */
export const MESSAGE_BYTES_MAX = 256;
/** Largest well-known string, in bytes. */
export const WELL_KNOWN_BYTES_MAX = 64;
/** Largest error text, in UTF-8 bytes. */
export const ERROR_TEXT_BYTES_MAX = 200;
/** Largest descriptor value a `descriptor` message carries (the descriptor spaces' top). */
export const DESCRIPTOR_VALUE_MAX = 0x7fff_ffff;
/** The well-known string of step 90: a string of zeros, this long. */
export const WELL_KNOWN_BYTES = 8;

/** The well-known string the file-system server sends at step 90 (eight zero bytes). */
export function wellKnownString(): Uint8Array<ArrayBuffer> {
  return new Uint8Array(WELL_KNOWN_BYTES);
}

/** The tag byte of each message type. */
export const MESSAGE_TAGS = {
  wellKnown: 1,
  descriptor: 2,
  stgId: 3,
  stgLength: 4,
  port: 5,
  ack: 6,
  error: 7,
  regionId: 8,
} as const;

/** The name of a message type. */
export type MessageType = keyof typeof MESSAGE_TAGS;

const utf8Length = (text: string): number => new TextEncoder().encode(text).length;

/** Schema of the well-known string (step 90). */
export const WellKnownSchema = z.object({
  type: z.literal("wellKnown"),
  bytes: z.instanceof(Uint8Array).refine(
    (b) => b.length >= 1 && b.length <= WELL_KNOWN_BYTES_MAX,
    { error: `the well-known string must be 1..${WELL_KNOWN_BYTES_MAX} bytes` },
  ),
});
/** Schema of a descriptor (steps 92, 100, 122, 126). */
export const DescriptorSchema = z.object({
  type: z.literal("descriptor"),
  fd: z.int().min(0).max(DESCRIPTOR_VALUE_MAX),
});
/** Schema of the STG id (steps 138, 160, 236, 200). */
export const StgIdSchema = z.object({
  type: z.literal("stgId"),
  stg: z.int().min(0).max(0xffff),
});
/** Schema of the STG length (steps 138, 160, 236, 200). */
export const StgLengthSchema = z.object({
  type: z.literal("stgLength"),
  lengthBytes: z.int().min(1).max(Number.MAX_SAFE_INTEGER),
});
/** A region id: a UUID in lower-case canonical form. */
export const RegionIdTextSchema = z.string().regex(
  /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/,
  { error: "a region id is a lower-case UUID" },
);
/** Schema of the region id that goes with the STG info (steps 138/160, 236/200). */
export const RegionIdSchema = z.object({
  type: z.literal("regionId"),
  regionId: RegionIdTextSchema,
});
/** Schema of a port (steps 170, 140, 196, 224, 210, 238). */
export const PortSchema = z.object({
  type: z.literal("port"),
  kind: z.enum(["network", "storage"]),
  port: z.int().min(1).max(0xffff),
});
/** Schema of the acknowledgement (steps 226, 196A). */
export const AckSchema = z.object({ type: z.literal("ack") });
/** Schema of an error report: a socket error code and a text. */
export const ErrorSchema = z.object({
  type: z.literal("error"),
  code: z.enum(SOCKET_ERROR_CODES),
  text: z.string().refine((t) => utf8Length(t) <= ERROR_TEXT_BYTES_MAX, {
    error: `error text must be at most ${ERROR_TEXT_BYTES_MAX} UTF-8 bytes`,
  }),
});

/** Schema of any control message. */
export const MessageSchema = z.discriminatedUnion("type", [
  WellKnownSchema,
  DescriptorSchema,
  StgIdSchema,
  StgLengthSchema,
  PortSchema,
  AckSchema,
  ErrorSchema,
  RegionIdSchema,
]);

/** The well-known string (step 90). */
export interface WellKnownMessage {
  /** Tag 1. */
  readonly type: "wellKnown";
  /** The string's bytes, 1..{@link WELL_KNOWN_BYTES_MAX}. */
  readonly bytes: Uint8Array<ArrayBuffer>;
}
/** A descriptor value (steps 92, 100, 122, 126). */
export interface DescriptorMessage {
  /** Tag 2. */
  readonly type: "descriptor";
  /** The descriptor, 0..{@link DESCRIPTOR_VALUE_MAX}. */
  readonly fd: number;
}
/** The STG id (steps 138, 160, 236, 200). */
export interface StgIdMessage {
  /** Tag 3. */
  readonly type: "stgId";
  /** The STG id, 0..65535. */
  readonly stg: number;
}
/** The STG length (steps 138, 160, 236, 200). */
export interface StgLengthMessage {
  /** Tag 4. */
  readonly type: "stgLength";
  /** The STG's length in bytes, 1..2^53-1. */
  readonly lengthBytes: number;
}
/** A port (steps 170, 140, 196, 224, 210, 238). */
export interface PortMessage {
  /** Tag 5. */
  readonly type: "port";
  /** Whether the port is a network (TCP) or a storage (STP) port. */
  readonly kind: "network" | "storage";
  /** The port, 1..65535. */
  readonly port: number;
}
/** The acknowledgement (steps 226, 196A). */
export interface AckMessage {
  /** Tag 6. */
  readonly type: "ack";
}
/** An error report: a socket error code and a text. */
export interface ErrorMessage {
  /** Tag 7. */
  readonly type: "error";
  /** What went wrong, as a socket error code. */
  readonly code: SocketErrorCode;
  /** What happened, in at most {@link ERROR_TEXT_BYTES_MAX} UTF-8 bytes. */
  readonly text: string;
}

/** The region id that goes with the STG info (steps 138/160, 236/200). */
export interface RegionIdMessage {
  /** Tag 8. */
  readonly type: "regionId";
  /** The region's UUID, lower-case canonical form. */
  readonly regionId: string;
}

/** Any control message (what {@link MessageSchema} accepts). */
export type Message =
  | WellKnownMessage
  | DescriptorMessage
  | StgIdMessage
  | StgLengthMessage
  | PortMessage
  | AckMessage
  | ErrorMessage
  | RegionIdMessage;
// `deno check` fails here when the type above and the schema stop describing the same messages.
const _messageMatchesSchema: SameType<Message, z.output<typeof MessageSchema>> = true;
/** The message of one type. */
export type MessageOf<T extends MessageType> = Extract<Message, { type: T }>;

/**
 * Builds an error message, cutting the text so it fits {@link ERROR_TEXT_BYTES_MAX}.
 *
 * @param code the socket error code to report
 * @param text what happened; cut at a character boundary when too long
 * @returns the message
 *
 * @example Reporting a protocol error
 * ```ts
 * import assert from "node:assert/strict";
 * import { errorMessage } from "./messages.ts";
 * const message = errorMessage("EPROTO", "x".repeat(1000));
 * assert.ok(message.text.length === 200);
 * ```
 */
export function errorMessage(code: SocketErrorCode, text: string): MessageOf<"error"> {
  let cut = text.slice(0, ERROR_TEXT_BYTES_MAX);
  // Bounded: each pass removes one character and the text has at most ERROR_TEXT_BYTES_MAX.
  while (utf8Length(cut) > ERROR_TEXT_BYTES_MAX) cut = cut.slice(0, -1);
  return { type: "error", code, text: cut };
}

function bodyBytes(message: Message): number {
  switch (message.type) {
    case "wellKnown":
      return message.bytes.length;
    case "descriptor":
      return 4;
    case "stgId":
      return 2;
    case "stgLength":
      return 8;
    case "port":
      return 3;
    case "ack":
      return 0;
    case "error":
      return 1 + utf8Length(message.text);
    case "regionId":
      return 16;
  }
}

function writeBody(message: Message, view: DataView, bytes: Uint8Array): void {
  switch (message.type) {
    case "wellKnown":
      bytes.set(message.bytes, 1);
      return;
    case "descriptor":
      view.setUint32(1, message.fd);
      return;
    case "stgId":
      view.setUint16(1, message.stg);
      return;
    case "stgLength":
      view.setBigUint64(1, BigInt(message.lengthBytes));
      return;
    case "port":
      view.setUint8(1, message.kind === "network" ? 0 : 1);
      view.setUint16(2, message.port);
      return;
    case "ack":
      return;
    case "error":
      view.setUint8(1, SOCKET_ERROR_CODES.indexOf(message.code));
      bytes.set(new TextEncoder().encode(message.text), 2);
      return;
    case "regionId": {
      const hex = message.regionId.replaceAll("-", "");
      for (let i = 0; i < 16; i++) bytes[1 + i] = Number.parseInt(hex.slice(2 * i, 2 * i + 2), 16);
      return;
    }
  }
}

/**
 * Encodes one control message as one frame payload.
 *
 * @param message the message; it must satisfy {@link MessageSchema}
 * @returns the payload, at most {@link MESSAGE_BYTES_MAX} bytes
 * @throws {TypeError} when the message does not satisfy its schema (a caller bug)
 *
 * @example Encoding a port
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeMessage } from "./messages.ts";
 * const payload = encodeMessage({ type: "port", kind: "storage", port: 49152 });
 * assert.ok(payload.length === 4 && payload[0] === 5);
 * ```
 */
export function encodeMessage(message: Message): Uint8Array {
  const checked = MessageSchema.safeParse(message);
  if (!checked.success) {
    throw new TypeError(`not a valid control message: ${z.prettifyError(checked.error)}`);
  }
  const bytes = new Uint8Array(1 + bodyBytes(message));
  const view = new DataView(bytes.buffer);
  view.setUint8(0, MESSAGE_TAGS[message.type]);
  writeBody(message, view, bytes);
  return bytes;
}

const FIXED_PAYLOAD_BYTES: Readonly<Partial<Record<number, number>>> = {
  [MESSAGE_TAGS.descriptor]: 5,
  [MESSAGE_TAGS.stgId]: 3,
  [MESSAGE_TAGS.stgLength]: 9,
  [MESSAGE_TAGS.port]: 4,
  [MESSAGE_TAGS.ack]: 1,
  [MESSAGE_TAGS.regionId]: 17,
};

/** Strict UTF-8 of the error text, or `null` (which the schema rejects) when it is not UTF-8. */
function utf8(payload: Uint8Array): string | null {
  try {
    return new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(payload.subarray(2));
  } catch {
    return null;
  }
}

function readCandidate(tag: number, payload: Uint8Array, view: DataView): unknown {
  switch (tag) {
    case MESSAGE_TAGS.wellKnown:
      return { type: "wellKnown", bytes: payload.slice(1) };
    case MESSAGE_TAGS.descriptor:
      return { type: "descriptor", fd: view.getUint32(1) };
    case MESSAGE_TAGS.stgId:
      return { type: "stgId", stg: view.getUint16(1) };
    case MESSAGE_TAGS.stgLength: {
      const length = view.getBigUint64(1);
      return { type: "stgLength", lengthBytes: length > 2n ** 53n ? -1 : Number(length) };
    }
    case MESSAGE_TAGS.port: {
      const kind = view.getUint8(1);
      const name = kind === 0 ? "network" : kind === 1 ? "storage" : `kind ${kind}`;
      return { type: "port", kind: name, port: view.getUint16(2) };
    }
    case MESSAGE_TAGS.ack:
      return { type: "ack" };
    case MESSAGE_TAGS.regionId: {
      const hex = [...payload.subarray(1, 17)].map((b) => b.toString(16).padStart(2, "0")).join("");
      const uuid = `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${
        hex.slice(16, 20)
      }-${hex.slice(20)}`;
      return { type: "regionId", regionId: uuid };
    }
    default: {
      const code = view.getUint8(1);
      return {
        type: "error",
        code: SOCKET_ERROR_CODES[code] ?? `code ${code}`,
        text: utf8(payload),
      };
    }
  }
}

/**
 * Decodes one frame payload into a control message. Never throws.
 *
 * @param payload the frame payload
 * @returns the message; EMSGSIZE when the payload is over {@link MESSAGE_BYTES_MAX}; EPROTO when
 *   it is empty, has an unknown tag, the wrong length for its tag, or a value out of range
 *
 * @example Round trip and a malformed payload
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeMessage, encodeMessage } from "./messages.ts";
 * const back = decodeMessage(encodeMessage({ type: "descriptor", fd: 7 }));
 * assert.ok(back.ok && back.value.type === "descriptor" && back.value.fd === 7);
 * const bad = decodeMessage(new Uint8Array([99]));
 * assert.ok(!bad.ok && bad.code === "EPROTO");
 * ```
 */
export function decodeMessage(payload: Uint8Array): Result<Message> {
  if (payload.length > MESSAGE_BYTES_MAX) {
    return fail(
      "EMSGSIZE",
      `control message of ${payload.length} bytes exceeds the maximum ` +
        `${MESSAGE_BYTES_MAX}`,
    );
  }
  const tag = payload[0];
  if (tag === undefined) return fail("EPROTO", "empty control message");
  const fixed = FIXED_PAYLOAD_BYTES[tag];
  if (fixed !== undefined && payload.length !== fixed) {
    return fail("EPROTO", `message tag ${tag} needs ${fixed} bytes, got ${payload.length}`);
  }
  const known = Object.values(MESSAGE_TAGS) as number[];
  if (!known.includes(tag)) return fail("EPROTO", `unknown control message tag ${tag}`);
  if (tag === MESSAGE_TAGS.error && payload.length < 2) {
    return fail("EPROTO", "error message without a code byte");
  }
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const parsed = MessageSchema.safeParse(readCandidate(tag, payload, view));
  if (!parsed.success) {
    return fail(
      "EPROTO",
      `malformed control message (tag ${tag}): ` +
        z.prettifyError(parsed.error).replaceAll("\n", " "),
    );
  }
  return ok(parsed.data);
}
