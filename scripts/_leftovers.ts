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
 * @module
 */

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
  const removed: string[] = [];
  for (const directory of candidates) {
    if (used.some((path) => path === directory || path.startsWith(`${directory}/`))) continue;
    removeQuietly(directory); // another sweep may have been first
    removed.push(directory);
  }
  return removed;
}

function scratchDirectories(root: string, prefixes: readonly string[]): string[] {
  const found: string[] = [];
  try {
    for (const entry of Deno.readDirSync(root)) {
      if (!entry.isDirectory || !prefixes.some((prefix) => entry.name.startsWith(prefix))) continue;
      found.push(`${root}/${entry.name}`);
      if (found.length >= ENTRIES_CHECKED_MAX) break;
    }
  } catch { /* no such root: nothing to sweep */ }
  return found;
}

/** The latest modification time of a directory and of what it holds directly (ms). */
function newestChangeMs(directory: string): number {
  let newest = -Infinity;
  const seen = (path: string) => {
    try {
      newest = Math.max(newest, Deno.lstatSync(path).mtime?.getTime() ?? Infinity);
    } catch { /* vanished meanwhile */ }
  };
  seen(directory);
  let count = 0;
  try {
    for (const entry of Deno.readDirSync(directory)) {
      seen(`${directory}/${entry.name}`);
      if (++count >= ENTRIES_CHECKED_MAX) return Infinity; // too much to judge: keep it
    }
  } catch { /* vanished meanwhile */ }
  return newest;
}

/** Every path a live process maps, holds open or works in. */
function pathsInUse(): string[] {
  const paths: string[] = [];
  let processes = 0;
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    if (++processes > PROCESSES_MAX) break;
    const base = `/proc/${entry.name}`;
    try {
      for (const line of Deno.readTextFileSync(`${base}/maps`).split("\n")) {
        const at = line.indexOf("/");
        if (at >= 0) paths.push(line.slice(at).replace(/ \(deleted\)$/, ""));
      }
      paths.push(Deno.readLinkSync(`${base}/cwd`));
      let fds = 0;
      for (const fd of Deno.readDirSync(`${base}/fd`)) {
        if (++fds > FDS_PER_PROCESS_MAX) break;
        try {
          paths.push(Deno.readLinkSync(`${base}/fd/${fd.name}`));
        } catch { /* closed meanwhile */ }
      }
    } catch { /* the process ended meanwhile */ }
  }
  return paths;
}

/**
 * Removes a file or directory tree, saying nothing if it is already gone (for clean-ups).
 *
 * @param path what to remove
 */
export function removeQuietly(path: string): void {
  try {
    Deno.removeSync(path, { recursive: true });
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
