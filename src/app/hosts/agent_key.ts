/**
 * Who may talk to an agent: the WKP handshake proves nothing about who connects, so once a
 * session's channels are set up, and before any data moves, server and agent prove to each other
 * that they know the shared agent key. HMAC-SHA-256 challenge and response in both directions:
 *
 * 1. server → agent `auth-challenge` with a fresh 32-byte nonce `Ns`;
 * 2. agent → server `auth-response` with its own fresh nonce `Na` and
 *    `HMAC(key, "lanfree-agent-key-v1|agent|<purpose>|Ns|Na")`;
 * 3. the server checks it (constant-time compare) and answers `auth-proof` with
 *    `HMAC(key, "lanfree-agent-key-v1|server|<purpose>|Na|Ns")`;
 * 4. the agent checks that and answers `auth-ok`.
 *
 * The role label and the order of the nonces keep one side's proof from serving as the
 * other's; fresh nonces on both sides keep an old exchange from being replayed; `purpose` (the
 * job channel, or a data session) keeps a proof for one session from serving another. A side
 * that refuses sends `failed` with the reason in place of its next answer on the control
 * channel (where its peer waits) and on the error channel, and throws {@link AgentKeyError};
 * the peer throws it too, with that reason; both callers close every channel. A side without a key (started with
 * `--insecure-no-key`) says so, and only a peer without a key accepts it.
 *
 * WebCrypto computes the MACs (a key imported once); `crypto.subtle` refuses views of a
 * SharedArrayBuffer, and every input here is a fresh copy.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { timingSafeEqual } from "node:crypto";
import { parseSessionMessage } from "../../core/backup/protocol.ts";
import type { Session } from "./session.ts";

/** Fewest bytes an agent key may have. */
export const AGENT_KEY_BYTES_MIN = 16;
/** Most bytes read from a key file. */
export const AGENT_KEY_BYTES_MAX = 4096;
/** The environment variable both roles read the key from. */
export const AGENT_KEY_ENV = "LANFREE_AGENT_KEY";

/** The proof failed, or the key could not be loaded; the message says which and why. */
export class AgentKeyError extends Error {
  /**
   * Makes the error.
   *
   * @param message what failed, with the facts
   */
  constructor(message: string) {
    super(message);
    this.name = "AgentKeyError";
  }
}

/** A loaded agent key, ready to compute proofs. */
export interface AgentKey {
  /** HMAC-SHA-256 of `text` under the key. */
  mac(text: string): Promise<Uint8Array>;
}

/**
 * Imports key bytes.
 *
 * @param bytes the key (at least {@link AGENT_KEY_BYTES_MIN} bytes)
 * @returns the key
 * @throws {AgentKeyError} for a key too short
 */
export async function importAgentKey(bytes: Uint8Array): Promise<AgentKey> {
  checkKeyLength(bytes);
  const key = await crypto.subtle.importKey(
    "raw",
    bytes.slice(), // a fresh copy: WebCrypto refuses views of a SharedArrayBuffer
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const encoder = new TextEncoder();
  return {
    mac: async (text) =>
      new Uint8Array(await crypto.subtle.sign("HMAC", key, encoder.encode(text))),
  };
}

/**
 * Loads the agent key: from `keyFile` when given (its bytes, a final newline dropped), else
 * from `LANFREE_AGENT_KEY` (its UTF-8 bytes).
 *
 * @param options the environment's value and the key file, if any
 * @returns the key, or null when neither is set
 * @throws {AgentKeyError} for an empty or short key, or an unreadable key file
 */
export async function loadAgentKey(
  options: { readonly envValue?: string; readonly keyFile?: string },
): Promise<AgentKey | null> {
  const bytes = await loadAgentKeyBytes(options);
  return bytes === null ? null : await importAgentKey(bytes);
}

/**
 * The agent key's bytes, as {@link loadAgentKey} finds them (for hosts that import it
 * themselves: a Worker gets bytes, not a CryptoKey).
 *
 * @param options the environment's value and the key file, if any
 * @returns the bytes (at least {@link AGENT_KEY_BYTES_MIN}), or null when neither is set
 * @throws {AgentKeyError} for an empty or short key, or an unreadable key file
 */
export async function loadAgentKeyBytes(
  options: { readonly envValue?: string; readonly keyFile?: string },
): Promise<Uint8Array | null> {
  let bytes: Uint8Array;
  if (options.keyFile !== undefined) {
    try {
      const file = await Deno.readFile(options.keyFile);
      bytes = file.subarray(0, AGENT_KEY_BYTES_MAX);
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      throw new AgentKeyError(`cannot read the key file ${options.keyFile}: ${reason}`);
    }
    const end = bytes.length > 0 && bytes[bytes.length - 1] === 0x0a ? bytes.length - 1 : undefined;
    bytes = bytes.subarray(0, end);
  } else if (options.envValue !== undefined) {
    bytes = new TextEncoder().encode(options.envValue);
  } else return null;
  checkKeyLength(bytes);
  return bytes.slice();
}

function checkKeyLength(bytes: Uint8Array): void {
  if (bytes.length < AGENT_KEY_BYTES_MIN) {
    throw new AgentKeyError(
      `the agent key has ${bytes.length} bytes; it needs at least ${AGENT_KEY_BYTES_MIN}`,
    );
  }
}

const encode64 = (bytes: Uint8Array) => Buffer.from(bytes).toString("base64");
const decode64 = (text: string) => new Uint8Array(Buffer.from(text, "base64"));

function freshNonce(): string {
  return encode64(crypto.getRandomValues(new Uint8Array(32)));
}

function transcript(role: "agent" | "server", purpose: string, first: string, second: string) {
  return `lanfree-agent-key-v1|${role}|${purpose}|${first}|${second}`;
}

/** Compares a received MAC with the expected one in constant time. */
async function macMatches(key: AgentKey, text: string, received: string | null) {
  const expected = await key.mac(text);
  const got = received === null ? new Uint8Array(32) : decode64(received);
  const same = got.length === expected.length &&
    timingSafeEqual(Buffer.from(got), Buffer.from(expected));
  return same && received !== null;
}

/** Refuses: the reason where the peer waits and on the error channel, then the typed error. */
async function refuse(session: Session, message: string): Promise<never> {
  await session.sendMessage("control", { type: "failed", message }).catch(() => {});
  await session.sendMessage("error", { type: "failed", message }).catch(() => {});
  throw new AgentKeyError(message);
}

/** The peer's next answer; a `failed` in its place is the peer's refusal. */
async function answer<T extends "auth-challenge" | "auth-response" | "auth-proof" | "auth-ok">(
  session: Session,
  type: T,
) {
  const message = await session.nextMessage("control");
  const failed = message as { type?: unknown; message?: unknown };
  if (failed?.type === "failed" && typeof failed.message === "string") {
    throw new AgentKeyError(`the peer refused: ${failed.message}`);
  }
  return parseSessionMessage(message, type);
}

/**
 * The server's side of the proof.
 *
 * @param session the session just set up
 * @param key the server's agent key, or null (insecure: only an agent without a key passes)
 * @param purpose what the session is for (`job`, `data`)
 * @throws {AgentKeyError} when the agent's proof fails or the agent refused ours
 */
export async function proveToAgent(
  session: Session,
  key: AgentKey | null,
  purpose: string,
): Promise<void> {
  const serverNonce = freshNonce();
  await session.sendMessage("control", {
    type: "auth-challenge",
    nonce: serverNonce,
    insecure: key === null,
  });
  const response = await answer(session, "auth-response");
  if (key === null) {
    if (!response.insecure) {
      return await refuse(session, "agent key refused: this server has no agent key");
    }
  } else if (response.insecure) {
    return await refuse(
      session,
      "agent key refused: the agent has no key (it was started with --insecure-no-key)",
    );
  } else {
    const text = transcript("agent", purpose, serverNonce, response.nonce);
    if (!await macMatches(key, text, response.mac)) {
      return await refuse(session, "agent key refused: the agent's proof does not match our key");
    }
  }
  const proof = key === null
    ? null
    : encode64(await key.mac(transcript("server", purpose, response.nonce, serverNonce)));
  await session.sendMessage("control", { type: "auth-proof", mac: proof });
  await answer(session, "auth-ok");
}

/**
 * The agent's side of the proof.
 *
 * @param session the session just set up
 * @param key the agent's key, or null (`--insecure-no-key`: only a server without one passes)
 * @param purpose what the session is for (`job`, `data`)
 * @throws {AgentKeyError} when the server's proof fails or the server refused ours
 */
export async function proveToServer(
  session: Session,
  key: AgentKey | null,
  purpose: string,
): Promise<void> {
  const challenge = await answer(session, "auth-challenge");
  if (key !== null && challenge.insecure) {
    return await refuse(session, "agent key refused: the server has no agent key");
  }
  if (key === null && !challenge.insecure) {
    return await refuse(
      session,
      "agent key refused: this agent has no key (it was started with --insecure-no-key)",
    );
  }
  const agentNonce = freshNonce();
  const mac = key === null
    ? null
    : encode64(await key.mac(transcript("agent", purpose, challenge.nonce, agentNonce)));
  await session.sendMessage("control", {
    type: "auth-response",
    nonce: agentNonce,
    mac,
    insecure: key === null,
  });
  const proof = await answer(session, "auth-proof");
  if (key !== null) {
    const text = transcript("server", purpose, agentNonce, challenge.nonce);
    if (!await macMatches(key, text, proof.mac)) {
      return await refuse(session, "agent key refused: the server's proof does not match our key");
    }
  }
  await session.sendMessage("control", { type: "auth-ok" });
}
