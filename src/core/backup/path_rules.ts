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
  if (path.startsWith("/")) return refuse("absolute", path, "is absolute");
  if (path.includes("\0")) return refuse("nul", path, "contains a NUL character");
  if (encoder.encode(path).length > ENTRY_PATH_BYTES_MAX) {
    return refuse("too-long", path, `is longer than ${ENTRY_PATH_BYTES_MAX} bytes`);
  }
  for (const segment of path.split("/")) {
    if (segment.length === 0) return refuse("empty-segment", path, "has an empty segment");
    if (segment === "." || segment === "..") {
      return refuse("dot-segment", path, `has a "${segment}" segment`);
    }
    if (encoder.encode(segment).length > ENTRY_NAME_BYTES_MAX) {
      return refuse("too-long", path, `has a name longer than ${ENTRY_NAME_BYTES_MAX} bytes`);
    }
  }
  return { ok: true };
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
