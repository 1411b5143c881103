/**
 * The backup session protocol: the messages client and server exchange on the control and error
 * channels once a handshake has set them up. File data is not here: it travels as data frames
 * on the data channel (storage, or the network on fallback).
 *
 * Order (control channel unless said otherwise):
 * 1. client → server `hello` (what it backs up and how);
 * 2. server → client `begin` (the snapshot id and the parent manifest, in `part` messages);
 * 3. client → server: data frames, then end of data; `progress` now and then; `skipped` on the
 *    error channel for each entry it could not read;
 * 4. client → server: the manifest, in `part` messages;
 * 5. server → client `committed`;
 *
 * Either side may send `failed` on the error channel at any point; the other side then stops
 * and the server aborts the snapshot (the repository stays as it was).
 *
 * Large JSON values (manifests) are split into `part` messages of at most
 * {@link PART_CHARS_MAX} characters, numbered, with the total count on the last.
 *
 * @module
 */

import { z } from "zod";

/** Largest text in one `part` message. */
export const PART_CHARS_MAX = 16 * 1024;
/** Largest number of parts of one value (16 GiB of JSON text). */
export const PARTS_MAX = 1_000_000;

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
