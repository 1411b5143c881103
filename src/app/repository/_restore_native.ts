/**
 * The native restore target: every write is relative to a held directory descriptor
 * (`mkdirat`, `openat`, `renameat`, `symlinkat`, `linkat`), so a symlink swapped into any
 * parent after it was checked is never followed: the descriptor is the directory itself, not a
 * path to it.
 *
 * - The directories of the entry being written are held open (a stack that follows path
 *   order); each is opened relative to its parent with `O_DIRECTORY | O_NOFOLLOW` and must be
 *   the directory this restore made or kept (device and inode recorded when it was), checked
 *   once per opening, not once per file.
 * - A file is created unnamed in its held directory (`O_TMPFILE`): pieces are written with
 *   `pwrite` at their positions (a sparse file's holes stay holes), then its size, user
 *   extended attributes, owner (as root), mode and times are set through the descriptor, and
 *   only once its size and SHA-256 matched does it get its name (`linkat` of the descriptor into
 *   the same held directory). No temporary name, no lock, no rename: a killed restore leaves
 *   nothing. Where that name is taken, the file is linked to a locked temporary name and renamed
 *   over it, so what a rename replaced before is replaced the same way (a file, by the rename;
 *   with overwrite, a directory in the way is removed first; in a fresh target, a directory
 *   there fails the file).
 * - Where the file system refuses `O_TMPFILE` (EOPNOTSUPP, EISDIR, EINVAL; remembered per
 *   device), a file is created under a temporary name `.lanfree-<16 hex>.partial` with
 *   `O_CREAT | O_EXCL | O_NOFOLLOW` and an exclusive `flock` held until it has its name, and
 *   renamed to its name (`renameat` in the same held directory) after the same check.
 * - When a directory is finished its name in its parent must still be it: a directory moved
 *   away or replaced during the restore is reported (what was written into it went with it;
 *   nothing was written through the symlink or directory put in its place).
 * - A restore killed midway where temporary names are used leaves `.partial` files; in a
 *   directory it keeps (overwrite), a rerun removes those it can prove are stale: the name pattern, a regular file, its status
 *   changed before this restore began, and no process holds its lock.
 *
 * @module
 */

import type { ManifestEntry } from "../../core/backup/manifest.ts";
import { parentPath, pathToBytes } from "../../core/backup/path_rules.ts";
import {
  chownAt,
  close,
  fchmod,
  fchown,
  ftruncate,
  futimens,
  linkAt,
  linkFd,
  mkdirAt,
  type NativeFsError,
  O,
  openAt,
  pwriteAll,
  readDirNames,
  renameAt,
  setXattr,
  statAt,
  statFd,
  symlinkAt,
  tryLock,
  unlinkAt,
} from "../../adapters/fs_native.ts";
import { RestoreError } from "../errors.ts";
import type { MemberPiece } from "./_archive_read.ts";
import { xattrPairs } from "./_tar_headers.ts";
import {
  effectiveUid,
  type Identity,
  MODE_WITHOUT_SPECIAL_BITS,
  randomName,
  restoredOwner,
  type RestoreHooks,
  type RestoreTarget,
  TEMPORARY_NAME,
  writeFailure,
  writeThroughTemporary,
} from "./_restore_common.ts";

/** Deepest tree removed where a directory is in the way (with overwrite). */
const REMOVE_DEPTH_MAX = 4096;
/**
 * What `openat(O_TMPFILE)` fails with where the file system or kernel has no unnamed files:
 * EOPNOTSUPP (the file system), EISDIR (a kernel older than 3.11 sees `O_DIRECTORY | O_WRONLY`),
 * EINVAL (flags it does not know).
 */
const UNNAMED_REFUSED = new Set(["EOPNOTSUPP", "EISDIR", "EINVAL"]);

/** Opens an unnamed file for writing in the directory `dirFd`, with `mode` (less the umask). */
function openUnnamed(dirFd: number, mode: number): number {
  return openAt(dirFd, ".", O.WRONLY | O.TMPFILE, mode);
}

/**
 * Gives an open file its owner (when one is given) and mode, calling `fchown` and `fchmod` only
 * where the file does not have them already (a file made as root is often owned right, and made
 * with its mode less the umask): one `statx` instead of two metadata writes. Owner before mode:
 * a chown clears setuid and setgid.
 */
function setOwnerAndMode(
  fd: number,
  owner: { uid: number; gid: number } | undefined,
  mode: number,
): void {
  const now = statFd(fd);
  const chown = owner !== undefined && (now.uid !== owner.uid || now.gid !== owner.gid);
  if (chown) fchown(fd, owner.uid, owner.gid);
  if (chown || now.mode !== mode) fchmod(fd, mode);
}

/** Extended attributes restored, as GNU tar does by default: the user namespace only. */
const RESTORED_XATTRS = /^user\./;

function nameOf(path: string): Uint8Array {
  return pathToBytes(path.slice(path.lastIndexOf("/") + 1));
}

function codeOf(error: unknown): string | undefined {
  return (error as Partial<NativeFsError>).code;
}

function unsafe(path: string, why: string): RestoreError {
  return new RestoreError("unsafe-path", `entry ${JSON.stringify(path)}: ${why}`);
}

/** A directory held open, with the path it was restored at. */
interface HeldDir {
  readonly path: string;
  readonly fd: number;
}

/** Writes entries relative to held directory descriptors; see the module documentation. */
export class NativeTarget implements RestoreTarget {
  readonly #dirs = new Map<string, Identity>();
  readonly #held: HeldDir[];
  readonly #modeMask: number;
  readonly #asRoot: Promise<boolean>;
  readonly #fileOptions: { modeMask: number; asRoot: Promise<boolean> };
  readonly #startedMs = Date.now();
  /** Devices whose file system refused `O_TMPFILE`: their files get temporary names. */
  readonly #unnamedRefused = new Set<number>();
  staleRemoved = 0;

  /**
   * @param rootFd the target, open (closed by {@link close})
   * @param fresh whether the target was empty (nothing can be in the way)
   * @param options permissions and test hooks
   * @param rootIdentity the target's device and inode
   */
  constructor(
    rootFd: number,
    readonly fresh: boolean,
    options: { preservePermissions?: boolean; hooks?: RestoreHooks },
    rootIdentity: Identity,
    readonly hooks: RestoreHooks = options.hooks ?? {},
  ) {
    this.#held = [{ path: "", fd: rootFd }];
    this.#dirs.set("", rootIdentity);
    this.#modeMask = options.preservePermissions ? 0o7777 : MODE_WITHOUT_SPECIAL_BITS;
    this.#asRoot = effectiveUid().then((uid) => uid === 0);
    this.#fileOptions = { modeMask: this.#modeMask, asRoot: this.#asRoot };
    if (!fresh) this.#removeStale(rootFd, "");
  }

  hasDir(path: string): boolean {
    return this.#dirs.has(path);
  }

  /** The descriptor of restored directory `path`, opening what is missing from the stack. */
  #dirOf(path: string, forEntry: string): number {
    if (!this.#dirs.has(path)) {
      throw unsafe(
        forEntry,
        `its parent ${JSON.stringify(path || ".")} is not a restored directory`,
      );
    }
    // Bounded by the stack's depth: each turn pops one directory that is not an ancestor.
    while (!isAncestorOrSelf(this.#held[this.#held.length - 1]!.path, path)) {
      close(this.#held.pop()!.fd);
    }
    // Bounded by the path's segments: each turn opens one.
    for (let top = this.#held[this.#held.length - 1]!; top.path !== path;) {
      const next = path.indexOf("/", top.path === "" ? 0 : top.path.length + 1);
      const child = next < 0 ? path : path.slice(0, next);
      this.#held.push(top = { path: child, fd: this.#openDir(top.fd, child, forEntry) });
    }
    return this.#held[this.#held.length - 1]!.fd;
  }

  /** Opens restored directory `path` in `parentFd`; it must be the one recorded. */
  #openDir(parentFd: number, path: string, forEntry: string): number {
    let fd: number;
    try {
      fd = openAt(parentFd, nameOf(path), O.RDONLY | O.DIRECTORY | O.NOFOLLOW | O.NONBLOCK);
    } catch (error) {
      const code = codeOf(error);
      if (code === "ELOOP" || code === "ENOTDIR" || code === "ENOENT") {
        throw unsafe(
          forEntry,
          `its directory ${JSON.stringify(path)} was replaced during the restore`,
        );
      }
      throw writeFailure(forEntry, error);
    }
    const recorded = this.#dirs.get(path);
    const stat = statFd(fd);
    if (recorded === undefined || stat.dev !== recorded.dev || stat.ino !== recorded.ino) {
      close(fd);
      throw unsafe(
        forEntry,
        `its directory ${JSON.stringify(path)} was replaced during the restore`,
      );
    }
    return fd;
  }

  async dir(entry: ManifestEntry): Promise<void> {
    const parentFd = this.#dirOf(parentPath(entry.path), entry.path);
    await this.hooks.beforeCreate?.(entry.path);
    const name = nameOf(entry.path);
    let kept = false;
    try {
      mkdirAt(parentFd, name, 0o700);
    } catch (error) {
      if (codeOf(error) !== "EEXIST" || this.fresh) throw writeFailure(entry.path, error);
      kept = statAt(parentFd, name).type === "dir";
      if (!kept) {
        this.#removeInTheWay(parentFd, name, entry.path);
        mkdirAt(parentFd, name, 0o700);
      }
    }
    let fd: number;
    try {
      fd = openAt(parentFd, name, O.RDONLY | O.DIRECTORY | O.NOFOLLOW | O.NONBLOCK);
    } catch (error) {
      throw unsafe(entry.path, `the directory was replaced as it was made (${codeOf(error)})`);
    }
    const stat = statFd(fd);
    this.#dirs.set(entry.path, { dev: stat.dev, ino: stat.ino });
    this.#held.push({ path: entry.path, fd });
    if (kept) this.#removeStale(fd, entry.path);
    if (entry.type === "dir") this.#setXattrs(fd, entry.path, entry.xattrs);
  }

  async file(
    entry: ManifestEntry & { type: "file" },
    realSize: number,
    pieces: AsyncIterable<MemberPiece>,
    check: (pieces: AsyncIterable<MemberPiece>) => AsyncIterable<MemberPiece>,
  ): Promise<void> {
    const dir = parentPath(entry.path);
    const parentFd = this.#dirOf(dir, entry.path);
    await this.hooks.beforeCreate?.(entry.path);
    const created = this.#createFile(parentFd, this.#dirs.get(dir)!.dev, entry);
    const fd = created.fd;
    let temp = created.temp; // a name only without O_TMPFILE, or once its name was taken
    let open = true;
    await writeThroughTemporary(entry, realSize, pieces, check, {
      write: (bytes, position) => pwriteAll(fd, bytes, position),
      finish: ({ realSize, written }, owner, mode, mtimeMs) => {
        if (written !== realSize) ftruncate(fd, realSize); // a hole at the end of a sparse file
        this.#setXattrs(fd, entry.path, entry.xattrs);
        setOwnerAndMode(fd, owner, mode);
        futimens(fd, mtimeMs);
      },
      place: () => {
        if (temp === undefined) {
          try {
            linkFd(fd, parentFd, nameOf(entry.path));
            return;
          } catch (error) {
            if (codeOf(error) !== "EEXIST") throw error;
          }
          // Something has the name: replace it by a rename, under the same rules as before.
          temp = this.#nameUnnamed(fd, parentFd);
        }
        this.#place(parentFd, temp, entry.path);
      },
      discard: () => {
        if (temp === undefined) return; // unnamed: gone with its descriptor
        try {
          unlinkAt(parentFd, temp);
        } catch {
          // already renamed or gone
        }
      },
      close: () => {
        if (open) close(fd);
        open = false;
      },
    }, this.#fileOptions);
  }

  /**
   * Creates the file being restored in `parentFd`: unnamed (`O_TMPFILE`) where the file system
   * allows it, so no name exists until the checked file is linked to its own; else under a
   * locked temporary name. A refusal is remembered per file system (device).
   */
  #createFile(
    parentFd: number,
    dev: number,
    entry: ManifestEntry,
  ): { fd: number; temp?: string } {
    const path = entry.path;
    if (!this.#unnamedRefused.has(dev)) {
      try {
        // Unnamed, it can be made with its permission bits (no path reaches it until it is whole).
        const mode = entry.mode & this.#modeMask & 0o777;
        return { fd: (this.hooks.openUnnamed ?? openUnnamed)(parentFd, mode) };
      } catch (error) {
        if (!UNNAMED_REFUSED.has(codeOf(error) ?? "")) throw writeFailure(path, error);
        this.#unnamedRefused.add(dev);
      }
    }
    return this.#createTemporary(parentFd, path);
  }

  /**
   * Links the unnamed file `fd` to a fresh temporary name in `parentFd`, locked first, so it
   * can be renamed over what holds its real name (a rerun leaves a locked one alone).
   */
  #nameUnnamed(fd: number, parentFd: number): string {
    if (!tryLock(fd)) throw new Error("an unnamed file is locked by another process");
    const temp = randomName();
    linkFd(fd, parentFd, temp);
    return temp;
  }

  /**
   * Creates a temporary file in `parentFd` (never through a symlink, never an existing name)
   * and locks it: the lock is held until it has its name, so a rerun leaves it alone meanwhile.
   */
  #createTemporary(parentFd: number, path: string): { temp: string; fd: number } {
    const temp = randomName();
    let fd: number;
    try {
      fd = openAt(parentFd, temp, O.WRONLY | O.CREAT | O.EXCL | O.NOFOLLOW, 0o600);
    } catch (error) {
      throw writeFailure(path, error);
    }
    try {
      tryLock(fd);
    } catch (error) {
      close(fd);
      try {
        unlinkAt(parentFd, temp);
      } catch {
        // gone
      }
      throw writeFailure(path, error);
    }
    return { temp, fd };
  }

  /** Renames the finished temporary file to its name (replacing a file, not a directory). */
  #place(parentFd: number, temp: string, path: string): void {
    const name = nameOf(path);
    try {
      renameAt(parentFd, temp, parentFd, name);
    } catch (error) {
      const code = codeOf(error);
      if (this.fresh || (code !== "EISDIR" && code !== "ENOTEMPTY" && code !== "EEXIST")) {
        throw error;
      }
      this.#removeInTheWay(parentFd, name, path);
      renameAt(parentFd, temp, parentFd, name);
    }
  }

  #setXattrs(fd: number, path: string, xattrs: Record<string, string> | undefined): void {
    if (xattrs === undefined) return;
    for (const [name, value] of xattrPairs(xattrs)) {
      if (!RESTORED_XATTRS.test(new TextDecoder().decode(name))) continue;
      try {
        setXattr(fd, name, value);
      } catch (error) {
        throw writeFailure(path, error);
      }
    }
  }

  /** Sets the recorded owner when running as root (as tar does), by name first. */
  async #owner(entry: ManifestEntry, chown: (uid: number, gid: number) => void): Promise<void> {
    const owner = await restoredOwner(entry, this.#asRoot);
    if (owner !== undefined) chown(owner.uid, owner.gid);
  }

  async symlink(entry: ManifestEntry & { type: "symlink" }): Promise<void> {
    const parentFd = this.#dirOf(parentPath(entry.path), entry.path);
    await this.hooks.beforeCreate?.(entry.path);
    const name = nameOf(entry.path);
    if (!this.fresh) this.#removeInTheWay(parentFd, name, entry.path);
    try {
      symlinkAt(pathToBytes(entry.target), parentFd, name);
      await this.#owner(entry, (uid, gid) => chownAt(parentFd, name, uid, gid));
    } catch (error) {
      throw writeFailure(entry.path, error);
    }
  }

  async link(path: string, primary: string): Promise<void> {
    const primaryDir = this.#detachedDir(parentPath(primary), path);
    try {
      const parentFd = this.#dirOf(parentPath(path), path);
      await this.hooks.beforeCreate?.(path);
      const name = nameOf(path);
      const before = statAt(primaryDir, nameOf(primary));
      if (before.type !== "file") {
        throw unsafe(path, `its primary ${JSON.stringify(primary)} changed`);
      }
      if (!this.fresh) this.#removeInTheWay(parentFd, name, path);
      try {
        linkAt(primaryDir, nameOf(primary), parentFd, name);
      } catch (error) {
        throw writeFailure(path, error);
      }
      const made = statAt(parentFd, name);
      if (made.ino !== before.ino || made.dev !== before.dev) {
        throw unsafe(path, "the hard link changed as it was made");
      }
    } finally {
      close(primaryDir);
    }
  }

  /** A descriptor of restored directory `path` of its own (the stack stays where it is). */
  #detachedDir(path: string, forEntry: string): number {
    if (!this.#dirs.has(path)) {
      throw unsafe(
        forEntry,
        `its primary's directory ${JSON.stringify(path || ".")} is not restored`,
      );
    }
    let fd = openAt(this.#held[0]!.fd, ".", O.RDONLY | O.DIRECTORY);
    // Bounded by the path's segments.
    for (let at = 0; path !== "" && at <= path.length;) {
      const next = path.indexOf("/", at);
      const child = next < 0 ? path : path.slice(0, next);
      try {
        const opened = this.#openDir(fd, child, forEntry);
        close(fd);
        fd = opened;
      } catch (error) {
        close(fd);
        throw error;
      }
      at = next < 0 ? path.length + 1 : next + 1;
    }
    return fd;
  }

  async finishDir(entry: ManifestEntry): Promise<void> {
    if (!this.#dirs.has(entry.path) || entry.path === "") return;
    const fd = this.#dirOf(entry.path, entry.path);
    try {
      await this.#owner(entry, (uid, gid) => fchown(fd, uid, gid));
      fchmod(fd, entry.mode & this.#modeMask);
      futimens(fd, entry.mtimeMs);
    } catch (error) {
      throw writeFailure(entry.path, error);
    }
    const parentFd = this.#held[this.#held.length - 2]!.fd;
    const recorded = this.#dirs.get(entry.path)!;
    const now = (() => {
      try {
        return statAt(parentFd, nameOf(entry.path));
      } catch {
        return undefined;
      }
    })();
    close(this.#held.pop()!.fd); // nothing more goes into it
    if (now?.type !== "dir" || now.dev !== recorded.dev || now.ino !== recorded.ino) {
      throw new RestoreError(
        "unsafe-path",
        `directory ${JSON.stringify(entry.path)} was moved or replaced during the restore: ` +
          "what was restored into it went with it, nothing through what took its place",
      );
    }
  }

  /** Removes what is at `name` (a file, a link, or a whole directory tree), never following. */
  #removeInTheWay(parentFd: number, name: Uint8Array, path: string): void {
    try {
      removeTree(parentFd, name, 0);
    } catch (error) {
      if (codeOf(error) !== "ENOENT") throw writeFailure(path, error);
    }
  }

  /** Removes stale temporaries of an interrupted restore from a directory this one keeps. */
  #removeStale(dirFd: number, dir: string): void {
    let names: Uint8Array[];
    try {
      names = readDirNames(dirFd, dir || ".");
    } catch {
      return;
    }
    for (const raw of names) {
      const name = new TextDecoder().decode(raw);
      if (!TEMPORARY_NAME.test(name)) continue;
      let fd: number;
      try {
        fd = openAt(dirFd, raw, O.RDONLY | O.NOFOLLOW | O.NONBLOCK);
      } catch {
        continue; // a symlink or gone: not ours
      }
      try {
        const stat = statFd(fd);
        if (stat.type === "file" && stat.ctimeMs < this.#startedMs && tryLock(fd)) {
          unlinkAt(dirFd, raw);
          this.staleRemoved++;
        }
      } catch {
        // in use or unreadable: left alone
      } finally {
        close(fd);
      }
    }
  }

  close(): void {
    for (const dir of this.#held.splice(0)) close(dir.fd);
  }
}

function isAncestorOrSelf(dir: string, path: string): boolean {
  return dir === "" || dir === path || path.startsWith(`${dir}/`);
}

/** Removes `name` in `dirFd`: a file or link at once, a directory with everything in it. */
function removeTree(dirFd: number, name: Uint8Array, depth: number): void {
  const stat = statAt(dirFd, name);
  if (stat.type !== "dir") {
    unlinkAt(dirFd, name);
    return;
  }
  if (depth > REMOVE_DEPTH_MAX) throw new RangeError(`a tree deeper than ${REMOVE_DEPTH_MAX}`);
  const fd = openAt(dirFd, name, O.RDONLY | O.DIRECTORY | O.NOFOLLOW | O.NONBLOCK);
  try {
    for (const child of readDirNames(fd)) removeTree(fd, child, depth + 1);
  } finally {
    close(fd);
  }
  unlinkAt(dirFd, name, true);
}
