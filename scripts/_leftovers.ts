/**
 * What tests and benchmarks leave behind when a signal kills them, and how they avoid it: a
 * sweep of stale scratch directories under /dev/shm (`lanfree-test-*`, `lanfree-bench-*`) that
 * no live process uses, run when a run starts, and a bounded clean-up on SIGTERM and SIGINT.
 *
 * A scratch directory is stale when nothing in it changed for `STALE_AGE_MS` (so a run that is
 * just starting, which made its directory but maps nothing yet, is never hit) and no process
 * maps a file in it, holds one open or has its working directory there (`/proc/<pid>/maps`,
 * `fd/`, `cwd`).
 *
 * Everything here goes through libc (`src/adapters/fs_native.ts`): Deno refuses its own file
 * APIs under `/dev` and `/proc` without `--allow-all`, and these runs have `--allow-ffi`.
 *
 * @module
 */

import {
  AT_FDCWD,
  close,
  O,
  openAt,
  read,
  readDirNames,
  readLinkAt,
  statAt,
  statFd,
  unlinkAt,
} from "../src/adapters/fs_native.ts";

/** Where scratch region directories are made. */
export const SCRATCH_ROOT = "/dev/shm";
/** Name prefixes of the scratch directories tests and benches make there. */
export const SCRATCH_PREFIXES: readonly string[] = ["lanfree-test-", "lanfree-bench-"];
/** A scratch directory untouched this long, and used by no process, is a leftover. */
export const STALE_AGE_MS = 10 * 60_000;
/** How long the clean-up on a terminating signal may take before the process exits anyway. */
export const SIGNAL_CLEANUP_MS = 5_000;

const PROCESSES_MAX = 100_000;
const FDS_PER_PROCESS_MAX = 100_000;
const ENTRIES_CHECKED_MAX = 10_000;
const TREE_DEPTH_MAX = 64;
const TEXT_BYTES_MAX = 64 << 20;
const READ_CHUNK_BYTES = 64 << 10;

/** Where to sweep, and what counts as stale. */
export interface SweepOptions {
  /** The directory holding scratch directories (default /dev/shm). */
  readonly root?: string;
  /** Name prefixes of scratch directories (default `lanfree-test-`, `lanfree-bench-`). */
  readonly prefixes?: readonly string[];
  /** Untouched at least this long (default `STALE_AGE_MS`). */
  readonly minAgeMs?: number;
  /** The present, in ms since the epoch (default `Date.now()`). */
  readonly nowMs?: number;
}

/**
 * Removes the scratch directories left by runs that died: untouched for `minAgeMs` and used by
 * no live process. Never fails: a directory another sweep removed first is simply gone.
 *
 * @param options where to look and what counts as stale
 * @returns the directories removed
 */
export function sweepStaleScratch(options: SweepOptions = {}): string[] {
  const root = options.root ?? SCRATCH_ROOT;
  const prefixes = options.prefixes ?? SCRATCH_PREFIXES;
  const oldest = (options.nowMs ?? Date.now()) - (options.minAgeMs ?? STALE_AGE_MS);
  const candidates = scratchDirectories(root, prefixes)
    .filter((directory) => newestChangeMs(directory) < oldest);
  if (candidates.length === 0) return [];
  const used = pathsInUse();
  if (used === undefined) return []; // no /proc: nobody's use can be ruled out
  const removed: string[] = [];
  for (const directory of candidates) {
    if (used.some((path) => path === directory || path.startsWith(`${directory}/`))) continue;
    removeQuietly(directory); // another sweep may have been first
    removed.push(directory);
  }
  return removed;
}

function scratchDirectories(root: string, prefixes: readonly string[]): string[] {
  try {
    return namesIn(root)
      .filter((name) => prefixes.some((prefix) => name.startsWith(prefix)))
      .slice(0, ENTRIES_CHECKED_MAX)
      .map((name) => `${root}/${name}`)
      .filter((path) => statAt(AT_FDCWD, path).type === "dir");
  } catch {
    /* no such root, or no libc: nothing to sweep */
    return [];
  }
}

/** The latest modification time of a directory and of what it holds directly (ms). */
function newestChangeMs(directory: string): number {
  try {
    return withDirectory(AT_FDCWD, directory, (fd) => {
      const names = readDirNames(fd);
      if (names.length >= ENTRIES_CHECKED_MAX) return Infinity; // too much to judge: keep it
      let newest = statFd(fd).mtimeMs;
      for (const name of names) {
        try {
          newest = Math.max(newest, statAt(fd, name).mtimeMs);
        } catch { /* removed meanwhile */ }
      }
      return newest;
    });
  } catch {
    /* removed meanwhile */
    return Infinity;
  }
}

/**
 * Every path a live process maps, holds open or works in; undefined when `/proc` cannot be
 * read (then nobody's use can be ruled out). Read through libc: Deno refuses its own file APIs
 * under `/proc` and `/dev` without `--allow-all`.
 */
function pathsInUse(): string[] | undefined {
  let pids: string[];
  try {
    pids = namesIn("/proc").filter((name) => /^\d+$/.test(name)).slice(0, PROCESSES_MAX);
    readText(`/proc/${Deno.pid}/maps`); // can this process read them at all?
  } catch {
    return undefined;
  }
  const paths: string[] = [];
  for (const pid of pids) {
    const base = `/proc/${pid}`;
    try {
      for (const line of readText(`${base}/maps`).split("\n")) {
        const at = line.indexOf("/");
        if (at >= 0) paths.push(line.slice(at).replace(/ \(deleted\)$/, ""));
      }
      paths.push(text.decode(readLinkAt(AT_FDCWD, `${base}/cwd`)));
      for (const fd of namesIn(`${base}/fd`).slice(0, FDS_PER_PROCESS_MAX)) {
        try {
          paths.push(text.decode(readLinkAt(AT_FDCWD, `${base}/fd/${fd}`)));
        } catch { /* closed meanwhile */ }
      }
    } catch { /* the process ended meanwhile */ }
  }
  return paths;
}

const text = new TextDecoder();

function withDirectory<T>(dirFd: number, name: Uint8Array | string, body: (fd: number) => T): T {
  const fd = openAt(dirFd, name, O.RDONLY | O.DIRECTORY | O.NOFOLLOW);
  try {
    return body(fd);
  } finally {
    close(fd);
  }
}

function namesIn(path: string): string[] {
  return withDirectory(AT_FDCWD, path, (fd) => readDirNames(fd, path).map((n) => text.decode(n)));
}

/** A small text file (a `/proc` file), read to its end or `TEXT_BYTES_MAX`. */
function readText(path: string): string {
  const fd = openAt(AT_FDCWD, path, O.RDONLY);
  try {
    const chunks: Uint8Array[] = [];
    let total = 0;
    // Bounded: each turn reads at least one byte, and at most TEXT_BYTES_MAX in all.
    while (total < TEXT_BYTES_MAX) {
      const chunk = new Uint8Array(READ_CHUNK_BYTES);
      const got = read(fd, chunk);
      if (got === 0) break;
      chunks.push(chunk.subarray(0, got));
      total += got;
    }
    return chunks.map((chunk) => text.decode(chunk, { stream: true })).join("");
  } finally {
    close(fd);
  }
}

/** Removes `name` in `dirFd`, and everything below it when it is a directory. */
function removeIn(dirFd: number, name: Uint8Array | string, depth: number): void {
  if (statAt(dirFd, name).type !== "dir") return unlinkAt(dirFd, name);
  if (depth >= TREE_DEPTH_MAX) throw new Error(`deeper than ${TREE_DEPTH_MAX} levels`);
  withDirectory(dirFd, name, (fd) => {
    for (const child of readDirNames(fd)) removeIn(fd, child, depth + 1);
  });
  unlinkAt(dirFd, name, true);
}

/**
 * Removes a file or directory tree (through libc, so under /dev/shm too), saying nothing if it
 * is already gone (for clean-ups).
 *
 * @param path what to remove
 */
export function removeQuietly(path: string): void {
  try {
    removeIn(AT_FDCWD, path, 0);
  } catch { /* already gone */ }
}

/**
 * Sends SIGKILL to a child, saying nothing if it already ended (for clean-ups).
 *
 * @param child the process (a `Deno.ChildProcess` or a process host)
 */
export function killQuietly(child: { kill(signal: Deno.Signal): void } | undefined): void {
  try {
    child?.kill("SIGKILL");
  } catch { /* already ended */ }
}

type Cleanup = () => void | Promise<void>;

const cleanups: Cleanup[] = [];
const SIGNALS: readonly Deno.Signal[] = ["SIGTERM", "SIGINT"];
const SIGNAL_NUMBERS: Readonly<Record<string, number>> = { SIGINT: 2, SIGTERM: 15 };
const listeners = new Map<Deno.Signal, () => void>();

/**
 * Runs `cleanup` if this process gets SIGTERM or SIGINT before the returned function is called,
 * then ends the process by that signal again (or exits with 128 + its number), as the signal
 * would have. Clean-ups registered
 * later run first; all of them together get `SIGNAL_CLEANUP_MS`, after which the process exits
 * anyway.
 *
 * @param cleanup what to undo (remove a directory, kill children, delete namespaces)
 * @returns a function that unregisters it (call it once the normal clean-up ran)
 */
export function cleanUpOnSignal(cleanup: Cleanup): () => void {
  cleanups.push(cleanup);
  if (listeners.size === 0) {
    for (const signal of SIGNALS) {
      const listener = () => void terminate(signal);
      listeners.set(signal, listener);
      Deno.addSignalListener(signal, listener);
    }
  }
  return () => {
    const at = cleanups.indexOf(cleanup);
    if (at >= 0) cleanups.splice(at, 1);
    if (cleanups.length > 0) return;
    for (const [signal, listener] of listeners) Deno.removeSignalListener(signal, listener);
    listeners.clear();
  };
}

async function terminate(signal: Deno.Signal): Promise<never> {
  const all = (async () => {
    for (const cleanup of cleanups.splice(0).reverse()) {
      try {
        await cleanup();
      } catch (error) {
        console.error(`clean-up after ${signal} failed: ${error}`);
      }
    }
  })();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<void>((resolve) => timer = setTimeout(resolve, SIGNAL_CLEANUP_MS));
  await Promise.race([all, late]);
  clearTimeout(timer);
  for (const [bound, listener] of listeners) Deno.removeSignalListener(bound, listener);
  listeners.clear();
  try { // with no listener left the signal acts as it would have: the whole process ends
    Deno.kill(Deno.pid, signal);
    await new Promise((resolve) => setTimeout(resolve, SIGNAL_CLEANUP_MS));
  } catch { /* no run permission: exit as the signal would */ }
  Deno.exit(128 + (SIGNAL_NUMBERS[signal] ?? 15));
}
