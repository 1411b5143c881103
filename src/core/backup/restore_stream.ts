/**
 * The records a restore streams on the data channel: for each member the agent asked for, a
 * head (its index in the request and its real size), its pieces (bytes to write at a position,
 * or bytes only hashed: a sparse member's map), and an end; or a problem (the server could not
 * read the member: its code and message). An archive's stream ends with `archive-end`.
 *
 * Each record is one data frame: a kind byte, fixed big-endian fields, then the bytes. A piece's
 * bytes follow its 9-byte prefix, so a sender passes prefix and bytes as two parts of one frame
 * and copies nothing. Decoding never throws: anything malformed is a typed failure.
 *
 * @module
 */

import { fail, ok, type Result } from "../dispatch/errors.ts";

/** One restore stream record. */
export type RestoreRecord =
  | { readonly kind: "head"; readonly index: number; readonly realSize: number }
  | { readonly kind: "piece"; readonly position: number; readonly bytes: Uint8Array }
  | { readonly kind: "hashed"; readonly bytes: Uint8Array }
  | { readonly kind: "end"; readonly index: number }
  | {
    readonly kind: "problem";
    readonly index: number;
    readonly code: string;
    readonly message: string;
  }
  | { readonly kind: "archive-end" };

const KIND = { head: 1, piece: 2, hashed: 3, end: 4, problem: 5, "archive-end": 6 } as const;
/** Bytes before a piece's data: kind and position. */
export const PIECE_PREFIX_BYTES = 9;
/** Largest member index (members of one archive asked for at once). */
export const MEMBER_INDEX_MAX = 0xffff_ffff;
const PROBLEM_TEXT_BYTES_MAX = 4096;

/**
 * The prefix of a piece record; the piece's bytes follow it in the same frame.
 *
 * @param position where the bytes go in the file, or null for bytes only hashed
 * @returns the prefix (9 bytes for a positioned piece, 1 for a hashed one)
 */
export function piecePrefix(position: number | null): Uint8Array {
  if (position === null) return Uint8Array.of(KIND.hashed);
  if (!Number.isSafeInteger(position) || position < 0) {
    throw new RangeError(`piece position ${position} is not a byte offset`);
  }
  const prefix = new Uint8Array(PIECE_PREFIX_BYTES);
  prefix[0] = KIND.piece;
  new DataView(prefix.buffer).setBigUint64(1, BigInt(position), false);
  return prefix;
}

function checkIndex(index: number): void {
  if (!Number.isInteger(index) || index < 0 || index > MEMBER_INDEX_MAX) {
    throw new RangeError(`member index ${index} is out of range`);
  }
}

/**
 * Encodes a record that carries no piece bytes (head, end, problem, archive-end).
 *
 * @param record the record
 * @returns its frame payload
 */
export function encodeRecord(
  record: Exclude<RestoreRecord, { kind: "piece" | "hashed" }>,
): Uint8Array {
  switch (record.kind) {
    case "head": {
      checkIndex(record.index);
      if (!Number.isSafeInteger(record.realSize) || record.realSize < 0) {
        throw new RangeError(`real size ${record.realSize} is not a byte count`);
      }
      const bytes = new Uint8Array(13);
      const view = new DataView(bytes.buffer);
      bytes[0] = KIND.head;
      view.setUint32(1, record.index, false);
      view.setBigUint64(5, BigInt(record.realSize), false);
      return bytes;
    }
    case "end": {
      checkIndex(record.index);
      const bytes = new Uint8Array(5);
      bytes[0] = KIND.end;
      new DataView(bytes.buffer).setUint32(1, record.index, false);
      return bytes;
    }
    case "problem": {
      checkIndex(record.index);
      const text = new TextEncoder().encode(
        JSON.stringify({ code: record.code, message: record.message }),
      ).subarray(0, PROBLEM_TEXT_BYTES_MAX);
      const bytes = new Uint8Array(5 + text.length);
      bytes[0] = KIND.problem;
      new DataView(bytes.buffer).setUint32(1, record.index, false);
      bytes.set(text, 5);
      return bytes;
    }
    case "archive-end":
      return Uint8Array.of(KIND["archive-end"]);
  }
}

/**
 * Decodes one frame payload. Piece bytes are a view of `payload` (no copy).
 *
 * @param payload a data frame's payload
 * @returns the record, or EPROTO naming what is wrong
 */
export function decodeRecord(payload: Uint8Array): Result<RestoreRecord> {
  if (payload.length === 0) return fail("EPROTO", "empty restore record");
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const sized = (bytes: number, what: string): Result<void> =>
    payload.length === bytes ? ok(undefined) : fail(
      "EPROTO",
      `a ${what} record has ${payload.length} bytes, not ${bytes}`,
    );
  switch (payload[0]) {
    case KIND.head: {
      const size = sized(13, "head");
      if (!size.ok) return size;
      const realSize = Number(view.getBigUint64(5, false));
      if (!Number.isSafeInteger(realSize)) return fail("EPROTO", "a head's size is too large");
      return ok({ kind: "head", index: view.getUint32(1, false), realSize });
    }
    case KIND.piece: {
      if (payload.length < PIECE_PREFIX_BYTES) return fail("EPROTO", "a piece record is cut off");
      const position = Number(view.getBigUint64(1, false));
      if (!Number.isSafeInteger(position)) return fail("EPROTO", "a piece's position is too large");
      return ok({ kind: "piece", position, bytes: payload.subarray(PIECE_PREFIX_BYTES) });
    }
    case KIND.hashed:
      return ok({ kind: "hashed", bytes: payload.subarray(1) });
    case KIND.end: {
      const size = sized(5, "end");
      return size.ok ? ok({ kind: "end", index: view.getUint32(1, false) }) : size;
    }
    case KIND.problem:
      return decodeProblem(payload, view);
    case KIND["archive-end"]: {
      const size = sized(1, "archive-end");
      return size.ok ? ok({ kind: "archive-end" }) : size;
    }
    default:
      return fail("EPROTO", `unknown restore record kind ${payload[0]}`);
  }
}

function decodeProblem(payload: Uint8Array, view: DataView): Result<RestoreRecord> {
  if (payload.length < 5) return fail("EPROTO", "a problem record is cut off");
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(payload.subarray(5)));
  } catch {
    return fail("EPROTO", "a problem record's text is not JSON");
  }
  const { code, message } = (parsed ?? {}) as { code?: unknown; message?: unknown };
  if (typeof code !== "string" || typeof message !== "string") {
    return fail("EPROTO", "a problem record needs a code and a message");
  }
  return ok({ kind: "problem", index: view.getUint32(1, false), code, message });
}
