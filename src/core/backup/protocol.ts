/**
 * The backup session protocol: the messages client and server exchange on the control and error
 * channels once a handshake has set them up. File data is not here: it travels as data frames
 * on the data channel (storage, or the network on fallback).
 *
 * Order (control channel unless said otherwise):
 * 1. client → server `hello` (what it backs up and how);
 * 2. server → client `begin` (the snapshot id), then for an incremental backup the parent
 *    manifest as a stream of lines in `part` messages: its head, then its entries in path order;
 * 3. client → server: data frames, then end of data; `progress` now and then; `skipped` on the
 *    error channel for each entry it could not read;
 * 4. client → server: the new manifest as a stream of lines in `part` messages: its head, its
 *    entries in path order, its deleted paths (JSON strings);
 * 5. server → client `committed`;
 *
 * Either side may send `failed` on the error channel at any point; the other side then stops
 * and the server aborts the snapshot (the repository stays as it was).
 *
 * Line streams (manifests, a line per entry, see `manifest_stream.ts`) are cut into `part`
 * messages of at most {@link PART_CHARS_MAX} characters, numbered, the last one marked; a line
 * may span parts. The receiver grants credit with `more` (it may be sent parts up to `upTo`),
 * so neither side ever holds more than {@link STREAM_WINDOW_PARTS} parts of a stream it has not
 * consumed: a million-entry manifest crosses in bounded memory, at the consumer's pace.
 *
 * @module
 */

import { z } from "zod";

/** Largest text in one `part` message. */
export const PART_CHARS_MAX = 16 * 1024;
/** Largest number of parts of one value (16 GiB of JSON text). */
export const PARTS_MAX = 1_000_000;
/** Parts a sender may send beyond what the receiver consumed (1 MiB of text). */
export const STREAM_WINDOW_PARTS = 64;

const text = z.string().max(4096);

/** client → server: what is being backed up. */
export const HelloSchema = z.strictObject({
  type: z.literal("hello"),
  mode: z.enum(["fs", "db"]),
  source: text,
  sourceId: text,
  incremental: z.boolean(),
});

/** server → client: the snapshot is open; the parent manifest follows in parts (`null` if none). */
export const BeginSchema = z.strictObject({
  type: z.literal("begin"),
  snapshotId: text,
  hasParent: z.boolean(),
});

/** Either way: one piece of a large JSON value. */
export const PartSchema = z.strictObject({
  type: z.literal("part"),
  of: z.enum(["parent", "manifest"]),
  index: z.int().min(0).max(PARTS_MAX - 1),
  last: z.boolean(),
  text: z.string().max(PART_CHARS_MAX),
});

/** Either way: the receiver of a line stream may now be sent parts up to `upTo`. */
export const MoreSchema = z.strictObject({
  type: z.literal("more"),
  of: z.enum(["parent", "manifest"]),
  upTo: z.int().min(0).max(PARTS_MAX + STREAM_WINDOW_PARTS),
});

/** client → server: how far packing got. */
export const ProgressSchema = z.strictObject({
  type: z.literal("progress"),
  files: z.int().min(0),
  bytes: z.number().min(0),
  totalBytes: z.number().min(0),
});

/** client → server (error channel): an entry that could not be read and was left out. */
export const SkippedSchema = z.strictObject({
  type: z.literal("skipped"),
  path: text,
  reason: text,
});

/** server → client: the snapshot is visible. */
export const CommittedSchema = z.strictObject({
  type: z.literal("committed"),
  snapshotId: text,
});

/** Either way (error channel): the job failed; the sender has stopped. */
export const FailedSchema = z.strictObject({
  type: z.literal("failed"),
  message: text,
});

/** Any session message. */
export const SessionMessageSchema = z.discriminatedUnion("type", [
  HelloSchema,
  BeginSchema,
  PartSchema,
  MoreSchema,
  ProgressSchema,
  SkippedSchema,
  CommittedSchema,
  FailedSchema,
]);

/** A validated session message. */
export type SessionMessage = z.infer<typeof SessionMessageSchema>;

/** Raised when the peer sent something that breaks the protocol. */
export class SessionProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SessionProtocolError";
  }
}

/**
 * Validates a received message, optionally of an expected type.
 *
 * @param value the decoded JSON body
 * @param expected the type required at this point, if any
 * @returns the message
 * @throws SessionProtocolError for anything malformed or out of order
 *
 * @example
 * ```ts
 * import { parseSessionMessage } from "./protocol.ts";
 * const begin = parseSessionMessage({ type: "begin", snapshotId: "x", hasParent: false }, "begin");
 * console.assert(begin.type === "begin");
 * ```
 */
export function parseSessionMessage<T extends SessionMessage["type"]>(
  value: unknown,
  expected?: T,
): Extract<SessionMessage, { type: T }> {
  const parsed = SessionMessageSchema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new SessionProtocolError(
      `malformed session message: ${issue?.path.join(".") || "(message)"}: ${issue?.message}`,
    );
  }
  if (expected !== undefined && parsed.data.type !== expected) {
    if (parsed.data.type === "failed") {
      throw new SessionProtocolError(`peer failed: ${parsed.data.message}`);
    }
    throw new SessionProtocolError(`expected a ${expected} message, got ${parsed.data.type}`);
  }
  return parsed.data as Extract<SessionMessage, { type: T }>;
}

/**
 * Splits a JSON value into `part` messages.
 *
 * @param of what the value is
 * @param value any JSON value
 * @returns the parts, in order
 */
export function splitIntoParts(
  of: "parent" | "manifest",
  value: unknown,
): z.infer<typeof PartSchema>[] {
  const json = JSON.stringify(value);
  const count = Math.max(1, Math.ceil(json.length / PART_CHARS_MAX));
  if (count > PARTS_MAX) throw new RangeError(`value needs ${count} parts; at most ${PARTS_MAX}`);
  return Array.from({ length: count }, (_, index) => ({
    type: "part" as const,
    of,
    index,
    last: index === count - 1,
    text: json.slice(index * PART_CHARS_MAX, (index + 1) * PART_CHARS_MAX),
  }));
}

/** Reassembles parts as they arrive; `done` once the last part came. */
export class PartJoiner {
  readonly #of: "parent" | "manifest";
  readonly #texts: string[] = [];
  #done = false;

  /** @param of what the value is */
  constructor(of: "parent" | "manifest") {
    this.#of = of;
  }

  /** True once the last part was added. */
  get done(): boolean {
    return this.#done;
  }

  /** Adds the next part; throws SessionProtocolError when it is not the expected one. */
  add(part: z.infer<typeof PartSchema>): void {
    if (this.#done) throw new SessionProtocolError(`a ${this.#of} part after the last one`);
    if (part.of !== this.#of || part.index !== this.#texts.length) {
      throw new SessionProtocolError(
        `expected ${this.#of} part ${this.#texts.length}, got ${part.of} part ${part.index}`,
      );
    }
    this.#texts.push(part.text);
    this.#done = part.last;
  }

  /** The value, once done. */
  value(): unknown {
    if (!this.#done) throw new SessionProtocolError(`${this.#of} is incomplete`);
    try {
      return JSON.parse(this.#texts.join(""));
    } catch {
      throw new SessionProtocolError(`${this.#of} parts do not form JSON`);
    }
  }
}

/** A `part` message. */
export type PartMessage = z.infer<typeof PartSchema>;

/**
 * Cuts a stream of lines into `part` messages of at most {@link PART_CHARS_MAX} characters
 * (a long line spans parts); the receiver's {@link LineSplitter} puts the lines back together.
 */
export class PartCutter {
  #text = "";
  #index = 0;

  /** @param of which stream */
  constructor(readonly of: "parent" | "manifest") {}

  /**
   * Adds one line (without a newline).
   *
   * @param line the line
   * @returns the parts now full, in order
   */
  add(line: string): PartMessage[] {
    this.#text += `${line}\n`;
    const parts: PartMessage[] = [];
    // Bounded by the text: each turn takes PART_CHARS_MAX characters off.
    while (this.#text.length > PART_CHARS_MAX) {
      parts.push(this.#part(this.#text.slice(0, PART_CHARS_MAX), false));
      this.#text = this.#text.slice(PART_CHARS_MAX);
    }
    return parts;
  }

  /** The last part (what is left, maybe nothing). */
  end(): PartMessage {
    const part = this.#part(this.#text, true);
    this.#text = "";
    return part;
  }

  #part(text: string, last: boolean): PartMessage {
    if (this.#index >= PARTS_MAX) {
      throw new RangeError(`a ${this.of} stream of over ${PARTS_MAX} parts`);
    }
    return { type: "part", of: this.of, index: this.#index++, last, text };
  }
}

/**
 * Puts a line stream back together from its parts, checking their numbering and that the
 * sender kept to the credit granted (`allowedUpTo`); lines are bounded in length.
 */
export class LineSplitter {
  #next = 0;
  #partial = "";
  #done = false;

  /**
   * @param of which stream
   * @param lineCharsMax the longest line accepted
   */
  constructor(readonly of: "parent" | "manifest", readonly lineCharsMax: number) {}

  /** True once the last part arrived. */
  get done(): boolean {
    return this.#done;
  }

  /** Parts received so far. */
  get received(): number {
    return this.#next;
  }

  /**
   * Adds the next part.
   *
   * @param part the part
   * @param allowedUpTo the highest part index the receiver granted
   * @returns the lines it completes, in order
   * @throws SessionProtocolError for a part out of order, after the last, or beyond the credit
   */
  add(part: PartMessage, allowedUpTo: number): string[] {
    if (this.#done) throw new SessionProtocolError(`a ${this.of} part after the last one`);
    if (part.of !== this.of || part.index !== this.#next) {
      throw new SessionProtocolError(
        `expected ${this.of} part ${this.#next}, got ${part.of} part ${part.index}`,
      );
    }
    if (part.index > allowedUpTo) {
      throw new SessionProtocolError(
        `${this.of} part ${part.index} beyond the credit ${allowedUpTo}`,
      );
    }
    this.#next++;
    this.#done = part.last;
    const lines = (this.#partial + part.text).split("\n");
    this.#partial = lines.pop()!;
    if (this.#partial.length > this.lineCharsMax) {
      throw new SessionProtocolError(
        `a ${this.of} line longer than ${this.lineCharsMax} characters`,
      );
    }
    if (this.#done && this.#partial !== "") {
      throw new SessionProtocolError(`the ${this.of} stream ends inside a line`);
    }
    return lines;
  }
}
