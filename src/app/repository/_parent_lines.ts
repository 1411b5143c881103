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
