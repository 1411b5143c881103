/**
 * The parts of the tar format tar-stream does not cover, kept to what lanfree writes: PAX
 * records whose values are raw bytes (`hdrcharset=BINARY` names that are not UTF-8, GNU sparse
 * 1.0 keys), and reading one member's headers at a known offset (manifests keep each file's
 * offset, so a restore seeks to it instead of reading the archive from the start, and one
 * damaged member leaves the others readable).
 *
 * @module
 */

/** One tar block. */
export const BLOCK_BYTES = 512;
/** Largest PAX extended header read. */
const PAX_BYTES_MAX = 1 << 20;
/** Most segments in one sparse map. */
export const SPARSE_SEGMENTS_MAX = 1 << 20;

const encoder = new TextEncoder();
const latin1 = new TextDecoder("latin1");

/**
 * Encodes PAX records (`"<len> key=value\n"`, the length counting itself) with raw values.
 *
 * @param records keys and values (strings are UTF-8 encoded)
 * @returns the records' bytes
 */
export function paxRecords(
  records: ReadonlyArray<readonly [string, Uint8Array | string]>,
): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const [key, value] of records) {
    const body = concat([
      encoder.encode(` ${key}=`),
      typeof value === "string" ? encoder.encode(value) : value,
      encoder.encode("\n"),
    ]);
    let length = body.length + 1;
    // Bounded: the digit count grows at most a few times.
    while (String(length).length + body.length !== length) {
      length = String(length).length + body.length;
    }
    parts.push(concat([encoder.encode(String(length)), body]));
  }
  return concat(parts);
}

/** Concatenates byte arrays. */
export function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, p) => sum + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** A sparse file's data segments: `[offset, length]` pairs, in order. */
export type SparseMap = ReadonlyArray<readonly [number, number]>;

/**
 * The map GNU tar's sparse format 1.0 puts at the start of a member's data: the segment count,
 * then each offset and length, one decimal per line, padded with zeros to a block.
 *
 * @param map the data segments
 * @returns the map's bytes, a whole number of blocks
 */
export function sparseMapBytes(map: SparseMap): Uint8Array {
  const lines = [String(map.length), ...map.flatMap(([o, n]) => [String(o), String(n)])];
  const text = encoder.encode(lines.join("\n") + "\n");
  const padded = new Uint8Array(Math.ceil(text.length / BLOCK_BYTES) * BLOCK_BYTES);
  padded.set(text);
  return padded;
}

/** Reads bytes of an archive at a position (a file, or a counting wrapper in tests). */
export interface ArchiveReader {
  /** Reads up to `into.length` bytes at `position`; 0 at the end. */
  read(into: Uint8Array, position: number): Promise<number>;
  /** Closes the archive; no read follows. */
  close(): void;
}

/** What the headers of one member say. */
export interface MemberHead {
  /** The member's name as bytes (PAX `path`, or GNU.sparse.name, or the ustar name). */
  readonly name: Uint8Array;
  /** The ustar type flag ("0" file, "1" hard link, "2" symlink, "5" directory ...). */
  readonly typeFlag: string;
  /** Where the member's data starts. */
  readonly dataOffset: number;
  /** Bytes of data stored in the archive (for a sparse member: map and segments). */
  readonly storedBytes: number;
  /** For a sparse member: its real size (the map is read with {@link readSparseMap}). */
  readonly sparseRealSize?: number;
}

/** A member that cannot be read at its offset: the message says why. */
export class MemberError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "MemberError";
  }
}

async function readExactly(reader: ArchiveReader, position: number, length: number) {
  const out = new Uint8Array(length);
  // Bounded: each turn reads at least one byte or ends.
  for (let at = 0; at < length;) {
    const n = await reader.read(out.subarray(at), position + at);
    if (n === 0) throw new MemberError(`archive ends at byte ${position + at}`);
    at += n;
  }
  return out;
}

function octal(block: Uint8Array, offset: number, length: number): number {
  if (block[offset]! & 0x80) {
    let value = 0; // base-256, as tar-stream and GNU tar write sizes of 8 GiB and more
    for (let i = offset + 1; i < offset + length; i++) value = value * 256 + block[i]!;
    return value;
  }
  const text = latin1.decode(block.subarray(offset, offset + length)).replace(/[\0 ]+$/, "").trim();
  if (!/^[0-7]*$/.test(text)) throw new MemberError(`bad octal field ${JSON.stringify(text)}`);
  return text === "" ? 0 : parseInt(text, 8);
}

function checkHeader(block: Uint8Array, position: number): void {
  let sum = 0;
  for (let i = 0; i < BLOCK_BYTES; i++) sum += i >= 148 && i < 156 ? 32 : block[i]!;
  const stored = octal(block, 148, 8);
  if (sum !== stored) throw new MemberError(`bad header checksum at byte ${position}`);
}

function cString(bytes: Uint8Array): Uint8Array {
  const end = bytes.indexOf(0);
  return end === -1 ? bytes : bytes.subarray(0, end);
}

function parsePax(bytes: Uint8Array): Map<string, Uint8Array> {
  const records = new Map<string, Uint8Array>();
  // Bounded: each turn consumes one record of at least one byte.
  for (let at = 0; at < bytes.length && bytes[at] !== 0;) {
    const space = bytes.indexOf(0x20, at);
    const length = Number(latin1.decode(bytes.subarray(at, space)));
    if (space === -1 || !Number.isInteger(length) || length <= 0 || at + length > bytes.length) {
      throw new MemberError("bad PAX record");
    }
    const record = bytes.subarray(space + 1, at + length - 1);
    const equals = record.indexOf(0x3d);
    if (equals === -1) throw new MemberError("bad PAX record");
    records.set(latin1.decode(record.subarray(0, equals)), record.subarray(equals + 1));
    at += length;
  }
  return records;
}

/**
 * Reads the headers of the member starting at `offset` (a PAX header, if any, then the ustar
 * header), checking each header's checksum.
 *
 * @param reader the archive
 * @param offset where the member's first header block starts
 * @returns the member's name, type, data offset and stored size
 * @throws {MemberError} when the headers are damaged or the archive ends
 */
export async function readMemberHead(reader: ArchiveReader, offset: number): Promise<MemberHead> {
  let position = offset;
  let block = await readExactly(reader, position, BLOCK_BYTES);
  checkHeader(block, position);
  let pax = new Map<string, Uint8Array>();
  if (String.fromCharCode(block[156]!) === "x") {
    const size = octal(block, 124, 12);
    if (size > PAX_BYTES_MAX) throw new MemberError(`PAX header of ${size} bytes at ${position}`);
    pax = parsePax(await readExactly(reader, position + BLOCK_BYTES, size));
    position += BLOCK_BYTES + Math.ceil(size / BLOCK_BYTES) * BLOCK_BYTES;
    block = await readExactly(reader, position, BLOCK_BYTES);
    checkHeader(block, position);
  }
  const prefix = cString(block.subarray(345, 500));
  const short = cString(block.subarray(0, 100));
  const ustarName = prefix.length > 0 ? concat([prefix, encoder.encode("/"), short]) : short;
  const sparse = latin1.decode(pax.get("GNU.sparse.major") ?? new Uint8Array()) === "1";
  const name = (sparse ? pax.get("GNU.sparse.name") : undefined) ?? pax.get("path") ?? ustarName;
  const paxSize = pax.get("size");
  const storedBytes = paxSize !== undefined
    ? Number(latin1.decode(paxSize))
    : octal(block, 124, 12);
  const realSize = pax.get("GNU.sparse.realsize");
  return {
    name,
    typeFlag: block[156] === 0 ? "0" : String.fromCharCode(block[156]!),
    dataOffset: position + BLOCK_BYTES,
    storedBytes,
    ...(sparse && realSize !== undefined
      ? { sparseRealSize: Number(latin1.decode(realSize)) }
      : {}),
  };
}

/**
 * Reads the sparse map at the start of a sparse member's data.
 *
 * @param reader the archive
 * @param head the member's head
 * @returns the segments and the number of map bytes (a whole number of blocks)
 * @throws {MemberError} when the map is malformed or its segments leave the file
 */
export async function readSparseMap(
  reader: ArchiveReader,
  head: MemberHead,
): Promise<{ map: SparseMap; mapBytes: number }> {
  const numbers: number[] = [];
  let text = "";
  let mapBytes = 0;
  let wanted = 1;
  // Bounded: the map is at most SPARSE_SEGMENTS_MAX segments, read a block at a time.
  while (numbers.length < wanted && mapBytes < head.storedBytes) {
    text += latin1.decode(await readExactly(reader, head.dataOffset + mapBytes, BLOCK_BYTES));
    mapBytes += BLOCK_BYTES;
    const lines = text.split("\n");
    text = lines.pop() ?? "";
    for (const line of lines) {
      if (numbers.length >= wanted) break;
      if (!/^\d+$/.test(line)) throw new MemberError("bad sparse map");
      numbers.push(Number(line));
      if (numbers.length === 1) {
        if (numbers[0]! > SPARSE_SEGMENTS_MAX) throw new MemberError("sparse map too large");
        wanted = 1 + 2 * numbers[0]!;
      }
    }
  }
  if (numbers.length < wanted) throw new MemberError("sparse map is cut off");
  const map: Array<[number, number]> = [];
  for (let i = 1; i < numbers.length; i += 2) map.push([numbers[i]!, numbers[i + 1]!]);
  const real = head.sparseRealSize ?? 0;
  if (map.some(([o, n]) => o + n > real)) throw new MemberError("sparse segment past the end");
  return { map, mapBytes };
}
