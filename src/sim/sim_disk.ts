/**
 * A simulated disk under the repository's write seam (`RepoFs`): the files stay on a real file
 * system, and this layer injects the faults a disk gives and models what a crash loses.
 *
 * Faults, each at a seeded call: `disk-full` (a write fails ENOSPC, and every later write and
 * create too), `io-error-write` (one write fails EIO), `io-error-sync` (one fsync, fdatasync or
 * directory sync fails EIO), `crash` (the process dies at a call: that call and every later
 * one fail, and {@link SimDisk.revertUnsynced} then drops what was not durable).
 *
 * The durability model, stricter than most file systems give and what the commit protocol
 * must survive: a file's bytes are durable up to its last `sync`/`syncData`; a creation or a
 * rename is durable once the directory it lands in is synced. A removal is taken as durable at
 * once (a simplification: a removed file never comes back after a crash).
 *
 * @module
 */

import { dirname } from "node:path";
import { denoRepoFs, type RepoFile, type RepoFs } from "../app/repository/repo_fs.ts";
import type { SeededRandom } from "./virtual_time.ts";

/** The disk fault kinds. */
export const DISK_FAULTS = ["disk-full", "io-error-write", "io-error-sync", "crash"] as const;
/** One disk fault kind. */
export type DiskFault = typeof DISK_FAULTS[number];

/**
 * Calls a seeded disk fault may land on (a small backup makes about 12-16); a crash drawn past
 * the calls the backup made strikes after it, as a later power loss (see `crashIfDue`).
 */
const DISK_CALLS_SPAN = 20;

/** An error as the runtime gives it for a failed system call. */
export class DiskError extends Error {
  constructor(readonly code: "ENOSPC" | "EIO" | "ECRASHED", message: string) {
    super(`${code}: ${message}`);
    this.name = "DiskError";
  }
}

interface TrackedFile {
  path: string;
  written: number;
  synced: number;
}

type NamespaceOp =
  | { readonly kind: "create"; readonly path: string; readonly dir: string }
  | { readonly kind: "rename"; readonly from: string; readonly to: string; readonly dir: string };

/** The simulated disk of one world's server. */
export class SimDisk implements RepoFs {
  readonly #files: TrackedFile[] = [];
  /** Creations and renames not yet made durable by a sync of their directory. */
  #pending: NamespaceOp[] = [];
  #calls = { all: 0, write: 0, sync: 0 };
  #full = false;
  #crashed = false;
  readonly atCall: number;
  /** Faults that fired. */
  readonly fired: string[] = [];

  /**
   * @param fault the fault of this run, if a disk one
   * @param random draws the call it lands on
   * @param onFault told when it fires (the world traces it; a crash kills the server's host)
   */
  constructor(
    readonly fault: DiskFault | undefined,
    random: SeededRandom,
    readonly onFault: (kind: DiskFault, line: string) => void,
  ) {
    this.atCall = fault === undefined ? 0 : random.between(1, DISK_CALLS_SPAN);
  }

  /** Whether the crash happened. */
  get crashed(): boolean {
    return this.#crashed;
  }

  #fire(kind: DiskFault, what: string): void {
    this.fired.push(kind);
    this.onFault(kind, `disk fault ${kind} at ${what}`);
  }

  /** Counts a call; throws when the process has crashed or crashes now. */
  #enter(what: string): void {
    if (this.#crashed) throw new DiskError("ECRASHED", `${what}: the process is gone`);
    this.#calls.all++;
    if (this.fault === "crash" && this.#calls.all === this.atCall) {
      this.#crashed = true;
      this.#fire("crash", what);
      throw new DiskError("ECRASHED", `${what}: the process crashed here`);
    }
  }

  #writeFault(what: string): void {
    this.#calls.write++;
    if (this.#full) throw new DiskError("ENOSPC", `${what}: no space left on device`);
    if (this.#calls.write !== this.atCall) return;
    if (this.fault === "disk-full") {
      this.#full = true;
      this.#fire("disk-full", what);
      throw new DiskError("ENOSPC", `${what}: no space left on device`);
    }
    if (this.fault === "io-error-write") {
      this.#fire("io-error-write", what);
      throw new DiskError("EIO", `${what}: input/output error`);
    }
  }

  #syncFault(what: string): void {
    this.#calls.sync++;
    if (this.fault === "io-error-sync" && this.#calls.sync === this.atCall) {
      this.#fire("io-error-sync", what);
      throw new DiskError("EIO", `${what}: input/output error`);
    }
  }

  async create(path: string): Promise<RepoFile> {
    this.#enter(`create ${path}`);
    if (this.#full) throw new DiskError("ENOSPC", `create ${path}: no space left on device`);
    const real = await denoRepoFs.create(path);
    const tracked: TrackedFile = { path, written: 0, synced: 0 };
    this.#files.push(tracked);
    this.#pending.push({ kind: "create", path, dir: dirname(path) });
    return this.#file(real, tracked);
  }

  #file(real: RepoFile, tracked: TrackedFile): RepoFile {
    const sync = async (call: "sync" | "syncData") => {
      this.#enter(`${call} ${tracked.path}`);
      this.#syncFault(`${call} ${tracked.path}`);
      await real[call]();
      tracked.synced = tracked.written;
    };
    return {
      write: async (bytes) => {
        this.#enter(`write ${tracked.path}`);
        this.#writeFault(`write ${bytes.length} bytes to ${tracked.path}`);
        const wrote = await real.write(bytes);
        tracked.written += wrote;
        return wrote;
      },
      sync: () => sync("sync"),
      syncData: () => sync("syncData"),
      close: () => real.close(),
    };
  }

  async rename(from: string, to: string): Promise<void> {
    this.#enter(`rename ${from}`);
    await denoRepoFs.rename(from, to);
    for (const file of this.#files) if (file.path === from) file.path = to;
    this.#pending.push({ kind: "rename", from, to, dir: dirname(to) });
  }

  async remove(path: string, options?: { readonly recursive?: boolean }): Promise<void> {
    this.#enter(`remove ${path}`);
    await denoRepoFs.remove(path, options);
  }

  async syncDir(path: string): Promise<void> {
    this.#enter(`sync directory ${path}`);
    this.#syncFault(`sync directory ${path}`);
    await denoRepoFs.syncDir(path);
    this.#pending = this.#pending.filter((op) => op.dir !== path);
  }

  /**
   * A crash drawn past the calls the run made strikes now (the machine loses power after the
   * backup): what was not durable is lost all the same.
   *
   * @returns true when it crashed now
   */
  crashIfDue(): boolean {
    if (this.fault !== "crash" || this.#crashed) return false;
    this.#crashed = true;
    this.#fire("crash", `power loss after ${this.#calls.all} calls`);
    return true;
  }

  /**
   * After a crash, puts the real files where a machine coming back up would find them: every
   * file cut back to its last synced length, every creation and rename not made durable undone
   * (last first).
   *
   * @returns what was dropped, one line each (for the trace)
   */
  async revertUnsynced(): Promise<string[]> {
    const dropped: string[] = [];
    for (const file of this.#files) {
      if (file.written === file.synced) continue;
      const cut = await Deno.truncate(file.path, file.synced).then(() => true, () => false);
      if (cut) dropped.push(`${file.path}: ${file.written - file.synced} unsynced bytes lost`);
    }
    for (const op of this.#pending.reverse()) {
      if (op.kind === "rename") {
        const back = await Deno.rename(op.to, op.from).then(() => true, () => false);
        if (back) dropped.push(`rename of ${op.from} to ${op.to} lost`);
      } else {
        const gone = await Deno.remove(op.path).then(() => true, () => false);
        if (gone) dropped.push(`creation of ${op.path} lost`);
      }
    }
    this.#pending = [];
    return dropped;
  }
}
