/**
 * Handshake configuration: the seeds' "configuration file", validated with zod.
 *
 * Ports on one machine: both sides cannot bind the well-known port on the same address. The
 * seeds bind the WKP on the connecting side too (steps 84, 96, 134, 192); lanfree binds the
 * connecting side to `connectorBindPort`, 0 (a dynamic port) by default, so a client and a
 * server run side by side on 127.0.0.1. Set it to a fixed port only when the two sides are on
 * different hosts, and then only for a flow that opens one connection from that side.
 *
 * @module
 */

import { z } from "zod";
import { fail, ok, type Result } from "../dispatch/errors.ts";
import type { SameType } from "../assert.ts";
import { RegionIdTextSchema } from "../wire/messages.ts";

/** Longest handshake deadline accepted, in ms (ten minutes). */
export const HANDSHAKE_TIMEOUT_MS_MAX = 600_000;
/**
 * Handshake deadline used when none is given, in ms: the one default of the schema, the backup
 * and agent jobs and the agent host.
 */
export const HANDSHAKE_TIMEOUT_MS_DEFAULT = 5_000;
/** Largest listen backlog accepted. */
export const HANDSHAKE_BACKLOG_MAX = 128;
/** Number of network connections the file-system flow opens (control and error). */
export const FS_NETWORK_CONNECTIONS = 2;

const port = (what: string) =>
  z.int({ error: `${what} must be an integer port` }).min(1, {
    error: `${what} must be at least 1`,
  }).max(65535, { error: `${what} must be at most 65535` });

const stgFields = {
  id: z.int({ error: "stg.id must be an integer" }).min(0, { error: "stg.id must be >= 0" })
    .max(65535, { error: "stg.id must be <= 65535" }),
  lengthBytes: z.int({ error: "stg.lengthBytes must be an integer" }).min(1, {
    error: "stg.lengthBytes must be at least 1 byte",
  }).max(Number.MAX_SAFE_INTEGER, { error: "stg.lengthBytes is too large" }),
};

/**
 * Schema of the STG the server offers (steps 138 / 236): its id, that STG's own length, and the
 * id of the region it lies in.
 */
export const StgInfoSchema = z.object({
  ...stgFields,
  regionId: RegionIdTextSchema,
});

/** The STG a server offers: its id, that STG's own length, the id of its region. */
export interface StgInfo {
  /** The STG id. */
  readonly id: number;
  /** That STG's own length in bytes (its extents), not the region's. */
  readonly lengthBytes: number;
  /** The id of the region the STG lies in. */
  readonly regionId: string;
}

/**
 * Schema of the region a side attached, as the side that receives the STG info checks it
 * (steps 160-162 / 200-202): the region's id and each STG's id and length.
 */
export const AttachedRegionSchema = z.object({
  regionId: RegionIdTextSchema,
  stgs: z.array(z.object(stgFields)).min(1).max(16),
});

/** The region a side attached: its id and each STG's id and length. */
export interface AttachedRegion {
  /** The region's id. */
  readonly regionId: string;
  /** Each STG's id and length. */
  readonly stgs: { readonly id: number; readonly lengthBytes: number }[];
}

/** Schema of a handshake configuration, with defaults. */
export const HandshakeConfigSchema = z.object({
  /** The well-known port; the file-system flow also uses WKP+1, so at most 65534. */
  wellKnownPort: port("wellKnownPort").max(65534, {
    error: "wellKnownPort must be at most 65534 (the file-system flow also uses WKP+1)",
  }),
  /** The address this side binds its sockets to. */
  localHost: z.string().min(1, { error: "localHost must not be empty" }).default("127.0.0.1"),
  /** The address of the peer this side connects to. */
  peerHost: z.string().min(1, { error: "peerHost must not be empty" }).default("127.0.0.1"),
  /** The port the connecting side binds before each connect; 0 asks for a dynamic port. */
  connectorBindPort: z.int().min(0, { error: "connectorBindPort must be >= 0" }).max(65535, {
    error: "connectorBindPort must be <= 65535",
  }).default(0),
  /** The STG the server offers; required for the server roles, unused by the clients. */
  stg: StgInfoSchema.optional(),
  /**
   * The region this side attached; the client roles check the STG info they receive against
   * it (without it they fail at steps 160 / 200: no region attached).
   */
  region: AttachedRegionSchema.optional(),
  /** How many network connections the file-system client expects (the seeds say two). */
  expectedConnections: z.literal(FS_NETWORK_CONNECTIONS, {
    error: "expectedConnections must be 2: the file-system flow opens control and error",
  }).default(FS_NETWORK_CONNECTIONS),
  /** The whole handshake must finish within this long after `start`, in ms. */
  handshakeTimeoutMs: z.int({ error: "handshakeTimeoutMs must be an integer" }).min(1, {
    error: "handshakeTimeoutMs must be at least 1 ms",
  }).max(HANDSHAKE_TIMEOUT_MS_MAX, {
    error: `handshakeTimeoutMs must be at most ${HANDSHAKE_TIMEOUT_MS_MAX} ms`,
  }).default(HANDSHAKE_TIMEOUT_MS_DEFAULT),
  /** The listen backlog of every listening socket. */
  backlog: z.int({ error: "backlog must be an integer" }).min(1, {
    error: "backlog must be at least 1",
  }).max(HANDSHAKE_BACKLOG_MAX, { error: `backlog must be at most ${HANDSHAKE_BACKLOG_MAX}` })
    .default(4),
});

/** A validated handshake configuration, defaults filled in (see {@link HandshakeConfigInput}). */
export interface HandshakeConfig {
  /** The well-known port; the file-system flow also uses WKP+1, so at most 65534. */
  readonly wellKnownPort: number;
  /** The address this side binds its sockets to. */
  readonly localHost: string;
  /** The address of the peer this side connects to. */
  readonly peerHost: string;
  /** The port the connecting side binds before each connect; 0 asks for a dynamic port. */
  readonly connectorBindPort: number;
  /** The STG the server offers; required for the server roles, unused by the clients. */
  readonly stg?: StgInfo | undefined;
  /**
   * The region this side attached; the client roles check the STG info they receive against
   * it (without it they fail at steps 160 / 200: no region attached).
   */
  readonly region?: AttachedRegion | undefined;
  /** How many network connections the file-system client expects (the seeds say two). */
  readonly expectedConnections: 2;
  /** The whole handshake must finish within this long after `start`, in ms. */
  readonly handshakeTimeoutMs: number;
  /** The listen backlog of every listening socket. */
  readonly backlog: number;
}

/** What a caller writes: the fields with defaults may be left out. */
export interface HandshakeConfigInput {
  /** The well-known port (1..65534). */
  readonly wellKnownPort: number;
  /** Default `"127.0.0.1"`. */
  readonly localHost?: string | undefined;
  /** Default `"127.0.0.1"`. */
  readonly peerHost?: string | undefined;
  /** Default 0 (a dynamic port). */
  readonly connectorBindPort?: number | undefined;
  /** The STG the server offers; required for the server roles. */
  readonly stg?: StgInfo | undefined;
  /** The region this side attached (the client roles check the STG info against it). */
  readonly region?: AttachedRegion | undefined;
  /** Must be 2 when given. */
  readonly expectedConnections?: 2 | undefined;
  /** Default {@link HANDSHAKE_TIMEOUT_MS_DEFAULT}, at most {@link HANDSHAKE_TIMEOUT_MS_MAX}. */
  readonly handshakeTimeoutMs?: number | undefined;
  /** Default 4, at most {@link HANDSHAKE_BACKLOG_MAX}. */
  readonly backlog?: number | undefined;
}

// `deno check` fails here when the types above and the schema stop describing the same values.
const _configMatchesSchema: SameType<HandshakeConfig, z.output<typeof HandshakeConfigSchema>> =
  true;
const _inputMatchesSchema: SameType<HandshakeConfigInput, z.input<typeof HandshakeConfigSchema>> =
  true;

/**
 * Validates a handshake configuration.
 *
 * @param input the raw configuration (for example parsed JSON)
 * @returns the configuration with defaults filled in, or EINVAL with one line per bad field
 *
 * @example A bad port is named in the message
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseHandshakeConfig } from "./config.ts";
 * const good = parseHandshakeConfig({ wellKnownPort: 7000 });
 * assert.ok(good.ok && good.value.handshakeTimeoutMs === 5000);
 * const bad = parseHandshakeConfig({ wellKnownPort: 70000 });
 * assert.ok(!bad.ok && bad.message.includes("wellKnownPort"));
 * ```
 */
export function parseHandshakeConfig(input: unknown): Result<HandshakeConfig> {
  const parsed = HandshakeConfigSchema.safeParse(input);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((issue) => {
      const at = issue.path.length === 0 ? "config" : issue.path.join(".");
      return `${at}: ${issue.message}`;
    });
    return fail("EINVAL", `bad handshake configuration: ${lines.join("; ")}`);
  }
  return ok(parsed.data);
}

/**
 * Validates a configuration for a server role, which must name the STG it offers.
 *
 * @param input the raw configuration
 * @returns the configuration, or EINVAL when it is invalid or has no `stg`
 *
 * @example The server needs an STG
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseServerConfig } from "./config.ts";
 * const bad = parseServerConfig({ wellKnownPort: 7000 });
 * assert.ok(!bad.ok && bad.message.includes("stg"));
 * ```
 */
export function parseServerConfig(
  input: unknown,
): Result<HandshakeConfig & { readonly stg: StgInfo }> {
  const parsed = parseHandshakeConfig(input);
  if (!parsed.ok) return parsed;
  const { stg } = parsed.value;
  if (stg === undefined) {
    return fail("EINVAL", "bad handshake configuration: stg: a server must name the STG it offers");
  }
  return ok({ ...parsed.value, stg });
}
