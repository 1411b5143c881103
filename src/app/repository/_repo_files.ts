/**
 * The repository's file-level steps shared by every writer (backup, forget, prune, consolidate):
 * synced writes into `tmp/`, directory syncs, and the clean-up of what an interrupted writer
 * left, run by the next writer under the lock.
 *
 * What a writer leaves in `tmp/` tells the next one what it was doing:
 *
 * - `ID.manifest.json.partial`: a backup's manifest, written (and synced) before its archive is
 *   renamed into `snapshots/`. If `snapshots/ID.manifest.json` is missing, the backup died before
 *   its commit point and `snapshots/ID.tar`, if there, is its orphan: removed.
 * - `ID.manifest.json.replacement`: consolidate's new manifest for an existing snapshot, written
 *   before the grown archive replaced the old one. If `snapshots/ID.tar` already has the size it
 *   records, the archive swap happened and the manifest is rolled forward; else it is dropped
 *   (the old manifest still matches the old archive).
 * - anything else (`*.tar.partial`, prune's `ID.manifest.json.rewrite`): dropped; the files in
 *   `snapshots/` are whole either way.
 *
 * An archive in `snapshots/` without a manifest and without such a note is left alone here: it
 * may be a forgotten snapshot's archive that kept snapshots still read. Prune removes it once
 * nothing references it.
 *
 * @module
 */

import { basename, dirname } from "node:path";
import { parseManifest, SNAPSHOT_ID_PATTERN } from "../../core/backup/manifest.ts";
import {
  isStagingName,
  MANIFEST_FILE_BYTES_MAX,
  repoPaths,
  type Repository,
} from "./repository.ts";
import { repoFs } from "./repo_fs.ts";

/** Most stale entries removed from `tmp/` and beside the repository when a writer starts. */
const STALE_ENTRIES_MAX = 100_000;

/** Suffixes of manifests being written in `tmp/`, by purpose. */
export const MANIFEST_NOTE = {
  /** A new snapshot's manifest (a backup before its commit point). */
  commit: ".manifest.json.partial",
  /** A kept manifest with references rewritten (prune). */
  rewrite: ".manifest.json.rewrite",
  /** A snapshot's manifest for its grown archive (consolidate). */
  replacement: ".manifest.json.replacement",
} as const;

/**
 * Syncs a directory, so renames and removals in it are on disk.
 *
 * @param path the directory
 */
export async function syncDir(path: string): Promise<void> {
  await repoFs().syncDir(path);
}

/**
 * Creates `path` (it must not exist) with `bytes`, synced.
 *
 * @param path the new file
 * @param bytes its content
 */
export async function writeSynced(path: string, bytes: Uint8Array): Promise<void> {
  const file = await repoFs().create(path);
  try {
    for (let offset = 0; offset < bytes.byteLength;) {
      offset += await file.write(bytes.subarray(offset));
    }
    await file.sync();
  } finally {
    file.close();
  }
}

/**
 * Writes a manifest into `tmp/` under the given note, synced, and syncs `tmp/`.
 *
 * @param repo the repository (its lock held)
 * @param manifest the manifest (already validated)
 * @param note what the manifest is for
 * @returns the temporary path
 */
export async function writeManifestNote(
  repo: Repository,
  manifest: { readonly id: string },
  note: keyof typeof MANIFEST_NOTE,
): Promise<string> {
  const path = `${repoPaths.tmp(repo)}/${manifest.id}${MANIFEST_NOTE[note]}`;
  await writeSynced(path, new TextEncoder().encode(JSON.stringify(manifest)));
  await syncDir(repoPaths.tmp(repo));
  return path;
}

async function exists(path: string): Promise<boolean> {
  return await Deno.lstat(path).then(() => true, () => false);
}

/** Rolls consolidate's replacement manifest forward when its archive is already in place. */
async function rollForward(repo: Repository, id: string, notePath: string): Promise<void> {
  if (!(await exists(repoPaths.manifest(repo, id)))) return;
  const size = await Deno.stat(notePath).then((i) => i.size, () => Infinity);
  if (size > MANIFEST_FILE_BYTES_MAX) return;
  let value: unknown;
  try {
    value = JSON.parse(await Deno.readTextFile(notePath));
  } catch {
    return; // cut off: the swap cannot have happened (it comes after the note was synced)
  }
  const parsed = parseManifest(value);
  if (!parsed.ok || parsed.manifest.id !== id) return;
  const archiveBytes = await Deno.stat(repoPaths.archive(repo, id)).then((i) => i.size, () => -1);
  if (archiveBytes !== parsed.manifest.archiveBytes) return;
  await repoFs().rename(notePath, repoPaths.manifest(repo, id));
  await syncDir(repoPaths.snapshots(repo));
}

/** Acts on one note left in `tmp/` (see the module doc); the caller then removes it. */
async function settleNote(repo: Repository, name: string): Promise<void> {
  for (const [kind, suffix] of Object.entries(MANIFEST_NOTE)) {
    if (!name.endsWith(suffix)) continue;
    const id = name.slice(0, -suffix.length);
    if (!SNAPSHOT_ID_PATTERN.test(id)) return;
    if (kind === "commit" && !(await exists(repoPaths.manifest(repo, id)))) {
      await repoFs().remove(repoPaths.archive(repo, id)).catch(() => {});
    }
    if (kind === "replacement") await rollForward(repo, id, `${repoPaths.tmp(repo)}/${name}`);
    return;
  }
}

/**
 * Removes leftovers of interrupted writers (see the module doc): settles and empties `tmp/`, and
 * removes staging directories of this repository left beside it by a backup killed while
 * creating it (safe under the lock: the repository exists, so such a staging directory can never
 * be renamed in; a creator that loses it opens the existing repository instead).
 *
 * @param repo the repository, its lock held
 */
export async function removeStale(repo: Repository): Promise<void> {
  let removed = 0;
  const parent = dirname(repo.path);
  const name = basename(repo.path);
  for await (const item of Deno.readDir(parent)) {
    if (!item.isDirectory || !isStagingName(item.name, name)) continue;
    if (++removed > STALE_ENTRIES_MAX) break;
    await repoFs().remove(`${parent}/${item.name}`, { recursive: true }).catch(() => {});
  }
  const names: string[] = [];
  for await (const item of Deno.readDir(repoPaths.tmp(repo))) {
    if (names.length >= STALE_ENTRIES_MAX) break;
    names.push(item.name);
  }
  for (const note of names) await settleNote(repo, note);
  for (const stale of names) {
    await repoFs().remove(`${repoPaths.tmp(repo)}/${stale}`, { recursive: true }).catch(() => {});
  }
  if (names.length > 0) await syncDir(repoPaths.snapshots(repo));
}
