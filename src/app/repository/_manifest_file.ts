/**
 * Manifest files read and written a line at a time (the layout of
 * `core/backup/manifest_stream.ts`): a writer that appends checked entry lines to the
 * temporary manifest as they arrive, and readers that go through a manifest one entry at a
 * time, checking each, in path order. A manifest written on one line (older lanfree, or another
 * tool) is read whole instead and its entries put in path order, so callers see one stream.
 *
 * @module
 */

import {
  checkHead,
  DELETED_SEPARATOR_LINE,
  endLine,
  headLine,
  ManifestChecker,
  type ManifestHead,
  type ManifestItem,
  ManifestLineReader,
  resolveLink,
  unresolvedLinkProblem,
} from "../../core/backup/manifest_stream.ts";
import type { ChannelBytes, Manifest, ManifestEntry } from "../../core/backup/manifest.ts";
import { checkEntryPath } from "../../core/backup/path_rules.ts";
import { RepositoryError } from "../errors.ts";
import { Yielder } from "../_file_side.ts";
import { createHash, type Hash } from "node:crypto";

/** Bytes read from a manifest file at a time. */
const READ_BYTES = 1 << 20;
/** Bytes of a trusted manifest handed over at a time (a quarter of a read's: short slices). */
const BLOCK_BYTES = 256 << 10;
/** Bytes of lines gathered before one write. */
const WRITE_BYTES = 1 << 20;
/** Longest line accepted (an entry with many large extended attributes). */
export const MANIFEST_LINE_CHARS_MAX = 16 << 20;

/**
 * Calls `onLine` for each line of a file, in order (the last line need not end with a newline).
 *
 * @param path the file
 * @param onLine receives each line; returning false stops the reading
 */
export async function readLines(
  path: string,
  onLine: (line: string) => boolean | void | Promise<boolean | void>,
): Promise<void> {
  const file = await Deno.open(path, { read: true });
  const decoder = new TextDecoder("utf-8", { fatal: true });
  const buffer = new Uint8Array(READ_BYTES);
  // One read holds thousands of lines, each checked in turn: without a turn of the event loop
  // the host's lease timer starved (a 30 000-entry parent chain held a server ~0.5 s).
  const yielder = new Yielder();
  let partial = "";
  try {
    // Bounded by the file's size: each turn reads at least one byte or ends.
    for (;;) {
      const n = await file.read(buffer);
      const text = partial +
        (n === null ? decoder.decode() : decoder.decode(buffer.subarray(0, n), { stream: true }));
      const lines = text.split("\n");
      partial = n === null ? "" : lines.pop()!;
      if (partial.length > MANIFEST_LINE_CHARS_MAX) {
        throw new RangeError(`${path}: a line longer than ${MANIFEST_LINE_CHARS_MAX} characters`);
      }
      for (const line of lines) {
        if (n === null && line === "") continue;
        if ((await onLine(line)) === false) return;
        await yielder.maybe();
      }
      if (n === null) return;
    }
  } finally {
    file.close();
  }
}

/** What a streamed read hands over, in order. */
export interface ManifestHandlers {
  /**
   * The head, before the entries (in the line layout its channel counters, which the file
   * keeps on its last line, are zero here; the returned head has them).
   */
  head?(head: ManifestHead): void | Promise<void>;
  /** Each entry in path order, and its line as written (for the line layout). */
  entry?(entry: ManifestEntry, line: string | undefined): void | Promise<void>;
  /**
   * Each entry's JSON text (with `trusted`, neither parsed nor checked: for a manifest checked
   * moments before under the same lock, as a parent is sent right after it was chosen).
   */
  entryLine?(line: string): void | Promise<void>;
  /**
   * Many entries' JSON texts at once, joined by newlines (with `trusted` only, in place of
   * `entryLine`: the file is read in blocks of whole lines, never a line at a time).
   */
  entryBlock?(lines: string): void | Promise<void>;
  /** Each deleted path. */
  deleted?(path: string): void | Promise<void>;
}

/** How a manifest file was read. */
export interface StreamedManifest {
  readonly head: ManifestHead;
  /** Entries read. */
  readonly entries: number;
  /** Whether the file has the line layout (else it was read whole). */
  readonly lineLayout: boolean;
}

function corrupt(path: string, message: string): RepositoryError {
  return new RepositoryError("corrupt", `manifest ${path} is invalid: ${message}`);
}

function readFailure(source: ManifestFile, error: unknown): RepositoryError {
  if (error instanceof Deno.errors.NotFound) {
    return new RepositoryError(
      "unknown-snapshot",
      `repository ${source.repoPath} has no snapshot ${source.id}`,
    );
  }
  return corrupt(source.path, String(error));
}

/** A manifest file: its path, its snapshot id, and how to read it whole (older layouts). */
export interface ManifestFile {
  readonly path: string;
  readonly id: string;
  /** The repository's directory, for messages. */
  readonly repoPath: string;
  /** Reads and checks the whole manifest (`readManifest`). */
  readWhole(): Promise<Manifest>;
}

/**
 * Reads a manifest one entry at a time, checking everything as it goes (the tree rule
 * included); a manifest not in the line layout, or not in path order, is read whole and its
 * entries handed over in path order.
 *
 * @param source the manifest file
 * @param handlers what to do with the head, each entry and each deleted path
 * @returns the head, the entry count and how it was read
 * @throws {RepositoryError} `unknown-snapshot` or `corrupt` (naming the file and the problem)
 */
export async function streamManifestFile(
  source: ManifestFile,
  handlers: ManifestHandlers,
  trusted = false,
): Promise<StreamedManifest> {
  const { entryBlock } = handlers;
  if (trusted && entryBlock !== undefined) return await streamTrusted(source, handlers);
  // Read a line at a time (checked, or an older layout): a block of one line each.
  if (entryBlock !== undefined && handlers.entryLine === undefined) {
    handlers = { ...handlers, entryLine: (line) => entryBlock(line) };
  }
  const streamed = await streamLineLayout(source, handlers, trusted);
  if (streamed !== undefined) return streamed;
  const manifest = await source.readWhole();
  const { entries, deleted, ...head } = manifest;
  await handlers.head?.(head);
  const ordered = [...entries].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  for (const entry of ordered) {
    await handlers.entry?.(entry, undefined);
    await handlers.entryLine?.(JSON.stringify(entry));
  }
  for (const path of deleted) await handlers.deleted?.(path);
  return { head, entries: entries.length, lineLayout: false };
}

/** Calls to a reader's handlers: a handler's own failure passes through as it is. */
class HandlerCalls {
  #failure: { error: unknown } | undefined;

  /** Runs one handler call, noting its failure. */
  async call(call: () => void | Promise<void>): Promise<void> {
    try {
      await call();
    } catch (error) {
      this.#failure = { error };
      throw error;
    }
  }

  /** Whether `error` is a handler's own (never to be reported as a corrupt manifest). */
  failed(error: unknown): boolean {
    return this.#failure !== undefined && this.#failure.error === error;
  }
}

/** The streamed read of a line-layout file, or undefined when it must be read whole. */
async function streamLineLayout(
  source: ManifestFile,
  handlers: ManifestHandlers,
  trusted: boolean,
): Promise<StreamedManifest | undefined> {
  const { path } = source;
  const reader = new ManifestLineReader();
  const checker = new ManifestChecker();
  let head: Omit<ManifestHead, "channelBytes"> | undefined;
  let fallback = false;
  const end = { channelBytes: undefined as unknown };
  const calls = new HandlerCalls();
  const handle = (call: () => void | Promise<void>) => calls.call(call);
  await readLines(path, async (line) => {
    const item = reader.next(line);
    if (item === undefined) {
      if (head !== undefined) throw corrupt(path, "a line breaks the line layout");
      fallback = true;
      return false;
    }
    if (item.kind === "head") {
      const checked = { value: checkedHeadLine(source, item) };
      head = checked.value;
      await handle(() => handlers.head?.(checked.value));
    } else if (item.kind === "entry") {
      if (trusted) {
        await handle(() => handlers.entryLine?.(item.line));
        return undefined;
      }
      const checked = checker.entry(JSON.parse(item.line));
      if (!checked.ok) {
        if (!/out of path order/.test(checked.message)) throw corrupt(path, checked.message);
        fallback = true; // written by another tool in another order: read it whole
        return false;
      }
      await handle(async () => {
        await handlers.entry?.(checked.value, item.line);
        await handlers.entryLine?.(item.line);
      });
    } else if (item.kind === "deleted") {
      if (typeof item.value !== "string" || !checkEntryPath(item.value).ok) {
        throw corrupt(path, `deleted path ${JSON.stringify(item.value)} is not a valid path`);
      }
      await handle(() => handlers.deleted?.(item.value as string));
    } else if (item.kind === "end") end.channelBytes = item.channelBytes;
    return undefined;
  }).catch((error) => {
    throw calls.failed(error) || error instanceof RepositoryError
      ? error
      : readFailure(source, error);
  });
  if (fallback) return undefined;
  if (head === undefined || !reader.done) throw corrupt(path, "it is cut off");
  const full = checkHead({ ...head, channelBytes: end.channelBytes });
  if (!full.ok) throw corrupt(path, full.message);
  if (!trusted) await checkLinks(path, checker);
  return { head: full.value, entries: checker.count, lineLayout: true };
}

/**
 * Calls `onBlock` with the file's text in blocks of whole lines (each without its last
 * newline), in order: the file is read 256 KiB at a time and each read is cut after its last
 * newline (always a character boundary in UTF-8), so no line is split or decoded twice.
 *
 * @param path the file
 * @param onBlock receives each block
 * @throws {RangeError} for a line longer than {@link MANIFEST_LINE_CHARS_MAX} bytes
 */
export async function readLineBlocks(
  path: string,
  onBlock: (text: string) => void | Promise<void>,
): Promise<void> {
  const file = await Deno.open(path, { read: true });
  const decoder = new TextDecoder("utf-8", { fatal: true });
  const buffer = new Uint8Array(BLOCK_BYTES);
  // Each block is a slice of work for the caller: timers run between them.
  const yielder = new Yielder();
  let carry = new Uint8Array(0);
  try {
    // Bounded by the file's size: each turn reads at least one byte or ends.
    for (let n = await file.read(buffer); n !== null; n = await file.read(buffer)) {
      const bytes = new Uint8Array(carry.length + n);
      bytes.set(carry);
      bytes.set(buffer.subarray(0, n), carry.length);
      const end = bytes.lastIndexOf(0x0a);
      if (end < 0) {
        if (bytes.length > MANIFEST_LINE_CHARS_MAX) {
          throw new RangeError(`${path}: a line longer than ${MANIFEST_LINE_CHARS_MAX} bytes`);
        }
        carry = bytes;
        continue;
      }
      carry = bytes.slice(end + 1);
      await onBlock(decoder.decode(bytes.subarray(0, end)));
      await yielder.maybe();
    }
    if (carry.length > 0) await onBlock(decoder.decode(carry));
  } finally {
    file.close();
  }
}

/** Where the separator line starts in `text` (lines joined by newlines), or -1. */
function separatorAt(text: string): number {
  // Entry lines start with `{`: a line starting with `]` can only be the separator.
  if (text.startsWith("]")) return 0;
  const newline = text.indexOf("\n]");
  return newline < 0 ? -1 : newline + 1;
}

/** The head line of `source`, checked (its counters zero until the end line). */
function checkedHeadLine(source: ManifestFile, item: ManifestItem | undefined): ManifestHead {
  if (item?.kind !== "head") throw corrupt(source.path, "its first line is not a head");
  const checked = checkHead({
    ...(item.value as object),
    channelBytes: { storage: 0, network: 0 },
  });
  if (!checked.ok) throw corrupt(source.path, checked.message);
  if (checked.value.id !== source.id) {
    throw corrupt(source.path, `it names snapshot ${checked.value.id}`);
  }
  return checked.value;
}

/** Entry lines (each maybe ending with the layout's comma) as their JSON texts and a count. */
function entryTexts(lines: string): { text: string; count: number } {
  const text = lines.replaceAll(",\n", "\n");
  let count = 1;
  for (let i = text.indexOf("\n"); i >= 0; i = text.indexOf("\n", i + 1)) count++;
  return { text: text.endsWith(",") ? text.slice(0, -1) : text, count };
}

/**
 * A trusted read in blocks (a manifest checked moments before under the same lock): the head
 * checked, the entries handed over as blocks of their lines unparsed, the deleted paths and
 * the counters read as in the line layout.
 */
async function streamTrusted(
  source: ManifestFile,
  handlers: ManifestHandlers,
): Promise<StreamedManifest> {
  const reader = new ManifestLineReader();
  let head: ManifestHead | undefined;
  let inEntries = true;
  let entries = 0;
  let channelBytes: unknown;
  const calls = new HandlerCalls();
  const handle = (call: () => void | Promise<void>) => calls.call(call);
  await readLineBlocks(source.path, async (block) => {
    let rest = block;
    if (head === undefined) {
      const cut = rest.indexOf("\n");
      const checked = checkedHeadLine(source, reader.next(cut < 0 ? rest : rest.slice(0, cut)));
      head = checked;
      await handle(() => handlers.head?.(checked));
      rest = cut < 0 ? "" : rest.slice(cut + 1);
    }
    if (inEntries) {
      const at = separatorAt(rest);
      const lines = at < 0 ? rest : rest.slice(0, Math.max(0, at - 1));
      if (lines !== "") {
        const { text, count } = entryTexts(lines);
        entries += count;
        await handle(() => handlers.entryBlock!(text));
      }
      if (at < 0) return;
      inEntries = false;
      rest = rest.slice(at);
    }
    // Bounded by the block: the separator, the deleted paths and the end line.
    for (const line of rest.split("\n")) {
      const item = reader.next(line);
      if (item === undefined) throw corrupt(source.path, "a line breaks the line layout");
      if (item.kind === "deleted") await handle(() => handlers.deleted?.(item.value as string));
      if (item.kind === "end") channelBytes = item.channelBytes;
    }
  }).catch((error) => {
    throw calls.failed(error) || error instanceof RepositoryError
      ? error
      : readFailure(source, error);
  });
  if (head === undefined || !reader.done) throw corrupt(source.path, "it is cut off");
  const full = checkHead({ ...head, channelBytes });
  if (!full.ok) throw corrupt(source.path, full.message);
  return { head: full.value, entries, lineLayout: true };
}

/**
 * The second pass for hard links whose target came first: each target must be a file.
 *
 * @param path a complete manifest file in the line layout
 * @param checker the checker that went through its entries
 * @throws {RepositoryError} `corrupt` naming a target that is no file
 */
export async function checkLinks(path: string, checker: ManifestChecker): Promise<void> {
  const targets = new Set(checker.unresolvedLinks());
  if (targets.size === 0) return;
  const reader = new ManifestLineReader();
  await readLines(path, (line) => {
    const item = reader.next(line);
    if (item?.kind === "entry") resolveLink(targets, JSON.parse(item.line) as ManifestEntry);
    return targets.size > 0;
  });
  const problem = unresolvedLinkProblem(targets);
  if (problem !== undefined) throw corrupt(path, problem);
}

/**
 * The head of a manifest: its first line when it has the line layout, else the whole
 * manifest is read. The channel counters (on the last line) are left at zero: choosing a
 * snapshot needs none of them.
 *
 * @param source the manifest file
 * @returns the head
 * @throws {RepositoryError} `unknown-snapshot` or `corrupt`
 */
export async function readManifestHeadFile(source: ManifestFile): Promise<ManifestHead> {
  let first: ReturnType<ManifestLineReader["next"]>;
  await readLines(source.path, (line) => {
    first = new ManifestLineReader().next(line);
    return false;
  }).catch((error) => {
    throw readFailure(source, error);
  });
  if (first?.kind !== "head") {
    const { entries: _entries, deleted: _deleted, ...head } = await source.readWhole();
    return head;
  }
  return checkedHeadLine(source, first);
}

/** Writes a manifest in the line layout, entry by entry, into a new file. */
export class ManifestFileWriter {
  readonly #file: Deno.FsFile;
  readonly #encoder = new TextEncoder();
  #pending: string[] = [];
  #pendingChars = 0;
  /** The last line, held back until the next one says whether it needs a comma. */
  #held: string | undefined;
  #entries = 0;
  #section: "entries" | "deleted" = "entries";
  /** Entries were copied as bytes ({@link copyEntryBytes}): no line may follow them. */
  #sectionCopied = false;
  /** The SHA-256 of the bytes written so far (the checked record names the whole file's). */
  readonly #hash: Hash = createHash("sha256");
  #bytesWritten = 0;
  #sha256: string | undefined;

  private constructor(readonly path: string, file: Deno.FsFile) {
    this.#file = file;
  }

  /**
   * Creates the file (it must not exist) and writes the head line.
   *
   * @param path the temporary manifest
   * @param head the head (the counters are written last)
   * @returns the writer
   */
  static async create(
    path: string,
    head: Omit<ManifestHead, "channelBytes">,
  ): Promise<ManifestFileWriter> {
    const file = await Deno.open(path, { write: true, createNew: true });
    const writer = new ManifestFileWriter(path, file);
    await writer.#line(headLine(head), false);
    return writer;
  }

  /** Queues `text` as the next line; `comma` ends the held-back line with a comma first. */
  async #line(text: string, comma: boolean): Promise<void> {
    if (this.#held !== undefined) {
      const line = comma ? `${this.#held},` : this.#held;
      this.#pending.push(line);
      this.#pendingChars += line.length + 1;
    }
    this.#held = text;
    if (this.#pendingChars >= WRITE_BYTES) await this.#flush();
  }

  async #flush(): Promise<void> {
    if (this.#pending.length === 0) return;
    const bytes = this.#encoder.encode(this.#pending.join("\n") + "\n");
    this.#pending = [];
    this.#pendingChars = 0;
    await this.#write(bytes);
  }

  async #write(bytes: Uint8Array): Promise<void> {
    this.#hash.update(bytes);
    this.#bytesWritten += bytes.length;
    for (let at = 0; at < bytes.length;) at += await this.#file.write(bytes.subarray(at));
  }

  /** Appends one entry (its JSON text, already checked). */
  async entry(line: string): Promise<void> {
    if (this.#sectionCopied) throw new Error(`manifest ${this.path}: an entry after a copy`);
    await this.#line(line, this.#entries > 0);
    this.#entries++;
  }

  /**
   * Appends entry lines as bytes in this layout (each with its newline, every one but the last
   * ending with a comma): a vouched parent's entry section copied whole, a piece at a time.
   * Only into a manifest with no entry yet; no entry may follow, and {@link endCopy} counts them.
   *
   * @param bytes the next piece of the section
   */
  async copyEntryBytes(bytes: Uint8Array): Promise<void> {
    if (this.#entries > 0) throw new Error(`manifest ${this.path}: a copy after entries`);
    this.#sectionCopied = true;
    if (this.#held !== undefined) this.#pending.push(this.#held); // the head: no comma
    this.#held = undefined;
    await this.#flush();
    await this.#write(bytes);
  }

  /**
   * Ends a copy of entry bytes.
   *
   * @param count the entries the copied bytes hold
   */
  endCopy(count: number): void {
    this.#entries = count;
  }

  /** Appends one deleted path (after the entries). */
  async deleted(path: string): Promise<void> {
    const first = this.#section === "entries";
    if (first) {
      this.#section = "deleted";
      await this.#line(DELETED_SEPARATOR_LINE, false);
    }
    await this.#line(JSON.stringify(path), !first);
  }

  /**
   * Writes the channel counters, syncs and closes the file.
   *
   * @param channelBytes the counters
   */
  async finish(channelBytes: ChannelBytes): Promise<void> {
    if (this.#section === "entries") await this.#line(DELETED_SEPARATOR_LINE, false);
    this.#section = "deleted";
    await this.#line(endLine(channelBytes), false);
    this.#pending.push(this.#held!);
    this.#held = undefined;
    await this.#flush();
    this.#sha256 = this.#hash.digest("hex");
    await this.#file.sync();
    this.#file.close();
  }

  /** The whole file's SHA-256 (hex) and size in bytes, once {@link finish} wrote it. */
  get written(): { readonly sha256: string; readonly bytes: number } {
    if (this.#sha256 === undefined) throw new Error(`manifest ${this.path} is not finished`);
    return { sha256: this.#sha256, bytes: this.#bytesWritten };
  }

  /** Closes and removes the file (after a failure). */
  async abort(): Promise<void> {
    try {
      this.#file.close();
    } catch {
      // already closed
    }
    await Deno.remove(this.path).catch(() => {});
  }

  /** Entries written so far. */
  get entries(): number {
    return this.#entries;
  }
}

/**
 * Turns a reader that pushes items (awaiting each push) into an async iterable the consumer
 * pulls from: one item is handed over at a time, so memory stays bounded.
 *
 * @param produce calls `push` for each item, in order
 * @returns the items
 */
export async function* pulled<T>(
  produce: (push: (item: T) => Promise<void>) => Promise<unknown>,
): AsyncGenerator<T> {
  let slot: { item: T } | undefined;
  let taken: () => void = () => {};
  let offered: () => void = () => {};
  let finished = false;
  let failure: unknown;
  let ready = new Promise<void>((resolve) => (offered = resolve));
  const producing = produce(async (item) => {
    slot = { item };
    const wasTaken = new Promise<void>((resolve) => (taken = resolve));
    offered();
    await wasTaken;
  }).then(
    () => void (finished = true),
    (error) => void ((failure = error), (finished = true)),
  ).finally(() => offered());
  // Bounded by the producer: each turn takes one item, and the producer's end stops it.
  for (;;) {
    await ready;
    ready = new Promise<void>((resolve) => (offered = resolve));
    if (slot !== undefined) {
      const { item } = slot;
      slot = undefined;
      taken();
      yield item;
      continue;
    }
    if (finished) break;
  }
  await producing;
  if (failure !== undefined) throw failure;
}
