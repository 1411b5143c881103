/**
 * The repository: a directory holding snapshots as standard tar archives plus zod-validated
 * manifests.
 *
 * ```
 * REPO/lanfree-repository.json   format marker {format, version, createdMs}
 * REPO/snapshots/ID.tar          the archive (GNU tar lists and extracts it)
 * REPO/snapshots/ID.manifest.json the manifest; its presence makes the snapshot visible
 * REPO/tmp/                      archives and manifests being written
 * REPO/lock                      exists while a backup writes
 * ```
 *
 * @module
 */

import { ArchiveNeeds, type ArchiveState } from "../../core/backup/chain.ts";
import { type Manifest, parseManifest, SNAPSHOT_ID_PATTERN } from "../../core/backup/manifest.ts";
import type { ManifestHead } from "../../core/backup/manifest_stream.ts";
import { RepositoryError } from "../errors.ts";
import { recordedNeeds } from "./_checked_record.ts";
import { canonicalPath } from "../paths.ts";
import {
  type ManifestHandlers,
  readManifestHeadFile,
  type StreamedManifest,
  streamManifestFile,
} from "./_manifest_file.ts";

/** Format name written in the marker file. */
export const REPOSITORY_FORMAT = "lanfree-repository";
/** Repository layout version this code reads and writes. */
export const REPOSITORY_VERSION = 1;
/** Name of the marker file. */
export const MARKER_FILE = "lanfree-repository.json";
/** Most snapshots listed from one repository. */
export const SNAPSHOTS_MAX = 100_000;
/** Largest manifest file read, in bytes. */
export const MANIFEST_FILE_BYTES_MAX = 1 << 30;

/** What a repository being created is called beside its place until it is renamed in. */
export const STAGING_INFIX = ".lanfree-init-";
/** A staging directory's name: the repository's name, the infix, a UUID. */
const STAGING_UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * True when `name` (in the repository's parent directory) is a staging directory of a
 * repository called `repoName`.
 */
export function isStagingName(name: string, repoName: string): boolean {
  const prefix = `${repoName}${STAGING_INFIX}`;
  return name.startsWith(prefix) && STAGING_UUID.test(name.slice(prefix.length));
}

/** An opened repository. */
export interface Repository {
  /** The repository directory. */
  readonly path: string;
}

/** Where the files of a repository live. */
export const repoPaths = {
  marker: (repo: Repository) => `${repo.path}/${MARKER_FILE}`,
  snapshots: (repo: Repository) => `${repo.path}/snapshots`,
  tmp: (repo: Repository) => `${repo.path}/tmp`,
  lock: (repo: Repository) => `${repo.path}/lock`,
  archive: (repo: Repository, id: string) => `${repo.path}/snapshots/${id}.tar`,
  manifest: (repo: Repository, id: string) => `${repo.path}/snapshots/${id}.manifest.json`,
  /** The snapshot's checked record (`_checked_record.ts`). */
  checked: (repo: Repository, id: string) => `${repo.path}/snapshots/${id}.checked.json`,
};

async function readMarker(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await Deno.readTextFile(`${path}/${MARKER_FILE}`);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) {
      throw new RepositoryError(
        "corrupt",
        `repository ${path}: cannot read ${MARKER_FILE}: ${error}`,
      );
    }
    const exists = await Deno.stat(path).then((i) => i.isDirectory, () => undefined);
    if (exists === undefined) {
      throw new RepositoryError("not-found", `repository ${path} does not exist`);
    }
    throw new RepositoryError(
      "not-a-repository",
      `${path} is not a lanfree repository (no ${MARKER_FILE})`,
    );
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new RepositoryError("corrupt", `repository ${path}: ${MARKER_FILE} is not valid JSON`);
  }
}

/**
 * Opens an existing repository after checking its marker and layout.
 *
 * @param path the repository directory
 * @returns the repository
 * @throws {RepositoryError} `not-found`, `not-a-repository`, `other-format` or `corrupt`
 *
 * @example Opening a directory that is not a repository
 * ```ts
 * import assert from "node:assert/strict";
 * import { openRepository } from "./repository.ts";
 * const dir = await Deno.makeTempDir();
 * await assert.rejects(openRepository(dir), { code: "not-a-repository" });
 * await Deno.remove(dir);
 * ```
 */
export async function openRepository(path: string): Promise<Repository> {
  const marker = await readMarker(path) as { format?: unknown; version?: unknown } | null;
  if (marker?.format !== REPOSITORY_FORMAT || marker?.version !== REPOSITORY_VERSION) {
    const found = `${String(marker?.format)} version ${String(marker?.version)}`;
    throw new RepositoryError(
      "other-format",
      `repository ${path} has format ${found}; this lanfree reads ${REPOSITORY_FORMAT} version ${REPOSITORY_VERSION}`,
    );
  }
  for (const dir of ["snapshots", "tmp"]) {
    const ok = await Deno.stat(`${path}/${dir}`).then((i) => i.isDirectory, () => false);
    if (!ok) throw new RepositoryError("corrupt", `repository ${path}: ${dir}/ is missing`);
  }
  return { path };
}

/**
 * Opens the repository at `path`, creating it first if the directory is missing or empty.
 *
 * @param path the repository directory
 * @param nowMs creation time written into the marker
 * @returns the repository
 * @throws {RepositoryError} when `path` holds something else
 *
 * @example Creating a repository
 * ```ts
 * import assert from "node:assert/strict";
 * import { initRepository, listSnapshots } from "./repository.ts";
 * const dir = await Deno.makeTempDir();
 * const repo = await initRepository(`${dir}/repo`);
 * assert.deepEqual(await listSnapshots(repo), []);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function initRepository(path: string, nowMs = Date.now()): Promise<Repository> {
  if (!(await isMissingOrEmpty(path))) return await openRepository(path);
  // Build the repository beside its place and rename it in: two backups creating the same
  // repository at once then see either nothing or a whole repository, never half of one.
  // A backup that created it first removes staging directories beside it (`removeStale`, under
  // its lock), this one's too, at any step: whatever fails here, the repository in place wins.
  const staging = `${path.replace(/\/+$/, "")}${STAGING_INFIX}${crypto.randomUUID()}`;
  const marker = { format: REPOSITORY_FORMAT, version: REPOSITORY_VERSION, createdMs: nowMs };
  try {
    await Deno.mkdir(`${staging}/snapshots`, { recursive: true });
    await Deno.mkdir(`${staging}/tmp`);
    await Deno.writeTextFile(`${staging}/${MARKER_FILE}`, JSON.stringify(marker, null, 2) + "\n");
    await Deno.rename(staging, path); // replaces a missing or empty directory, atomically
  } catch (error) {
    await Deno.remove(staging, { recursive: true }).catch(() => {});
    if (await isMissingOrEmpty(path)) throw error;
    return await openRepository(path); // another backup created it first
  }
  return { path };
}

async function isMissingOrEmpty(path: string): Promise<boolean> {
  try {
    for await (const _ of Deno.readDir(path)) return false;
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return true;
    throw error;
  }
}

/**
 * Ids of the committed snapshots (those with a manifest), oldest first.
 *
 * @param repo the repository
 * @returns the ids
 *
 * @example See {@link initRepository}.
 */
export async function listSnapshotIds(repo: Repository): Promise<string[]> {
  const ids: string[] = [];
  for await (const item of Deno.readDir(repoPaths.snapshots(repo))) {
    const id = item.name.endsWith(".manifest.json") ? item.name.slice(0, -14) : "";
    if (!item.isFile || !SNAPSHOT_ID_PATTERN.test(id)) continue;
    if (ids.length >= SNAPSHOTS_MAX) {
      throw new RepositoryError(
        "corrupt",
        `repository ${repo.path} has more than ${SNAPSHOTS_MAX} snapshots`,
      );
    }
    ids.push(id);
  }
  return ids.sort();
}

/**
 * Reads and validates one manifest.
 *
 * @param repo the repository
 * @param id the snapshot id
 * @returns the manifest
 * @throws {RepositoryError} `unknown-snapshot` or `corrupt` (naming the file and the problem)
 */
export async function readManifest(repo: Repository, id: string): Promise<Manifest> {
  const path = repoPaths.manifest(repo, id);
  if (!SNAPSHOT_ID_PATTERN.test(id)) {
    throw new RepositoryError("unknown-snapshot", `${JSON.stringify(id)} is not a snapshot id`);
  }
  let text: string;
  try {
    const size = (await Deno.stat(path)).size;
    if (size > MANIFEST_FILE_BYTES_MAX) {
      throw new RangeError(`larger than ${MANIFEST_FILE_BYTES_MAX} bytes`);
    }
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new RepositoryError(
        "unknown-snapshot",
        `repository ${repo.path} has no snapshot ${id}`,
      );
    }
    throw new RepositoryError("corrupt", `manifest ${path}: ${error}`, { cause: error });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new RepositoryError("corrupt", `manifest ${path} is not valid JSON`);
  }
  const parsed = parseManifest(value);
  if (!parsed.ok) {
    throw new RepositoryError("corrupt", `manifest ${path} is invalid: ${parsed.message}`);
  }
  if (parsed.manifest.id !== id) {
    throw new RepositoryError("corrupt", `manifest ${path} names snapshot ${parsed.manifest.id}`);
  }
  return parsed.manifest;
}

/** Snapshot `id`'s manifest file, read a line at a time (or whole, for older layouts). */
function manifestFile(repo: Repository, id: string) {
  if (!SNAPSHOT_ID_PATTERN.test(id)) {
    throw new RepositoryError("unknown-snapshot", `${JSON.stringify(id)} is not a snapshot id`);
  }
  return {
    path: repoPaths.manifest(repo, id),
    id,
    repoPath: repo.path,
    readWhole: () => readManifest(repo, id),
  };
}

/**
 * Reads one manifest an entry at a time (entries in path order), each checked, the tree rule
 * included: memory stays small however many entries it has.
 *
 * @param repo the repository
 * @param id the snapshot id
 * @param handlers what to do with the head, each entry and each deleted path
 * @param trusted hand over entry lines unchecked (see `ManifestHandlers.entryLine`)
 * @returns the head and the entry count
 * @throws {RepositoryError} `unknown-snapshot` or `corrupt` (naming the file and the problem)
 */
export async function streamManifest(
  repo: Repository,
  id: string,
  handlers: ManifestHandlers,
  trusted = false,
): Promise<StreamedManifest> {
  return await streamManifestFile(manifestFile(repo, id), handlers, trusted);
}

/**
 * Reads one manifest's head (its first line; older layouts are read whole). Its channel
 * counters are left at zero.
 *
 * @param repo the repository
 * @param id the snapshot id
 * @returns the head
 * @throws {RepositoryError} `unknown-snapshot` or `corrupt`
 */
export async function readManifestHead(repo: Repository, id: string): Promise<ManifestHead> {
  return await readManifestHeadFile(manifestFile(repo, id));
}

/**
 * Reads every manifest, oldest first.
 *
 * @param repo the repository
 * @returns the manifests
 */
export async function listSnapshots(repo: Repository): Promise<Manifest[]> {
  const manifests: Manifest[] = [];
  for (const id of await listSnapshotIds(repo)) manifests.push(await readManifest(repo, id));
  return manifests;
}

/**
 * The newest snapshot taken from `source`, if any (the parent of an incremental backup).
 *
 * @param repo the repository
 * @param source the source as recorded in manifests
 * @param kind only snapshots of this kind
 * @returns the manifest or null
 */
export async function latestSnapshot(
  repo: Repository,
  source: string,
  kind: "fs" | "db" = "fs",
): Promise<Manifest | null> {
  const ids = await listSnapshotIds(repo);
  for (let i = ids.length - 1; i >= 0; i--) {
    const manifest = await readManifest(repo, ids[i]!);
    if (manifest.source === source && manifest.kind === kind) return manifest;
  }
  return null;
}

/** The parent an incremental backup builds on, or why the backup is full. */
export interface ParentChoice {
  /** The parent's manifest head (stream its entries with `streamManifest`), or null. */
  readonly parent: ManifestHead | null;
  /** Why an incremental backup that was asked for is full; null when it is not, or not asked. */
  readonly fullReason: string | null;
  /**
   * The parent's file is in the line layout and path order (read line by line, not whole): its
   * lines can be sent on as they are.
   */
  readonly lineLayout?: boolean;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Chooses the parent of a backup: for an incremental one, the newest snapshot of the same source
 * and kind whose chain is complete (every manifest readable, every archive its files need present
 * with the size its manifest records). Anything else makes the backup full, with the reason: no
 * earlier snapshot, a newer manifest that cannot be read (it may be the latest of this source),
 * or a broken chain. Database snapshots are always full. Manifests are read a line at a time:
 * heads to choose, the parent's entries once to check it.
 *
 * @param repo the repository (under its writer lock)
 * @param source the source as recorded in manifests
 * @param kind `fs` or `db`
 * @param incremental whether an incremental backup was asked for
 * @returns the parent, or null with the reason
 */
export async function chooseParent(
  repo: Repository,
  source: string,
  kind: "fs" | "db",
  incremental: boolean,
): Promise<ParentChoice> {
  if (!incremental) return { parent: null, fullReason: null };
  if (kind === "db") return { parent: null, fullReason: "database snapshots are always full" };
  const ids = await listSnapshotIds(repo);
  for (let i = ids.length - 1; i >= 0; i--) {
    let head: ManifestHead;
    try {
      head = await readManifestHead(repo, ids[i]!);
    } catch (error) {
      return {
        parent: null,
        fullReason: `the manifest of snapshot ${ids[i]} cannot be read (${
          messageOf(error)
        }); it may be the latest of this source, so this backup is full`,
      };
    }
    if (head.source !== source || head.kind !== kind) continue;
    const { problem, lineLayout } = await brokenChain(repo, head);
    if (problem === undefined) return { parent: head, fullReason: null, lineLayout };
    return {
      parent: null,
      fullReason: `the parent chain of ${head.id} is broken: ${problem}`,
    };
  }
  return { parent: null, fullReason: `no earlier snapshot of ${source} in this repository` };
}

/**
 * What is wrong with the archives `parent`'s files point into, or undefined when they are whole
 * (the parent's manifest is read as a stream, or vouched for by its checked record): each archive's size is compared with its own
 * snapshot's manifest where it has one (a manifest that is there but cannot be read breaks the
 * chain); a forgotten snapshot's archive, or one prune wrote, must at least reach past the
 * members the parent reads from it.
 */
async function brokenChain(
  repo: Repository,
  parent: ManifestHead,
): Promise<{ problem: string | undefined; lineLayout: boolean }> {
  const read = await parentNeeds(repo, parent.id);
  if ("problem" in read) return { problem: read.problem, lineLayout: read.lineLayout };
  const { needs, lineLayout } = read;
  const archives = new Map<string, ArchiveState>();
  for (const id of needs.archives) {
    let recordedBytes: number | null = null;
    if (id === parent.id) recordedBytes = parent.archiveBytes;
    else {
      try {
        recordedBytes = (await readManifestHead(repo, id)).archiveBytes;
      } catch (error) {
        if (!(error instanceof RepositoryError && error.code === "unknown-snapshot")) {
          const problem = `the manifest of snapshot ${id} cannot be read (${messageOf(error)})`;
          return { problem, lineLayout };
        }
      }
    }
    const sizeBytes = await Deno.stat(repoPaths.archive(repo, id)).then((i) => i.size, () => null);
    archives.set(id, { sizeBytes, recordedBytes });
  }
  return { problem: needs.problem(archives), lineLayout };
}

/**
 * The archives a parent's files read from: from its checked record when the manifest still
 * hashes to what the record names (its entries were checked when it was committed), else by
 * reading and checking the whole manifest.
 */
async function parentNeeds(
  repo: Repository,
  id: string,
): Promise<
  { needs: ArchiveNeeds; lineLayout: boolean } | { problem: string; lineLayout: boolean }
> {
  const recorded = await recordedNeeds(repo, id);
  // A record is only written for a manifest committed in the line layout.
  if (recorded !== undefined) return { needs: recorded.needs, lineLayout: true };
  const needs = new ArchiveNeeds();
  let lineLayout = false;
  try {
    const streamed = await streamManifest(repo, id, {
      entry: (entry) => {
        if (entry.type === "file") needs.add(entry);
      },
    });
    lineLayout = streamed.lineLayout;
  } catch (error) {
    return {
      problem: `the manifest of snapshot ${id} cannot be read (${messageOf(error)})`,
      lineLayout,
    };
  }
  return { needs, lineLayout };
}

/**
 * Resolves a snapshot name to its manifest: an id, or `"latest"`. With a `source`, `"latest"` is
 * the newest snapshot of that source (named by the path it was backed up from; the path need not
 * exist any more) and an id must be a snapshot of it; without one, `"latest"` is the newest
 * snapshot of any source in the repository.
 *
 * @param repo the repository
 * @param snapshot an id or `"latest"`
 * @param source the source the snapshot must be of
 * @returns the manifest
 * @throws {RepositoryError} `unknown-snapshot` naming what was looked for
 */
export async function resolveSnapshot(
  repo: Repository,
  snapshot: string,
  source?: string,
): Promise<Manifest> {
  const head = await resolveSnapshotHead(repo, snapshot, source);
  return await readManifest(repo, head.id);
}

/**
 * {@link resolveSnapshot} without reading any entries: the head of the snapshot named (read
 * from each manifest's first line, so "latest" costs a line per snapshot, not a manifest).
 *
 * @param repo the repository
 * @param snapshot an id or `"latest"`
 * @param source the source the snapshot must be of
 * @returns the manifest's head
 * @throws {RepositoryError} `unknown-snapshot` naming what was looked for
 */
export async function resolveSnapshotHead(
  repo: Repository,
  snapshot: string,
  source?: string,
): Promise<ManifestHead> {
  const wanted = source === undefined ? undefined : await canonicalPath(source);
  if (snapshot !== "latest") {
    const head = await readManifestHead(repo, snapshot);
    if (wanted !== undefined && head.source !== wanted) {
      throw new RepositoryError(
        "unknown-snapshot",
        `snapshot ${snapshot} is of source ${head.source}, not ${wanted}`,
      );
    }
    return head;
  }
  const ids = await listSnapshotIds(repo);
  if (ids.length === 0) {
    throw new RepositoryError("unknown-snapshot", `repository ${repo.path} has no snapshots`);
  }
  if (wanted === undefined) return await readManifestHead(repo, ids[ids.length - 1]!);
  for (let i = ids.length - 1; i >= 0; i--) {
    const head = await readManifestHead(repo, ids[i]!);
    if (head.source === wanted) return head;
  }
  throw new RepositoryError(
    "unknown-snapshot",
    `repository ${repo.path} has no snapshot of source ${wanted}`,
  );
}
