/**
 * Snapshot planning: compare the entries found now (an {@link EntryTable}, in path order) with
 * the parent snapshot's entries as they stream past, in the same order (a merge, so the parent
 * is never held whole), and mark each entry unchanged (its bytes stay in an earlier archive)
 * or changed; parent entries no longer found are deleted. Then each manifest entry is built
 * from the table a line at a time. {@link planSnapshot} and {@link buildManifest} are the same
 * rules for entries given as objects.
 *
 * @module
 */

import { invariant } from "../assert.ts";
import { hasRawBytes, pathToBytes } from "./path_rules.ts";
import {
  type ChannelBytes,
  type Manifest,
  MANIFEST_FORMAT,
  MANIFEST_VERSION,
  type ManifestEntry,
} from "./manifest.ts";
import { EntryTable, NO_OWNER, STATE, TYPE_CODES } from "./entry_table.ts";
import { runLine } from "./manifest_stream.ts";

/** One entry as found in the source, before hashing. */
export type SourceEntry =
  | { readonly type: "file"; readonly path: string; readonly sizeBytes: number } & SourceMeta
  | { readonly type: "dir"; readonly path: string } & SourceMeta
  | { readonly type: "symlink"; readonly path: string; readonly target: string } & SourceMeta;

/** Metadata every source entry carries. */
export interface SourceMeta {
  readonly mode: number;
  readonly mtimeMs: number;
  /** Device and inode the walk saw: packing opens only that file under this path. */
  readonly dev?: number;
  readonly ino?: number;
  /** Owner ids as the walk saw them. */
  readonly uid?: number;
  readonly gid?: number;
  /** Files with more than one name: the same key (device and inode) for every name. */
  readonly linkKey?: string;
}

/** What the new snapshot must do (the object form of a planned {@link EntryTable}). */
export interface SnapshotPlan {
  /** New or changed entries, in path order: these go into the new archive. */
  readonly changed: readonly SourceEntry[];
  /** Entries identical to the parent's: copied from the parent manifest, bytes stay there. */
  readonly unchanged: readonly ManifestEntry[];
  /** Paths of the parent that no longer exist. */
  readonly deleted: readonly string[];
}

/**
 * Whether table entry `index` still matches its parent manifest entry (type, mode, mtime,
 * owner ids when the parent has them, a file's size, a symlink's target), read from the columns
 * (no entry object is made).
 */
function sameEntry(table: EntryTable, index: number, before: ManifestEntry): boolean {
  if (
    table.types[index] !== TYPE_CODES[before.type] || table.modes[index] !== before.mode ||
    table.mtimes[index] !== before.mtimeMs
  ) {
    return false;
  }
  if (before.uid !== undefined) {
    const uid = table.uids[index];
    if (uid === NO_OWNER || uid !== before.uid || table.gids[index] !== before.gid) return false;
  }
  if (before.type === "file") return table.sizes[index] === before.sizeBytes;
  if (before.type === "symlink") return table.targets.get(index) === before.target;
  return true;
}

/** Whether two xattr records hold the same names and values. */
function sameXattrs(a: Record<string, string> | undefined, b: Record<string, string> | undefined) {
  const aKeys = Object.keys(a ?? {});
  if (aKeys.length !== Object.keys(b ?? {}).length) return false;
  return aKeys.every((key) => b![key] === a![key]);
}

/**
 * Plans an {@link EntryTable} against its parent's entries, fed in path order: entries that
 * match keep the parent's hash, data reference, offset and rare fields; the rest stay changed.
 * {@link finish} applies the hard-link rule and returns the deleted paths.
 */
export class ParentMerge {
  #cursor = 0;
  #last: string | undefined;
  readonly #deleted: string[] = [];
  /** A matched entry's parent `hardlink` field, by table index (files that had one). */
  readonly #parentLinks = new Map<number, string | undefined>();
  /** 1 for each table entry whose path the parent has. */
  readonly #matched: Uint8Array;
  /** Parent entries fed so far (the next one's position among the parent's entries). */
  #ordinal = 0;
  /**
   * For each entry kept unchanged whose manifest line is the parent's line byte for byte: that
   * line's position among the parent's entries; -1 for every other entry.
   */
  readonly #sameLine: Int32Array;

  /** @param table the walk's entries, in path order, every one changed so far */
  constructor(readonly table: EntryTable) {
    this.#matched = new Uint8Array(table.count);
    this.#sameLine = new Int32Array(table.count).fill(-1);
  }

  /**
   * Where table entry `index`'s manifest line stands among the parent's entry lines, when the
   * entry is (still) unchanged and its line is the parent's byte for byte; else -1. A manifest
   * can then name runs of such entries with run lines ({@link entryLines}).
   *
   * @param index the table entry
   * @returns the parent entry's position, or -1
   */
  parentLineOf(index: number): number {
    return this.table.states[index] === STATE.unchanged ? this.#sameLine[index]! : -1;
  }

  /** Whether the parent has an entry at table entry `index`'s path. */
  inParent(index: number): boolean {
    return this.#matched[index] === 1;
  }

  /**
   * Feeds the next parent entry.
   *
   * @param before a validated parent entry; paths must increase from one call to the next
   * @param line the parent's line of `before`, as its file has it: lets {@link parentLineOf}
   *   tell the entries whose new line is that line
   * @returns false when the parent is out of path order (the merge cannot go on)
   */
  next(before: ManifestEntry, line?: string): boolean {
    if (this.#last !== undefined && !(before.path > this.#last)) return false;
    this.#last = before.path;
    const ordinal = this.#ordinal++;
    const table = this.table;
    // Bounded by the table: the cursor only moves forward (one path made per step).
    let at = this.#cursor < table.count ? table.path(this.#cursor) : undefined;
    while (at !== undefined && at < before.path) {
      at = ++this.#cursor < table.count ? table.path(this.#cursor) : undefined;
    }
    if (at !== before.path) {
      this.#deleted.push(before.path);
      return true;
    }
    const index = this.#cursor++;
    this.#matched[index] = 1;
    if (!sameEntry(table, index, before)) return true;
    if (before.type === "dir" && !sameXattrs(table.extras.get(index)?.xattrs, before.xattrs)) {
      return true;
    }
    table.states[index] = STATE.unchanged;
    table.setOwnerNames(index, before.user, before.group);
    if (before.type === "file") {
      table.setData(index, before.sha256, before.data, before.offset ?? -1);
      const { hardlink, sparse, xattrs } = before;
      if (hardlink !== undefined) {
        table.extrasOf(index).hardlink = hardlink;
        this.#parentLinks.set(index, hardlink);
      }
      if (sparse !== undefined) table.extrasOf(index).sparse = sparse;
      if (xattrs !== undefined) table.extrasOf(index).xattrs = xattrs;
    }
    // An unchanged entry's line depends on nothing of the new snapshot (its data reference and
    // owner names are the parent's, and nothing later changes it but a change of state), so
    // its line now is the line the manifest will have.
    if (
      line !== undefined && JSON.stringify(manifestEntryAt(table, index, "", undefined)) === line
    ) {
      this.#sameLine[index] = ordinal;
    }
    return true;
  }

  /**
   * Ends the merge: a hard-link group (names sharing device and inode) stays unchanged only if
   * every name is unchanged and the parent linked them the same way (the first name the
   * primary), so an archive never needs a link to a member of an older one; a name that was a
   * link in the parent but has no other name now is archived again.
   *
   * @returns the parent's paths that are gone
   */
  finish(): string[] {
    const table = this.table;
    const groups = new Map<string, number[]>();
    for (let i = 0; i < table.count; i++) {
      const key = table.linkKey(i);
      if (key === undefined) {
        if (this.#parentLinks.get(i) !== undefined) this.#change(i);
        continue;
      }
      const group = groups.get(key);
      if (group === undefined) groups.set(key, [i]);
      else group.push(i);
    }
    for (const group of groups.values()) {
      const primary = table.path(group[0]!);
      const same = group.every((i, n) =>
        table.states[i] === STATE.unchanged &&
        this.#parentLinks.get(i) === (n === 0 ? undefined : primary)
      );
      if (!same) { for (const i of group) this.#change(i); }
    }
    return this.#deleted;
  }

  #change(index: number): void {
    this.table.states[index] = STATE.changed;
    this.table.extras.delete(index);
    this.table.setOwnerNames(index, undefined, undefined);
  }
}

/** What packing found out about one file: its hash and the bytes actually archived. */
export interface PackedFile {
  readonly sha256: string;
  readonly sizeBytes: number;
  /** Where the member's first header block starts in the archive. */
  readonly offset?: number;
  /** The primary name when this name was archived as a hard link to it. */
  readonly hardlink?: string;
  /** Set when the file was stored sparsely (`sha256` then covers the stored bytes). */
  readonly sparse?: { readonly storedBytes: number };
  /** Extended attributes read while packing. */
  readonly xattrs?: Record<string, string>;
}

/** User and group names of owner ids (from the system's databases), for tar headers. */
export interface OwnerNames {
  user(uid: number): string | undefined;
  group(gid: number): string | undefined;
}

const BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/**
 * Standard base64 (with padding) of bytes; the core has no runtime helper to lean on.
 *
 * @param bytes the bytes
 * @returns their base64 text
 */
export function base64Of(bytes: Uint8Array): string {
  let out = "";
  for (let i = 0; i < bytes.length; i += 3) {
    const n = (bytes[i]! << 16) | ((bytes[i + 1] ?? 0) << 8) | (bytes[i + 2] ?? 0);
    out += BASE64[(n >> 18) & 63]! + BASE64[(n >> 12) & 63]!;
    out += i + 1 < bytes.length ? BASE64[(n >> 6) & 63]! : "=";
    out += i + 2 < bytes.length ? BASE64[n & 63]! : "=";
  }
  return out;
}

function rawOf(text: string): string | undefined {
  return hasRawBytes(text) ? base64Of(pathToBytes(text)) : undefined;
}

/**
 * The manifest entry of table entry `index` (unchanged, or changed and packed), or undefined
 * for an entry packing left out. Field order is fixed, so equal entries make equal lines.
 *
 * @param table the planned and packed table
 * @param index the entry
 * @param snapshotId the new snapshot (the data reference of packed files)
 * @param names names of owner ids, for entries archived now
 * @returns the entry
 */
export function manifestEntryAt(
  table: EntryTable,
  index: number,
  snapshotId: string,
  names: OwnerNames | undefined,
): ManifestEntry | undefined {
  const state = table.states[index]!;
  const type = table.types[index]!;
  if (state === STATE.skipped || (type === TYPE_CODES.file && state === STATE.changed)) {
    return undefined; // a file packing did not archive
  }
  const path = table.path(index);
  const uid = table.uids[index]!;
  const gid = table.gids[index]!;
  const extras = table.extras.get(index);
  const fresh = state !== STATE.unchanged;
  const kept = fresh ? undefined : table.ownerNamesOf(index);
  const user = fresh ? (uid === NO_OWNER ? undefined : names?.user(uid)) : kept?.user;
  const group = fresh ? (gid === NO_OWNER ? undefined : names?.group(gid)) : kept?.group;
  const base = {
    path,
    mode: table.modes[index]!,
    mtimeMs: table.mtimes[index]!,
    ...(uid === NO_OWNER || gid === NO_OWNER ? {} : { uid, gid }),
    ...(user === undefined ? {} : { user }),
    ...(group === undefined ? {} : { group }),
    ...(hasRawBytes(path) ? { rawPath: rawOf(path) } : {}),
  };
  if (type === TYPE_CODES.dir) {
    return { type: "dir", ...base, ...(extras?.xattrs ? { xattrs: extras.xattrs } : {}) };
  }
  if (type === TYPE_CODES.symlink) {
    const target = table.targets.get(index)!;
    const rawTarget = rawOf(target);
    return { type: "symlink", ...base, target, ...(rawTarget ? { rawTarget } : {}) };
  }
  const offset = table.offsets[index]!;
  return {
    type: "file",
    ...base,
    sizeBytes: table.sizes[index]!,
    sha256: table.sha256(index),
    data: fresh ? snapshotId : table.dataIds[table.data[index]!]!,
    ...(offset < 0 ? {} : { offset }),
    ...(extras?.hardlink === undefined ? {} : { hardlink: extras.hardlink }),
    ...(extras?.sparse === undefined ? {} : { sparse: extras.sparse }),
    ...(extras?.xattrs === undefined ? {} : { xattrs: extras.xattrs }),
  };
}

/**
 * The entry lines of a planned and packed table, in path order (the wire form of
 * `manifest_stream.ts`): each entry's JSON; with `parentLineOf`, each longest run of entries
 * whose lines are consecutive lines of the parent becomes one run line, which a server that
 * offered them copies from the parent's file. Both forms make the same manifest.
 *
 * @param table the planned and packed table
 * @param snapshotId the new snapshot
 * @param names names of owner ids, for entries archived now
 * @param parentLineOf `ParentMerge.parentLineOf`, when the server takes run lines
 * @returns the lines
 */
export function* entryLines(
  table: EntryTable,
  snapshotId: string,
  names: OwnerNames | undefined,
  parentLineOf?: (index: number) => number,
): Generator<string> {
  // Bounded by the table: each turn moves past at least one entry.
  for (let i = 0; i < table.count;) {
    const from = parentLineOf?.(i) ?? -1;
    if (from < 0) {
      const entry = manifestEntryAt(table, i++, snapshotId, names);
      if (entry !== undefined) yield JSON.stringify(entry);
      continue;
    }
    let count = 1;
    while (i + count < table.count && parentLineOf!(i + count) === from + count) count++;
    yield runLine({ from, count });
    i += count;
  }
}

/**
 * Records what packing found for a changed file.
 *
 * @param table the table
 * @param index the file
 * @param packed its hash, offset and rare fields, or undefined when packing left it out
 * @param snapshotId the new snapshot
 */
export function recordPacked(
  table: EntryTable,
  index: number,
  packed: PackedFile | undefined,
  snapshotId: string,
): void {
  invariant(table.states[index] === STATE.changed, `entry ${table.path(index)} was to be packed`);
  if (packed === undefined) {
    table.states[index] = STATE.skipped;
    return;
  }
  table.states[index] = STATE.packed;
  table.setData(index, packed.sha256, snapshotId, packed.offset ?? -1);
  const extras: Record<string, unknown> = {};
  if (packed.hardlink !== undefined) extras.hardlink = packed.hardlink;
  if (packed.sparse !== undefined) extras.sparse = packed.sparse;
  if (packed.xattrs !== undefined) extras.xattrs = packed.xattrs;
  if (Object.keys(extras).length > 0) Object.assign(table.extrasOf(index), extras);
}

/** A table of objects given in any order (the object API's input). */
function tableOf(current: readonly SourceEntry[]): EntryTable {
  const sorted = [...current].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const table = new EntryTable();
  for (let i = 0; i < sorted.length; i++) {
    invariant(i === 0 || sorted[i - 1]!.path !== sorted[i]!.path, `${sorted[i]!.path} listed once`);
    table.add(sorted[i]!);
  }
  return table;
}

/** A plan in object form, with the table it was made on. */
interface TablePlan extends SnapshotPlan {
  readonly table: EntryTable;
}

/**
 * Plans a snapshot. Without a parent every entry is changed (a full snapshot).
 *
 * @param current the entries found in the source
 * @param parent the latest manifest of the same source, for an incremental snapshot
 * @returns changed, unchanged and deleted entries
 *
 * @example A full snapshot changes everything
 * ```ts
 * import assert from "node:assert/strict";
 * import { planSnapshot } from "./plan.ts";
 * const plan = planSnapshot([{ type: "dir", path: "a", mode: 0o755, mtimeMs: 0 }]);
 * assert(plan.changed.length === 1 && plan.deleted.length === 0);
 * ```
 */
export function planSnapshot(
  current: readonly SourceEntry[],
  parent?: Manifest | null,
): SnapshotPlan {
  const table = tableOf(current);
  const merge = new ParentMerge(table);
  const before = [...(parent?.entries ?? [])].sort((a, b) => (a.path < b.path ? -1 : 1));
  for (const entry of before) merge.next(entry);
  const deleted = merge.finish();
  const changed: SourceEntry[] = [];
  const unchanged: ManifestEntry[] = [];
  for (let i = 0; i < table.count; i++) {
    if (table.states[i] === STATE.changed) changed.push(table.source(i));
    else unchanged.push(manifestEntryAt(table, i, parent?.id ?? "", undefined)!);
  }
  const plan: TablePlan = { changed, unchanged, deleted, table };
  return plan;
}

/** Everything {@link buildManifest} needs besides the plan. */
export interface ManifestFacts {
  readonly id: string;
  readonly kind: "fs" | "db";
  readonly source: string;
  readonly parent: Manifest | null;
  readonly createdMs: number;
  readonly archiveBytes: number;
  readonly channelBytes: ChannelBytes;
  /** Hashes of the changed files that were archived; a changed file missing here was skipped. */
  readonly packed: ReadonlyMap<string, PackedFile>;
  /** Names of owner ids; without it only the ids are recorded. */
  readonly ownerNames?: OwnerNames;
}

/**
 * Builds the new manifest from a plan made by {@link planSnapshot}: unchanged entries keep
 * their data reference, changed files point at the new snapshot, skipped files are left out,
 * and deletions are relative to the parent.
 *
 * @param plan the plan the archive was packed from
 * @param facts ids, times, counters and pack results
 * @returns the manifest (validate it with `parseManifest` before trusting it elsewhere)
 *
 * @example An empty source
 * ```ts
 * import assert from "node:assert/strict";
 * import { buildManifest, planSnapshot } from "./plan.ts";
 * const manifest = buildManifest(planSnapshot([]), {
 *   id: "19700101T000000000Z-00000000", kind: "fs", source: "/data", parent: null,
 *   createdMs: 0, archiveBytes: 1024, channelBytes: { storage: 1024, network: 0 },
 *   packed: new Map(),
 * });
 * assert(manifest.entries.length === 0);
 * ```
 */
export function buildManifest(plan: SnapshotPlan, facts: ManifestFacts): Manifest {
  const table = (plan as Partial<TablePlan>).table;
  invariant(table !== undefined, "buildManifest takes a plan made by planSnapshot");
  const entries: ManifestEntry[] = [];
  for (let i = 0; i < table.count; i++) {
    if (table.states[i] === STATE.changed && table.types[i] === TYPE_CODES.file) {
      recordPacked(table, i, facts.packed.get(table.path(i)), facts.id);
    }
    const entry = manifestEntryAt(table, i, facts.id, facts.ownerNames);
    if (entry !== undefined) entries.push(entry);
  }
  return {
    format: MANIFEST_FORMAT,
    version: MANIFEST_VERSION,
    id: facts.id,
    kind: facts.kind,
    source: facts.source,
    parent: facts.parent?.id ?? null,
    createdMs: facts.createdMs,
    archiveBytes: facts.archiveBytes,
    channelBytes: facts.channelBytes,
    entries,
    deleted: [...plan.deleted],
  };
}
