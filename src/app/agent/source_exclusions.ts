/**
 * What a backup leaves out of its source on purpose: today, the repository it writes to when
 * that lies inside the source (otherwise every backup would hold the previous ones and the
 * repository would grow into itself). The walk's entries and skipped entries below an excluded
 * path are dropped, and the summary lists the exclusion with its reason.
 *
 * @module
 */

import { SourceError } from "../errors.ts";
import { canonicalPath, isInsidePath } from "../paths.ts";
import type { WalkResult } from "./tree_walk.ts";

/** A path of the source left out on purpose, relative to the source, and why. */
export interface ExcludedPath {
  /** The path left out, relative to the source. */
  readonly path: string;
  /** Why it was left out. */
  readonly reason: string;
}

/**
 * The exclusion a backup of `source` into `repo` needs: the repository's path inside the
 * source, or none when the repository lies elsewhere.
 *
 * @param source the directory being backed up
 * @param repo the repository directory (it may not exist yet)
 * @returns the exclusions (at most one)
 * @throws {SourceError} `is-repository` when the repository is the source itself
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { repositoryExclusion } from "./source_exclusions.ts";
 * const dir = await Deno.realPath(await Deno.makeTempDir());
 * assert.deepEqual((await repositoryExclusion(dir, `${dir}/backups/repo`)).map((e) => e.path), [
 *   "backups/repo",
 * ]);
 * assert.deepEqual(await repositoryExclusion(`${dir}/src`, `${dir}/repo`), []);
 * await Deno.remove(dir);
 * ```
 */
export async function repositoryExclusion(source: string, repo: string): Promise<ExcludedPath[]> {
  const [sourcePath, repoPath] = [await canonicalPath(source), await canonicalPath(repo)];
  if (!isInsidePath(repoPath, sourcePath)) return [];
  if (repoPath === sourcePath) {
    throw new SourceError(
      "is-repository",
      `repository ${repo} is the source itself: back up into a repository elsewhere`,
    );
  }
  const path = repoPath.slice(sourcePath.length).replace(/^\/+/, "");
  return [{ path, reason: "the repository this backup writes to" }];
}

/**
 * A walk without the excluded paths and everything below them.
 *
 * @param walk what the walk found
 * @param excluded the exclusions
 * @returns the entries and skipped entries that remain
 */
export function withoutExcluded(walk: WalkResult, excluded: readonly ExcludedPath[]): WalkResult {
  if (excluded.length === 0) return walk;
  const kept = (entry: { path: string }) =>
    !excluded.some(({ path }) => entry.path === path || entry.path.startsWith(`${path}/`));
  return { entries: walk.entries.filter(kept), skipped: walk.skipped.filter(kept) };
}
