/**
 * Restores a snapshot (applying its incremental chain) into a target directory: directories
 * first, then file bytes archive by archive (each member read at the offset its manifest keeps,
 * every SHA-256 checked before the file gets its real name), then hard links and symlinks, then
 * directory modes and mtimes deepest first. Only paths from the validated manifest are written,
 * never through a symlink, never outside the target. A file that cannot be restored (a damaged
 * member, a full disk) is reported with its path and the rest is restored.
 *
 * @module
 */

import { planRestore, type RestorePlan } from "../../core/backup/chain.ts";
import type { FileEntry, Manifest, ManifestEntry } from "../../core/backup/manifest.ts";
import { type MemberPiece, openArchive, openMember, readArchiveFiles } from "./_archive_read.ts";
import { BackupError, RestoreError } from "../errors.ts";
import { openRepository, repoPaths, type Repository, resolveSnapshot } from "./repository.ts";
import type { ArchiveReader } from "./_tar_member.ts";
import { type RestoreHooks, TargetWriter } from "./_restore_target.ts";
import { createHash } from "node:crypto";

/** Options of {@link restoreSnapshot}. */
export interface RestoreOptions {
  /** Repository directory (or an opened repository). */
  readonly repo: string | Repository;
  /** Snapshot id, or `"latest"`. */
  readonly snapshot: string;
  /** Directory to restore into; created if missing. */
  readonly target: string;
  /** A file or directory of the snapshot to restore alone (keeps its path below the target). */
  readonly path?: string;
  /** Allow a non-empty target (existing entries in the way are replaced). */
  readonly overwrite?: boolean;
  /**
   * Keep setuid, setgid and sticky bits (GNU tar's `--same-permissions`/`--preserve`). Without
   * it only the rwx bits are restored, as GNU tar does without `-p`.
   */
  readonly preservePermissions?: boolean;
  /** How archives are opened (tests count the bytes read through it). */
  readonly openArchive?: (path: string) => Promise<ArchiveReader>;
  /** Test hooks (swapping things in the target mid-restore). */
  readonly hooks?: RestoreHooks;
}

/** One entry that could not be restored, and on which side the fault lies. */
export interface RestoreProblem {
  /** The entry's path in the snapshot. */
  readonly path: string;
  /** `repository`: the archive could not be read or is damaged; `target`: it could not be written. */
  readonly side: "repository" | "target";
  /** A short code (`damaged`, `read-failed`, `write-failed`, ...). */
  readonly code: string;
  /** What went wrong, with the facts. */
  readonly message: string;
}

/** What a restore did. */
export interface RestoreSummary {
  /** The snapshot restored. */
  readonly snapshot: string;
  /** Regular files written. */
  readonly files: number;
  /** Directories made. */
  readonly dirs: number;
  /** Symlinks made. */
  readonly symlinks: number;
  /** File bytes written. */
  readonly bytes: number;
  /** How long the restore took. */
  readonly seconds: number;
  /** Entries not restored (empty when everything was). */
  readonly problems: RestoreProblem[];
}

/** Most problems listed in one restore's report (the count is always exact). */
export const RESTORE_PROBLEMS_LISTED_MAX = 1000;

async function prepareTarget(
  target: string,
  overwrite: boolean,
): Promise<{ root: string; fresh: boolean; identity: { dev: number; ino: number } }> {
  await Deno.mkdir(target, { recursive: true });
  const info = await Deno.lstat(target);
  if (!info.isDirectory) {
    throw new RestoreError("unsafe-path", `target ${target} is not a directory`);
  }
  let fresh = true;
  for await (const _ of Deno.readDir(target)) {
    fresh = false;
    break;
  }
  if (!fresh && !overwrite) {
    throw new RestoreError(
      "target-not-empty",
      `target ${target} is not empty (use overwrite to restore into it)`,
    );
  }
  const root = await Deno.realPath(target);
  const real = await Deno.lstat(root);
  return { root, fresh, identity: { dev: real.dev, ino: real.ino ?? -1 } };
}

/** A file to write, and the member that holds its bytes. */
export interface FileJob {
  /** The file entry to restore. */
  readonly entry: FileEntry;
  /** The member's path and offset (a hard link restored alone reads its primary's member). */
  readonly member: { readonly path: string; readonly offset?: number };
}

/** What an archive reader may do with the files of one archive. */
export interface ArchiveContext {
  /**
   * Writes `job`'s file from its member's pieces: under a temporary name, its size and SHA-256
   * checked before it gets its real name.
   */
  write(job: FileJob, realSize: number, pieces: AsyncIterable<MemberPiece>): Promise<void>;
  /** Records why `job`'s file could not be restored (a typed error; anything else throws). */
  fail(job: FileJob, error: unknown): void;
}

/**
 * Reads the members of one archive's files and hands each to `context.write` (in any order), or
 * reports it with `context.fail`; a file neither written nor failed is listed as missing.
 */
export type ArchiveFiles = (
  snapshot: string,
  jobs: readonly FileJob[],
  context: ArchiveContext,
) => Promise<void>;

/** Data jobs by archive, and hard links to make once the files are written. */
function fileJobs(manifest: Manifest, entries: readonly ManifestEntry[]) {
  const selected = new Map(entries.map((e) => [e.path, e]));
  const all = new Map(manifest.entries.map((e) => [e.path, e]));
  const byArchive = new Map<string, FileJob[]>();
  const links: Array<readonly [string, string]> = [];
  const standIns = new Map<string, string>();
  const add = (job: FileJob) => {
    const jobs = byArchive.get(job.entry.data) ?? [];
    if (jobs.length === 0) byArchive.set(job.entry.data, jobs);
    jobs.push(job);
  };
  for (const entry of entries) {
    if (entry.type !== "file") continue;
    const primary = entry.hardlink === undefined ? undefined : all.get(entry.hardlink);
    if (primary === undefined || primary.type !== "file" || primary.hardlink !== undefined) {
      add({ entry, member: { path: entry.path, offset: entry.offset } });
    } else if (selected.has(primary.path)) links.push([entry.path, primary.path]);
    else if (standIns.has(primary.path)) links.push([entry.path, standIns.get(primary.path)!]);
    else {
      // Its other names are outside the restored set: restored as a file from the primary's bytes.
      standIns.set(primary.path, entry.path);
      add({ entry, member: { path: primary.path, offset: primary.offset } });
    }
  }
  return { byArchive, links };
}

/** Hashes the pieces as they pass; after the last, checks size and SHA-256 against the entry. */
async function* checkedPieces(
  entry: FileEntry,
  snapshot: string,
  pieces: AsyncIterable<MemberPiece>,
): AsyncGenerator<MemberPiece> {
  const hash = createHash("sha256");
  let sizeBytes = 0;
  for await (const piece of pieces) {
    hash.update(piece.bytes);
    sizeBytes += piece.bytes.length;
    yield piece;
  }
  const stored = entry.sparse?.storedBytes ?? entry.sizeBytes;
  const name = `file ${JSON.stringify(entry.path)} (snapshot ${snapshot})`;
  if (sizeBytes !== stored) {
    throw new RestoreError("size-mismatch", `${name}: ${sizeBytes} bytes, manifest says ${stored}`);
  }
  if (hash.digest("hex") !== entry.sha256) {
    throw new RestoreError("hash-mismatch", `${name}: SHA-256 does not match the manifest`);
  }
}

/** Records problems: typed errors by side, anything else is a lanfree bug and propagates. */
class Problems {
  readonly list: RestoreProblem[] = [];
  count = 0;

  add(path: string, error: unknown): void {
    if (
      !(error instanceof BackupError) && !(error instanceof Error && error.name === "MemberError")
    ) {
      throw error;
    }
    const code = error instanceof BackupError ? error.code : "bad-archive";
    const side = code === "write-failed" || code === "unsafe-path" ? "target" : "repository";
    this.count++;
    if (this.list.length < RESTORE_PROBLEMS_LISTED_MAX) {
      this.list.push({ path, side, code, message: error.message });
    }
  }
}

/** Archives read from a repository on this machine (each member at its offset). */
function repositoryArchives(
  repo: Repository,
  open: (path: string) => Promise<ArchiveReader>,
): ArchiveFiles {
  return async (snapshot, jobs, context) => {
    const path = repoPaths.archive(repo, snapshot);
    const atOffsets = jobs.filter((j) => j.member.offset !== undefined);
    const byName = jobs.filter((j) => j.member.offset === undefined);
    if (atOffsets.length > 0) await readAtOffsets(path, atOffsets, open, context);
    if (byName.length > 0) await restoreByName(path, snapshot, byName, context);
  };
}

/** Reads each member at the offset its manifest keeps, in archive order. */
async function readAtOffsets(
  path: string,
  jobs: readonly FileJob[],
  open: (path: string) => Promise<ArchiveReader>,
  context: ArchiveContext,
): Promise<void> {
  let reader: ArchiveReader;
  try {
    reader = await open(path);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    const failure = new RestoreError("read-failed", `archive ${path}: ${reason}`);
    for (const job of jobs) context.fail(job, failure);
    return;
  }
  try {
    const sorted = [...jobs].sort((a, b) => a.member.offset! - b.member.offset!);
    for (const job of sorted) {
      try {
        const member = await openMember(reader, job.member.offset!, job.member.path);
        await context.write(job, member.realSize, member.pieces);
      } catch (error) {
        context.fail(job, error);
      }
    }
  } finally {
    reader.close();
  }
}

/** Version-1 manifests keep no offsets: their archives are read through by member name. */
async function restoreByName(
  path: string,
  snapshot: string,
  jobs: readonly FileJob[],
  context: ArchiveContext,
): Promise<void> {
  const byMember = new Map(jobs.map((j) => [j.member.path, j]));
  const wanted = new Map(jobs.map((j) => [j.member.path, j.entry]));
  let seen = new Set<string>();
  try {
    seen = await readArchiveFiles(path, snapshot, wanted, async (entry, body) => {
      async function* pieces(): AsyncGenerator<MemberPiece> {
        let position = 0;
        for await (const chunk of body) {
          yield { bytes: chunk, position };
          position += chunk.length;
        }
      }
      const job = byMember.get(entry.path)!;
      try {
        await context.write(job, entry.sizeBytes, pieces());
      } catch (error) {
        context.fail(job, error);
        for await (const _ of body) { /* read past the rest of this member */ }
      }
    });
  } catch (error) {
    for (const job of jobs) {
      if (!seen.has(job.member.path)) context.fail(job, error);
    }
  }
}

/**
 * Restores a snapshot into `target`. Every intact file is restored even when others are not;
 * those are listed, each with its path, the side at fault (repository or target) and why.
 *
 * @param options repository, snapshot, target, optional subpath, overwrite, permissions
 * @returns counts, bytes and seconds
 * @throws {RestoreError} on an unsafe target, a non-empty target, a bad plan, or `incomplete`
 *   (after restoring everything else) with the problems in its message and in `problems`;
 *   {@link RepositoryError} for repository problems
 *
 * @example Restoring the latest snapshot
 * ```ts ignore
 * import { restoreSnapshot } from "./restore.ts";
 * const summary = await restoreSnapshot({ repo: "./.lanfree/repo", snapshot: "latest", target: "/tmp/out" });
 * console.log(`${summary.files} files restored`);
 * ```
 */
export async function restoreSnapshot(options: RestoreOptions): Promise<RestoreSummary> {
  const startedMs = performance.now();
  const repo = typeof options.repo === "string" ? await openRepository(options.repo) : options.repo;
  const manifest = await resolveSnapshot(repo, options.snapshot);
  const planned = planRestore(manifest, options.path);
  if (!planned.ok) throw new RestoreError("bad-plan", planned.message);
  const archives = repositoryArchives(repo, options.openArchive ?? openArchive);
  return await restorePlanned(manifest, planned.plan, options, archives, startedMs);
}

/**
 * Restores a planned snapshot into `options.target`, reading file bytes through `readArchive`:
 * the one restore for a repository on this machine ({@link restoreSnapshot}) and for one that
 * streams its members over a session. Directories first, then each archive's files (every
 * SHA-256 checked before a file gets its real name), then hard links, symlinks, and directory
 * modes and times deepest first.
 *
 * @param manifest the snapshot's validated manifest (hard links are resolved in it)
 * @param plan what `planRestore` chose: the entries and, per archive, the files it holds
 * @param options target, overwrite, permissions, hooks
 * @param readArchive where each archive's members come from
 * @param startedMs when the restore started (for the summary's seconds)
 * @returns counts, bytes and seconds
 * @throws {RestoreError} as {@link restoreSnapshot}
 */
export async function restorePlanned(
  manifest: Manifest,
  plan: RestorePlan,
  options: Pick<RestoreOptions, "target" | "overwrite" | "preservePermissions" | "hooks">,
  readArchive: ArchiveFiles,
  startedMs: number = performance.now(),
): Promise<RestoreSummary> {
  const target = await prepareTarget(options.target, options.overwrite ?? false);
  const writer = new TargetWriter(target.root, target.fresh, options, target.identity);
  const problems = new Problems();
  const entries = plan.entries;
  const dirs = entries.filter((e) => e.type === "dir");
  const attempt = async (path: string, step: () => Promise<void>) => {
    try {
      await step();
      return 1;
    } catch (error) {
      problems.add(path, error);
      return 0;
    }
  };
  for (const dir of dirs) await attempt(dir.path, () => writer.dir(dir));
  const { byArchive, links } = fileJobs(manifest, entries);
  let bytes = 0;
  for (const archive of plan.archives) {
    const jobs = byArchive.get(archive.snapshot) ?? [];
    const ended = new Set<FileJob>();
    await readArchive(archive.snapshot, jobs, {
      write: async (job, realSize, pieces) => {
        if (!jobs.includes(job) || ended.has(job)) {
          throw new Error(`${JSON.stringify(job.entry.path)} was not asked of this archive`);
        }
        ended.add(job);
        const check = (p: AsyncIterable<MemberPiece>) =>
          checkedPieces(job.entry, archive.snapshot, p);
        await writer.file(job.entry, realSize, pieces, check);
        bytes += job.entry.sizeBytes;
      },
      fail: (job, error) => {
        ended.add(job);
        problems.add(job.entry.path, error);
      },
    });
    for (const job of jobs.filter((j) => !ended.has(j))) {
      const name = JSON.stringify(job.entry.path);
      problems.add(
        job.entry.path,
        new RestoreError(
          "missing-data",
          `file ${name} is missing from the archive of snapshot ${archive.snapshot}`,
        ),
      );
    }
  }
  for (const [path, primary] of links) await attempt(path, () => writer.link(path, primary));
  let symlinks = 0;
  for (const entry of entries) {
    if (entry.type === "symlink") {
      symlinks += await attempt(entry.path, () => writer.symlink(entry));
    }
  }
  for (const dir of [...dirs].reverse()) await attempt(dir.path, () => writer.finishDir(dir));
  const summary: RestoreSummary = {
    snapshot: manifest.id,
    files: entries.filter((e) => e.type === "file").length -
      problems.list.filter((p) => entries.some((e) => e.type === "file" && e.path === p.path))
        .length,
    dirs: dirs.length,
    symlinks,
    bytes,
    seconds: (performance.now() - startedMs) / 1000,
    problems: problems.list,
  };
  if (problems.count > 0) throw new IncompleteRestore(summary, problems.count);
  return summary;
}

/** A restore that restored what it could; `summary.problems` lists what it could not. */
export class IncompleteRestore extends RestoreError {
  constructor(readonly summary: RestoreSummary, count: number) {
    const first = summary.problems.slice(0, 3).map((p) => p.message).join("; ");
    super(
      "incomplete",
      `${count} of the snapshot's entries could not be restored (the rest was): ${first}${
        count > 3 ? "; ..." : ""
      }`,
    );
    this.name = "IncompleteRestore";
  }

  /** The first problem's code (what a caller checking one failure wants). */
  get firstCode(): string | undefined {
    return this.summary.problems[0]?.code;
  }
}
