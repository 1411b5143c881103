/**
 * One ustar header block written in place, byte for byte as tar-stream's encoder writes it, for
 * the common member: ASCII name and link target of at most 100 bytes, size and mtime that fit
 * their octal fields. Every other member goes through tar-stream (`_tar_headers.ts`). Packing
 * a tree of small files spent about a fifth of its packing time in tar-stream's encoder (a
 * 512-byte Buffer, a string per octal field, a UTF-8 write per field); this writes the digits
 * straight into the block (the packer's own room, or a new block).
 *
 * @module
 */

/** The fields a ustar block carries (defaults already applied, as `HeaderEncoder` does). */
export interface UstarFields {
  readonly name: string;
  readonly type: string;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly size: number;
  readonly mtime: Date;
  readonly linkname?: string;
  readonly uname?: string;
  readonly gname?: string;
}

const BLOCK_BYTES = 512;
const NAME_BYTES_MAX = 100;
/** Largest value of an 11-digit octal field (size, mtime). */
const OCTAL_11_MAX = 0o77777777777;
/** Largest value of a 6-digit octal field (mode, uid, gid). */
const OCTAL_6_MAX = 0o777777;
const ZERO = 0x30;
const SPACE = 0x20;

/** tar-stream's type flags (the digit written is `0` plus this). */
const TYPE_FLAGS: Readonly<Record<string, number>> = {
  file: 0,
  link: 1,
  symlink: 2,
  "character-device": 3,
  "block-device": 4,
  directory: 5,
  fifo: 6,
  "contiguous-file": 7,
  "pax-header": 72,
};

/** `ustar\0` then version `00`. */
const MAGIC = [0x75, 0x73, 0x74, 0x61, 0x72, 0x00, ZERO, ZERO];

/** Whether `text` is ASCII of at most `max` characters (so bytes and characters agree). */
function asciiUpTo(text: string | undefined, max: number): boolean {
  if (text === undefined) return true;
  if (text.length > max) return false;
  // Bounded by the text's length (at most `max`).
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) > 0x7f) return false;
  return true;
}

function writeAscii(block: Uint8Array, text: string, at: number): void {
  // Bounded by the text's length (checked against its field before).
  for (let i = 0; i < text.length; i++) block[at + i] = text.charCodeAt(i);
}

/** `digits` octal digits of `value` (zero-padded) and a space, at `at`. */
function writeOctal(block: Uint8Array, value: number, digits: number, at: number): void {
  let rest = value;
  // Bounded by `digits`; the caller checked that the value fits.
  for (let i = digits - 1; i >= 0; i--) {
    block[at + i] = ZERO + (rest % 8);
    rest = Math.floor(rest / 8);
  }
  block[at + digits] = SPACE;
}

/**
 * Writes the ustar header block of `fields` into `block` (its first 512 bytes, zeroed here),
 * when this common form can: otherwise writes nothing and says so.
 *
 * @param fields the member's fields, defaults applied
 * @param block at least 512 writable bytes
 * @returns true when written; false for a member tar-stream must encode (long or non-ASCII
 *   name or link, values past their octal fields, an unknown type)
 */
export function writeUstarBlock(fields: UstarFields, block: Uint8Array): boolean {
  const seconds = Math.trunc(fields.mtime.getTime() / 1000);
  const type = TYPE_FLAGS[fields.type];
  const fits = type !== undefined && block.length >= BLOCK_BYTES &&
    asciiUpTo(fields.name, NAME_BYTES_MAX) && asciiUpTo(fields.linkname, NAME_BYTES_MAX) &&
    asciiUpTo(fields.uname, 32) && asciiUpTo(fields.gname, 32) &&
    Number.isInteger(fields.size) && fields.size >= 0 && fields.size <= OCTAL_11_MAX &&
    seconds >= 0 && seconds <= 0x7fff_ffff && Number.isInteger(fields.uid) &&
    fields.uid >= 0 && fields.uid <= OCTAL_6_MAX && Number.isInteger(fields.gid) &&
    fields.gid >= 0 && fields.gid <= OCTAL_6_MAX && Number.isInteger(fields.mode);
  if (!fits) return false;
  block.fill(0, 0, BLOCK_BYTES);
  writeAscii(block, fields.name, 0);
  writeOctal(block, fields.mode & 0o7777, 6, 100);
  writeOctal(block, fields.uid, 6, 108);
  writeOctal(block, fields.gid, 6, 116);
  writeOctal(block, fields.size, 11, 124);
  writeOctal(block, seconds, 11, 136);
  block[156] = ZERO + type;
  if (fields.linkname) writeAscii(block, fields.linkname, 157);
  block.set(MAGIC, 257);
  if (fields.uname) writeAscii(block, fields.uname, 265);
  if (fields.gname) writeAscii(block, fields.gname, 297);
  writeOctal(block, 0, 6, 329);
  writeOctal(block, 0, 6, 337);
  let sum = 8 * SPACE; // the checksum field counts as spaces
  // Bounded: one block.
  for (let i = 0; i < 148; i++) sum += block[i]!;
  for (let i = 156; i < BLOCK_BYTES; i++) sum += block[i]!;
  writeOctal(block, sum, 6, 148);
  return true;
}
