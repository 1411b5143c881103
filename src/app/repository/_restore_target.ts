/**
 * Writes a restore into its target (the API a restore drives, whether its archive members come
 * from a local file or over a channel): with the native file layer (FFI) every write is relative
 * to a held directory descriptor (`_restore_native.ts`: a symlink swapped into a parent is never
 * followed); without it, writes go by path, fenced by device and inode checks before and after
 * each step (`_restore_paths.ts`, with the window docs/backup.md describes).
 *
 * Driving it: `dir` for each directory before its entries, `file` (bytes through `check`,
 * which must verify size and hash before the file gets its name), `symlink`, `link` for a second
 * name of a file restored before, and `finishDir` for each directory once nothing more goes into
 * it (deepest first); then `close`. Entries in path order let it keep few directories open.
 *
 * @module
 */

import type { ManifestEntry } from "../../core/backup/manifest.ts";
import { AT_FDCWD, O, openAt } from "../../adapters/fs_native.ts";
import type { MemberPiece } from "./_archive_read.ts";
import { useNativeFs } from "../_file_side.ts";
import { NativeTarget } from "./_restore_native.ts";
import { PathTarget } from "./_restore_paths.ts";
import type { Identity, RestoreHooks, RestoreTarget } from "./_restore_common.ts";

export {
  MODE_WITHOUT_SPECIAL_BITS,
  type RestoreHooks,
  type RestoreTarget,
  writeFailure,
} from "./_restore_common.ts";

/** Writes entries into `root`; see the module documentation. */
export class TargetWriter implements RestoreTarget {
  readonly #target: RestoreTarget;

  /**
   * @param root the target directory (its real path)
   * @param fresh whether it was empty (nothing can be in the way)
   * @param options permissions, test hooks, and `native: false` to write by path
   * @param rootIdentity its device and inode as checked
   */
  constructor(
    readonly root: string,
    readonly fresh: boolean,
    options: { preservePermissions?: boolean; hooks?: RestoreHooks; native?: boolean },
    rootIdentity: Identity,
  ) {
    if (useNativeFs(options.native ?? true)) {
      const fd = openAt(AT_FDCWD, root, O.RDONLY | O.DIRECTORY | O.NOFOLLOW | O.NONBLOCK);
      this.#target = new NativeTarget(fd, fresh, options, rootIdentity);
    } else this.#target = new PathTarget(root, fresh, options, rootIdentity);
  }

  /** Stale temporaries of an interrupted restore removed so far. */
  get staleRemoved(): number {
    return this.#target.staleRemoved;
  }

  /** Whether the directory of `path` was restored (else its entries are not written). */
  hasDir(path: string): boolean {
    return this.#target.hasDir(path);
  }

  /** Makes (or, with overwrite, keeps) a directory. */
  dir(entry: ManifestEntry): Promise<void> {
    return this.#target.dir(entry);
  }

  /** Writes one file; see {@link RestoreTarget.file}. */
  file(
    entry: ManifestEntry & { type: "file" },
    realSize: number,
    pieces: AsyncIterable<MemberPiece>,
    check: (pieces: AsyncIterable<MemberPiece>) => AsyncIterable<MemberPiece>,
  ): Promise<void> {
    return this.#target.file(entry, realSize, pieces, check);
  }

  /** Makes a symlink (never following it). */
  symlink(entry: ManifestEntry & { type: "symlink" }): Promise<void> {
    return this.#target.symlink(entry);
  }

  /** A second name for a file restored earlier (`primary`), as a hard link. */
  link(path: string, primary: string): Promise<void> {
    return this.#target.link(path, primary);
  }

  /** Sets a directory's owner, mode and times (never following a symlink). */
  finishDir(entry: ManifestEntry): Promise<void> {
    return this.#target.finishDir(entry);
  }

  /** Releases the directories held open. */
  close(): void {
    this.#target.close();
  }
}
