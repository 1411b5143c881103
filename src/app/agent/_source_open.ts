/**
 * Opens a file of the source for reading only if it is still the regular file the walk saw:
 * opened without following a symlink and without blocking (`O_NOFOLLOW | O_NONBLOCK`, so a
 * FIFO or a device swapped in after the walk never blocks the backup), then the open handle's
 * device, inode and type are compared with the walk's `lstat`. Deno's own `open` takes no
 * custom flags, so the open goes through `node:fs`, which passes numeric flags on as given.
 *
 * @module
 */

import fs from "node:fs";
import type { FileHandle } from "node:fs/promises";

/** Linux open(2) flags by architecture (asm-generic vs x86 values). */
const LINUX_FLAGS: Record<string, { noFollow: number; nonBlock: number }> = {
  x86_64: { noFollow: 0o400000, nonBlock: 0o4000 },
  aarch64: { noFollow: 0o100000, nonBlock: 0o4000 },
};

function readFlags(): number {
  const linux = Deno.build.os === "linux" ? LINUX_FLAGS[Deno.build.arch] : undefined;
  const noFollow = linux?.noFollow ?? fs.constants.O_NOFOLLOW;
  const nonBlock = linux?.nonBlock ?? fs.constants.O_NONBLOCK;
  return fs.constants.O_RDONLY | noFollow | nonBlock;
}

/** Flags of every source open: read only, no symlink followed, never blocking. */
export const SOURCE_OPEN_FLAGS: number = readFlags();

/** What the walk saw of a file: its device and inode (absent for files lanfree made itself). */
export interface SeenFile {
  readonly path: string;
  readonly dev?: number;
  readonly ino?: number;
}

/** An open source file, or why it is skipped. */
export type SourceOpen =
  | { readonly ok: true; readonly handle: FileHandle; readonly stat: fs.Stats }
  | { readonly ok: false; readonly reason: string };

function typeOf(stat: fs.Stats): string {
  if (stat.isFIFO()) return "fifo";
  if (stat.isDirectory()) return "directory";
  if (stat.isSocket()) return "socket";
  if (stat.isCharacterDevice() || stat.isBlockDevice()) return "device";
  return "special file";
}

function reasonOfOpenError(error: unknown): string {
  const code = (error as { code?: string }).code;
  if (code === "ELOOP") return "changed type during the backup (now a symlink)";
  if (code === "ENXIO") return "changed type during the backup (now a socket)";
  if (code === "ENOENT" || code === "ENOTDIR") return "vanished during the backup";
  if (code === "EACCES" || code === "EPERM") return "permission denied";
  return error instanceof Error ? error.message : String(error);
}

/**
 * Whether `path` is a symlink now. Under granular permissions (anything but `--allow-all`) Deno
 * resolves symlinks itself to check the path and then opens the resolved path, so `O_NOFOLLOW`
 * cannot refuse a link there: the inode comparison is what keeps the link's target out, and
 * this says why the inode differs.
 */
async function isSymlinkNow(path: string): Promise<boolean> {
  return await Deno.lstat(path).then((info) => info.isSymlink, () => false);
}

/**
 * Opens `root/seen.path` for reading if it is the regular file the walk saw.
 *
 * @param fullPath the file's path (root joined with the entry path)
 * @param seen the entry path and the device and inode the walk saw
 * @returns the open handle and its fstat, or the reason the file is skipped
 *
 * @example A symlink is never followed
 * ```ts
 * import assert from "node:assert/strict";
 * import { openSourceFile } from "./_source_open.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/secret`, "s");
 * await Deno.symlink(`${dir}/secret`, `${dir}/link`);
 * const opened = await openSourceFile(`${dir}/link`, { path: "link" });
 * assert.deepEqual(opened, { ok: false, reason: "changed type during the backup (now a symlink)" });
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function openSourceFile(fullPath: string, seen: SeenFile): Promise<SourceOpen> {
  let handle: FileHandle;
  try {
    handle = await fs.promises.open(fullPath, SOURCE_OPEN_FLAGS);
  } catch (error) {
    return { ok: false, reason: reasonOfOpenError(error) };
  }
  let reason: string | undefined;
  let stat: fs.Stats | undefined;
  try {
    stat = await handle.stat();
    if (!stat.isFile()) reason = `changed type during the backup (now a ${typeOf(stat)})`;
    else if (seen.ino !== undefined && (stat.ino !== seen.ino || stat.dev !== seen.dev)) {
      reason = "was replaced by another file during the backup";
    }
  } catch (error) {
    reason = reasonOfOpenError(error);
  }
  if (reason !== undefined && (await isSymlinkNow(fullPath))) {
    reason = "changed type during the backup (now a symlink)";
  }
  if (reason === undefined && seen.ino === undefined && (await isSymlinkNow(fullPath))) {
    reason = "changed type during the backup (now a symlink)";
  }
  if (reason !== undefined || stat === undefined) {
    await handle.close().catch(() => {});
    return { ok: false, reason: reason ?? "cannot be read" };
  }
  return { ok: true, handle, stat };
}
