/**
 * Restores a snapshot into a target directory. Each file reads its bytes from the archive its
 * `data` reference names (the snapshot's own, an ancestor's, or one prune repacked), never by
 * following the parent chain, which forget may have cut. The manifest is read a line at a
 * time: first checked whole (every entry, the tree rule, the subpath) before anything is
 * written, unless its checked record still vouches for it (then that pass is skipped, or reads
 * the lines unchecked for a subpath); then read to restore entry by entry in path order: each
 * directory before its entries, each file from its member at the offset its manifest keeps (its SHA-256 checked before the
 * file gets its real name), symlinks and hard links in place, each directory's mode and times
 * set as soon as its subtree is done. Only paths from the checked manifest are written, never
 * through a symlink, never outside the target. A file that cannot be restored (a damaged member,
 * a missing archive, a full disk) is reported with its path and the rest is restored. Manifests
 * whose files carry no offsets (version 1), and restores whose members arrive from elsewhere (an
 * agent's, streamed by the server: {@link restorePlanned}), are restored in phases.
 *
 * @module
 */

import { planRestore, type RestorePlan } from "../../core/backup/chain.ts";
import type { FileEntry, Manifest, ManifestEntry } from "../../core/backup/manifest.ts";
import type { ManifestHead } from "../../core/backup/manifest_stream.ts";
import { checkEntryPath, isWithin, parentPath } from "../../core/backup/path_rules.ts";
import {
  MEMBER_SCRATCH_BYTES,
  type MemberPiece,
  openArchive,
  openMember,
  readArchiveFiles,
  windowedReader,
} from "./_archive_read.ts";
import { BackupError, RestoreError } from "../errors.ts";
import {
  openRepository,
  readManifest,
  repoPaths,
  type Repository,
  resolveSnapshotHead,
  streamManifest,
} from "./repository.ts";
import type { ArchiveReader } from "./_tar_member.ts";
import { type RestoreHooks, TargetWriter } from "./_restore_target.ts";
import { vouchingRecord } from "./_checked_record.ts";
import { createHash } from "node:crypto";
import { Yielder } from "../_file_side.ts";

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
  /** False writes by path even when the native file layer is there (tests of the fallback). */
  readonly native?: boolean;
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
  /** Temporary files a killed earlier restore left in the target, removed by this one. */
  readonly staleRemoved: number;
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
    const scratch = new Uint8Array(MEMBER_SCRATCH_BYTES); // the target writes each piece at once
    for (const job of sorted) {
      try {
        const member = await openMember(reader, job.member.offset!, job.member.path, scratch);
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

/** What the checking pass found out before anything is written. */
interface CheckedRestore {
  /** Some selected file carries no offset (a version-1 archive): restore in phases. */
  readonly phased: boolean;
  /** Primaries outside the selection whose links inside it are restored as files instead. */
  readonly standInPrimaries: ReadonlySet<string>;
}

/** Whether `path` is restored: inside `subpath`, or a directory leading to it. */
function selector(subpath: string | undefined): (path: string) => boolean {
  if (subpath === undefined) return () => true;
  return (path) => isWithin(path, subpath) || isWithin(subpath, path);
}

/**
 * The checking pass: the whole manifest (every entry, the tree rule: `streamManifest`) and the
 * subpath present; nothing is written. A manifest its checked record vouches for (unchanged
 * since its commit checked every entry: `vouchingRecord`, as `chooseParent` trusts it) is not
 * checked again: without a subpath the record holds all this pass finds (whether a file lacks
 * its offset), so the manifest is not read here at all; with one, its lines are read unchecked
 * for the subpath and the hard links it needs. A file's archive is not looked up here: one that
 * is missing or damaged fails that file alone, when it is read.
 */
async function checkRestore(
  repo: Repository,
  head: ManifestHead,
  subpath: string | undefined,
): Promise<CheckedRestore> {
  if (subpath !== undefined) {
    const check = checkEntryPath(subpath);
    if (!check.ok) throw new RestoreError("bad-plan", check.message);
  }
  const record = await vouchingRecord(repo, head.id);
  const withoutOffset = record?.filesWithoutOffset;
  if (subpath === undefined && withoutOffset !== undefined) {
    return { phased: withoutOffset > 0, standInPrimaries: new Set() };
  }
  const selected = selector(subpath);
  let phased = false;
  let found = subpath === undefined;
  const standInPrimaries = new Set<string>();
  const entry = (entry: ManifestEntry) => {
    if (!selected(entry.path)) return;
    if (entry.path === subpath) found = true;
    if (entry.type !== "file") return;
    if (entry.offset === undefined) phased = true;
    if (entry.hardlink !== undefined && !selected(entry.hardlink)) {
      standInPrimaries.add(entry.hardlink);
    }
  };
  if (record === undefined) await streamManifest(repo, head.id, { entry });
  else {
    // Vouched for: each line is only parsed (a record exists for the line layout alone).
    const entryLine = (line: string) => entry(JSON.parse(line) as ManifestEntry);
    await streamManifest(repo, head.id, { entryLine }, true);
  }
  if (!found) {
    throw new RestoreError(
      "bad-plan",
      `snapshot ${head.id} has no entry ${JSON.stringify(subpath)}`,
    );
  }
  return { phased, standInPrimaries };
}

/** Archives open for reading, the most recently used kept (a bounded number). */
class ArchiveReaders {
  readonly #open = new Map<string, Promise<ArchiveReader>>();

  constructor(
    readonly repo: Repository,
    readonly openOne: (path: string) => Promise<ArchiveReader>,
  ) {}

  /** The reader of snapshot `id`'s archive (a failure to open is `read-failed`). */
  get(id: string): Promise<ArchiveReader> {
    let reader = this.#open.get(id);
    if (reader !== undefined) this.#open.delete(id);
    else {
      const path = repoPaths.archive(this.repo, id);
      reader = this.openOne(path).then(windowedReader).catch((error) => {
        this.#open.delete(id);
        const reason = error instanceof Error ? error.message : String(error);
        throw new RestoreError("read-failed", `archive ${path}: ${reason}`);
      });
      reader.catch(() => {});
    }
    this.#open.set(id, reader);
    if (this.#open.size > ARCHIVES_OPEN_MAX) {
      const [oldest, first] = this.#open.entries().next().value!;
      this.#open.delete(oldest);
      first.then((r) => r.close(), () => {});
    }
    return reader;
  }

  close(): void {
    for (const reader of this.#open.values()) reader.then((r) => r.close(), () => {});
    this.#open.clear();
  }
}

/** Most archives held open at once while restoring a chain. */
const ARCHIVES_OPEN_MAX = 16;

/** Counts of a restore. */
interface Restored {
  files: number;
  dirs: number;
  symlinks: number;
  bytes: number;
}

/** The streamed restore: one pass over the manifest in path order. */
class StreamedRestore {
  readonly counts: Restored = { files: 0, dirs: 0, symlinks: 0, bytes: 0 };
  readonly #open: ManifestEntry[] = [];
  readonly #dirs = new Map<string, ManifestEntry>();
  /**
   * Finished directories an entry came into later: path order is not tree order ("a", "a-b",
   * "a/c": "a" is finished at "a-b", then "a/c" changes its time), so they are finished again.
   */
  readonly #refinish = new Set<string>();
  readonly #standIns = new Map<string, FileEntry>();
  readonly #standInDone = new Map<string, string>();
  readonly #deferred: FileEntry[] = [];
  readonly #yielder = new Yielder();
  /** One read's buffer for every file: the target writes each piece before the next is read. */
  readonly #scratch = new Uint8Array(MEMBER_SCRATCH_BYTES);

  constructor(
    readonly writer: TargetWriter,
    readonly problems: Problems,
    readonly readers: ArchiveReaders,
    readonly selected: (path: string) => boolean,
    readonly checked: CheckedRestore,
  ) {}

  async #attempt(path: string, step: () => Promise<void>): Promise<boolean> {
    try {
      await step();
      return true;
    } catch (error) {
      this.problems.add(path, error);
      return false;
    }
  }

  /** Restores one entry of the manifest (in path order). */
  async entry(entry: ManifestEntry): Promise<void> {
    await this.#yielder.maybe();
    if (!this.selected(entry.path)) {
      if (entry.type === "file" && this.checked.standInPrimaries.has(entry.path)) {
        this.#standIns.set(entry.path, entry);
      }
      return;
    }
    await this.#finishOutside(entry.path);
    // Still open, the parent is the top of the stack (the nearest open ancestor); a restored
    // directory that is not there was finished already.
    const parent = parentPath(entry.path);
    if (this.#dirs.has(parent) && this.#open.at(-1)?.path !== parent) this.#refinish.add(parent);
    if (entry.type === "dir") {
      this.counts.dirs++;
      if (await this.#attempt(entry.path, () => this.writer.dir(entry))) {
        this.#open.push(entry);
        this.#dirs.set(entry.path, entry);
      }
    } else if (entry.type === "symlink") {
      if (await this.#attempt(entry.path, () => this.writer.symlink(entry))) this.counts.symlinks++;
    } else await this.#file(entry, false);
  }

  /** A file, a second name of one (a link now, or later when its primary comes later). */
  async #file(entry: FileEntry, late: boolean): Promise<void> {
    const primary = entry.hardlink;
    let step: (() => Promise<void>) | undefined;
    if (primary === undefined) step = () => this.#bytes(entry, entry);
    else if (this.selected(primary)) {
      if (late || primary < entry.path) step = () => this.writer.link(entry.path, primary);
    } else if (this.#standInDone.has(primary)) {
      const instead = this.#standInDone.get(primary)!;
      step = () => this.writer.link(entry.path, instead);
    } else if (this.#standIns.has(primary)) {
      // Its other names are outside the restored set: restored as a file from the primary's bytes.
      const source = this.#standIns.get(primary)!;
      step = async () => {
        await this.#bytes(entry, source);
        this.#standInDone.set(primary, entry.path);
      };
    } else if (late) {
      step = () => this.writer.link(entry.path, primary); // fails: the primary is nowhere
    }
    if (step === undefined) {
      this.#deferred.push(entry);
      return;
    }
    if (await this.#attempt(entry.path, step)) this.counts.files++;
  }

  /** Writes `entry` from `source`'s member (its own, or its primary's for a stand-in). */
  async #bytes(entry: FileEntry, source: FileEntry): Promise<void> {
    const reader = await this.readers.get(source.data);
    const member = await openMember(reader, source.offset!, source.path, this.#scratch);
    const check = (p: AsyncIterable<MemberPiece>) => checkedPieces(source, source.data, p);
    await this.writer.file(entry, member.realSize, member.pieces, check);
    this.counts.bytes += entry.sizeBytes;
  }

  /** Finishes the directories whose subtree ends before `path`. */
  async #finishOutside(path: string | undefined): Promise<void> {
    // Bounded by the directories open.
    while (this.#open.length > 0) {
      const top = this.#open[this.#open.length - 1]!;
      if (path !== undefined && isWithin(path, top.path)) return;
      this.#open.pop();
      await this.#attempt(top.path, () => this.writer.finishDir(top));
    }
  }

  /** After the last entry: links whose primary came later, then the directories left. */
  async finish(): Promise<void> {
    await this.#finishOutside(undefined);
    const touched = new Set<string>(this.#refinish);
    for (const entry of this.#deferred) {
      await this.#file(entry, true);
      touched.add(parentPath(entry.path));
    }
    const again = [...touched].filter((p) => this.#dirs.has(p)).sort().reverse();
    for (const path of again) {
      await this.#attempt(path, () => this.writer.finishDir(this.#dirs.get(path)!));
    }
  }
}

/** Restores a manifest whose files all carry offsets: one streamed pass. */
async function restoreStreamed(
  repo: Repository,
  head: ManifestHead,
  checked: CheckedRestore,
  context: { writer: TargetWriter; problems: Problems; options: RestoreOptions },
): Promise<Restored> {
  const readers = new ArchiveReaders(repo, context.options.openArchive ?? openArchive);
  const restore = new StreamedRestore(
    context.writer,
    context.problems,
    readers,
    selector(context.options.path),
    checked,
  );
  try {
    await streamManifest(repo, head.id, { entry: (entry) => restore.entry(entry) });
    await restore.finish();
  } finally {
    readers.close();
  }
  return restore.counts;
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
  const head = await resolveSnapshotHead(repo, options.snapshot);
  const checked = await checkRestore(repo, head, options.path);
  if (checked.phased) {
    const manifest = await readManifest(repo, head.id);
    const planned = planRestore(manifest, options.path);
    if (!planned.ok) throw new RestoreError("bad-plan", planned.message);
    const archives = repositoryArchives(repo, options.openArchive ?? openArchive);
    return await restorePlanned(manifest, planned.plan, options, archives, startedMs);
  }
  const target = await prepareTarget(options.target, options.overwrite ?? false);
  const writer = new TargetWriter(target.root, target.fresh, options, target.identity);
  const problems = new Problems();
  let counts: Restored;
  try {
    counts = await restoreStreamed(repo, head, checked, { writer, problems, options });
  } finally {
    writer.close();
  }
  const summary: RestoreSummary = {
    snapshot: head.id,
    ...counts,
    seconds: (performance.now() - startedMs) / 1000,
    problems: problems.list,
    staleRemoved: writer.staleRemoved,
  };
  if (problems.count > 0) throw new IncompleteRestore(summary, problems.count);
  return summary;
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
  try {
    return await restorePlannedWith(manifest, plan, readArchive, { writer, problems }, startedMs);
  } finally {
    writer.close();
  }
}

/** {@link restorePlanned} once the target is prepared. */
async function restorePlannedWith(
  manifest: Manifest,
  plan: RestorePlan,
  readArchive: ArchiveFiles,
  context: { writer: TargetWriter; problems: Problems },
  startedMs: number,
): Promise<RestoreSummary> {
  const { writer, problems } = context;
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
    staleRemoved: writer.staleRemoved,
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
