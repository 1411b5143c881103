/**
 * Consolidate (a synthetic full, as NetBackup calls it): makes an incremental snapshot stand
 * alone without reading its source. Its archive grows into a full one: the archive as it is
 * (minus its end marker), then the header blocks of the directories and symlinks it lacks, then
 * every file member it read from other archives, copied byte for byte (PAX records, owners,
 * hard links and raw names as the backup wrote them). What was in the archive keeps its offsets,
 * so snapshots that read members of it are untouched. The manifest then points every file at
 * the snapshot itself, `parent` becomes null and `consolidated` records the former parent.
 *
 * Commit protocol: the grown archive is written in `tmp/` and synced; the new manifest is
 * written to `tmp/ID.manifest.json.replacement` and synced; the archive is renamed over the old
 * one (the old manifest still matches it: the old members did not move); the manifest is
 * renamed over the old one, the commit point. Killed between the two renames, the next writer
 * rolls the replacement forward (the archive already has the size it records); killed earlier,
 * it drops it, and the snapshot is as it was.
 *
 * @module
 */

import type { FileEntry, Manifest, ManifestEntry } from "../../core/backup/manifest.ts";
import { parseManifest } from "../../core/backup/manifest.ts";
import { pathToBytes } from "../../core/backup/path_rules.ts";
import type { OwnerNames } from "../../core/backup/plan.ts";
import { ArchiveBuilder, entryMember, type Member, scanMembers } from "./_archive_members.ts";
import { openArchive } from "./_archive_read.ts";
import { type MaintenanceOptions, underWriterLock } from "./_maintenance.ts";
import { syncDir, writeManifestNote } from "./_repo_files.ts";
import type { ArchiveReader } from "./_tar_member.ts";
import { RepositoryError } from "../errors.ts";
import { openRepository, repoPaths, type Repository, resolveSnapshot } from "./repository.ts";
import { headerBlocks } from "./_tar_headers.ts";
import { removeCheckedRecord } from "./_checked_record.ts";

/** Steps of consolidate a drill hook sees besides `locked`, `cleaned` and `released`. */
export type ConsolidateStep =
  | "archive-written"
  | "manifest-written"
  | "archive-placed"
  | "committed";

/** Options of {@link consolidateSnapshot}. */
export interface ConsolidateOptions extends MaintenanceOptions<ConsolidateStep> {
  /** The repository directory (or an opened repository). */
  readonly repo: string | Repository;
  /** The snapshot: an id, or `latest` (of `source` when given). */
  readonly snapshot: string;
  /** With `latest`: the newest snapshot of this source. */
  readonly source?: string;
  /** When it is consolidated (recorded in the manifest); `Date.now()` by default. */
  readonly nowMs?: number;
}

/** What consolidate did. */
export interface ConsolidateReport {
  /** The snapshot. */
  readonly snapshot: string;
  /** True when it already stood alone (nothing was changed). */
  readonly alreadyFull: boolean;
  /** The parent it was incremental to, or null. */
  readonly formerParent: string | null;
  /** The archives members were copied from. */
  readonly readFrom: readonly string[];
  /** File members copied into its archive. */
  readonly membersCopied: number;
  /** Directory and symlink headers written into it. */
  readonly headersWritten: number;
  /** Its archive's size before and after. */
  readonly archiveBytesBefore: number;
  /** Its archive's size after. */
  readonly archiveBytesAfter: number;
}

const latin1 = new TextDecoder("latin1");
const nameKey = (bytes: Uint8Array) => latin1.decode(bytes);

function standsAlone(manifest: Manifest): boolean {
  return manifest.parent === null &&
    manifest.entries.every((e) => e.type !== "file" || e.data === manifest.id);
}

/** The snapshot's own archive: where its last member ends, and the names it holds. */
async function ownArchive(repo: Repository, manifest: Manifest) {
  const path = repoPaths.archive(repo, manifest.id);
  const reader = await openArchive(path);
  try {
    const size = (await Deno.stat(path)).size;
    if (size !== manifest.archiveBytes) {
      throw new RepositoryError(
        "corrupt",
        `archive ${path} has ${size} bytes; its manifest records ${manifest.archiveBytes}`,
      );
    }
    const members = await scanMembers(reader, size);
    const names = new Set(members.map((m) => nameKey(m.name).replace(/\/$/, "")));
    return { end: members.at(-1)?.end ?? 0, names, reader };
  } catch (error) {
    reader.close();
    throw error;
  }
}

/** The members of `files` (all in archive `from`), in archive order. */
async function membersOf(
  reader: ArchiveReader,
  from: string,
  files: readonly FileEntry[],
  sizeBytes: number,
): Promise<Array<{ entry: FileEntry; member: Member }>> {
  let byName: Map<string, Member> | undefined;
  const found: Array<{ entry: FileEntry; member: Member }> = [];
  for (const entry of files) {
    const link = entry.hardlink !== undefined;
    if (entry.offset !== undefined) {
      found.push({ entry, member: await entryMember(reader, entry.offset, entry.path, link) });
      continue;
    }
    byName ??= new Map((await scanMembers(reader, sizeBytes)).map((m) => [nameKey(m.name), m]));
    const member = byName.get(nameKey(pathToBytes(entry.path)));
    if (member === undefined) {
      throw new RepositoryError(
        "corrupt",
        `archive ${from} has no member ${JSON.stringify(entry.path)}`,
      );
    }
    found.push({ entry, member });
  }
  return found.sort((a, b) => a.member.start - b.member.start);
}

/** Header blocks of a directory or symlink entry, owners named as its manifest names them. */
function metadataHeader(entry: ManifestEntry & { type: "dir" | "symlink" }): Uint8Array[] {
  const names: OwnerNames = { user: () => entry.user, group: () => entry.group };
  return headerBlocks(entry, names);
}

/** Appends the file members read from other archives; returns their new offsets by path. */
async function appendMembers(
  repo: Repository,
  manifest: Manifest,
  builder: ArchiveBuilder,
): Promise<{ offsets: Map<string, number>; readFrom: string[] }> {
  const byArchive = new Map<string, FileEntry[]>();
  for (const entry of manifest.entries) {
    if (entry.type !== "file" || entry.data === manifest.id) continue;
    byArchive.set(entry.data, [...(byArchive.get(entry.data) ?? []), entry]);
  }
  const offsets = new Map<string, number>();
  const readFrom = [...byArchive.keys()].sort();
  for (const from of readFrom) {
    const path = repoPaths.archive(repo, from);
    const reader = await openArchive(path);
    try {
      const size = (await Deno.stat(path)).size;
      for (const { entry, member } of await membersOf(reader, from, byArchive.get(from)!, size)) {
        offsets.set(entry.path, await builder.copy(reader, member));
      }
    } finally {
      reader.close();
    }
  }
  return { offsets, readFrom };
}

/** Writes the grown archive into `tmp/`; returns it with the new member offsets. */
async function growArchive(repo: Repository, manifest: Manifest) {
  const own = await ownArchive(repo, manifest);
  const builder = await ArchiveBuilder.create(`${repoPaths.tmp(repo)}/${manifest.id}.tar.partial`);
  try {
    await builder.copy(own.reader, { start: 0, end: own.end });
    let headers = 0;
    const missing = manifest.entries.filter((e) =>
      e.type !== "file" && !own.names.has(nameKey(pathToBytes(e.path)))
    );
    for (const entry of missing.filter((e) => e.type === "dir")) {
      for (const block of metadataHeader(entry as ManifestEntry & { type: "dir" })) {
        await builder.append(block);
      }
      headers++;
    }
    const { offsets, readFrom } = await appendMembers(repo, manifest, builder);
    for (const entry of missing.filter((e) => e.type === "symlink")) {
      for (const block of metadataHeader(entry as ManifestEntry & { type: "symlink" })) {
        await builder.append(block);
      }
      headers++;
    }
    const sizeBytes = await builder.finish();
    return { path: builder.path, sizeBytes, offsets, readFrom, headers };
  } catch (error) {
    await builder.discard();
    throw error;
  } finally {
    own.reader.close();
  }
}

/** The manifest of the snapshot standing alone. */
function standingAlone(
  manifest: Manifest,
  grown: { sizeBytes: number; offsets: ReadonlyMap<string, number> },
  nowMs: number,
): Manifest {
  const entries = manifest.entries.map((entry): ManifestEntry => {
    if (entry.type !== "file") return entry;
    const offset = grown.offsets.get(entry.path);
    return offset === undefined ? entry : { ...entry, data: manifest.id, offset };
  });
  const value = {
    ...manifest,
    parent: null,
    archiveBytes: grown.sizeBytes,
    entries,
    deleted: [],
    ...(manifest.parent === null ? {} : {
      consolidated: { parent: manifest.parent, consolidatedMs: nowMs },
    }),
  };
  const parsed = parseManifest(JSON.parse(JSON.stringify(value)));
  if (!parsed.ok) {
    throw new RepositoryError(
      "corrupt",
      `consolidating ${manifest.id} made an invalid manifest: ${parsed.message}`,
    );
  }
  return parsed.manifest;
}

/**
 * Makes an incremental snapshot stand alone: its archive grows into a full one built from its
 * chain (never from the source), and its manifest then reads nothing else.
 *
 * @param options repository, snapshot, lock wait and drill hook
 * @returns what was copied and the archive's size before and after
 * @throws {RepositoryError} `unknown-snapshot`, `locked`, or `corrupt` when an archive it reads
 *   is damaged (the snapshot is then left as it was)
 *
 * @example A synthetic full of an incremental snapshot
 * ```ts
 * import assert from "node:assert/strict";
 * import { consolidateSnapshot } from "./consolidate.ts";
 * import { runLocalBackup } from "../jobs/local_backup.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.mkdir(`${dir}/src`);
 * await Deno.writeTextFile(`${dir}/src/a`, "kept from the full backup");
 * await runLocalBackup({ source: `${dir}/src`, repo: `${dir}/repo` });
 * await Deno.writeTextFile(`${dir}/src/b`, "new");
 * const incremental = await runLocalBackup({ source: `${dir}/src`, repo: `${dir}/repo`, incremental: true });
 * const report = await consolidateSnapshot({ repo: `${dir}/repo`, snapshot: incremental.snapshot });
 * assert.equal(report.membersCopied, 1);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function consolidateSnapshot(options: ConsolidateOptions): Promise<ConsolidateReport> {
  const repo = typeof options.repo === "string" ? await openRepository(options.repo) : options.repo;
  return await underWriterLock(repo, options, async (step) => {
    const manifest = await resolveSnapshot(repo, options.snapshot, options.source);
    const report = {
      snapshot: manifest.id,
      formerParent: manifest.parent,
      archiveBytesBefore: manifest.archiveBytes,
    };
    if (standsAlone(manifest)) {
      return {
        ...report,
        alreadyFull: true,
        readFrom: [],
        membersCopied: 0,
        headersWritten: 0,
        archiveBytesAfter: manifest.archiveBytes,
      };
    }
    const grown = await growArchive(repo, manifest);
    await step("archive-written");
    if (options.signal?.aborted) {
      await Deno.remove(grown.path).catch(() => {});
      options.signal.throwIfAborted();
    }
    const next = standingAlone(manifest, grown, options.nowMs ?? Date.now());
    const note = await writeManifestNote(repo, next, "replacement");
    await step("manifest-written");
    // The record vouches for the manifest being replaced. It goes before the archive swap, after
    // which a killed consolidate is rolled forward by the next writer (`_repo_files.ts`).
    await removeCheckedRecord(repo, manifest.id);
    await Deno.rename(grown.path, repoPaths.archive(repo, manifest.id));
    await step("archive-placed");
    await Deno.rename(note, repoPaths.manifest(repo, manifest.id));
    await syncDir(repoPaths.snapshots(repo));
    await step("committed");
    return {
      ...report,
      alreadyFull: false,
      readFrom: grown.readFrom,
      membersCopied: grown.offsets.size,
      headersWritten: grown.headers,
      archiveBytesAfter: grown.sizeBytes,
    };
  });
}
