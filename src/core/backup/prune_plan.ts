/**
 * Prune planning: which archives go, which stay, and which are repacked into a new archive of
 * just the members kept snapshots still read; then how each manifest's references move. Pure:
 * the member spans come in as arguments (the app reads them from the archives' headers).
 *
 * Rules:
 * - the archive of a snapshot that has a manifest (a kept snapshot) stays whole;
 * - an archive without a manifest (its snapshot was forgotten, or prune wrote it) that no
 *   manifest references is removed;
 * - such an archive that is referenced stays whole while its unused bytes are at most
 *   `maxUnusedFraction` of it (restic's `--max-unused`), else it is **repacked**: its needed
 *   members are copied, byte for byte, in their order, into a new archive, and the references
 *   move there. An archive whose members could not all be read, or overlap, stays whole.
 *
 * @module
 */

import { invariant } from "../assert.ts";
import type { FileEntry, Manifest, ManifestEntry } from "./manifest.ts";

/** Bytes of the end-of-archive marker every repacked archive ends with. */
export const END_OF_ARCHIVE_BYTES = 1024;
/** Default share of an archive that may be unused before it is repacked (restic's 5%). */
export const MAX_UNUSED_FRACTION_DEFAULT = 0.05;

/** Where one member lies in its archive: its first header block to the end of its padding. */
export interface MemberSpan {
  /** Offset of the member's first header block (the manifest's `offset`). */
  readonly start: number;
  /** Offset just past the member's data padding. */
  readonly end: number;
}

/** One archive as the app found it. */
export interface ArchiveFacts {
  /** The archive's id (`snapshots/<id>.tar`). */
  readonly id: string;
  /** Its size on disk. */
  readonly sizeBytes: number;
  /** Whether its snapshot has a manifest (is kept). */
  readonly hasManifest: boolean;
  /** The members kept snapshots read from it (only looked up for archives without a manifest). */
  readonly needed: readonly MemberSpan[];
  /** Set when its needed members could not all be read: it then stays whole. */
  readonly unreadable?: string;
}

/** What happens to one archive. */
export type ArchiveVerdict =
  | { readonly action: "keep"; readonly reason: string }
  | { readonly action: "remove"; readonly reason: string }
  | {
    readonly action: "repack";
    readonly reason: string;
    /** Needed members, in archive order, each with where it starts in the new archive. */
    readonly moves: readonly { readonly from: MemberSpan; readonly to: number }[];
    /** Size of the new archive (members and the end marker). */
    readonly newBytes: number;
  };

/** The verdict on every archive, by id. */
export type PrunePlan = ReadonlyMap<string, ArchiveVerdict>;

function percent(part: number, whole: number): string {
  return whole === 0 ? "0%" : `${(100 * part / whole).toFixed(1)}%`;
}

/** Needed spans sorted and deduplicated, or a message when two of them overlap. */
function orderedSpans(needed: readonly MemberSpan[]): MemberSpan[] | string {
  const byStart = new Map<number, MemberSpan>();
  for (const span of needed) {
    invariant(span.end > span.start && span.start >= 0, `member span ${span.start}..${span.end}`);
    const known = byStart.get(span.start);
    if (known !== undefined && known.end !== span.end) {
      return `two members at byte ${span.start} end at ${known.end} and ${span.end}`;
    }
    byStart.set(span.start, span);
  }
  const sorted = [...byStart.values()].sort((a, b) => a.start - b.start);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i]!.start < sorted[i - 1]!.end) {
      return `members at bytes ${sorted[i - 1]!.start} and ${sorted[i]!.start} overlap`;
    }
  }
  return sorted;
}

function verdict(archive: ArchiveFacts, maxUnusedFraction: number): ArchiveVerdict {
  if (archive.hasManifest) return { action: "keep", reason: "its snapshot is kept" };
  if (archive.needed.length === 0) {
    return { action: "remove", reason: "no kept snapshot references it" };
  }
  if (archive.unreadable !== undefined) {
    return { action: "keep", reason: `kept whole: ${archive.unreadable}` };
  }
  const spans = orderedSpans(archive.needed);
  if (typeof spans === "string") return { action: "keep", reason: `kept whole: ${spans}` };
  const used = spans.reduce((sum, s) => sum + (s.end - s.start), 0) + END_OF_ARCHIVE_BYTES;
  const unused = Math.max(archive.sizeBytes - used, 0);
  const share = `${percent(unused, archive.sizeBytes)} unused`;
  if (unused <= maxUnusedFraction * archive.sizeBytes) {
    return { action: "keep", reason: `kept whole: ${share}` };
  }
  let to = 0;
  const moves = spans.map((from) => {
    const move = { from, to };
    to += from.end - from.start;
    return move;
  });
  invariant(to + END_OF_ARCHIVE_BYTES === used, "the new archive holds exactly the members");
  return { action: "repack", reason: share, moves, newBytes: used };
}

/**
 * Decides what prune does with each archive.
 *
 * @param archives every archive of the repository, with the members kept snapshots read
 * @param maxUnusedFraction share of an archive that may be unused before it is repacked (0..1)
 * @returns the verdict on each archive
 *
 * @example A forgotten archive nothing reads is removed
 * ```ts
 * import assert from "node:assert/strict";
 * import { planPrune } from "./prune_plan.ts";
 * const plan = planPrune([{ id: "a", sizeBytes: 2048, hasManifest: false, needed: [] }], 0.05);
 * assert.equal(plan.get("a")?.action, "remove");
 * ```
 */
export function planPrune(archives: readonly ArchiveFacts[], maxUnusedFraction: number): PrunePlan {
  if (!(maxUnusedFraction >= 0 && maxUnusedFraction <= 1)) {
    throw new RangeError(`maxUnusedFraction must be within 0..1, got ${maxUnusedFraction}`);
  }
  return new Map(archives.map((archive) => [archive.id, verdict(archive, maxUnusedFraction)]));
}

/** Where the members of one repacked archive went. */
export interface ArchiveMove {
  /** The new archive's id. */
  readonly to: string;
  /** New start of each member, by its old start. */
  readonly starts: ReadonlyMap<number, number>;
}

/**
 * A manifest with its references into repacked archives moved, or null when it has none. A file
 * without an offset (version 1) is found by `offsetOf`, which the app fills by reading the old
 * archive's headers.
 *
 * @param manifest a kept snapshot's manifest
 * @param moves where each repacked archive's members went, by old archive id
 * @param offsetOf the old offset of a version-1 file's member (by archive and path)
 * @returns the rewritten manifest, or null when no reference moved
 */
export function moveReferences(
  manifest: Manifest,
  moves: ReadonlyMap<string, ArchiveMove>,
  offsetOf: (archive: string, path: string) => number | undefined,
): Manifest | null {
  let moved = 0;
  const entries = manifest.entries.map((entry): ManifestEntry => {
    if (entry.type !== "file") return entry;
    const move = moves.get(entry.data);
    if (move === undefined) return entry;
    const old = entry.offset ?? offsetOf(entry.data, entry.path);
    invariant(old !== undefined, `file ${entry.path} of ${manifest.id} has a known member`);
    const start = move.starts.get(old);
    invariant(start !== undefined, `member ${old} of ${entry.data} was repacked`);
    moved++;
    return { ...entry, data: move.to, offset: start } satisfies FileEntry;
  });
  return moved === 0 ? null : { ...manifest, entries };
}
