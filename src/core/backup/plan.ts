/**
 * Snapshot planning: compare the entries found now with the parent snapshot's manifest and
 * decide what needs data in the new archive, what is unchanged (its bytes stay in an earlier
 * archive) and what was deleted. Then build the new manifest from the plan and the pack results.
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

/** What the new snapshot must do. */
export interface SnapshotPlan {
  /** New or changed entries, in source order: these go into the new archive. */
  readonly changed: readonly SourceEntry[];
  /** Entries identical to the parent's: copied from the parent manifest, bytes stay there. */
  readonly unchanged: readonly ManifestEntry[];
  /** Paths of the parent that no longer exist. */
  readonly deleted: readonly string[];
}

/** Whether a source entry still matches its parent manifest entry (type, size, mode, mtime). */
function sameEntry(now: SourceEntry, before: ManifestEntry): boolean {
  if (now.type !== before.type || now.mode !== before.mode || now.mtimeMs !== before.mtimeMs) {
    return false;
  }
  if (before.uid !== undefined && (now.uid !== before.uid || now.gid !== before.gid)) return false;
  if (now.type === "file" && before.type === "file") return now.sizeBytes === before.sizeBytes;
  if (now.type === "symlink" && before.type === "symlink") return now.target === before.target;
  return now.type === "dir";
}

/**
 * Plans a snapshot. Without a parent every entry is changed (a full snapshot).
 *
 * @param current the entries found in the source, parents before children
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
  const before = new Map<string, ManifestEntry>();
  for (const entry of parent?.entries ?? []) before.set(entry.path, entry);
  const changed: SourceEntry[] = [];
  const unchanged: ManifestEntry[] = [];
  const seen = new Set<string>();
  const groups = linkGroups(current);
  for (const entry of current) {
    invariant(!seen.has(entry.path), `source entry ${entry.path} is listed once`);
    seen.add(entry.path);
    const old = before.get(entry.path);
    const group = entry.linkKey === undefined ? undefined : groups.get(entry.linkKey);
    if (group !== undefined && !sameGroup(group, before)) changed.push(entry);
    else if (old !== undefined && sameEntry(entry, old) && (group !== undefined || !isLink(old))) {
      unchanged.push(withOwners(old, entry));
    } else changed.push(entry);
  }
  const deleted = [...before.keys()].filter((path) => !seen.has(path));
  return { changed, unchanged, deleted };
}

/**
 * A second name of a hard-linked file in the parent: kept as is only inside an unchanged group
 * (a name whose other names are gone is archived again, since its member is only a link).
 */
function isLink(entry: ManifestEntry): boolean {
  return entry.type === "file" && entry.hardlink !== undefined;
}

/** The parent's entry with today's owner ids when the parent (a version-1 manifest) had none. */
function withOwners(old: ManifestEntry, now: SourceEntry): ManifestEntry {
  if (old.uid !== undefined || now.uid === undefined) return old;
  return { ...old, uid: now.uid, gid: now.gid };
}

/** Names of each file with several names, in source order (the first is the primary). */
function linkGroups(current: readonly SourceEntry[]): Map<string, SourceEntry[]> {
  const groups = new Map<string, SourceEntry[]>();
  for (const entry of current) {
    if (entry.type !== "file" || entry.linkKey === undefined) continue;
    const group = groups.get(entry.linkKey);
    if (group === undefined) groups.set(entry.linkKey, [entry]);
    else group.push(entry);
  }
  return groups;
}

/**
 * A hard-link group is unchanged only if every name is unchanged and the parent linked the
 * names the same way (so the new archive never needs a link to a member of an older archive).
 */
function sameGroup(group: readonly SourceEntry[], before: ReadonlyMap<string, ManifestEntry>) {
  const primary = group[0]!.path;
  return group.every((entry, index) => {
    const old = before.get(entry.path);
    if (old === undefined || old.type !== "file" || !sameEntry(entry, old)) return false;
    return index === 0 ? old.hardlink === undefined : old.hardlink === primary;
  });
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
}

/** User and group names of owner ids (from the system's databases), for tar headers. */
export interface OwnerNames {
  user(uid: number): string | undefined;
  group(gid: number): string | undefined;
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

/** The owner fields of a manifest entry. */
function ownersOf(entry: SourceEntry, names: OwnerNames | undefined) {
  if (entry.uid === undefined || entry.gid === undefined) return {};
  const user = names?.user(entry.uid);
  const group = names?.group(entry.gid);
  return {
    uid: entry.uid,
    gid: entry.gid,
    ...(user === undefined ? {} : { user }),
    ...(group === undefined ? {} : { group }),
  };
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

function rawPathOf(path: string): { rawPath?: string } {
  return hasRawBytes(path) ? { rawPath: base64Of(pathToBytes(path)) } : {};
}

/**
 * Builds the new manifest: unchanged entries keep their data reference, changed files point at
 * the new snapshot, skipped files are left out (with their subtree gone only if a directory was
 * skipped, which the walk already did), and deletions are relative to the parent.
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
  const entries: ManifestEntry[] = [...plan.unchanged];
  for (const entry of plan.changed) {
    const base = {
      path: entry.path,
      mode: entry.mode,
      mtimeMs: entry.mtimeMs,
      ...ownersOf(entry, facts.ownerNames),
      ...rawPathOf(entry.path),
    };
    if (entry.type === "dir") entries.push({ type: "dir", ...base });
    else if (entry.type === "symlink") {
      const rawTarget = hasRawBytes(entry.target)
        ? { rawTarget: base64Of(pathToBytes(entry.target)) }
        : {};
      entries.push({ type: "symlink", ...base, target: entry.target, ...rawTarget });
    } else {
      const packed = facts.packed.get(entry.path);
      if (packed === undefined) continue;
      entries.push({ type: "file", ...base, ...packed, data: facts.id });
    }
  }
  entries.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const kept = new Set(entries.map((entry) => entry.path));
  const deleted = (facts.parent?.entries ?? []).map((e) => e.path).filter((p) => !kept.has(p));
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
    deleted,
  };
}
