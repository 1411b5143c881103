/**
 * A Worker host that runs one side of a handshake over real TCP and the shared region, then
 * uses the channels: the data channel moves `dataBytes` (SHA-256 reported by both sides), and
 * each network channel carries one framed message. Used by integration tests and benchmarks.
 *
 * Messages ({@link HandshakeHostInput}, {@link HandshakeHostReport}, over the host link): in, the
 * job and `go` for each round of an initiator; out, `ready` once a listening side accepts
 * connections, `step` after every handled input (when asked), `outcome`, `transfer`, `done`, or
 * `error`.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { createTcpSockets } from "../../adapters/tcp.ts";
import { createStorageSockets } from "../../adapters/shm.ts";
import { createRouter } from "../../core/dispatch/router.ts";
import type { Sockets } from "../../core/dispatch/sockets.ts";
import { hostSide } from "../../adapters/host_link.ts";
import { createHandshake, listensFirst } from "../../core/handshake/mod.ts";
import { parseHandshakeConfig } from "../../core/handshake/config.ts";
import type { Channels, HandshakeRole } from "../../core/handshake/types.ts";
import { readFrame, writeFrame } from "../../core/wire/frame.ts";
import {
  driveHandshake,
  type HandshakeOutcome,
  readyToAccept,
  withStorageInfo,
} from "./handshake_driver.ts";

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

/** What a channel transfer moved, as one side saw it. */
export interface TransferReport {
  readonly bytes: number;
  readonly sha256: string;
  readonly messages: Record<string, string>;
}

/** What a handshake host receives: its job, then `go` for each round (initiators only). */
export type HandshakeHostInput =
  | { readonly type: "job"; readonly job: HandshakeHostJob }
  | { readonly type: "go"; readonly round: number };

/** What a handshake host reports. */
export type HandshakeHostReport =
  | { readonly type: "ready"; readonly round: number }
  | {
    readonly type: "step";
    readonly step: number;
    readonly lanes: Readonly<Record<string, string>>;
  }
  | { readonly type: "outcome"; readonly outcome: HandshakeOutcome }
  | { readonly type: "transfer"; readonly transfer: TransferReport }
  | { readonly type: "done"; readonly setupMs: number[] }
  | { readonly type: "error"; readonly error: string };

const side = hostSide<HandshakeHostInput, HandshakeHostReport>();

/** Resolves when the main thread has said go for `round` (rounds come in order). */
async function goFor(round: number): Promise<void> {
  const go = await side.next("go", Number.POSITIVE_INFINITY);
  if (go.round !== round) throw new Error(`go for round ${go.round}, expected ${round}`);
}

async function useChannels(job: HandshakeHostJob, sockets: Sockets, channels: Channels) {
  const initiator = !listensFirst(job.role);
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
    side.post({
      type: "outcome",
      outcome: { status: "failed", reason: filled.failed, setupMs: 0 },
    });
    side.post({ type: "done", setupMs: [] });
    return await storage.dispose();
  }
  const config = parseHandshakeConfig(filled.config);
  if (!config.ok) throw new Error(config.message);
  const sockets = createRouter({ network: createTcpSockets({ ioTimeoutMs: 5_000 }), storage });
  const repeat = job.repeat ?? 1;
  const setupMs: number[] = [];
  try {
    for (let round = 0; round < repeat; round++) {
      if (!listensFirst(job.role)) await goFor(round);
      let readyPosted = false;
      let steps = 0;
      const outcome = await driveHandshake(createHandshake(job.role, config.value), sockets, {
        onStep: (machine) => {
          steps++;
          if (job.reportSteps) side.post({ type: "step", step: steps, lanes: machine.laneStates });
          if (!readyPosted && readyToAccept(machine)) {
            readyPosted = true;
            side.post({ type: "ready", round });
          }
        },
      });
      setupMs.push(outcome.setupMs);
      if (repeat === 1 || outcome.status === "failed") side.post({ type: "outcome", outcome });
      if (outcome.status !== "established") break;
      if (repeat === 1) {
        side.post({
          type: "transfer",
          transfer: await useChannels(job, sockets, outcome.channels),
        });
      }
      for (const fd of Object.values(outcome.channels)) await sockets.close(fd);
    }
    side.post({ type: "done", setupMs });
  } finally {
    await storage.dispose();
  }
}

const { job } = await side.next("job", Number.POSITIVE_INFINITY);
await run(job).catch((error) => side.post({ type: "error", error: String(error) }));
