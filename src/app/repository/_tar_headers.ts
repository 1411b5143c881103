/**
 * The header blocks of one archive member: tar-stream's own encoder for the ustar header, and a
 * PAX extended header of our own, with raw values, whenever the ustar fields cannot hold the
 * facts: a name or link target that is not UTF-8 (`hdrcharset=BINARY`, as GNU tar reads it) or
 * too long, owner ids or names too large, extended attributes (`SCHILY.xattr.NAME`, as GNU
 * tar's `--xattrs` writes them), and sparse files (GNU sparse format 1.0: `GNU.sparse.major=1`,
 * `minor=0`, `name`, `realsize`, the member named `DIR/GNUSparseFile.0/NAME`, its data the map
 * then the data runs).
 *
 * @module
 */

import tar from "tar-stream";
import type { OwnerNames, SourceEntry } from "../../core/backup/plan.ts";
import { hasRawBytes, pathToBytes } from "../../core/backup/path_rules.ts";
import { BLOCK_BYTES, paxRecords, type SparseMap } from "./_tar_member.ts";
import { writeUstarBlock } from "./_ustar_block.ts";

/** The header fields of one member. */
export type TarHeader = Partial<tar.Header> & { name: string; type: tar.Header["type"] };

/** What a member needs besides its ustar fields. */
export interface HeaderExtras {
  /** Extended attributes, names to base64 values. */
  readonly xattrs?: Readonly<Record<string, string>>;
  /** A sparse file: its real size (the header's `size` is then the stored bytes). */
  readonly sparseRealSize?: number;
}

/**
 * Tar headers from tar-stream's own encoder (ustar, or a PAX header first for long or non-ASCII
 * names), without its per-entry stream machinery: a pack whose output is captured per call.
 */
interface PackInternals {
  push(chunk: Uint8Array | null): boolean;
  _encode(header: TarHeader): void;
}

/** Largest id the 7-digit octal ustar field holds (larger ones go into a PAX record). */
const USTAR_ID_MAX = 0o777777;

function fitsUstarId(id: number | undefined): id is number {
  return id !== undefined && id <= USTAR_ID_MAX;
}

function fitsUstarName(name: string | undefined): name is string {
  return name !== undefined && /^[\x21-\x7e]{1,31}$/.test(name);
}

/** Bytes of padding after `sizeBytes` of data, to the next block. */
export function padding(sizeBytes: number): number {
  const over = sizeBytes % BLOCK_BYTES;
  return over === 0 ? 0 : BLOCK_BYTES - over;
}

/** `header` with the defaults tar-stream's `pack.entry` applies, owners fitted to ustar. */
function withDefaults(header: TarHeader): TarHeader & { size: number; mode: number } {
  return {
    ...header,
    size: !header.size || header.type === "symlink" ? 0 : header.size,
    mode: header.mode || (header.type === "directory" ? 0o755 : 0o644),
    uid: fitsUstarId(header.uid) ? header.uid : 0,
    gid: fitsUstarId(header.gid) ? header.gid : 0,
    uname: fitsUstarName(header.uname) ? header.uname : undefined,
    gname: fitsUstarName(header.gname) ? header.gname : undefined,
  };
}

/** Whether `writeUstarBlock` may write `full` (fields it does not write are all absent). */
function writesInPlace(full: TarHeader): full is TarHeader & Parameters<typeof writeUstarBlock>[0] {
  return full.mtime instanceof Date && full.pax === undefined && !full.devmajor &&
    !full.devminor;
}

/** Encodes members' header blocks. */
export class HeaderEncoder {
  readonly #pack: PackInternals;
  #out: Uint8Array[] = [];

  constructor() {
    this.#pack = tar.pack() as unknown as PackInternals;
    this.#pack.push = (chunk) => {
      if (chunk !== null) this.#out.push(chunk);
      return true;
    };
  }

  /** The ustar header blocks of one entry, defaults applied as `pack.entry` applies them. */
  #ustar(header: TarHeader): Uint8Array[] {
    const full = withDefaults(header);
    const block = new Uint8Array(BLOCK_BYTES);
    if (writesInPlace(full) && writeUstarBlock(full, block)) return [block];
    this.#out = [];
    this.#pack._encode(full);
    return this.#out;
  }

  /**
   * Writes the member's header into `into` when it is one plain ustar block (no PAX header
   * needed, a short ASCII name): the packer's path without allocating a block.
   *
   * @param header the member's ustar fields
   * @param extras extended attributes, sparse size
   * @param into at least 512 writable bytes
   * @returns true when written (512 bytes); false when {@link encode} must make the blocks
   */
  encodeInto(header: TarHeader, extras: HeaderExtras, into: Uint8Array): boolean {
    if (extras.sparseRealSize !== undefined || extras.xattrs !== undefined) return false;
    if (paxRecordsOf(header, extras).length > 0) return false;
    const full = withDefaults(header);
    return writesInPlace(full) && writeUstarBlock(full, into);
  }

  /**
   * The header blocks of one member: a PAX header of our own first when the ustar fields
   * cannot hold the facts (see the module documentation).
   *
   * @param header the member's ustar fields
   * @param extras extended attributes, sparse size
   * @returns the blocks, in order
   */
  encode(header: TarHeader, extras: HeaderExtras = {}): Uint8Array[] {
    const records = paxRecordsOf(header, extras);
    if (records.length === 0) return this.#ustar(header);
    const pax = paxRecords(records);
    const sparse = extras.sparseRealSize !== undefined;
    return [
      ...this.#ustar({
        name: "PaxHeader",
        type: "pax-header" as TarHeader["type"],
        size: pax.length,
        mtime: header.mtime,
      }),
      pax,
      new Uint8Array(padding(pax.length)),
      ...this.#ustar({
        ...header,
        name: sparse ? sparseStandIn(header.name) : standIn(header.name),
        linkname: header.linkname === undefined ? undefined : standIn(header.linkname),
      }),
    ];
  }
}

/** What a ustar field can hold of a name: printable ASCII, at most 99 characters. */
function standIn(name: string): string {
  return name.replace(/[^\x20-\x7e]/g, "_").slice(-99);
}

/** The ustar name of a sparse member, as GNU tar makes it (`DIR/GNUSparseFile.PID/NAME`). */
function sparseStandIn(name: string): string {
  const slash = name.lastIndexOf("/");
  const dir = slash < 0 ? "." : name.slice(0, slash);
  return standIn(`${dir}/GNUSparseFile.0/${name.slice(slash + 1)}`);
}

/** Whether the ustar header can carry `name` as is. */
function fitsUstar(name: string): boolean {
  return !hasRawBytes(name) && /^[\x20-\x7e]{1,99}$/.test(name);
}

function paxRecordsOf(
  header: TarHeader,
  extras: HeaderExtras,
): Array<[string, Uint8Array | string]> {
  const records: Array<[string, Uint8Array | string]> = [];
  const add = (key: string, value: Uint8Array | string) => records.push([key, value]);
  if (extras.sparseRealSize !== undefined) {
    add("GNU.sparse.major", "1");
    add("GNU.sparse.minor", "0");
    add("GNU.sparse.name", pathToBytes(header.name));
    add("GNU.sparse.realsize", String(extras.sparseRealSize));
  }
  if (header.uid !== undefined && !fitsUstarId(header.uid)) add("uid", String(header.uid));
  if (header.gid !== undefined && !fitsUstarId(header.gid)) add("gid", String(header.gid));
  if (header.uname !== undefined && !fitsUstarName(header.uname)) add("uname", header.uname);
  if (header.gname !== undefined && !fitsUstarName(header.gname)) add("gname", header.gname);
  for (const [name, value] of Object.entries(extras.xattrs ?? {})) {
    add(`SCHILY.xattr.${name}`, base64Bytes(value));
  }
  const needsPax = records.length > 0;
  const rawName = extras.sparseRealSize === undefined &&
    (hasRawBytes(header.name) || (needsPax && !fitsUstar(header.name)));
  const rawLink = header.linkname !== undefined &&
    (hasRawBytes(header.linkname) || (needsPax && !fitsUstar(header.linkname)));
  if (rawName) add("path", pathToBytes(header.name));
  if (rawLink) add("linkpath", pathToBytes(header.linkname!));
  const binary = hasRawBytes(header.name) || (rawLink && hasRawBytes(header.linkname!)) ||
    Object.keys(extras.xattrs ?? {}).some(hasRawBytes);
  if (binary) records.unshift(["hdrcharset", "BINARY"]);
  return records;
}

const BASE64_DIGITS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const BASE64_VALUES = new Map([...BASE64_DIGITS].map((c, i) => [c, i]));

/** The bytes of standard base64 text (validated by the manifest schema before it gets here). */
export function base64Bytes(text: string): Uint8Array {
  const clean = text.replace(/=+$/, "");
  const out = new Uint8Array(Math.floor((clean.length * 3) / 4));
  let bits = 0;
  let value = 0;
  let at = 0;
  for (const char of clean) {
    value = (value << 6) | (BASE64_VALUES.get(char) ?? 0);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[at++] = (value >> bits) & 0xff;
    }
  }
  return out;
}

/** The ustar fields every member carries. */
export type BaseHeader =
  & Pick<TarHeader, "name" | "mode" | "mtime" | "uid" | "gid" | "uname" | "gname">
  & {
    name: string;
  };

/**
 * Header fields every entry carries: name, mode, mtime, owners.
 *
 * @param entry the entry
 * @param names names of owner ids
 * @returns the fields
 */
export function baseHeader(entry: SourceEntry, names: OwnerNames | undefined): BaseHeader {
  return {
    name: entry.path,
    mode: entry.mode,
    mtime: new Date(entry.mtimeMs),
    uid: entry.uid,
    gid: entry.gid,
    uname: entry.uid === undefined ? undefined : names?.user(entry.uid),
    gname: entry.gid === undefined ? undefined : names?.group(entry.gid),
  };
}

/**
 * The names of `xattrs` as raw bytes (for `fsetxattr`), in order.
 *
 * @param xattrs names to base64 values
 * @returns name bytes and value bytes
 */
export function xattrPairs(
  xattrs: Readonly<Record<string, string>>,
): Array<[Uint8Array, Uint8Array]> {
  return Object.entries(xattrs).map(([name, value]) => [pathToBytes(name), base64Bytes(value)]);
}

/**
 * The stored bytes of a sparse member: its map, then its data runs.
 *
 * @param map the data runs
 * @param mapBytes the map's size in the archive
 * @returns map bytes plus the data
 */
export function sparseStoredBytes(map: SparseMap, mapBytes: number): number {
  return mapBytes + map.reduce((sum, [, length]) => sum + length, 0);
}

/**
 * The header blocks packing writes for a directory or a symlink (consolidate writes those a
 * synthetic full archive lacks with it), extended attributes included.
 *
 * @param entry the directory or symlink
 * @param ownerNames names of its owner ids, for uname and gname
 * @returns the blocks (a PAX header first when the name, owners or attributes need one)
 */
export function headerBlocks(
  entry: SourceEntry & { readonly type: "dir" | "symlink" },
  ownerNames?: OwnerNames,
): Uint8Array[] {
  const base = baseHeader(entry, ownerNames);
  const header: TarHeader = entry.type === "dir"
    ? { ...base, type: "directory" }
    : { ...base, type: "symlink", linkname: entry.target };
  const xattrs = "xattrs" in entry ? entry.xattrs as Record<string, string> | undefined : undefined;
  return new HeaderEncoder().encode(header, xattrs === undefined ? {} : { xattrs });
}
