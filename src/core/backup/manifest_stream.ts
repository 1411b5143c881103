/**
 * Manifests a line at a time: a manifest of a million entries is written, sent, received and
 * checked without ever being one value in memory.
 *
 * **The file layout** (still one JSON value, so `JSON.parse` and every other reader keep
 * working): the head fields on the first line, then one entry per line, then one deleted path
 * per line, then the channel counters (known only at the commit) on the last line:
 *
 * ```
 * {"format":"lanfree-manifest","version":2,"id":…,"archiveBytes":…,"entries":[
 * {"type":"dir","path":"a",…},
 * {"type":"file","path":"a/f",…}
 * ],"deleted":[
 * "old"
 * ],"channelBytes":{"storage":…,"network":…}}
 * ```
 *
 * **The wire form** (client to server, and the parent server to client): NDJSON, the same
 * entry lines with no brackets; the client's manifest starts with its head object and ends
 * with the deleted paths as JSON strings. Where the server offered it (`protocol.ts`), the
 * client's entry lines may include **run lines**, `[from,count]` (a JSON array): "the next
 * `count` entries are the parent's entries `from` .. `from + count - 1`, unchanged, line for
 * line"; the server copies those lines from the parent's file instead of receiving them, and
 * checks each as if it had been sent ({@link runLine}, {@link checkRunLine}).
 *
 * **The checks**: {@link checkEntry} gives exactly the verdict of `entrySchema` (a property
 * test holds them together) at a fraction of zod's cost, and {@link ManifestChecker} applies
 * the tree rule as entries pass: paths strictly increasing (so unique), every parent an
 * earlier directory entry; hard links whose target came before the link are checked in a
 * second pass over the entries ({@link ManifestChecker.unresolvedLinks}), only when there are
 * any.
 *
 * @module
 */

import {
  type ChannelBytes,
  type Manifest,
  MANIFEST_ENTRIES_MAX,
  MANIFEST_FORMAT,
  MANIFEST_VERSIONS_READ,
  type ManifestEntry,
  SNAPSHOT_ID_PATTERN,
  XATTR_NAME_BYTES_MAX,
  XATTR_VALUE_BASE64_MAX,
  XATTRS_PER_ENTRY_MAX,
} from "./manifest.ts";
import { checkEntryPath, parentPath, pathToBytes } from "./path_rules.ts";

/** A check's outcome: the value, or what is wrong with it. */
export type Checked<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly message: string };

/** Everything of a manifest but its entries and deleted paths. */
export type ManifestHead = Omit<Manifest, "entries" | "deleted">;

const COUNT_MAX = Number.MAX_SAFE_INTEGER;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const SHA256 = /^[0-9a-f]{64}$/;
const RAW_BASE64_MAX = 8192;
const COMMON_KEYS = ["type", "path", "mode", "mtimeMs", "uid", "gid", "user", "group", "rawPath"];
const KEYS: Record<ManifestEntry["type"], ReadonlySet<string>> = {
  file: new Set([
    ...COMMON_KEYS,
    "sizeBytes",
    "sha256",
    "data",
    "offset",
    "hardlink",
    "sparse",
    "xattrs",
  ]),
  dir: new Set([...COMMON_KEYS, "xattrs"]),
  symlink: new Set([...COMMON_KEYS, "target", "rawTarget"]),
};

function bad<T>(message: string): Checked<T> {
  return { ok: false, message };
}

function isCount(value: unknown): boolean {
  return typeof value === "number" && Number.isInteger(value) && value >= 0 && value <= COUNT_MAX;
}

function isOwnerId(value: unknown): boolean {
  return typeof value === "number" && Number.isInteger(value) && value >= 0 &&
    value <= 0xffff_ffff;
}

function isOwnerName(value: unknown): boolean {
  return typeof value === "string" && value.length >= 1 && value.length <= 255 &&
    !/[\0\n:]/.test(value);
}

function isBase64(value: unknown, max: number): boolean {
  return typeof value === "string" && value.length <= max && BASE64.test(value);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** The problem of one optional field, or undefined. */
type FieldCheck = (value: unknown) => string | undefined;

const pathField: FieldCheck = (value) => {
  if (typeof value !== "string") return "expected a string";
  const check = checkEntryPath(value);
  return check.ok ? undefined : check.message;
};

const FIELDS: Record<string, FieldCheck> = {
  path: pathField,
  mode: (v) =>
    typeof v === "number" && Number.isInteger(v) && v >= 0 && v <= 0o7777 ? undefined : "bad mode",
  mtimeMs: (v) => typeof v === "number" && Number.isFinite(v) ? undefined : "not a finite number",
  uid: (v) => isOwnerId(v) ? undefined : "bad owner id",
  gid: (v) => isOwnerId(v) ? undefined : "bad owner id",
  user: (v) => isOwnerName(v) ? undefined : "bad owner name",
  group: (v) => isOwnerName(v) ? undefined : "bad owner name",
  rawPath: (v) => isBase64(v, RAW_BASE64_MAX) ? undefined : "not base64",
  rawTarget: (v) => isBase64(v, RAW_BASE64_MAX) ? undefined : "not base64",
  sizeBytes: (v) => isCount(v) ? undefined : "not a count",
  offset: (v) => isCount(v) ? undefined : "not a count",
  sha256: (v) => typeof v === "string" && SHA256.test(v) ? undefined : "not a SHA-256 hex digest",
  data: (v) =>
    typeof v === "string" && SNAPSHOT_ID_PATTERN.test(v) ? undefined : "not a snapshot id",
  hardlink: pathField,
  sparse: (v) => {
    if (!isPlainObject(v)) return "expected an object";
    const keys = Object.keys(v);
    if (keys.some((k) => k !== "storedBytes")) return "unknown key in sparse";
    return isCount(v.storedBytes) ? undefined : "sparse.storedBytes is not a count";
  },
  target: (v) =>
    typeof v === "string" && v.length >= 1 && !v.includes("\0") ? undefined : "bad symlink target",
  xattrs: checkXattrs,
};

function checkXattrs(value: unknown): string | undefined {
  if (!isPlainObject(value)) return "expected an object";
  const names = Object.keys(value);
  if (names.length > XATTRS_PER_ENTRY_MAX) {
    return `more than ${XATTRS_PER_ENTRY_MAX} extended attributes`;
  }
  for (const name of names) {
    if (
      name.length === 0 || name.includes("\0") || pathToBytes(name).length > XATTR_NAME_BYTES_MAX
    ) {
      return "bad extended attribute name";
    }
    if (!isBase64(value[name], XATTR_VALUE_BASE64_MAX)) return "not base64";
  }
  return undefined;
}

const REQUIRED: Record<ManifestEntry["type"], readonly string[]> = {
  file: ["path", "mode", "mtimeMs", "sizeBytes", "sha256", "data"],
  dir: ["path", "mode", "mtimeMs"],
  symlink: ["path", "mode", "mtimeMs", "target"],
};

/**
 * Checks one manifest entry: the same verdict as `entrySchema` (strict objects, every field's
 * rule, the path rules), written out by hand because zod took about 17 µs per entry.
 *
 * @param value an untrusted value (parsed JSON)
 * @returns the entry (the value itself), or the first problem with the field's name
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkEntry } from "./manifest_stream.ts";
 * assert.ok(checkEntry({ type: "dir", path: "a", mode: 0o755, mtimeMs: 0 }).ok);
 * assert.ok(!checkEntry({ type: "dir", path: "../a", mode: 0o755, mtimeMs: 0 }).ok);
 * ```
 */
export function checkEntry(value: unknown): Checked<ManifestEntry> {
  if (!isPlainObject(value)) return bad("entry: expected an object");
  const type = value.type;
  if (type !== "file" && type !== "dir" && type !== "symlink") {
    return bad("type: expected file, dir or symlink");
  }
  const allowed = KEYS[type];
  for (const key of REQUIRED[type]) {
    if (value[key] === undefined) return bad(`${key}: required`);
  }
  for (const key in value) {
    if (key === "type") continue;
    if (!allowed.has(key)) return bad(`entry: unknown key ${JSON.stringify(key)}`);
    const field = value[key];
    if (field === undefined) continue;
    const problem = FIELDS[key]!(field);
    if (problem !== undefined) return bad(`${key}: ${problem}`);
  }
  return { ok: true, value: value as unknown as ManifestEntry };
}

/**
 * Checks a manifest's head (everything but the entries and the deleted paths).
 *
 * @param value an untrusted value
 * @param extraKeys keys the value may carry besides the head's (`entries`, `deleted`, ...)
 * @returns the head, or the first problem
 */
export function checkHead(
  value: unknown,
  extraKeys: readonly string[] = [],
): Checked<ManifestHead> {
  if (!isPlainObject(value)) return bad("manifest: expected an object");
  const head = value as Partial<ManifestHead>;
  if (head.format !== MANIFEST_FORMAT) return bad(`format: expected "${MANIFEST_FORMAT}"`);
  if (!(MANIFEST_VERSIONS_READ as readonly unknown[]).includes(head.version)) {
    return bad(`version: expected one of ${MANIFEST_VERSIONS_READ.join(", ")}`);
  }
  if (typeof head.id !== "string" || !SNAPSHOT_ID_PATTERN.test(head.id)) return bad("id: bad");
  if (head.kind !== "fs" && head.kind !== "db") return bad("kind: expected fs or db");
  if (typeof head.source !== "string" || head.source.length === 0) return bad("source: bad");
  if (
    head.parent !== null &&
    !(typeof head.parent === "string" && SNAPSHOT_ID_PATTERN.test(head.parent))
  ) {
    return bad("parent: not a snapshot id");
  }
  if (!isCount(head.createdMs)) return bad("createdMs: not a count");
  if (!isCount(head.archiveBytes)) return bad("archiveBytes: not a count");
  const bytes = head.channelBytes;
  if (
    !isPlainObject(bytes) || Object.keys(bytes).length !== 2 || !isCount(bytes.storage) ||
    !isCount(bytes.network)
  ) {
    return bad("channelBytes: expected { storage, network } counts");
  }
  const consolidated = (value as { consolidated?: unknown }).consolidated;
  if (consolidated !== undefined) {
    const c = consolidated as { parent?: unknown; consolidatedMs?: unknown };
    if (
      !isPlainObject(consolidated) || Object.keys(consolidated).length !== 2 ||
      typeof c.parent !== "string" || !SNAPSHOT_ID_PATTERN.test(c.parent) ||
      !isCount(c.consolidatedMs)
    ) {
      return bad("consolidated: expected { parent, consolidatedMs }");
    }
  }
  const known = new Set<string>([...HEAD_KEYS, ...OPTIONAL_HEAD_KEYS, ...extraKeys]);
  for (const key of Object.keys(value)) {
    if (!known.has(key)) return bad(`manifest: unknown key ${JSON.stringify(key)}`);
  }
  return { ok: true, value: head as ManifestHead };
}

/** The head's keys, in the order the file layout writes them. */
const HEAD_KEYS = [
  "format",
  "version",
  "id",
  "kind",
  "source",
  "parent",
  "createdMs",
  "archiveBytes",
  "channelBytes",
] as const;

/** Head keys a manifest may leave out (`consolidated`: a synthetic full's former parent). */
const OPTIONAL_HEAD_KEYS = ["consolidated"] as const;

/**
 * Applies the tree rule to entries as they pass, in path order: each path greater than the one
 * before (so none twice), each parent an earlier directory entry. It keeps the directories'
 * paths only, and the targets of hard links whose file it has not seen after the link.
 */
export class ManifestChecker {
  #count = 0;
  #last: string | undefined;
  readonly #dirs = new Set<string>();
  readonly #linkTargets = new Set<string>();

  /** Entries checked so far. */
  get count(): number {
    return this.#count;
  }

  /**
   * Checks the next entry.
   *
   * @param value an untrusted value
   * @returns the entry, or why it breaks a rule (naming it)
   */
  entry(value: unknown): Checked<ManifestEntry> {
    const checked = checkEntry(value);
    if (!checked.ok) return checked;
    const entry = checked.value;
    const name = JSON.stringify(entry.path);
    if (++this.#count > MANIFEST_ENTRIES_MAX) {
      return bad(`more than ${MANIFEST_ENTRIES_MAX} entries`);
    }
    if (this.#last !== undefined && !(entry.path > this.#last)) {
      return bad(`entry ${name} is out of path order (after ${JSON.stringify(this.#last)})`);
    }
    this.#last = entry.path;
    const parent = parentPath(entry.path);
    if (parent !== "" && !this.#dirs.has(parent)) {
      return bad(`entry ${name}: its parent ${JSON.stringify(parent)} is not an earlier directory`);
    }
    if (entry.type === "dir") this.#dirs.add(entry.path);
    if (entry.type !== "file") return checked;
    this.#linkTargets.delete(entry.path);
    if (entry.hardlink === entry.path) {
      return bad(`entry ${name}: its hard link ${name} is not a file of the snapshot`);
    }
    if (entry.hardlink !== undefined) this.#linkTargets.add(entry.hardlink);
    return checked;
  }

  /**
   * Hard-link targets not yet seen as a file after their link: each must be a file entry
   * somewhere in the manifest (a second pass with {@link resolveLinks} confirms it).
   *
   * @returns the targets, empty when every link is settled
   */
  unresolvedLinks(): ReadonlySet<string> {
    return this.#linkTargets;
  }
}

/** A run of the parent's entry lines named by a run line: `count` of them from `from`. */
export interface ParentRun {
  /** The first one's position among the parent's entries (0 is the first entry). */
  readonly from: number;
  /** How many (at least one). */
  readonly count: number;
}

/**
 * The wire text of a run line.
 *
 * @param run the parent's entries it names
 * @returns the line
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkRunLine, runLine } from "./manifest_stream.ts";
 * assert.equal(runLine({ from: 3, count: 2 }), "[3,2]");
 * assert.deepEqual(checkRunLine(JSON.parse("[3,2]")), { ok: true, value: { from: 3, count: 2 } });
 * ```
 */
export function runLine(run: ParentRun): string {
  return `[${run.from},${run.count}]`;
}

/**
 * Checks a parsed run line: two integers, a position from 0 and a count from 1, both within
 * the entry limit.
 *
 * @param value an untrusted value (a parsed line that is an array)
 * @returns the run, or what is wrong with it
 */
export function checkRunLine(value: unknown): Checked<ParentRun> {
  if (!Array.isArray(value) || value.length !== 2) {
    return bad(`run: expected [from,count], got ${JSON.stringify(value).slice(0, 80)}`);
  }
  const [from, count] = value as unknown[];
  if (typeof from !== "number" || !Number.isSafeInteger(from) || from < 0) {
    return bad(`run: from ${JSON.stringify(from)} is not an entry position`);
  }
  if (from >= MANIFEST_ENTRIES_MAX) return bad(`run: from ${from} is past the entry limit`);
  if (
    typeof count !== "number" || !Number.isSafeInteger(count) || count < 1 ||
    count > MANIFEST_ENTRIES_MAX
  ) {
    return bad(`run: count ${JSON.stringify(count)} is not a count of entries`);
  }
  return { ok: true, value: { from, count } };
}

/**
 * The second pass for hard links: removes from `targets` every path that `entries` lists as a
 * file; what remains names no file.
 *
 * @param targets the checker's unresolved link targets
 * @param entry one entry of the manifest (call for each)
 */
export function resolveLink(targets: Set<string>, entry: ManifestEntry): void {
  if (entry.type === "file") targets.delete(entry.path);
}

/**
 * The problem with hard links left unresolved after the second pass, if any.
 *
 * @param targets what remained
 * @returns the problem, naming one target
 */
export function unresolvedLinkProblem(targets: ReadonlySet<string>): string | undefined {
  const first = targets.values().next();
  if (first.done) return undefined;
  return `a hard link's target ${JSON.stringify(first.value)} is not a file of the snapshot`;
}

/** The file layout's separators. */
const ENTRIES_OPEN = `,"entries":[`;
const DELETED_LINE = `],"deleted":[`;
const END_PREFIX = `],"channelBytes":`;

/**
 * The first line of the file layout: the head (without the channel counters) and the opening
 * of the entries.
 *
 * @param head the head
 * @returns the line, without its newline
 */
export function headLine(head: Omit<ManifestHead, "channelBytes">): string {
  const values = head as Readonly<Record<string, unknown>>;
  const fields = [...HEAD_KEYS, ...OPTIONAL_HEAD_KEYS]
    .filter((key) => key !== "channelBytes" && values[key] !== undefined)
    .map((key) => `${JSON.stringify(key)}:${JSON.stringify(values[key])}`);
  return `{${fields.join(",")}${ENTRIES_OPEN}`;
}

/** The line between the entries and the deleted paths. */
export const DELETED_SEPARATOR_LINE: string = DELETED_LINE;

/**
 * The last line of the file layout.
 *
 * @param channelBytes the counters
 * @returns the line
 */
export function endLine(channelBytes: ChannelBytes): string {
  return `${END_PREFIX}${
    JSON.stringify({ storage: channelBytes.storage, network: channelBytes.network })
  }}`;
}

/** One item of a manifest file read a line at a time. */
export type ManifestItem =
  | { readonly kind: "head"; readonly value: unknown }
  | { readonly kind: "separator" }
  | { readonly kind: "entry"; readonly line: string }
  | { readonly kind: "deleted"; readonly value: unknown }
  | { readonly kind: "end"; readonly channelBytes: unknown };

/**
 * Reads the file layout a line at a time. `next(line)` returns the item of a line, or
 * `undefined` when the file does not follow the layout (then read it whole instead: it was
 * written by another tool, or by an older lanfree on one line).
 */
export class ManifestLineReader {
  #state: "head" | "entries" | "deleted" | "done" = "head";

  /**
   * Reads one line.
   *
   * @param line the line, without its newline
   * @returns its item, or undefined when the file does not follow the layout
   */
  next(line: string): ManifestItem | undefined {
    try {
      return this.#next(line);
    } catch {
      return undefined; // a line that is not JSON where JSON belongs
    }
  }

  /** True once the last line was read. */
  get done(): boolean {
    return this.#state === "done";
  }

  #next(line: string): ManifestItem | undefined {
    switch (this.#state) {
      case "head": {
        if (!line.endsWith(ENTRIES_OPEN) || !line.startsWith("{")) return undefined;
        this.#state = "entries";
        return { kind: "head", value: JSON.parse(`${line.slice(0, -ENTRIES_OPEN.length)}}`) };
      }
      case "entries": {
        if (line === DELETED_LINE) {
          this.#state = "deleted";
          return { kind: "separator" };
        }
        const text = line.endsWith(",") ? line.slice(0, -1) : line;
        if (!text.startsWith("{")) return undefined;
        return { kind: "entry", line: text }; // parsed by the caller, when it needs the value
      }
      case "deleted": {
        if (line.startsWith(END_PREFIX) && line.endsWith("}")) {
          this.#state = "done";
          const counters = line.slice(END_PREFIX.length, -1);
          return { kind: "end", channelBytes: JSON.parse(counters) };
        }
        const text = line.endsWith(",") ? line.slice(0, -1) : line;
        if (!text.startsWith('"')) return undefined;
        return { kind: "deleted", value: JSON.parse(text) };
      }
      default:
        return undefined; // a line after the end
    }
  }
}
