/**
 * The entries of one backup in a compact form: one column per field (typed arrays, growing by
 * doubling) instead of one object per entry, in manifest order (path order). A walk fills it,
 * the plan marks each entry unchanged (with the parent's hash, data reference and offset) or
 * changed, packing fills in the changed files' hashes and offsets, and the manifest is written
 * from it a line at a time. Each entry keeps its name and its directory's index, not its whole
 * path (only directories keep theirs), and owner names are interned: about 130 bytes per entry,
 * where a manifest entry object with its strings took over a kilobyte.
 *
 * @module
 */

import { invariant } from "../assert.ts";
import type { ManifestEntry } from "./manifest.ts";
import type { SourceEntry } from "./plan.ts";
import { parentPath } from "./path_rules.ts";

/** Entry type codes of the `types` column. */
export const TYPE_CODES = { file: 0, dir: 1, symlink: 2 } as const;
const TYPE_NAMES = ["file", "dir", "symlink"] as const;

/** What the plan and packing decided for an entry. */
export const STATE = {
  /** New or changed: packing archives it (the plan's default). */
  changed: 0,
  /** As in the parent: its hash, data reference and offset come from the parent's entry. */
  unchanged: 1,
  /** Left out (it could not be read while packing): not in the manifest. */
  skipped: 2,
  /** Archived by packing: its hash and offset are set. */
  packed: 3,
} as const;

/** Fields an entry rarely has, kept aside by index. */
export interface EntryExtras {
  /** The primary name of a hard link (from the parent, or set by packing). */
  hardlink?: string;
  /** A sparse file's stored bytes (from the parent, or set by packing). */
  sparse?: { readonly storedBytes: number };
  /** Extended attributes (names to base64 values). */
  xattrs?: Record<string, string>;
}

const INITIAL_CAPACITY = 1024;
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

/** The value of a lowercase hex digit's character code (hashes are checked before they get here). */
function hexValue(code: number): number {
  return code <= 0x39 ? code - 0x30 : code - 0x57;
}

/** An owner id the walk did not see (no real uid or gid is 2^32 - 1). */
export const NO_OWNER = 0xffff_ffff;

/**
 * `array` as 32-bit columns once `value` no longer fits its 16 bits (index columns start narrow:
 * few snapshots and owner names are the rule).
 */
function wideEnough(array: Uint16Array | Uint32Array, value: number): Uint16Array | Uint32Array {
  return array instanceof Uint16Array && value > 0xffff ? Uint32Array.from(array) : array;
}

function grown<T extends Float64Array | Uint8Array | Uint16Array | Uint32Array | Int32Array>(
  array: T,
  capacity: number,
  per = 1,
): T {
  const next = new (array.constructor as new (n: number) => T)(capacity * per);
  next.set(array);
  return next;
}

/** What {@link EntryTable.addChild} keeps of an entry's `statx`. */
export interface WalkedStat {
  /** Permission bits (0..0o7777). */
  readonly mode: number;
  readonly mtimeMs: number;
  readonly size: number;
  readonly uid: number;
  readonly gid: number;
  readonly dev: number;
  readonly ino: number;
  readonly nlink: number;
}

/** Entries in columns; see the module documentation. */
export class EntryTable {
  #count = 0;
  #capacity = INITIAL_CAPACITY;
  /** Each entry's last path segment. */
  readonly names: string[] = [];
  /** Each entry's directory (an index), -1 at the top. */
  parents = new Int32Array(INITIAL_CAPACITY);
  /** The paths of the directory entries, and their indexes by path. */
  readonly #dirPaths = new Map<number, string>();
  readonly #dirIndex = new Map<string, number>();
  #lastPath: string | undefined;
  types = new Uint8Array(INITIAL_CAPACITY);
  modes = new Uint16Array(INITIAL_CAPACITY);
  mtimes = new Float64Array(INITIAL_CAPACITY);
  sizes = new Float64Array(INITIAL_CAPACITY);
  /** Owner ids; {@link NO_OWNER} when unknown. */
  uids = new Uint32Array(INITIAL_CAPACITY);
  gids = new Uint32Array(INITIAL_CAPACITY);
  devs = new Float64Array(INITIAL_CAPACITY);
  inos = new Float64Array(INITIAL_CAPACITY);
  /** Link counts, 255 for 255 and more (only "more than one" matters). */
  nlinks = new Uint8Array(INITIAL_CAPACITY);
  /**
   * Owner names kept from the parent, as indexes into {@link ownerNames} (0: none); 16 bits
   * each until there are more names.
   */
  users: Uint16Array | Uint32Array = new Uint16Array(INITIAL_CAPACITY);
  groups: Uint16Array | Uint32Array = new Uint16Array(INITIAL_CAPACITY);
  /** Interned owner names (index 0 is no name). */
  readonly ownerNames: string[] = [""];
  readonly #ownerIndex = new Map<string, number>();
  states = new Uint8Array(INITIAL_CAPACITY);
  /** SHA-256 of each file, 32 bytes per entry. */
  hashes = new Uint8Array(INITIAL_CAPACITY * 32);
  /**
   * Index into {@link dataIds} of the snapshot holding each file's bytes; 16 bits each until
   * there are more snapshots.
   */
  data: Uint16Array | Uint32Array = new Uint16Array(INITIAL_CAPACITY);
  /** Member offsets; -1 when none is known (a version-1 parent). */
  offsets = new Float64Array(INITIAL_CAPACITY);
  /** Symlink targets by index. */
  readonly targets = new Map<number, string>();
  /** Rare fields by index. */
  readonly extras = new Map<number, EntryExtras>();
  /** Hard-link keys given with entries (those from objects), by index. */
  readonly #linkKeys = new Map<number, string>();
  /** Snapshot ids referenced by {@link data}. */
  readonly dataIds: string[] = [];
  readonly #dataIndex = new Map<string, number>();

  /** How many entries the table holds. */
  get count(): number {
    return this.#count;
  }

  #grow(): void {
    const capacity = this.#capacity * 2;
    this.parents = grown(this.parents, capacity);
    this.users = grown(this.users, capacity);
    this.groups = grown(this.groups, capacity);
    this.types = grown(this.types, capacity);
    this.modes = grown(this.modes, capacity);
    this.mtimes = grown(this.mtimes, capacity);
    this.sizes = grown(this.sizes, capacity);
    this.uids = grown(this.uids, capacity);
    this.gids = grown(this.gids, capacity);
    this.devs = grown(this.devs, capacity);
    this.inos = grown(this.inos, capacity);
    this.nlinks = grown(this.nlinks, capacity);
    this.states = grown(this.states, capacity);
    this.hashes = grown(this.hashes, capacity, 32);
    this.data = grown(this.data, capacity);
    this.offsets = grown(this.offsets, capacity);
    this.#capacity = capacity;
  }

  /**
   * Appends an entry; its path must sort after the last one's.
   *
   * @param entry the entry as found in the source
   * @param nlink its link count (files with more than one name are hard-linked)
   * @param name its last segment, when the caller has it as a string of its own (a slice of
   *   the path would keep the whole path alive)
   * @returns its index
   */
  add(entry: SourceEntry, nlink = 1, name?: string): number {
    const index = this.#count;
    const lastPath = index === 0 ? undefined : (this.#lastPath ?? this.path(index - 1));
    invariant(
      lastPath === undefined || lastPath < entry.path,
      `entry ${entry.path} comes after ${lastPath} in path order`,
    );
    this.#lastPath = entry.path;
    if (index === this.#capacity) this.#grow();
    const dir = parentPath(entry.path);
    const parent = dir === "" ? -1 : this.#dirIndex.get(dir);
    invariant(parent !== undefined, `entry ${entry.path}: its directory comes first`);
    this.#put(
      index,
      parent,
      name ?? (dir === "" ? entry.path : entry.path.slice(dir.length + 1)),
      entry.type,
      entry.type === "dir" ? entry.path : undefined,
      {
        mode: entry.mode,
        mtimeMs: entry.mtimeMs,
        size: entry.type === "file" ? entry.sizeBytes : 0,
        uid: entry.uid ?? NO_OWNER,
        gid: entry.gid ?? NO_OWNER,
        dev: entry.dev ?? -1,
        ino: entry.ino ?? -1,
        nlink,
      },
      entry.type === "symlink" ? entry.target : undefined,
    );
    if (entry.type === "file" && entry.linkKey !== undefined) {
      this.#linkKeys.set(index, entry.linkKey);
      this.nlinks[index] = Math.max(2, nlink);
    }
    this.#count++;
    return index;
  }

  /**
   * Appends an entry found in directory entry `parent` by a walk that holds that directory (no
   * path is built or parsed for it; only a directory's own path is kept). The caller gives the
   * entries in path order: a directory's entries by name, each subdirectory's subtree after the
   * names that sort before `name/`. Checked here: `parent` is a directory already in the table,
   * `name` is one segment, and it sorts after the previous entry of the same directory.
   *
   * @param parent the directory's index, -1 at the top
   * @param name the entry's name (one path segment)
   * @param type what it is
   * @param stat its metadata (a `statx` as the walk made it)
   * @param target a symlink's target
   * @returns its index
   */
  addChild(
    parent: number,
    name: string,
    type: SourceEntry["type"],
    stat: WalkedStat,
    target?: string,
  ): number {
    const index = this.#count;
    invariant(
      parent === -1 || (parent < index && this.types[parent] === TYPE_CODES.dir),
      `entry ${name}: its directory ${parent} is not a directory before it`,
    );
    invariant(name !== "" && !name.includes("/"), `entry name ${JSON.stringify(name)}`);
    if (index > 0) this.#checkAfterLast(parent, name);
    invariant((type === "symlink") === (target !== undefined), `entry ${name}: symlink target`);
    this.#lastPath = undefined;
    if (index === this.#capacity) this.#grow();
    const dirPath = type !== "dir"
      ? undefined
      : parent < 0
      ? name
      : `${this.#dirPaths.get(parent)}/${name}`;
    this.#put(index, parent, name, type, dirPath, stat, target);
    this.#count++;
    return index;
  }

  /**
   * Writes entry `index`'s columns (the caller checked order and parent, grew the table, and
   * counts the entry).
   */
  #put(
    index: number,
    parent: number,
    name: string,
    type: SourceEntry["type"],
    dirPath: string | undefined,
    stat: WalkedStat,
    target: string | undefined,
  ): void {
    this.parents[index] = parent;
    this.names.push(name);
    if (dirPath !== undefined) {
      this.#dirPaths.set(index, dirPath);
      this.#dirIndex.set(dirPath, index);
    }
    this.types[index] = TYPE_CODES[type];
    this.modes[index] = stat.mode;
    this.mtimes[index] = stat.mtimeMs;
    this.sizes[index] = type === "file" ? stat.size : 0;
    this.uids[index] = stat.uid;
    this.gids[index] = stat.gid;
    this.devs[index] = stat.dev;
    this.inos[index] = stat.ino;
    this.nlinks[index] = type === "file" ? Math.min(stat.nlink, 255) : 1;
    this.offsets[index] = -1;
    if (target !== undefined) this.targets.set(index, target);
  }

  /**
   * Checks that `name` in directory `parent` sorts after the last entry in path order: by name
   * among siblings (the usual case), else by the whole paths (where the walk moves between
   * directories).
   */
  #checkAfterLast(parent: number, name: string): void {
    const last = this.#count - 1;
    if (this.parents[last] === parent) {
      invariant(this.names[last]! < name, `entry ${name} comes after ${this.names[last]}`);
      return;
    }
    const lastPath = this.path(last);
    const path = parent < 0 ? name : `${this.#dirPaths.get(parent)}/${name}`;
    invariant(lastPath < path, `entry ${path} comes after ${lastPath} in path order`);
  }

  /**
   * The path of entry `index`.
   *
   * @param index the entry
   * @returns its path
   */
  path(index: number): string {
    const own = this.#dirPaths.get(index);
    if (own !== undefined) return own;
    const parent = this.parents[index]!;
    const name = this.names[index]!;
    return parent < 0 ? name : `${this.#dirPaths.get(parent)}/${name}`;
  }

  /**
   * The index of directory `path`, or -1.
   *
   * @param path a directory's path
   * @returns its index
   */
  dirIndex(path: string): number {
    return this.#dirIndex.get(path) ?? -1;
  }

  /** The type of entry `index`. */
  type(index: number): ManifestEntry["type"] {
    return TYPE_NAMES[this.types[index]!]!;
  }

  /** The hard-link key (device and inode) of a file with several names, else undefined. */
  linkKey(index: number): string | undefined {
    if (this.types[index] !== TYPE_CODES.file || this.nlinks[index]! <= 1) return undefined;
    return this.#linkKeys.get(index) ?? `${this.devs[index]}:${this.inos[index]}`;
  }

  /** Entry `index` as the walk found it (for APIs that take objects). */
  source(index: number): SourceEntry {
    const meta = {
      path: this.path(index),
      mode: this.modes[index]!,
      mtimeMs: this.mtimes[index]!,
      ...(this.devs[index]! < 0 ? {} : { dev: this.devs[index]!, ino: this.inos[index]! }),
      ...(this.uids[index] === NO_OWNER ? {} : { uid: this.uids[index]!, gid: this.gids[index]! }),
    };
    const type = this.type(index);
    if (type === "dir") return { type, ...meta };
    if (type === "symlink") return { type, ...meta, target: this.targets.get(index)! };
    const linkKey = this.linkKey(index);
    return {
      type,
      ...meta,
      sizeBytes: this.sizes[index]!,
      ...(linkKey === undefined ? {} : { linkKey }),
    };
  }

  /** The extras of `index`, created on first use. */
  extrasOf(index: number): EntryExtras {
    let extras = this.extras.get(index);
    if (extras === undefined) this.extras.set(index, extras = {});
    return extras;
  }

  /**
   * Records a file's hash, data snapshot and member offset.
   *
   * @param index the file
   * @param sha256 lowercase hex
   * @param dataId the snapshot whose archive holds the bytes
   * @param offset the member's offset in that archive, or -1
   */
  setData(index: number, sha256: string, dataId: string, offset: number): void {
    for (let i = 0; i < 32; i++) {
      this.hashes[index * 32 + i] = (hexValue(sha256.charCodeAt(i * 2)) << 4) |
        hexValue(sha256.charCodeAt(i * 2 + 1));
    }
    let data = this.#dataIndex.get(dataId);
    if (data === undefined) {
      data = this.dataIds.length;
      this.dataIds.push(dataId);
      this.#dataIndex.set(dataId, data);
      this.data = wideEnough(this.data, data);
    }
    this.data[index] = data;
    this.offsets[index] = offset;
  }

  /**
   * Keeps owner names (from the parent's entry) for entry `index`.
   *
   * @param index the entry
   * @param user the user name, if any
   * @param group the group name, if any
   */
  setOwnerNames(index: number, user: string | undefined, group: string | undefined): void {
    const userIndex = this.#intern(user);
    const groupIndex = this.#intern(group);
    this.users = wideEnough(this.users, userIndex);
    this.groups = wideEnough(this.groups, groupIndex);
    this.users[index] = userIndex;
    this.groups[index] = groupIndex;
  }

  /** The owner names kept for entry `index`. */
  ownerNamesOf(index: number): { user?: string; group?: string } {
    const user = this.ownerNames[this.users[index]!]!;
    const group = this.ownerNames[this.groups[index]!]!;
    return { ...(user === "" ? {} : { user }), ...(group === "" ? {} : { group }) };
  }

  #intern(name: string | undefined): number {
    if (name === undefined || name === "") return 0;
    let index = this.#ownerIndex.get(name);
    if (index === undefined) {
      index = this.ownerNames.length;
      this.ownerNames.push(name);
      this.#ownerIndex.set(name, index);
    }
    return index;
  }

  /** The SHA-256 of file `index`, lowercase hex. */
  sha256(index: number): string {
    let hex = "";
    for (let i = index * 32; i < index * 32 + 32; i++) hex += HEX[this.hashes[i]!]!;
    return hex;
  }
}
