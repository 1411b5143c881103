/**
 * What both restore targets share: the interface the restore drives, test hooks, the mode mask,
 * temporary names, the effective uid, and how a target failure becomes a typed error.
 *
 * @module
 */

import type { ManifestEntry } from "../../core/backup/manifest.ts";
import { RestoreError } from "../errors.ts";
import type { MemberPiece } from "./_archive_read.ts";
import { ownerIds } from "./_owners.ts";
import { MemberError } from "./_tar_member.ts";

/** Permission bits restored without `preservePermissions` (GNU tar without `-p`). */
export const MODE_WITHOUT_SPECIAL_BITS = 0o777;

/** Test hooks: run at the named step of a restore (to swap things in the target). */
export interface RestoreHooks {
  /** Before an entry is created (after its parent was checked). */
  beforeCreate?(path: string): Promise<void>;
  /**
   * Opens an unnamed file in a held directory instead of `openat(O_TMPFILE)` (to stand for a
   * file system that refuses it: throw an error whose `code` is `EOPNOTSUPP`).
   */
  openUnnamed?(dirFd: number, mode: number): number;
}

/** Where a restored entry's identity is kept: device and inode. */
export interface Identity {
  readonly dev: number;
  readonly ino: number;
}

/** Writes the entries of a restore into a target (see `TargetWriter`). */
export interface RestoreTarget {
  /** Stale temporaries of an interrupted restore removed so far. */
  readonly staleRemoved: number;
  /** Whether the directory `path` was restored. */
  hasDir(path: string): boolean;
  /** Makes (or, with overwrite, keeps) a directory. */
  dir(entry: ManifestEntry): Promise<void>;
  /**
   * Writes one file under a temporary name, checked by `check`, then gives it its name. Each
   * piece is written before the next is pulled (pieces may share one buffer) and never kept.
   */
  file(
    entry: ManifestEntry & { type: "file" },
    realSize: number,
    pieces: AsyncIterable<MemberPiece>,
    check: (pieces: AsyncIterable<MemberPiece>) => AsyncIterable<MemberPiece>,
  ): Promise<void>;
  /** Makes a symlink (never following it). */
  symlink(entry: ManifestEntry & { type: "symlink" }): Promise<void>;
  /** Makes `path` a hard link to the file restored at `primary`. */
  link(path: string, primary: string): Promise<void>;
  /** Sets a directory's owner, mode and times, once nothing more goes into it. */
  finishDir(entry: ManifestEntry): Promise<void>;
  /** Releases what the target holds (directory descriptors). */
  close(): void;
}

/** A failure of the target (the disk being written), as a typed error naming the path. */
export function writeFailure(path: string, error: unknown): RestoreError {
  if (error instanceof RestoreError) return error;
  const code = (error as { code?: string }).code;
  const text = error instanceof Error ? error.message : String(error);
  return new RestoreError(
    "write-failed",
    `cannot write ${JSON.stringify(path)} in the target: ${code ?? "error"}: ${text}`,
    { cause: error },
  );
}

/** Names of a restore's temporary files: `.lanfree-` sixteen hex digits `.partial`. */
export const TEMPORARY_NAME = /^\.lanfree-[0-9a-f]{16}\.partial$/;

/** A fresh temporary name. */
export function randomName(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  return `.lanfree-${[...bytes].map((b) => b.toString(16).padStart(2, "0")).join("")}.partial`;
}

/** The effective uid (Deno.uid needs --allow-sys=uid; /proc/self as a fallback), if known. */
export async function effectiveUid(): Promise<number | undefined> {
  try {
    return Deno.uid() ?? undefined; // needs --allow-sys=uid
  } catch {
    // fall through: /proc/self needs --allow-all under Deno's permissions
  }
  try {
    const status = await Deno.readTextFile("/proc/self/status");
    const line = status.split("\n").find((l) => l.startsWith("Uid:"));
    const uid = Number(line?.split(/\s+/)[2]);
    return Number.isInteger(uid) ? uid : undefined;
  } catch {
    return undefined;
  }
}

/** The owner a restored entry gets: the recorded one (by name first) as root, else none. */
export async function restoredOwner(
  entry: ManifestEntry,
  asRoot: Promise<boolean>,
): Promise<{ uid: number; gid: number } | undefined> {
  if (entry.uid === undefined || entry.gid === undefined || !(await asRoot)) return undefined;
  return await ownerIds({ ...entry, uid: entry.uid, gid: entry.gid });
}

/**
 * A file being restored before it has its name (unnamed, or under a temporary name): what
 * differs between the targets (held descriptors, or a handle fenced by path checks).
 * {@link writeThroughTemporary} drives it.
 */
export interface TemporaryFile {
  /** Writes `bytes` at `position` (all of them). */
  write(bytes: Uint8Array, position: number): void | Promise<void>;
  /**
   * Sets the size (`realSize`; `written` is where the last piece ended: a sparse file's hole
   * at the end needs a truncate), the owner when one is given, the mode and the times.
   */
  finish(
    sizes: { realSize: number; written: number },
    owner: { uid: number; gid: number } | undefined,
    mode: number,
    mtimeMs: number,
  ): void | Promise<void>;
  /** Gives the finished file its real name. */
  place(): void | Promise<void>;
  /** Removes the temporary file, if it has a name (the write failed or its check did). */
  discard(): void | Promise<void>;
  /** Releases its descriptor (after `place` or `discard`; twice is harmless). */
  close(): void | Promise<void>;
}

/**
 * The write-file steps both targets share: each piece written at its position as the check
 * passes it, then size, owner, mode and times, and only once the whole file's size and SHA-256
 * matched (`check` throws after its last piece otherwise) its real name (`place`); on any
 * failure the temporary is removed, and the error names the entry.
 *
 * @param entry the file entry
 * @param realSize its size (a sparse member stores less)
 * @param pieces the member's pieces
 * @param check passes the pieces through, throwing on a size or hash mismatch at the end
 * @param temp the temporary file, created and checked by the target
 * @param options the mode mask and whether the restore runs as root
 */
export async function writeThroughTemporary(
  entry: ManifestEntry & { type: "file" },
  realSize: number,
  pieces: AsyncIterable<MemberPiece>,
  check: (pieces: AsyncIterable<MemberPiece>) => AsyncIterable<MemberPiece>,
  temp: TemporaryFile,
  options: { modeMask: number; asRoot: Promise<boolean> },
): Promise<void> {
  try {
    let written = 0;
    for await (const piece of check(pieces)) {
      if (piece.position === undefined) continue; // a sparse map: hashed, not written
      await temp.write(piece.bytes, piece.position);
      written = Math.max(written, piece.position + piece.bytes.length);
    }
    const owner = await restoredOwner(entry, options.asRoot);
    await temp.finish({ realSize, written }, owner, entry.mode & options.modeMask, entry.mtimeMs);
    await temp.place();
  } catch (error) {
    await temp.close();
    await temp.discard();
    // A member cut off or damaged in the archive is the repository's fault, not the target's.
    if (error instanceof MemberError) throw error;
    throw writeFailure(entry.path, error);
  } finally {
    await temp.close();
  }
}
