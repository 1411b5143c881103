/**
 * Archive members as whole byte ranges, for prune's repacking and consolidate: where a member
 * starts and ends (its PAX header, its ustar header, its data and padding), a walk over an
 * archive's headers, and a writer that builds a new archive from copied ranges. Members are
 * copied byte for byte, so PAX records (raw names, large ids, sparse maps), owners, hard links
 * and modes stay exactly as the backup wrote them.
 *
 * @module
 */

import { pathToBytes } from "../../core/backup/path_rules.ts";
import { END_OF_ARCHIVE_BYTES, type MemberSpan } from "../../core/backup/prune_plan.ts";
import { type ArchiveReader, BLOCK_BYTES, MemberError, readMemberHead } from "./_tar_member.ts";

/** Size of one copy step. */
const COPY_CHUNK_BYTES = 1 << 20;
/** Most members walked in one archive. */
const MEMBERS_MAX = 10_000_000;

/** One member: its span, name and type flag. */
export interface Member extends MemberSpan {
  /** The member's name as bytes. */
  readonly name: Uint8Array;
  /** The ustar type flag ("0" file, "1" hard link, "2" symlink, "5" directory ...). */
  readonly typeFlag: string;
}

function padded(bytes: number): number {
  return Math.ceil(bytes / BLOCK_BYTES) * BLOCK_BYTES;
}

/**
 * The member whose first header block is at `offset`.
 *
 * @param reader the archive
 * @param offset the member's first header block
 * @returns its span, name and type
 * @throws {MemberError} when its headers are damaged or the archive ends
 */
export async function memberAt(reader: ArchiveReader, offset: number): Promise<Member> {
  const head = await readMemberHead(reader, offset);
  return {
    start: offset,
    end: head.dataOffset + padded(head.storedBytes),
    name: head.name,
    typeFlag: head.typeFlag,
  };
}

/**
 * The member at `offset`, checked to be `path`'s (a file member, or a link member for a second
 * name of a hard-linked file).
 *
 * @param reader the archive
 * @param offset where the manifest says the member starts
 * @param path the manifest entry's path
 * @param link whether the entry is a hard link to another name
 * @returns the member
 * @throws {MemberError} naming the offset when the member is damaged or another one
 */
export async function entryMember(
  reader: ArchiveReader,
  offset: number,
  path: string,
  link: boolean,
): Promise<Member> {
  const member = await memberAt(reader, offset);
  const wanted = pathToBytes(path);
  const sameName = member.name.length === wanted.length &&
    member.name.every((b, i) => b === wanted[i]);
  if (!sameName) {
    throw new MemberError(`the member at byte ${offset} is not ${JSON.stringify(path)}`);
  }
  if (member.typeFlag !== (link ? "1" : "0")) {
    throw new MemberError(`the member at byte ${offset} has type ${member.typeFlag}`);
  }
  return member;
}

async function isZeroBlock(reader: ArchiveReader, offset: number): Promise<boolean> {
  const block = new Uint8Array(BLOCK_BYTES);
  const n = await reader.read(block, offset);
  return n === 0 || block.subarray(0, n).every((b) => b === 0);
}

/**
 * Walks an archive's members from its start to its end marker (or its end).
 *
 * @param reader the archive
 * @param sizeBytes the archive's size
 * @returns every member, in order
 * @throws {MemberError} when a header is damaged
 */
export async function scanMembers(reader: ArchiveReader, sizeBytes: number): Promise<Member[]> {
  const members: Member[] = [];
  // Bounded: each turn moves past at least one block, and at most MEMBERS_MAX turns.
  for (let at = 0; at + BLOCK_BYTES <= sizeBytes && members.length < MEMBERS_MAX;) {
    if (await isZeroBlock(reader, at)) break;
    const member = await memberAt(reader, at);
    members.push(member);
    at = member.end;
  }
  return members;
}

/** Builds a new archive in a file from copied member ranges and new header blocks. */
export class ArchiveBuilder {
  #position = 0;
  readonly #buffer = new Uint8Array(COPY_CHUNK_BYTES);

  private constructor(readonly path: string, readonly file: Deno.FsFile) {}

  /**
   * Creates the file (it must not exist).
   *
   * @param path the new archive's temporary path
   * @returns the builder
   */
  static async create(path: string): Promise<ArchiveBuilder> {
    return new ArchiveBuilder(path, await Deno.open(path, { write: true, createNew: true }));
  }

  /** Where the next byte goes. */
  get position(): number {
    return this.#position;
  }

  /** Appends bytes. */
  async append(bytes: Uint8Array): Promise<void> {
    for (let offset = 0; offset < bytes.length;) {
      offset += await this.file.write(bytes.subarray(offset));
    }
    this.#position += bytes.length;
  }

  /**
   * Copies `span` of `reader` to the end of the new archive.
   *
   * @param reader the archive copied from
   * @param span the range
   * @returns where the range starts in the new archive
   * @throws {MemberError} when the source ends early
   */
  async copy(reader: ArchiveReader, span: MemberSpan): Promise<number> {
    const start = this.#position;
    // Bounded: each turn copies at least one byte or throws.
    for (let at = span.start; at < span.end;) {
      const want = this.#buffer.subarray(0, Math.min(this.#buffer.length, span.end - at));
      const n = await reader.read(want, at);
      if (n === 0) throw new MemberError(`archive ends at byte ${at}, inside a member`);
      await this.append(want.subarray(0, n));
      at += n;
    }
    return start;
  }

  /** Writes the end marker, syncs and closes; returns the archive's size. */
  async finish(): Promise<number> {
    await this.append(new Uint8Array(END_OF_ARCHIVE_BYTES));
    await this.file.sync();
    this.file.close();
    return this.#position;
  }

  /** Closes and removes the file (after a failure). */
  async discard(): Promise<void> {
    try {
      this.file.close();
    } catch {
      // already closed
    }
    await Deno.remove(this.path).catch(() => {});
  }
}
