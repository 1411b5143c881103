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
 *    entries in path order, its deleted paths (JSON strings); where the server offered it
 *    ({@link RUN_LINES_OFFER}, sent before the parent's first part), runs of the parent's
 *    unchanged entries may go as run lines (`[from,count]`, `manifest_stream.ts`) instead;
 * 5. server → client `committed`;
 *
 * Either side may send `failed` on the error channel at any point; the other side then stops
 * and the server aborts the snapshot (the repository stays as it was).
 *
 * A job between a server and an agent on another host first sets up the **job channel** (Fig.
 * 4 alone, on the agent's well-known port) and proves the agent key both ways (`auth-*`), then
 * the server sends the `job`; the agent accepts it (`job-accepted`, its paths checked against
 * its roots) or refuses it (`failed`). For the storage path the two set up the data flow of the
 * job's mode (`fs-flow`: the agent listens and says where; `db-flow`: the server listens and
 * says where), report how their side of it ended (`flow-result`), and the server decides
 * (`data-path`: storage, or the network with the reason). The backup or restore then runs over
 * the data session (the storage channels, proven again with the key; or the job channel itself
 * on the network path), and the agent ends with `job-done`.
 *
 * Restore (server → agent): `restore-begin` naming the snapshot, the manifest in parts; for each archive the agent asks for the members it needs (`members` parts) and the
 * server streams them on the data channel as records (`restore_stream.ts`); the agent's end
 * request (`archive: null`) is answered with `restore-done`.
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
import { SOCKET_ERROR_CODES } from "../dispatch/errors.ts";

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
  of: z.enum(["parent", "manifest", "members"]),
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

/**
 * server → client, right after `begin` of an incremental backup whose parent's manifest file
 * has the line layout: "I take run lines" (`manifest_stream.ts`: `[from,count]` names the
 * parent's entries `from` .. `from + count - 1`, which the server copies from the parent's
 * file). It is a `more` of `manifest` granting nothing (a real grant is never below the first
 * window), the one message both older and newer clients accept: an older client takes it as
 * a grant it already had and sends plain lines, and an older server never sends it, so a newer
 * client sends plain lines to it. No field of `hello` or `begin` could carry the offer: both
 * sides refuse unknown fields.
 */
export const RUN_LINES_OFFER = { type: "more", of: "manifest", upTo: 0 } as const;

/**
 * Whether a message is {@link RUN_LINES_OFFER}.
 *
 * @param message a validated message
 * @returns true for the offer
 */
export function isRunLinesOffer(message: SessionMessage): boolean {
  return message.type === "more" && message.of === "manifest" && message.upTo === 0;
}

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

/** Base64 of 32 random bytes: a nonce of the agent-key proof. */
const nonce = z.string().regex(/^[A-Za-z0-9+/]{43}=$/, "must be 32 bytes in base64");
/** Base64 of an HMAC-SHA-256 (32 bytes). */
const mac = z.string().regex(/^[A-Za-z0-9+/]{43}=$/, "must be 32 bytes in base64");

/** server → agent: prove you know the agent key (or: this server has none). */
export const AuthChallengeSchema = z.strictObject({
  type: z.literal("auth-challenge"),
  nonce,
  insecure: z.boolean(),
});

/** agent → server: the proof over the server's nonce and the agent's own, which it sends. */
export const AuthResponseSchema = z.strictObject({
  type: z.literal("auth-response"),
  nonce,
  mac: mac.nullable(),
  insecure: z.boolean(),
});

/** server → agent: the server's proof over the agent's nonce. */
export const AuthProofSchema = z.strictObject({
  type: z.literal("auth-proof"),
  mac: mac.nullable(),
});

/** agent → server: the server's proof holds; the session may carry a job. */
export const AuthOkSchema = z.strictObject({ type: z.literal("auth-ok") });

const port = z.int().min(1).max(65535);
const pathText = z.string().min(1).max(4096).refine((p) => !p.includes("\0"), "contains NUL");
const jobBase = {
  type: z.literal("job"),
  /** The handshake flow of the data path: `fs` (the server initiates) or `db` (the agent). */
  mode: z.enum(["fs", "db"]),
  /** The data path the server tries first. */
  dataPath: z.enum(["storage", "network"]),
};

/** server → agent: back up `source` (a directory, or the database file in db mode). */
export const BackupJobMessageSchema = z.strictObject({
  ...jobBase,
  kind: z.literal("backup"),
  source: pathText,
  incremental: z.boolean(),
});

/** server → agent: restore into `target`. */
export const RestoreJobMessageSchema = z.strictObject({
  ...jobBase,
  kind: z.literal("restore"),
  target: pathText,
  path: pathText.nullable(),
  overwrite: z.boolean(),
  preservePermissions: z.boolean(),
});

/** server → agent: a validation run (test payloads through each channel). */
export const ValidateJobMessageSchema = z.strictObject({
  ...jobBase,
  kind: z.literal("validate"),
});

/** agent → server: the job is accepted; `path` is its source or target, canonical. */
export const JobAcceptedSchema = z.strictObject({
  type: z.literal("job-accepted"),
  path: pathText.nullable(),
});

/** agent → server: my fs client listens on this well-known port (and the next) for the job. */
export const FsFlowSchema = z.strictObject({ type: z.literal("fs-flow"), wellKnownPort: port });

/** server → agent: my db server listens on this host and port for the job. */
export const DbFlowSchema = z.strictObject({
  type: z.literal("db-flow"),
  host: z.string().min(1).max(255),
  wellKnownPort: port,
});

/** How one side's handshake failed: the machine's reason. */
export const FlowFailureSchema = z.strictObject({
  origin: z.enum(["local", "remote"]),
  code: z.enum(SOCKET_ERROR_CODES),
  step: z.string().max(16),
  message: text,
});

/** Either way: how this side's data-flow handshake ended. */
export const FlowResultSchema = z.strictObject({
  type: z.literal("flow-result"),
  established: z.boolean(),
  reason: FlowFailureSchema.nullable(),
});

/** server → agent: where the data goes; on the network, why (null when asked for). */
export const DataPathSchema = z.strictObject({
  type: z.literal("data-path"),
  path: z.enum(["storage", "network"]),
  reason: text.nullable(),
});

/** agent → server: its side of the job is done; what it did. */
export const JobDoneSchema = z.strictObject({
  type: z.literal("job-done"),
  result: z.record(z.string(), z.unknown()),
});

/**
 * server → agent (restore): the snapshot; the manifest follows. The archives the agent may then
 * ask for are those its files' `data` references name (a restore follows them, not the parent
 * chain, which retention may have cut).
 */
export const RestoreBeginSchema = z.strictObject({
  type: z.literal("restore-begin"),
  snapshot: text,
});

/**
 * server → agent (restore): the agent's end request (`archive: null`) arrived and the server is
 * done with the snapshot; the agent is done once it has this.
 */
export const RestoreDoneSchema = z.strictObject({
  type: z.literal("restore-done"),
  snapshot: text,
});

/**
 * agent → server (restore), in `members` parts: the members of one archive the agent needs, by
 * path and offset (null for a version-1 archive, read by name); `archive: null` ends the
 * requests.
 */
export const MembersRequestSchema = z.strictObject({
  archive: text.nullable(),
  members: z.array(z.strictObject({
    path: z.string().min(1).max(4096),
    offset: z.int().min(0).nullable(),
  })).max(10_000_000),
});

/** A validated member request. */
export type MembersRequest = z.infer<typeof MembersRequestSchema>;

/** Either way (validate): a test message on a channel. */
export const ProbeSchema = z.strictObject({
  type: z.literal("probe"),
  channel: z.enum(["control", "error"]),
  text: text,
});

/** agent → server (validate): what arrived: the probes and the data payload's SHA-256. */
export const ProbeResultSchema = z.strictObject({
  type: z.literal("probe-result"),
  control: text.nullable(),
  error: text.nullable(),
  dataBytes: z.int().min(0),
  dataSha256: z.string().regex(/^[0-9a-f]{64}$/),
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
  AuthChallengeSchema,
  AuthResponseSchema,
  AuthProofSchema,
  AuthOkSchema,
  z.discriminatedUnion("kind", [
    BackupJobMessageSchema,
    RestoreJobMessageSchema,
    ValidateJobMessageSchema,
  ]),
  JobAcceptedSchema,
  FsFlowSchema,
  DbFlowSchema,
  FlowResultSchema,
  DataPathSchema,
  JobDoneSchema,
  RestoreBeginSchema,
  RestoreDoneSchema,
  ProbeSchema,
  ProbeResultSchema,
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
  of: PartOf,
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

/** What a sequence of parts carries. */
export type PartOf = z.infer<typeof PartSchema>["of"];

/** Reassembles parts as they arrive; `done` once the last part came. */
export class PartJoiner {
  readonly #of: PartOf;
  readonly #texts: string[] = [];
  #done = false;

  /** @param of what the value is */
  constructor(of: PartOf) {
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
   * Adds one line (without a newline), or several joined by newlines: the wire form is the
   * same either way.
   *
   * @param line the line or lines
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
