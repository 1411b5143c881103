/**
 * Path rules for snapshot entries. A manifest path is relative to the backed-up root, uses `/`
 * between segments, and can never name anything outside that root. Any other byte is allowed:
 * spaces, unicode, leading dashes, even newlines.
 *
 * @module
 */

/** Longest accepted entry path, in UTF-8 bytes (Linux PATH_MAX). */
export const ENTRY_PATH_BYTES_MAX = 4096;
/** Longest accepted path segment, in UTF-8 bytes (Linux NAME_MAX). */
export const ENTRY_NAME_BYTES_MAX = 255;

/** Why a path was refused. */
export type PathProblem =
  | "empty"
  | "absolute"
  | "empty-segment"
  | "dot-segment"
  | "nul"
  | "too-long";

/** The verdict on one path: accepted, or refused with the reason. */
export type PathCheck = { readonly ok: true } | {
  readonly ok: false;
  readonly problem: PathProblem;
  readonly message: string;
};

const encoder = new TextEncoder();
const strictDecoder = new TextDecoder("utf-8", { fatal: true });

/** First of the code points that stand for a byte of a name that is not UTF-8 (U+DC80..DCFF). */
const RAW_BYTE_BASE = 0xdc00;
const RAW_BYTE_PATTERN = /[\udc80-\udcff]/;
/** Longest name decoded character by character when it is all ASCII (one call's arguments). */
const ASCII_FAST_BYTES_MAX = 255;

/**
 * Whether a path holds bytes that are not UTF-8 (written as U+DC80..U+DCFF, one per byte, the
 * "surrogateescape" convention): such a path cannot be handed to Deno's path APIs as a string.
 *
 * @param path an entry path
 * @returns true when some byte of the name is not UTF-8
 */
export function hasRawBytes(path: string): boolean {
  return RAW_BYTE_PATTERN.test(path);
}

/**
 * A file name's bytes as a string: valid UTF-8 decodes as usual, every byte of an invalid
 * sequence becomes U+DC80..U+DCFF. Injective, and the inverse of {@link pathToBytes}.
 *
 * @param bytes the raw bytes of a name or path
 * @returns the string form
 *
 * @example A name with a 0xFF byte
 * ```ts
 * import assert from "node:assert/strict";
 * import { pathFromBytes, pathToBytes } from "./path_rules.ts";
 * const name = pathFromBytes(new Uint8Array([0x61, 0xff]));
 * assert.equal(name, "a\udcff");
 * assert.deepEqual([...pathToBytes(name)], [0x61, 0xff]);
 * ```
 */
export function pathFromBytes(bytes: Uint8Array): string {
  if (bytes.length <= ASCII_FAST_BYTES_MAX) {
    // Most names are short ASCII: their characters are their bytes, without a decoder call.
    let ascii = 0;
    while (ascii < bytes.length && bytes[ascii]! < 0x80) ascii++;
    if (ascii === bytes.length) {
      return String.fromCharCode.apply(null, bytes as unknown as number[]);
    }
  }
  try {
    return strictDecoder.decode(bytes);
  } catch {
    // Bounded by the bytes: each turn consumes one valid character or one raw byte.
    let out = "";
    for (let i = 0; i < bytes.length;) {
      const length = sequenceLength(bytes, i);
      if (length === 0) out += String.fromCharCode(RAW_BYTE_BASE + bytes[i++]!);
      else {
        out += strictDecoder.decode(bytes.subarray(i, i + length));
        i += length;
      }
    }
    return out;
  }
}

/** Length of the valid UTF-8 sequence at `i`, or 0 when the byte there starts none. */
function sequenceLength(bytes: Uint8Array, i: number): number {
  const first = bytes[i]!;
  const length = first < 0x80
    ? 1
    : first >= 0xc2 && first < 0xe0
    ? 2
    : first >= 0xe0 && first < 0xf0
    ? 3
    : first >= 0xf0 && first < 0xf5
    ? 4
    : 0;
  if (length <= 1 || i + length > bytes.length) return length === 1 ? 1 : 0;
  try {
    strictDecoder.decode(bytes.subarray(i, i + length));
    return length;
  } catch {
    return 0;
  }
}

/**
 * The bytes a path stands for: UTF-8, with U+DC80..U+DCFF back to single bytes.
 *
 * @param path a string from {@link pathFromBytes} or any valid path
 * @returns the raw bytes
 */
export function pathToBytes(path: string): Uint8Array {
  if (!hasRawBytes(path)) return encoder.encode(path);
  const parts: number[] = [];
  for (const char of path) {
    const code = char.charCodeAt(0);
    if (char.length === 1 && code >= 0xdc80 && code <= 0xdcff) parts.push(code - RAW_BYTE_BASE);
    else parts.push(...encoder.encode(char));
  }
  return new Uint8Array(parts);
}

function refuse(problem: PathProblem, path: string, why: string): PathCheck {
  return { ok: false, problem, message: `entry path ${JSON.stringify(path)} ${why}` };
}

/**
 * Checks one entry path against the rules: not empty, not absolute, no empty, `.` or `..`
 * segments, no NUL, at most {@link ENTRY_PATH_BYTES_MAX} bytes and segments of at most
 * {@link ENTRY_NAME_BYTES_MAX} bytes.
 *
 * @param path the path as it appears in a manifest or archive
 * @returns `{ ok: true }` or the problem and a message naming the path
 *
 * @example Accepting odd names, refusing escapes
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkEntryPath } from "./path_rules.ts";
 * assert(checkEntryPath("docs/-rf\nnew line.txt").ok);
 * assert(!checkEntryPath("../etc/passwd").ok);
 * assert(!checkEntryPath("/etc/passwd").ok);
 * ```
 */
export function checkEntryPath(path: string): PathCheck {
  if (path.length === 0) return refuse("empty", path, "is empty");
  if (path.charCodeAt(0) === 0x2f) return refuse("absolute", path, "is absolute");
  if (path.includes("\0")) return refuse("nul", path, "contains a NUL character");
  let pathBytes = 0;
  let segmentStart = 0;
  let segmentBytes = 0;
  let segmentProblem: PathCheck | undefined;
  // One pass over the code units for the segment rules and the UTF-8 lengths (each byte that is
  // not UTF-8, U+DC80..U+DCFF, counts one byte; a surrogate pair four), with the precedence of
  // the rules as listed: the whole path's length first, then the first bad segment.
  for (let i = 0; i <= path.length; i++) {
    const code = i < path.length ? path.charCodeAt(i) : 0x2f;
    if (code !== 0x2f) {
      segmentBytes += utf8Bytes(code, path.charCodeAt(i + 1));
      if (code >= 0xd800 && code < 0xdc00 && isLowSurrogate(path.charCodeAt(i + 1))) i++;
      continue;
    }
    segmentProblem ??= segmentCheck(path, segmentStart, i, segmentBytes);
    pathBytes += segmentBytes + (i < path.length ? 1 : 0);
    segmentStart = i + 1;
    segmentBytes = 0;
  }
  if (pathBytes > ENTRY_PATH_BYTES_MAX) {
    return refuse("too-long", path, `is longer than ${ENTRY_PATH_BYTES_MAX} bytes`);
  }
  return segmentProblem ?? { ok: true };
}

/** The problem of the segment `path[start, end)` of `bytes` bytes, if any. */
function segmentCheck(
  path: string,
  start: number,
  end: number,
  bytes: number,
): PathCheck | undefined {
  const length = end - start;
  if (length === 0) return refuse("empty-segment", path, "has an empty segment");
  const dots = length <= 2 && path.charCodeAt(start) === 0x2e &&
    (length === 1 || path.charCodeAt(start + 1) === 0x2e);
  if (dots) return refuse("dot-segment", path, `has a "${path.slice(start, end)}" segment`);
  if (bytes > ENTRY_NAME_BYTES_MAX) {
    return refuse("too-long", path, `has a name longer than ${ENTRY_NAME_BYTES_MAX} bytes`);
  }
  return undefined;
}

function isLowSurrogate(code: number): boolean {
  return code >= 0xdc00 && code < 0xe000;
}

/** Bytes `code` (and, for a surrogate pair, `next`) take in {@link pathToBytes}. */
function utf8Bytes(code: number, next: number): number {
  if (code < 0x80) return 1;
  if (code < 0x800) return 2;
  if (code >= 0xd800 && code < 0xdc00) return isLowSurrogate(next) ? 4 : 3;
  if (code >= 0xdc80 && code <= 0xdcff) return 1; // a raw byte of a name that is not UTF-8
  return 3;
}

/**
 * The parent of an entry path, or `""` for an entry at the root.
 *
 * @param path a valid entry path
 * @returns the parent path
 *
 * @example Parents
 * ```ts
 * import assert from "node:assert/strict";
 * import { parentPath } from "./path_rules.ts";
 * assert(parentPath("a/b/c") === "a/b");
 * assert(parentPath("a") === "");
 * ```
 */
export function parentPath(path: string): string {
  const slash = path.lastIndexOf("/");
  return slash === -1 ? "" : path.slice(0, slash);
}

/**
 * Whether `path` is `base` itself or lies inside it.
 *
 * @param path a valid entry path
 * @param base a valid entry path
 * @returns true when `path` equals `base` or starts with `base/`
 *
 * @example Subtrees
 * ```ts
 * import assert from "node:assert/strict";
 * import { isWithin } from "./path_rules.ts";
 * assert(isWithin("docs/a.md", "docs"));
 * assert(!isWithin("docs2/a.md", "docs"));
 * ```
 */
export function isWithin(path: string, base: string): boolean {
  return path === base || path.startsWith(`${base}/`);
}
