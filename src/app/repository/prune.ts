/**
 * Prune: removes the archives no kept snapshot references, and repacks the ones kept snapshots
 * read only in part (a forgotten snapshot's archive, or an earlier repack): a new archive of just
 * the needed members, copied byte for byte; then the manifests that read them are rewritten to
 * point there; then the old archives are removed. Each step follows the commit protocol (the
 * writer lock, files written in `tmp/` and synced, a rename as the step's commit point), so a
 * prune killed at any moment leaves every kept snapshot restorable:
 *
 * 1. new archives are placed (`snapshots/NEW.tar`): nothing references them yet;
 * 2. each manifest is rewritten with one rename: it reads either the old archive or the new one,
 *    and both exist until step 3;
 * 3. archives nothing references any more are removed.
 *
 * What a killed prune leaves (a new archive nothing references yet, old archives nothing
 * references any more) is removed by the next prune. One thing it can leave for longer: killed
 * during step 2, some manifests read the new archive and some the old; the next prune repacks
 * the old one again for the rest, so those members are stored twice until the snapshots that
 * read them are forgotten.
 *
 * @module
 */

import { makeSnapshotId, parseManifest, SNAPSHOT_ID_PATTERN } from "../../core/backup/manifest.ts";
import {
  type ArchiveFacts,
  type ArchiveMove,
  type ArchiveVerdict,
  MAX_UNUSED_FRACTION_DEFAULT,
  type MemberSpan,
  moveReferences,
  planPrune,
} from "../../core/backup/prune_plan.ts";
import { pathToBytes } from "../../core/backup/path_rules.ts";
import { ArchiveBuilder, entryMember, scanMembers } from "./_archive_members.ts";
import { openArchive } from "./_archive_read.ts";
import { type MaintenanceOptions, underWriterLock } from "./_maintenance.ts";
import { syncDir, writeManifestNote } from "./_repo_files.ts";
import { removeCheckedRecord, removeOrphanedRecords } from "./_checked_record.ts";
import { RepositoryError } from "../errors.ts";
import {
  listSnapshotIds,
  openRepository,
  readManifest,
  repoPaths,
  type Repository,
} from "./repository.ts";

/** Steps of prune a drill hook sees besides `locked`, `cleaned` and `released`. */
export type PruneStep = "archive-written" | "manifest-rewritten" | "archive-removed";

/** Options of {@link pruneRepository}. */
export interface PruneOptions extends MaintenanceOptions<PruneStep> {
  /** The repository directory (or an opened repository). */
  readonly repo: string | Repository;
  /** Decide and report, change nothing (and take no lock). */
  readonly dryRun?: boolean;
  /** Percent of an archive that may be unused before it is repacked (default 5, as restic). */
  readonly maxUnusedPercent?: number;
  /** Time of the new archives' ids; `Date.now()` by default. */
  readonly nowMs?: number;
}

/** What prune did (or would do) with one archive. */
export interface PrunedArchive {
  /** The archive's id (`snapshots/<id>.tar`). */
  readonly id: string;
  /** Its size before. */
  readonly sizeBytes: number;
  /** `keep`, `remove` or `repack`. */
  readonly action: "keep" | "remove" | "repack";
  /** Why. */
  readonly reason: string;
  /** For a repack: the new archive (absent in a dry run) and its size. */
  readonly into?: { readonly id?: string; readonly sizeBytes: number; readonly members: number };
}

/** What prune found and did. */
export interface PruneReport {
  /** True when nothing was changed on purpose. */
  readonly dryRun: boolean;
  /** Snapshots kept (manifests read). */
  readonly snapshots: number;
  /** Every archive with its verdict. */
  readonly archives: readonly PrunedArchive[];
  /** Manifests whose references were moved to new archives. */
  readonly manifestsRewritten: readonly string[];
  /** Archive bytes before. */
  readonly bytesBefore: number;
  /** Archive bytes after (what they would be, in a dry run). */
  readonly bytesAfter: number;
}

/** A member a kept snapshot reads from an archive that has no manifest. */
interface Reference {
  readonly path: string;
  readonly offset: number | undefined;
  readonly link: boolean;
}

/** What the kept manifests reference in archives without a manifest. */
interface References {
  readonly ids: readonly string[];
  /** By archive: its referenced members (by offset, or by path for version-1 entries). */
  readonly members: Map<string, Map<string, Reference>>;
  /** By archive: the manifests that read it. */
  readonly readers: Map<string, Set<string>>;
}

async function listArchives(repo: Repository): Promise<Map<string, number>> {
  const sizes = new Map<string, number>();
  for await (const item of Deno.readDir(repoPaths.snapshots(repo))) {
    const id = item.name.endsWith(".tar") ? item.name.slice(0, -4) : "";
    if (!item.isFile || !SNAPSHOT_ID_PATTERN.test(id)) continue;
    sizes.set(id, (await Deno.stat(repoPaths.archive(repo, id))).size);
  }
  return sizes;
}

async function collectReferences(repo: Repository): Promise<References> {
  const ids = await listSnapshotIds(repo);
  const kept = new Set(ids);
  const members = new Map<string, Map<string, Reference>>();
  const readers = new Map<string, Set<string>>();
  for (const id of ids) {
    const manifest = await readManifest(repo, id); // a manifest that cannot be read stops prune
    for (const entry of manifest.entries) {
      if (entry.type !== "file" || kept.has(entry.data)) continue;
      const key = entry.offset === undefined ? `path:${entry.path}` : `at:${entry.offset}`;
      const refs = members.get(entry.data) ?? new Map<string, Reference>();
      members.set(entry.data, refs);
      refs.set(key, { path: entry.path, offset: entry.offset, link: entry.hardlink !== undefined });
      const set = readers.get(entry.data) ?? new Set<string>();
      readers.set(entry.data, set.add(id));
    }
  }
  return { ids, members, readers };
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** The spans of the referenced members of one archive, and version-1 offsets by path. */
async function neededSpans(
  repo: Repository,
  archive: string,
  sizeBytes: number,
  refs: ReadonlyMap<string, Reference>,
): Promise<{ spans: MemberSpan[]; byPath: Map<string, number> }> {
  const reader = await openArchive(repoPaths.archive(repo, archive));
  try {
    const spans: MemberSpan[] = [];
    const byPath = new Map<string, number>();
    const unplaced = [...refs.values()].filter((r) => r.offset === undefined);
    if (unplaced.length > 0) {
      const byName = new Map<string, MemberSpan>();
      for (const member of await scanMembers(reader, sizeBytes)) {
        if (member.typeFlag === "0" || member.typeFlag === "1") {
          byName.set(member.name.join(","), member);
        }
      }
      for (const ref of unplaced) {
        const span = byName.get(pathToBytes(ref.path).join(","));
        if (span === undefined) throw new Error(`no member ${JSON.stringify(ref.path)}`);
        spans.push(span);
        byPath.set(ref.path, span.start);
      }
    }
    for (const ref of refs.values()) {
      if (ref.offset !== undefined) {
        spans.push(await entryMember(reader, ref.offset, ref.path, ref.link));
      }
    }
    return { spans, byPath };
  } finally {
    reader.close();
  }
}

/** The facts planPrune needs, and version-1 member offsets by archive and path. */
async function archiveFacts(repo: Repository, references: References) {
  const kept = new Set(references.ids);
  const facts: ArchiveFacts[] = [];
  const offsets = new Map<string, Map<string, number>>();
  const archives = [...(await listArchives(repo))].sort(([a], [b]) => (a < b ? -1 : 1));
  for (const [id, sizeBytes] of archives) {
    const refs = references.members.get(id);
    if (kept.has(id) || refs === undefined) {
      facts.push({ id, sizeBytes, hasManifest: kept.has(id), needed: [] });
      continue;
    }
    try {
      const { spans, byPath } = await neededSpans(repo, id, sizeBytes, refs);
      offsets.set(id, byPath);
      facts.push({ id, sizeBytes, hasManifest: false, needed: spans });
    } catch (error) {
      const unreadable = `its members cannot all be read (${messageOf(error)})`;
      const needed = [{ start: 0, end: sizeBytes }];
      facts.push({ id, sizeBytes, hasManifest: false, needed, unreadable });
    }
  }
  return { facts, offsets };
}

function randomHex(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(4));
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Writes one repacked archive into `tmp/` and renames it into `snapshots/`. */
async function repack(
  repo: Repository,
  from: string,
  verdict: ArchiveVerdict & { action: "repack" },
  nowMs: number,
): Promise<ArchiveMove> {
  const to = makeSnapshotId(nowMs, randomHex());
  const builder = await ArchiveBuilder.create(`${repoPaths.tmp(repo)}/${to}.tar.partial`);
  const reader = await openArchive(repoPaths.archive(repo, from));
  const starts = new Map<number, number>();
  try {
    for (const move of verdict.moves) {
      starts.set(move.from.start, await builder.copy(reader, move.from));
    }
    const sizeBytes = await builder.finish();
    if (sizeBytes !== verdict.newBytes) {
      throw new RepositoryError(
        "corrupt",
        `repacking ${from} wrote ${sizeBytes} bytes, ${verdict.newBytes} planned`,
      );
    }
  } catch (error) {
    await builder.discard();
    throw error;
  } finally {
    reader.close();
  }
  await Deno.rename(builder.path, repoPaths.archive(repo, to));
  await syncDir(repoPaths.snapshots(repo));
  return { to, starts };
}

function reportOf(
  facts: readonly ArchiveFacts[],
  plan: ReadonlyMap<string, ArchiveVerdict>,
  done: { moves: ReadonlyMap<string, ArchiveMove>; rewritten: readonly string[] },
  context: { dryRun: boolean; snapshots: number },
): PruneReport {
  let bytesAfter = 0;
  const archives = facts.map((fact): PrunedArchive => {
    const verdict = plan.get(fact.id)!;
    const base = { id: fact.id, sizeBytes: fact.sizeBytes, action: verdict.action };
    if (verdict.action === "keep") bytesAfter += fact.sizeBytes;
    if (verdict.action !== "repack") return { ...base, reason: verdict.reason };
    bytesAfter += verdict.newBytes;
    const id = done.moves.get(fact.id)?.to;
    const into = { sizeBytes: verdict.newBytes, members: verdict.moves.length };
    return { ...base, reason: verdict.reason, into: id === undefined ? into : { id, ...into } };
  });
  return {
    dryRun: context.dryRun,
    snapshots: context.snapshots,
    archives,
    manifestsRewritten: done.rewritten,
    bytesBefore: facts.reduce((sum, f) => sum + f.sizeBytes, 0),
    bytesAfter,
  };
}

/** Rewrites each manifest that reads a repacked archive, one rename each. */
async function rewriteManifests(
  repo: Repository,
  readers: ReadonlySet<string>,
  moves: ReadonlyMap<string, ArchiveMove>,
  offsets: ReadonlyMap<string, ReadonlyMap<string, number>>,
  step: (step: PruneStep) => Promise<void>,
): Promise<string[]> {
  const rewritten: string[] = [];
  for (const id of [...readers].sort()) {
    const moved = moveReferences(
      await readManifest(repo, id),
      moves,
      (archive, path) => offsets.get(archive)?.get(path),
    );
    if (moved === null) continue;
    const parsed = parseManifest(JSON.parse(JSON.stringify(moved)));
    if (!parsed.ok) {
      throw new RepositoryError(
        "corrupt",
        `rewriting ${id} made an invalid manifest: ${parsed.message}`,
      );
    }
    const note = await writeManifestNote(repo, parsed.manifest, "rewrite");
    await removeCheckedRecord(repo, id); // it vouches for the manifest being replaced
    await Deno.rename(note, repoPaths.manifest(repo, id));
    rewritten.push(id);
    await step("manifest-rewritten");
  }
  await syncDir(repoPaths.snapshots(repo));
  return rewritten;
}

/** Places every repacked archive; on a failure removes the ones placed (nothing reads them). */
async function placeRepacks(
  repo: Repository,
  plan: ReadonlyMap<string, ArchiveVerdict>,
  options: PruneOptions,
  step: (step: PruneStep) => Promise<void>,
): Promise<Map<string, ArchiveMove>> {
  const moves = new Map<string, ArchiveMove>();
  try {
    for (const [id, verdict] of plan) {
      if (verdict.action !== "repack") continue;
      moves.set(id, await repack(repo, id, verdict, options.nowMs ?? Date.now()));
      await step("archive-written");
    }
    options.signal?.throwIfAborted();
  } catch (error) {
    for (const move of moves.values()) {
      await Deno.remove(repoPaths.archive(repo, move.to)).catch(() => {});
    }
    throw error;
  }
  return moves;
}

/**
 * Removes the archives no kept snapshot references and repacks the ones they read in part.
 *
 * @param options repository, dry run, unused share, lock wait and drill hook
 * @returns every archive's verdict, the manifests rewritten and the bytes before and after
 * @throws {RepositoryError} `locked`; `corrupt` when a manifest cannot be read (prune then
 *   changes nothing: it cannot know what that snapshot needs)
 *
 * @example Forget, then prune
 * ```ts
 * import assert from "node:assert/strict";
 * import { forgetSnapshots } from "./forget.ts";
 * import { runLocalBackup } from "../jobs/local_backup.ts";
 * import { pruneRepository } from "./prune.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.mkdir(`${dir}/src`);
 * await Deno.writeTextFile(`${dir}/src/a`, "first");
 * await runLocalBackup({ source: `${dir}/src`, repo: `${dir}/repo` });
 * await Deno.writeTextFile(`${dir}/src/a`, "second version");
 * await runLocalBackup({ source: `${dir}/src`, repo: `${dir}/repo` });
 * await forgetSnapshots({ repo: `${dir}/repo`, rules: { last: 1 } });
 * const report = await pruneRepository({ repo: `${dir}/repo` });
 * assert.deepEqual(report.archives.map((a) => a.action).sort(), ["keep", "remove"]);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function pruneRepository(options: PruneOptions): Promise<PruneReport> {
  const percent = options.maxUnusedPercent ?? 100 * MAX_UNUSED_FRACTION_DEFAULT;
  if (!(percent >= 0 && percent <= 100)) {
    throw new RangeError(`maxUnusedPercent must be within 0..100, got ${percent}`);
  }
  const repo = typeof options.repo === "string" ? await openRepository(options.repo) : options.repo;
  const decide = async () => {
    const references = await collectReferences(repo);
    const { facts, offsets } = await archiveFacts(repo, references);
    return { references, facts, offsets, plan: planPrune(facts, percent / 100) };
  };
  if (options.dryRun) {
    const { references, facts, plan } = await decide();
    const done = { moves: new Map(), rewritten: [] };
    return reportOf(facts, plan, done, { dryRun: true, snapshots: references.ids.length });
  }
  return await underWriterLock(repo, options, async (step) => {
    const { references, facts, offsets, plan } = await decide();
    const moves = await placeRepacks(repo, plan, options, step);
    const readers = new Set([...moves.keys()].flatMap((id) => [...references.readers.get(id)!]));
    const rewritten = await rewriteManifests(repo, readers, moves, offsets, step);
    for (const [id, verdict] of plan) {
      if (verdict.action === "keep") continue;
      await Deno.remove(repoPaths.archive(repo, id));
      await step("archive-removed");
    }
    await removeOrphanedRecords(repo);
    await syncDir(repoPaths.snapshots(repo));
    return reportOf(facts, plan, { moves, rewritten }, {
      dryRun: false,
      snapshots: references.ids.length,
    });
  });
}
