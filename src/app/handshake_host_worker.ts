/**
 * A Worker host that runs one side of a handshake over real TCP and the shared region, then
 * uses the channels: the data channel moves `dataBytes` (SHA-256 reported by both sides), and
 * each network channel carries one framed message. Used by integration tests and benchmarks.
 *
 * Messages out: `{ ready }` once a listening side accepts connections, `{ step, lanes }` after
 * every handled input, `{ outcome }`, `{ transfer }`, `{ done }`, or `{ error }`.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { createTcpSockets } from "../adapters/tcp.ts";
import { createStorageSockets } from "../adapters/shm.ts";
import { createRouter } from "../core/dispatch/router.ts";
import type { Sockets } from "../core/dispatch/sockets.ts";
import { createHandshake } from "../core/handshake/mod.ts";
import { parseHandshakeConfig } from "../core/handshake/config.ts";
import type { Channels, HandshakeRole } from "../core/handshake/types.ts";
import { readFrame, writeFrame } from "../core/wire/frame.ts";
import { driveHandshake, readyToAccept, withStorageInfo } from "./handshake_driver.ts";

/** What the main thread asks a handshake host to do. */
export interface HandshakeHostJob {
  readonly role: HandshakeRole;
  readonly config: unknown;
  readonly region: SharedArrayBuffer;
  /** Bytes to move over the data channel after establishment (sender: the initiator). */
  readonly dataBytes: number;
  /** Report every step (for kill-at-step tests). */
  readonly reportSteps?: boolean;
  /** Run the handshake this many times, closing the channels each time (benchmarks). */
  readonly repeat?: number;
}

/** After the job, the main thread sends `{ go: round }` to an initiator once its peer is ready. */
type HostMessage = HandshakeHostJob | { readonly go: number };

const scope = self as unknown as {
  postMessage(message: unknown): void;
  onmessage: ((event: MessageEvent<HostMessage>) => void) | null;
};

const goes: number[] = [];
let goWaiter: (() => void) | undefined;

/** Resolves when the main thread has said go for `round`. */
async function goFor(round: number): Promise<void> {
  for (let waits = 0; waits <= round + 1 && !goes.includes(round); waits++) {
    await new Promise<void>((resolve) => (goWaiter = resolve));
  }
  if (!goes.includes(round)) throw new Error(`no go for round ${round}`);
}

const INITIATORS: ReadonlySet<HandshakeRole> = new Set(["fs-server", "db-client"]);

async function useChannels(job: HandshakeHostJob, sockets: Sockets, channels: Channels) {
  const initiator = INITIATORS.has(job.role);
  const hash = createHash("sha256");
  const data = channels.data!;
  const chunk = new Uint8Array(256 * 1024);
  let moved = 0;
  if (initiator) {
    for (; moved < job.dataBytes; moved += chunk.length) {
      crypto.getRandomValues(chunk.subarray(0, 65536));
      const piece = chunk.subarray(0, Math.min(chunk.length, job.dataBytes - moved));
      hash.update(piece);
      await sockets.send(data, piece);
    }
  } else {
    while (moved < job.dataBytes) {
      const got = await sockets.recv(data, chunk);
      if (got === null) break;
      hash.update(chunk.subarray(0, got));
      moved += got;
    }
  }
  const messages: Record<string, string> = {};
  for (const name of ["control", "error"].filter((n) => channels[n] !== undefined)) {
    if (initiator) {
      await writeFrame(sockets, channels[name]!, new TextEncoder().encode(`hello on ${name}`));
    } else {messages[name] = new TextDecoder().decode(
        (await readFrame(sockets, channels[name]!)) ?? new Uint8Array(),
      );}
  }
  return { bytes: moved, sha256: hash.digest("hex"), messages };
}

async function run(job: HandshakeHostJob): Promise<void> {
  const storage = createStorageSockets({ region: job.region });
  const filled = withStorageInfo(job.config, job.role, storage);
  if ("failed" in filled) {
    scope.postMessage({ outcome: { status: "failed", reason: filled.failed, setupMs: 0 } });
    scope.postMessage({ done: true, setupMs: [] });
    return await storage.dispose();
  }
  const config = parseHandshakeConfig(filled.config);
  if (!config.ok) throw new Error(config.message);
  const sockets = createRouter({ network: createTcpSockets({ ioTimeoutMs: 5_000 }), storage });
  const repeat = job.repeat ?? 1;
  const setupMs: number[] = [];
  try {
    for (let round = 0; round < repeat; round++) {
      if (INITIATORS.has(job.role)) await goFor(round);
      let readyPosted = false;
      let steps = 0;
      const outcome = await driveHandshake(createHandshake(job.role, config.value), sockets, {
        onStep: (machine) => {
          steps++;
          if (job.reportSteps) scope.postMessage({ step: steps, lanes: machine.laneStates });
          if (!readyPosted && readyToAccept(machine)) {
            readyPosted = true;
            scope.postMessage({ ready: round });
          }
        },
      });
      setupMs.push(outcome.setupMs);
      if (repeat === 1 || outcome.status === "failed") scope.postMessage({ outcome });
      if (outcome.status !== "established") break;
      if (repeat === 1) {
        scope.postMessage({ transfer: await useChannels(job, sockets, outcome.channels) });
      }
      for (const fd of Object.values(outcome.channels)) await sockets.close(fd);
    }
    scope.postMessage({ done: true, setupMs });
  } finally {
    await storage.dispose();
  }
}

scope.onmessage = (event) => {
  const message = event.data;
  if ("go" in message) {
    goes.push(message.go);
    goWaiter?.();
    return;
  }
  run(message).catch((error) => scope.postMessage({ error: String(error) }));
};
