/**
 * The parent's entry lines, read forward from its manifest file (the line layout of
 * `core/backup/manifest_stream.ts`), for the run lines of an incremental backup: a run line
 * `[from,count]` names the parent's entries `from` .. `from + count - 1`, and the server copies
 * their lines from here into the new manifest. The cursor only moves forward, a small read at a
 * time, so memory stays small whatever the parent's size; a run that goes back or past the
 * parent's last entry is a problem the caller refuses.
 *
 * @module
 */

import { ManifestLineReader } from "../../core/backup/manifest_stream.ts";
import { RepositoryError } from "../errors.ts";
import { Yielder } from "../_file_side.ts";
import { MANIFEST_LINE_CHARS_MAX } from "./_manifest_file.ts";

/**
 * Bytes read at a time: each copied line goes on into the new manifest's write buffer and keeps
 * the text it was cut from alive until written, so small reads keep little of the parent alive.
 */
const READ_BYTES = 64 << 10;

/** The entry lines of a line-layout manifest file, read forward only. */
export class ParentLineCursor {
  readonly #file: Deno.FsFile;
  readonly #decoder = new TextDecoder("utf-8", { fatal: true });
  readonly #buffer = new Uint8Array(READ_BYTES);
  readonly #reader = new ManifestLineReader();
  readonly #yielder = new Yielder();
  #lines: string[] = [];
  #at = 0;
  #partial = "";
  #eof = false;
  /** The position of the next entry line among the parent's entries. */
  #next = 0;
  #entriesEnded = false;

  private constructor(readonly path: string, file: Deno.FsFile) {
    this.#file = file;
  }

  /**
   * Opens a parent's manifest file and reads past its head.
   *
   * @param path the parent's manifest file (line layout, checked under the caller's lock)
   * @returns the cursor at the parent's first entry
   * @throws {RepositoryError} `corrupt` when the file does not start with a head line
   */
  static async open(path: string): Promise<ParentLineCursor> {
    const cursor = new ParentLineCursor(path, await Deno.open(path, { read: true }));
    try {
      const first = await cursor.#rawLine();
      if (first === undefined || cursor.#reader.next(first)?.kind !== "head") {
        throw new RepositoryError("corrupt", `${path}: its first line is not a head`);
      }
      return cursor;
    } catch (error) {
      cursor.close();
      throw error;
    }
  }

  /**
   * Hands over the parent's entry lines `from` .. `from + count - 1`, in order, skipping the
   * lines before `from` (parent entries the new snapshot changed or lost).
   *
   * @param from the first one's position (at or past every line handed over before)
   * @param count how many
   * @param onLine receives each line (its JSON text, as the parent's file has it)
   * @returns undefined, or why the run cannot be: it goes back, or past the parent's end
   */
  async copy(
    from: number,
    count: number,
    onLine: (line: string) => Promise<void>,
  ): Promise<string | undefined> {
    if (from < this.#next) {
      return `run [${from},${count}] goes back (the parent's entries before ${this.#next} are used)`;
    }
    // Bounded by the file: each turn reads one line of it or ends.
    while (this.#next < from) {
      if (await this.#entryLine() === undefined) return this.#pastEnd(from, count);
    }
    // Bounded by count, and by the file: each turn reads one line of it or ends.
    for (let copied = 0; copied < count; copied++) {
      const line = await this.#entryLine();
      if (line === undefined) return this.#pastEnd(from, count);
      await onLine(line);
      await this.#yielder.maybe();
    }
    return undefined;
  }

  /** Closes the file. */
  close(): void {
    try {
      this.#file.close();
    } catch {
      // closed already
    }
  }

  #pastEnd(from: number, count: number): string {
    return `run [${from},${count}] goes past the parent's ${this.#next} entries`;
  }

  /** The next entry line (its JSON text), or undefined past the last one. */
  async #entryLine(): Promise<string | undefined> {
    if (this.#entriesEnded) return undefined;
    const raw = await this.#rawLine();
    const item = raw === undefined ? undefined : this.#reader.next(raw);
    if (item?.kind === "entry") {
      this.#next++;
      return item.line;
    }
    if (item?.kind !== "separator") {
      throw new RepositoryError("corrupt", `${this.path}: entry ${this.#next} breaks the layout`);
    }
    this.#entriesEnded = true;
    return undefined;
  }

  /** The file's next line, or undefined at its end. */
  async #rawLine(): Promise<string | undefined> {
    // Bounded by the file's size: each turn reads at least one byte or ends.
    while (this.#at >= this.#lines.length) {
      if (this.#eof) return undefined;
      const n = await this.#file.read(this.#buffer);
      const text = this.#partial +
        (n === null
          ? this.#decoder.decode()
          : this.#decoder.decode(this.#buffer.subarray(0, n), { stream: true }));
      this.#lines = text === "" ? [] : text.split("\n");
      this.#at = 0;
      this.#partial = n === null ? "" : this.#lines.pop()!;
      this.#eof = n === null;
      if (this.#partial.length > MANIFEST_LINE_CHARS_MAX) {
        throw new RepositoryError(
          "corrupt",
          `${this.path}: a line longer than ${MANIFEST_LINE_CHARS_MAX} characters`,
        );
      }
    }
    return this.#lines[this.#at++];
  }
}

/** Bytes of a vouched parent copied at a time. */
const COPY_BYTES = 1 << 20;
const NEWLINE = 0x0a;
const SEPARATOR_START = 0x5d; // `]`: only the separator line starts with it

/** What a copy of a vouched parent's entry section held. */
export interface CopiedEntries {
  readonly entries: number;
  readonly files: number;
}

/**
 * Copies the entry section of a parent's manifest file (line layout) as bytes, without parsing
 * its lines: the lines after the head up to the separator line, which only a manifest checked
 * whole and vouched by its checked record may be trusted with (see docs/trust.md). Entries and
 * files are counted on the way, each line's type read from its first key when it is the only
 * `"type":` key of the line (the layout this code writes), else from the parsed line.
 *
 * @param path the parent's manifest file
 * @param write takes each piece of the section, in order
 * @returns how many entries and files the section held
 * @throws {RepositoryError} `corrupt` when the file has no separator line
 */
export async function copyEntrySection(
  path: string,
  write: (bytes: Uint8Array) => Promise<void>,
): Promise<CopiedEntries> {
  const file = await Deno.open(path, { read: true });
  const buffer = new Uint8Array(COPY_BYTES);
  const counter = new EntryCounter();
  let inHead = true;
  let lastByte = NEWLINE;
  try {
    // Bounded by the file's size: each turn reads at least one byte or ends.
    for (let n = await file.read(buffer); n !== null; n = await file.read(buffer)) {
      let bytes = buffer.subarray(0, n);
      if (inHead) {
        const end = bytes.indexOf(NEWLINE);
        if (end < 0) continue;
        bytes = bytes.subarray(end + 1);
        inHead = false;
      }
      const end = separatorAt(bytes, lastByte);
      const section = end < 0 ? bytes : bytes.subarray(0, end);
      counter.add(section, end >= 0);
      await write(section);
      if (end >= 0) return counter.counted();
      if (bytes.length > 0) lastByte = bytes[bytes.length - 1]!;
    }
  } finally {
    file.close();
  }
  throw new RepositoryError("corrupt", `${path}: no separator after the entries`);
}

/** Where the separator line starts in `bytes` (after `before`, the byte before them), or -1. */
function separatorAt(bytes: Uint8Array, before: number): number {
  if (bytes[0] === SEPARATOR_START && before === NEWLINE) return 0;
  // Bounded by the bytes: each turn moves past one `]`.
  for (
    let at = bytes.indexOf(SEPARATOR_START, 1);
    at > 0;
    at = bytes.indexOf(SEPARATOR_START, at + 1)
  ) {
    if (bytes[at - 1] === NEWLINE) return at;
  }
  return -1;
}

/** Counts the entry lines and files of a section handed over in pieces. */
class EntryCounter {
  readonly #decoder = new TextDecoder("utf-8", { fatal: true });
  #carry = "";
  #entries = 0;
  #files = 0;

  add(bytes: Uint8Array, last: boolean): void {
    const text = this.#carry + this.#decoder.decode(bytes, { stream: !last });
    let start = 0;
    // Bounded by the text: each turn moves past one newline.
    for (let end = text.indexOf("\n"); end >= 0; end = text.indexOf("\n", start)) {
      this.#entries++;
      if (isFileLine(text, start, end)) this.#files++;
      start = end + 1;
    }
    this.#carry = text.slice(start);
  }

  counted(): CopiedEntries {
    return { entries: this.#entries, files: this.#files };
  }
}

const TYPE_KEY = '"type":';
const FIRST_KEY = `{${TYPE_KEY}"`;

/** Whether the entry line `text[start, end)` (maybe ending with a comma) is a file's. */
function isFileLine(text: string, start: number, end: number): boolean {
  const second = text.indexOf(TYPE_KEY, start + FIRST_KEY.length);
  if (text.startsWith(FIRST_KEY, start) && (second < 0 || second >= end)) {
    return text.startsWith('file"', start + FIRST_KEY.length);
  }
  const line = text.slice(start, text[end - 1] === "," ? end - 1 : end);
  return (JSON.parse(line) as { type?: unknown }).type === "file";
}
