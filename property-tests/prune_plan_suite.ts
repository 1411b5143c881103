/**
 * Properties of prune planning: no archive a kept snapshot reads is ever removed, an archive
 * nothing reads always is, a repack moves every needed member exactly once, in order and packed
 * together, and moving references changes only where files' bytes are (archive and offset).
 * The planner under test is an argument, so the suite imports nothing from a runtime.
 *
 * @module
 */

import fc from "fast-check";
import { defineProperty, type Suite } from "./_suite.ts";
import type {
  ArchiveFacts,
  ArchiveMove,
  MemberSpan,
  moveReferences,
  planPrune,
} from "../src/core/backup/prune_plan.ts";
import type { FileEntry, Manifest } from "../src/core/backup/manifest.ts";

/** The planner under test: `planPrune` and `moveReferences`, or another implementation. */
export interface PrunePlanner {
  readonly plan: typeof planPrune;
  readonly move: typeof moveReferences;
}

const END_MARKER_BYTES = 1024;
const ids = (n: number) => `20240101T000000000Z-${n.toString(16).padStart(8, "0")}`;

/** Disjoint member spans of whole blocks, and the archive size that holds them. */
function spansArbitrary(): fc.Arbitrary<{ spans: MemberSpan[]; sizeBytes: number }> {
  return fc.array(fc.record({ gap: fc.nat(4), blocks: fc.integer({ min: 1, max: 6 }) }), {
    maxLength: 8,
  }).chain((parts) => {
    let at = 0;
    const spans = parts.map(({ gap, blocks }) => {
      const start = at + gap * 512;
      at = start + blocks * 512;
      return { start, end: at };
    });
    return fc.record({
      spans: fc.subarray(spans),
      sizeBytes: fc.nat(8).map((extra) => at + END_MARKER_BYTES + extra * 512),
    });
  });
}

function archivesArbitrary(): fc.Arbitrary<ArchiveFacts[]> {
  return fc.array(
    fc.record({ hasManifest: fc.boolean(), layout: spansArbitrary() }),
    { maxLength: 6 },
  ).map((items) =>
    items.map((item, index) => ({
      id: ids(index),
      sizeBytes: item.layout.sizeBytes,
      hasManifest: item.hasManifest,
      needed: item.hasManifest ? [] : item.layout.spans,
    }))
  );
}

function fail(message: string, details: unknown): never {
  throw new Error(`${message}: ${JSON.stringify(details)}`);
}

function manifestReading(archives: readonly ArchiveFacts[]): Manifest {
  const entries: FileEntry[] = archives.flatMap((archive) =>
    archive.needed.map((span, index) => ({
      type: "file" as const,
      path: `${archive.id}-${index}`,
      mode: 0o644,
      mtimeMs: 0,
      sizeBytes: 1,
      sha256: "0".repeat(64),
      data: archive.id,
      offset: span.start,
    }))
  ).sort((a, b) => (a.path < b.path ? -1 : 1));
  return {
    format: "lanfree-manifest",
    version: 2,
    id: ids(999),
    kind: "fs",
    source: "/s",
    parent: null,
    createdMs: 0,
    archiveBytes: 1024,
    channelBytes: { storage: 0, network: 0 },
    entries,
    deleted: [],
  };
}

function verdictsFollowTheRules(planner: PrunePlanner, archives: ArchiveFacts[], max: number) {
  const plan = planner.plan(archives, max);
  for (const archive of archives) {
    const action = plan.get(archive.id)?.action;
    const expected = archive.hasManifest
      ? ["keep"]
      : archive.needed.length === 0
      ? ["remove"]
      : ["keep", "repack"];
    if (!expected.includes(action ?? "none")) fail(`${action} for`, archive);
  }
}

function repacksPackEveryMember(planner: PrunePlanner, archives: ArchiveFacts[]) {
  for (const archive of archives) {
    const verdict = planner.plan([archive], 0).get(archive.id)!;
    if (verdict.action !== "repack") continue;
    const sorted = [...archive.needed].sort((x, y) => x.start - y.start);
    let at = 0;
    for (const [index, move] of verdict.moves.entries()) {
      const span = sorted[index];
      if (span === undefined || move.from.start !== span.start || move.to !== at) {
        fail("moves differ from the needed members", { archive, verdict });
      }
      at += span.end - span.start;
    }
    if (verdict.moves.length !== sorted.length) fail("members lost", verdict);
    if (verdict.newBytes !== at + END_MARKER_BYTES) fail("size", verdict);
    if (verdict.newBytes > archive.sizeBytes) fail("a repack grew", verdict);
  }
}

function movesChangeOnlyReferences(planner: PrunePlanner, archives: ArchiveFacts[]) {
  const manifest = manifestReading(archives);
  const moves = new Map<string, ArchiveMove>();
  for (const [id, verdict] of planner.plan(archives, 0)) {
    if (verdict.action !== "repack") continue;
    moves.set(id, {
      to: `${id}-new`,
      starts: new Map(verdict.moves.map((m) => [m.from.start, m.to])),
    });
  }
  const moved = planner.move(manifest, moves, () => undefined);
  if (moves.size === 0 && moved !== null) fail("nothing to move, yet moved", moved);
  for (const [index, entry] of manifest.entries.entries()) {
    const file = entry as FileEntry;
    const after = (moved ?? manifest).entries[index];
    const move = moves.get(file.data);
    const want = move === undefined
      ? entry
      : { ...entry, data: move.to, offset: move.starts.get(file.offset!) };
    if (JSON.stringify(after) !== JSON.stringify(want)) fail("moved wrongly", { entry, after });
  }
}

/**
 * The prune-plan suite.
 *
 * @param planner the planner under test
 * @returns the suite
 */
export function prunePlanSuite(planner: PrunePlanner): Suite {
  const share = fc.double({ min: 0, max: 1, noNaN: true });
  return {
    name: "prune plan",
    properties: [
      defineProperty(
        "kept snapshots' archives stay, read archives are never removed, unread ones always are",
        { numRuns: 300 },
        () =>
          fc.property(
            archivesArbitrary(),
            share,
            (a, max) => verdictsFollowTheRules(planner, a, max),
          ),
      ),
      defineProperty(
        "a repack moves every needed member once, in order, packed from the start",
        { numRuns: 300 },
        () => fc.property(archivesArbitrary(), (a) => repacksPackEveryMember(planner, a)),
      ),
      defineProperty(
        "moving references changes only the data and offset of files in repacked archives",
        { numRuns: 300 },
        () => fc.property(archivesArbitrary(), (a) => movesChangeOnlyReferences(planner, a)),
      ),
    ],
  };
}
