/**
 * The repository's write seam: the calls by which writers (a snapshot being written, the
 * manifest notes, the clean-up of an interrupted writer) create, write, sync, rename and remove
 * repository files. {@link denoRepoFs} is today's Deno calls; the simulated world installs a
 * simulated one for a run (ENOSPC and EIO on write or sync, a crash that drops what was not
 * synced). Reads stay direct: a simulated file system still keeps its files on a real disk.
 *
 * The seam is deliberately small: eight calls, exactly those whose failure or loss the commit
 * protocol must survive.
 *
 * @module
 */

/** A repository file open for writing. */
export interface RepoFile {
  /** Writes bytes at the file's position; returns how many were written. */
  write(bytes: Uint8Array): Promise<number>;
  /** Makes the file's data and metadata durable (fsync). */
  sync(): Promise<void>;
  /** Makes the file's data durable (fdatasync). */
  syncData(): Promise<void>;
  /** Closes the file. */
  close(): void;
}

/** The write calls of the repository. */
export interface RepoFs {
  /** Creates a file that must not exist yet, open for writing. */
  create(path: string): Promise<RepoFile>;
  /** Renames a file (atomically replacing `to`). */
  rename(from: string, to: string): Promise<void>;
  /** Removes a file or (with `recursive`) a directory. */
  remove(path: string, options?: { readonly recursive?: boolean }): Promise<void>;
  /**
   * Makes a directory's entries durable (creations, renames and removals in it). A platform that
   * cannot sync directories is not an error: the rename is still atomic.
   */
  syncDir(path: string): Promise<void>;
}

/** The repository's write calls on the real file system. */
export const denoRepoFs: RepoFs = {
  async create(path) {
    return await Deno.open(path, { write: true, createNew: true });
  },
  rename: (from, to) => Deno.rename(from, to),
  remove: (path, options) => Deno.remove(path, options),
  async syncDir(path) {
    const dir = await Deno.open(path, { read: true }).catch(() => null);
    if (dir === null) return;
    try {
      await dir.sync();
    } catch {
      // some platforms cannot sync directories; the rename is still atomic
    } finally {
      dir.close();
    }
  },
};

let current: RepoFs = denoRepoFs;

/**
 * The write calls in effect: the real ones unless a simulation installed its own.
 *
 * @returns the repository file system
 */
export function repoFs(): RepoFs {
  return current;
}

/**
 * Runs `body` with `fs` as the repository's write calls, then puts the previous ones back.
 * Only for a simulation that runs one world at a time in its process.
 *
 * @param fs the file system to use
 * @param body what runs on it
 * @returns what `body` returned
 */
export async function withRepoFs<T>(fs: RepoFs, body: () => Promise<T>): Promise<T> {
  const previous = current;
  current = fs;
  try {
    return await body();
  } finally {
    current = previous;
  }
}
