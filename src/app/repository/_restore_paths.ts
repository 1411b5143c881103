/**
 * The path-based restore target (without FFI): writes a restore into its target without
 * following a symlink that appears in a parent directory after it was checked. Deno has no
 * `openat`, so each write is fenced by checks:
 *
 * - every directory the restore creates or verifies is recorded by device and inode;
 * - a file is created under a temporary name with `O_CREAT | O_EXCL | O_NOFOLLOW`, then its
 *   parent is re-checked by `lstat` (device, inode, still a directory) and the temporary name
 *   must still name the inode just opened; on a mismatch what was opened is removed and nothing
 *   is written into it;
 * - the bytes go through the open handle, never by path; mode, owner and times too;
 * - the parent is checked again just before the rename to the real name, and the real name must
 *   name the same inode after it.
 *
 * See docs/backup.md for the window that remains.
 *
 * @module
 */

import fs from "node:fs";
import type { FileHandle } from "node:fs/promises";
import type { ManifestEntry } from "../../core/backup/manifest.ts";
import { parentPath } from "../../core/backup/path_rules.ts";
import { RestoreError } from "../errors.ts";
import type { MemberPiece } from "./_archive_read.ts";
import {
  effectiveUid,
  type Identity,
  MODE_WITHOUT_SPECIAL_BITS,
  randomName,
  restoredOwner,
  type RestoreHooks,
  type RestoreTarget,
  writeFailure,
  writeThroughTemporary,
} from "./_restore_common.ts";

/** Flags of a new file: write only, create, fail if anything has the name, never follow. */
const CREATE_FLAGS = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL |
  fs.constants.O_NOFOLLOW;
/** Flags to re-open a restored directory to set its mode and times through the handle. */
const DIR_FLAGS = fs.constants.O_RDONLY | fs.constants.O_DIRECTORY | fs.constants.O_NOFOLLOW;

function sameInode(a: Identity, b: { dev: number; ino: number | null }): boolean {
  return a.dev === b.dev && a.ino === b.ino;
}

/**
 * Times for `FileHandle.utimes`: seconds as a float, which it truncates to nanoseconds; half a
 * microsecond more keeps the float from landing just below the recorded millisecond.
 */
function handleTimes(mtimeMs: number): [number, number] {
  const seconds = (mtimeMs + 0.0005) / 1000;
  return [seconds, seconds];
}

/** Writes all of `bytes` at `position` through `handle` (retrying short writes). */
async function writeAllAt(handle: FileHandle, bytes: Uint8Array, position: number) {
  // Bounded: each turn writes at least one byte or throws.
  for (let at = 0; at < bytes.length;) {
    const { bytesWritten } = await handle.write(bytes, at, bytes.length - at, position + at);
    if (bytesWritten <= 0) throw new Error(`a write at byte ${position + at} wrote nothing`);
    at += bytesWritten;
  }
}

/** Writes entries into `root` by path; see the module documentation for the checks. */
export class PathTarget implements RestoreTarget {
  readonly #dirs = new Map<string, Identity>();
  readonly #modeMask: number;
  readonly #asRoot: Promise<boolean>;
  readonly #fileOptions: { modeMask: number; asRoot: Promise<boolean> };
  /** No stale temporaries are removed by path (a killed run's are named `.partial`). */
  readonly staleRemoved = 0;

  /**
   * @param root the target directory (its real path)
   * @param fresh whether it was empty
   * @param options permissions and test hooks
   * @param rootIdentity its device and inode
   * @param hooks test hooks
   */
  constructor(
    readonly root: string,
    readonly fresh: boolean,
    options: { preservePermissions?: boolean; hooks?: RestoreHooks },
    rootIdentity: Identity,
    readonly hooks: RestoreHooks = options.hooks ?? {},
  ) {
    this.#dirs.set("", rootIdentity);
    this.#modeMask = options.preservePermissions ? 0o7777 : MODE_WITHOUT_SPECIAL_BITS;
    this.#asRoot = effectiveUid().then((uid) => uid === 0);
    this.#fileOptions = { modeMask: this.#modeMask, asRoot: this.#asRoot };
  }

  full(path: string): string {
    return `${this.root}/${path}`;
  }

  /** Whether the directory of `path` was restored (else its entries are not written). */
  hasDir(path: string): boolean {
    return this.#dirs.has(path);
  }

  /** Checks the parent of `path` is still the directory recorded for it. */
  async #checkParent(path: string): Promise<void> {
    const parent = parentPath(path);
    const recorded = this.#dirs.get(parent);
    const unsafe = (why: string) =>
      new RestoreError(
        "unsafe-path",
        `entry ${JSON.stringify(path)}: its parent ${JSON.stringify(parent || ".")} ${why}`,
      );
    if (recorded === undefined) throw unsafe("is not a restored directory");
    const info = await Deno.lstat(parent === "" ? this.root : this.full(parent)).catch(() => null);
    if (info === null || !info.isDirectory || !sameInode(recorded, info)) {
      throw unsafe("was replaced during the restore (a symlink or another directory)");
    }
  }

  /** Removes what is in the way of a new entry at `path` (only with overwrite). */
  async #clear(path: string, keepDir: boolean): Promise<Deno.FileInfo | null> {
    if (this.fresh) return null;
    const info = await Deno.lstat(this.full(path)).catch(() => null);
    if (info === null || (keepDir && info.isDirectory)) return info;
    // A file in the way of a file is replaced by the rename; anything else is removed (a symlink
    // is removed itself, never followed).
    if (!info.isDirectory && !keepDir) return null;
    await Deno.remove(this.full(path), { recursive: info.isDirectory });
    return null;
  }

  async dir(entry: ManifestEntry): Promise<void> {
    await this.#checkParent(entry.path);
    await this.hooks.beforeCreate?.(entry.path);
    const existing = await this.#clear(entry.path, true);
    const full = this.full(entry.path);
    if (existing === null) await Deno.mkdir(full, { mode: 0o700 });
    const info = await Deno.lstat(full);
    try {
      await this.#checkParent(entry.path);
    } catch (error) {
      if (existing === null) await Deno.remove(full).catch(() => {});
      throw error;
    }
    if (!info.isDirectory) throw new RestoreError("unsafe-path", `${full} is not a directory`);
    this.#dirs.set(entry.path, { dev: info.dev, ino: info.ino ?? -1 });
  }

  /**
   * Writes one file: temporary name, checked handle, pieces written at their positions, hash
   * checked by `check` before anything gets the real name.
   */
  async file(
    entry: ManifestEntry & { type: "file" },
    realSize: number,
    pieces: AsyncIterable<MemberPiece>,
    check: (pieces: AsyncIterable<MemberPiece>) => AsyncIterable<MemberPiece>,
  ): Promise<void> {
    await this.#checkParent(entry.path);
    await this.hooks.beforeCreate?.(entry.path);
    const dir = parentPath(entry.path);
    const temp = dir === "" ? randomName() : `${dir}/${randomName()}`;
    const handle = await fs.promises.open(this.full(temp), CREATE_FLAGS, 0o600).catch((e) => {
      throw writeFailure(entry.path, e);
    });
    let identity: Identity | undefined;
    try {
      const stat = await handle.stat();
      identity = { dev: stat.dev, ino: stat.ino };
      await this.#checkOpened(entry.path, temp, identity);
    } catch (error) {
      // What was opened through a swapped parent is removed (if it is still what was opened).
      await handle.close().catch(() => {});
      await this.#removeIf(temp, identity);
      throw writeFailure(entry.path, error);
    }
    const opened = identity;
    let open = true;
    const closeOnce = async () => {
      if (open) await handle.close().catch(() => {});
      open = false;
    };
    await writeThroughTemporary(entry, realSize, pieces, check, {
      write: (bytes, position) => writeAllAt(handle, bytes, position),
      finish: async ({ realSize, written }, owner, mode, mtimeMs) => {
        if (written !== realSize) await handle.truncate(realSize);
        if (owner !== undefined) await handle.chown(owner.uid, owner.gid);
        await handle.chmod(mode);
        await handle.utimes(...handleTimes(mtimeMs));
      },
      place: async () => {
        await closeOnce();
        await this.#moveIntoPlace(entry.path, temp, opened);
      },
      discard: () => this.#removeIf(temp, opened),
      close: closeOnce,
    }, this.#fileOptions);
  }

  async #checkOpened(path: string, temp: string, identity: Identity): Promise<void> {
    await this.#checkParent(path);
    const info = await Deno.lstat(this.full(temp)).catch(() => null);
    if (info === null || !sameInode(identity, info)) {
      throw new RestoreError(
        "unsafe-path",
        `entry ${JSON.stringify(path)}: its temporary file was moved or replaced`,
      );
    }
  }

  /** Sets the recorded owner when running as root (as tar does), by name first. */
  async #owner(
    entry: ManifestEntry,
    chown: (uid: number, gid: number) => Promise<void>,
  ): Promise<void> {
    const owner = await restoredOwner(entry, this.#asRoot);
    if (owner !== undefined) await chown(owner.uid, owner.gid);
  }

  async #removeIf(path: string, identity: Identity | undefined): Promise<void> {
    const info = await Deno.lstat(this.full(path)).catch(() => null);
    if (info !== null && identity !== undefined && sameInode(identity, info)) {
      await Deno.remove(this.full(path)).catch(() => {});
    }
  }

  async #moveIntoPlace(path: string, temp: string, identity: Identity): Promise<void> {
    try {
      await this.#checkOpened(path, temp, identity);
      await this.#clear(path, false);
      await Deno.rename(this.full(temp), this.full(path));
    } catch (error) {
      await this.#removeIf(temp, identity);
      throw writeFailure(path, error);
    }
    const placed = await Deno.lstat(this.full(path)).catch(() => null);
    try {
      await this.#checkParent(path);
      if (placed === null || !sameInode(identity, placed)) throw new Error("moved");
    } catch {
      await this.#removeIf(path, identity);
      throw new RestoreError(
        "unsafe-path",
        `entry ${JSON.stringify(path)}: its directory changed while it was put in place`,
      );
    }
  }

  async symlink(entry: ManifestEntry & { type: "symlink" }): Promise<void> {
    await this.#checkParent(entry.path);
    await this.hooks.beforeCreate?.(entry.path);
    await this.#clear(entry.path, false);
    const full = this.full(entry.path);
    await Deno.remove(full).catch(() => {});
    await Deno.symlink(entry.target, full).catch((e) => {
      throw writeFailure(entry.path, e);
    });
    const made = await Deno.lstat(full);
    await this.#checkParent(entry.path).catch(async (error) => {
      await this.#removeIf(entry.path, { dev: made.dev, ino: made.ino ?? -1 });
      throw error;
    });
    await this.#owner(entry, (uid, gid) => fs.promises.lchown(full, uid, gid));
  }

  /** A second name for a file restored earlier (`primary`), as a hard link. */
  async link(path: string, primary: string): Promise<void> {
    await this.#checkParent(path);
    await this.#checkParent(primary);
    await this.hooks.beforeCreate?.(path);
    await this.#clear(path, false);
    await Deno.remove(this.full(path)).catch(() => {});
    const before = await Deno.lstat(this.full(primary));
    await Deno.link(this.full(primary), this.full(path)).catch((e) => {
      throw writeFailure(path, e);
    });
    const made = await Deno.lstat(this.full(path));
    if (!sameInode({ dev: before.dev, ino: before.ino ?? -1 }, made)) {
      throw new RestoreError("unsafe-path", `hard link ${JSON.stringify(path)} changed`);
    }
    await this.#checkParent(path);
  }

  /** Nothing to release: every call closes what it opened. */
  close(): void {}

  /** Sets a directory's owner, mode and times through a handle (never following a symlink). */
  async finishDir(entry: ManifestEntry): Promise<void> {
    const recorded = this.#dirs.get(entry.path);
    if (recorded === undefined) return;
    const handle = await fs.promises.open(this.full(entry.path), DIR_FLAGS).catch((e) => {
      throw writeFailure(entry.path, e);
    });
    try {
      const stat = await handle.stat();
      if (!sameInode(recorded, stat)) {
        throw new RestoreError(
          "unsafe-path",
          `directory ${JSON.stringify(entry.path)} was replaced during the restore`,
        );
      }
      await this.#owner(entry, (uid, gid) => handle.chown(uid, gid));
      await handle.chmod(entry.mode & this.#modeMask);
      await handle.utimes(...handleTimes(entry.mtimeMs));
    } catch (error) {
      throw writeFailure(entry.path, error);
    } finally {
      await handle.close().catch(() => {});
    }
  }
}
