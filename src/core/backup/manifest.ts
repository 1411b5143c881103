/**
 * The snapshot manifest: what a snapshot holds and where each file's bytes live. Validated with
 * zod whenever it crosses a boundary (read from disk, received from a peer).
 *
 * @module
 */

import { z } from "zod";
import { checkEntryPath, parentPath, pathToBytes } from "./path_rules.ts";
import type { SameType } from "../assert.ts";

/** Format name written in every manifest. */
export const MANIFEST_FORMAT = "lanfree-manifest";
/** Manifest format version this code writes. */
export const MANIFEST_VERSION = 2;
/** Manifest versions this code reads (version 1 lacks owners, offsets, links and raw names). */
export const MANIFEST_VERSIONS_READ = [1, 2] as const;
/**
 * Most entries one manifest may list. Manifests are written, sent and read a line at a time
 * (`manifest_stream.ts`), so this bounds the client's compact entry table (about 130 bytes per
 * entry) rather than any whole-manifest copy.
 */
export const MANIFEST_ENTRIES_MAX = 10_000_000;
/** Most extended attributes recorded for one entry. */
export const XATTRS_PER_ENTRY_MAX = 1024;
/** Longest extended attribute name, in bytes (Linux XATTR_NAME_MAX). */
export const XATTR_NAME_BYTES_MAX = 255;
/** Longest extended attribute value as base64 (Linux XATTR_SIZE_MAX, 64 KiB, encoded). */
export const XATTR_VALUE_BASE64_MAX = 87_384;

/** Latest time a snapshot id can carry (9999-12-31T23:59:59.999Z). */
export const SNAPSHOT_TIME_MS_MAX = 253_402_300_799_999;

/** Snapshot ids: a UTC timestamp then a random suffix, safe as a file name. */
export const SNAPSHOT_ID_PATTERN = /^\d{8}T\d{9}Z-[0-9a-f]{8}$/;

const snapshotId = z.string().regex(SNAPSHOT_ID_PATTERN, "not a snapshot id");
const entryPath = z.string().superRefine((path, context) => {
  const check = checkEntryPath(path);
  if (!check.ok) context.addIssue({ code: "custom", message: check.message });
});
const count = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);
const ownerId = z.number().int().nonnegative().max(0xffff_ffff);
const ownerName = z.string().min(1).max(255).refine((n) => !/[\0\n:]/.test(n), "bad owner name");
const base64 = z.string().max(8192).regex(/^[A-Za-z0-9+/]*={0,2}$/, "not base64");
const xattrName = z.string().min(1).refine(
  (name) => !name.includes("\0") && pathToBytes(name).length <= XATTR_NAME_BYTES_MAX,
  "bad extended attribute name",
);
const xattrValue = z.string().max(XATTR_VALUE_BASE64_MAX).regex(
  /^[A-Za-z0-9+/]*={0,2}$/,
  "not base64",
);
/** Extended attributes by name (bytes that are not UTF-8 as U+DC80..U+DCFF), values in base64. */
const xattrs = z.record(xattrName, xattrValue).refine(
  (record) => Object.keys(record).length <= XATTRS_PER_ENTRY_MAX,
  `more than ${XATTRS_PER_ENTRY_MAX} extended attributes`,
);
const common = {
  path: entryPath,
  mode: z.number().int().min(0).max(0o7777),
  mtimeMs: z.number().finite(),
  /** Owner ids and names as the walk saw them (version 2). */
  uid: ownerId.optional(),
  gid: ownerId.optional(),
  user: ownerName.optional(),
  group: ownerName.optional(),
  /** The path's bytes, base64, when they are not valid UTF-8 (`path` then holds U+DC80..U+DCFF). */
  rawPath: base64.optional(),
};

/** A regular file: its size, hash, and the snapshot whose archive holds its bytes. */
export const fileEntrySchema = z.object({
  type: z.literal("file"),
  ...common,
  sizeBytes: count,
  sha256: z.string().regex(/^[0-9a-f]{64}$/, "not a SHA-256 hex digest"),
  data: snapshotId,
  /** Where the member's first header block starts in the archive of `data` (version 2). */
  offset: count.optional(),
  /** Another path of the same manifest this file is a hard link to (same data). */
  hardlink: entryPath.optional(),
  /**
   * Stored sparsely (PAX sparse 1.0): `storedBytes` is the member's size (map and data), and
   * `sha256` covers those stored bytes, so checking never reads the holes.
   */
  sparse: z.object({ storedBytes: count }).strict().optional(),
  /** Extended attributes (`SCHILY.xattr.*` in the archive too). */
  xattrs: xattrs.optional(),
}).strict();
/** A directory (its children are entries of their own). */
export const dirEntrySchema = z.object({
  type: z.literal("dir"),
  ...common,
  xattrs: xattrs.optional(),
}).strict();
/** A symbolic link and its target, stored as written (never followed). */
export const symlinkEntrySchema = z.object({
  type: z.literal("symlink"),
  ...common,
  target: z.string().min(1).refine((t) => !t.includes("\0"), "symlink target contains NUL"),
  /** The target's bytes, base64, when they are not valid UTF-8. */
  rawTarget: base64.optional(),
}).strict();

/** One entry of a snapshot. */
export const entrySchema = z.discriminatedUnion("type", [
  fileEntrySchema,
  dirEntrySchema,
  symlinkEntrySchema,
]);

/** Bytes that travelled through each channel while the snapshot was taken. */
export const channelBytesSchema = z.object({ storage: count, network: count }).strict();

/** The whole manifest. */
export const manifestSchema = z.object({
  format: z.literal(MANIFEST_FORMAT),
  version: z.union([z.literal(1), z.literal(MANIFEST_VERSION)]),
  id: snapshotId,
  kind: z.enum(["fs", "db"]),
  source: z.string().min(1),
  parent: snapshotId.nullable(),
  createdMs: z.number().int().nonnegative(),
  archiveBytes: count,
  channelBytes: channelBytesSchema,
  entries: z.array(entrySchema).max(MANIFEST_ENTRIES_MAX),
  deleted: z.array(entryPath).max(MANIFEST_ENTRIES_MAX),
  /** Set by consolidate: the parent it was incremental to, and when it was made to stand alone. */
  consolidated: z.object({ parent: snapshotId, consolidatedMs: count }).strict().optional(),
}).strict().superRefine((manifest, context) => {
  const problem = treeProblem(manifest.entries);
  if (problem !== undefined) context.addIssue({ code: "custom", message: problem });
});

/** What every manifest entry records. */
export interface EntryCommon {
  /** Path relative to the snapshot's root: `/`-separated, no `.` or `..` component. */
  readonly path: string;
  /** Permission bits, 0..0o7777. */
  readonly mode: number;
  /** Modification time, ms since the epoch. */
  readonly mtimeMs: number;
  /** Owner user id as the walk saw it (version 2). */
  readonly uid?: number;
  /** Owner group id as the walk saw it (version 2). */
  readonly gid?: number;
  /** Owner user name, where the system names the id (version 2). */
  readonly user?: string;
  /** Owner group name, where the system names the id (version 2). */
  readonly group?: string;
  /** The path's bytes, base64, when they are not valid UTF-8 (`path` then holds U+DC80..U+DCFF). */
  readonly rawPath?: string;
}
/** A regular file: its size, hash, and the snapshot whose archive holds its bytes. */
export interface FileEntry extends EntryCommon {
  /** Names the entry type. */
  readonly type: "file";
  /** Size in bytes. */
  readonly sizeBytes: number;
  /** SHA-256 of the content, lowercase hex. */
  readonly sha256: string;
  /** The snapshot whose archive holds the bytes (this one, or a parent for unchanged files). */
  readonly data: string;
  /** Where the member's first header block starts in the archive of `data` (version 2). */
  readonly offset?: number;
  /** Another path of the same manifest this file is a hard link to (same data). */
  readonly hardlink?: string;
  /** Stored sparsely (PAX sparse 1.0): the member's size (map and data), which `sha256` covers. */
  readonly sparse?: { readonly storedBytes: number };
  /** Extended attributes by name, values in base64. */
  readonly xattrs?: Record<string, string>;
}
/** A directory (its children are entries of their own). */
export interface DirEntry extends EntryCommon {
  /** Names the entry type. */
  readonly type: "dir";
  /** Extended attributes by name, values in base64. */
  readonly xattrs?: Record<string, string>;
}
/** A symbolic link and its target, stored as written (never followed). */
export interface SymlinkEntry extends EntryCommon {
  /** Names the entry type. */
  readonly type: "symlink";
  /** The target, as the link holds it. */
  readonly target: string;
  /** The target's bytes, base64, when they are not valid UTF-8. */
  readonly rawTarget?: string;
}
/** One entry of a manifest. */
export type ManifestEntry = FileEntry | DirEntry | SymlinkEntry;
/** Per-channel byte counters (counted up while a snapshot is taken). */
export interface ChannelBytes {
  /** Bytes that went through the storage region. */
  storage: number;
  /** Bytes that went over the network. */
  network: number;
}
/** A validated manifest: what a snapshot holds and where each file's bytes live. */
export interface Manifest {
  /** Always {@link MANIFEST_FORMAT}. */
  readonly format: typeof MANIFEST_FORMAT;
  /** The format version it was written in: {@link MANIFEST_VERSION}, or 1 for older ones. */
  readonly version: 1 | typeof MANIFEST_VERSION;
  /** The snapshot id (a UTC timestamp and a random suffix, {@link SNAPSHOT_ID_PATTERN}). */
  readonly id: string;
  /** A file-system or a database snapshot. */
  readonly kind: "fs" | "db";
  /** What was backed up (a directory or a database path). */
  readonly source: string;
  /** The snapshot this one is incremental to, or null for a full one. */
  readonly parent: string | null;
  /** When the snapshot was taken, ms since the epoch. */
  readonly createdMs: number;
  /** Size of this snapshot's tar archive. */
  readonly archiveBytes: number;
  /** Bytes that went through each channel while it was taken. */
  readonly channelBytes: ChannelBytes;
  /** Every entry of the tree, parents before children. */
  readonly entries: ManifestEntry[];
  /** Paths present in the parent and gone from this snapshot. */
  readonly deleted: string[];
  /**
   * Set by consolidate (a synthetic full): the parent this snapshot was incremental to (history
   * only: `parent` is then null and its archive holds every file), and when.
   */
  readonly consolidated?: { readonly parent: string; readonly consolidatedMs: number };
}
// `deno check` fails here when the types above and the schema stop describing the same values.
const _manifestMatchesSchema: SameType<Manifest, z.output<typeof manifestSchema>> = true;

/**
 * The tree rule: paths are unique, and every entry's parent is a directory entry of the same
 * manifest. So no entry can sit below a symlink or a file (no writing "through" a symlink).
 */
function treeProblem(entries: readonly ManifestEntry[]): string | undefined {
  const types = new Map<string, ManifestEntry["type"]>();
  for (const entry of entries) {
    if (types.has(entry.path)) return `entry ${JSON.stringify(entry.path)} is listed twice`;
    types.set(entry.path, entry.type);
  }
  for (const entry of entries) {
    if (entry.type === "file" && entry.hardlink !== undefined) {
      const primary = types.get(entry.hardlink);
      if (primary !== "file" || entry.hardlink === entry.path) {
        return `entry ${JSON.stringify(entry.path)}: its hard link ${
          JSON.stringify(entry.hardlink)
        } is not a file of the snapshot`;
      }
    }
    const parent = parentPath(entry.path);
    if (parent === "") continue;
    const parentType = types.get(parent);
    if (parentType !== "dir") {
      const what = parentType === undefined ? "is not listed" : `is a ${parentType}`;
      return `entry ${JSON.stringify(entry.path)}: its parent ${JSON.stringify(parent)} ${what}`;
    }
  }
  return undefined;
}

/** The outcome of {@link parseManifest}. */
export type ManifestParse =
  | { readonly ok: true; readonly manifest: Manifest }
  | { readonly ok: false; readonly message: string };

/**
 * Validates an untrusted value as a manifest.
 *
 * @param value parsed JSON from a file or a peer
 * @returns the manifest, or a message listing the first problems with their locations
 *
 * @example Refusing a manifest with an escaping path
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseManifest } from "./manifest.ts";
 * const parsed = parseManifest({ format: "lanfree-manifest", entries: [{ path: "../x" }] });
 * assert(!parsed.ok);
 * ```
 */
export function parseManifest(value: unknown): ManifestParse {
  const result = manifestSchema.safeParse(value);
  if (result.success) return { ok: true, manifest: result.data };
  const lines = result.error.issues.slice(0, 3).map((issue) =>
    `${issue.path.length === 0 ? "manifest" : issue.path.join(".")}: ${issue.message}`
  );
  return { ok: false, message: lines.join("; ") };
}

/**
 * Makes a snapshot id from a time and eight random hex digits; ids sort by time.
 *
 * @param nowMs the creation time, in ms since the epoch
 * @param randomHex eight lowercase hex digits
 * @returns the id, for example `20240102T030405006Z-0badcafe`
 *
 * @example An id
 * ```ts
 * import assert from "node:assert/strict";
 * import { makeSnapshotId } from "./manifest.ts";
 * assert(makeSnapshotId(0, "0badcafe") === "19700101T000000000Z-0badcafe");
 * ```
 */
export function makeSnapshotId(nowMs: number, randomHex: string): string {
  if (!/^[0-9a-f]{8}$/.test(randomHex)) throw new RangeError("randomHex: 8 hex digits needed");
  if (!Number.isInteger(nowMs) || nowMs < 0 || nowMs > SNAPSHOT_TIME_MS_MAX) {
    throw new RangeError(`nowMs: ${nowMs} is not a time between 1970 and 9999`);
  }
  const iso = new Date(nowMs).toISOString(); // 1970-01-01T00:00:00.000Z
  const digits = iso.replace(/[-:.]/g, "");
  return `${digits}-${randomHex}`;
}
