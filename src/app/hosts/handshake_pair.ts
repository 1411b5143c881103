/**
 * Runs both sides of a handshake, each in its own Worker host, over 127.0.0.1 and one shared
 * region: the listening side starts first; the initiator is told to go once its peer accepts
 * connections. Optionally kills the initiator after a given number of steps, to check that the
 * survivor fails cleanly and the dead host's control blocks are reclaimed.
 *
 * @module
 */

import type {
  HandshakeHostInput,
  HandshakeHostJob,
  HandshakeHostReport,
  TransferReport,
} from "./handshake_host_worker.ts";
import type { HandshakeOutcome } from "./handshake_driver.ts";
import { listensFirst, roleOf } from "../../core/handshake/mod.ts";
import { type HostLink, startWorkerHost } from "../../adapters/host_link.ts";
import { formatRegion } from "../../core/stp/region.ts";
import type { RegionConfig } from "../../core/stp/layout.ts";

const WORKER = new URL("./handshake_host_worker.ts", import.meta.url);

/** One side's report. */
export interface SideReport {
  outcome?: HandshakeOutcome;
  transfer?: TransferReport;
  setupMs?: number[];
  error?: string;
  killed?: boolean;
}

/** Options of {@link runHandshakePair}. */
export interface PairOptions {
  readonly flow: "fs" | "db";
  /** The WKP, or a chooser: with a chooser, a listener whose bind finds the port taken is retried on another. */
  readonly wellKnownPort: number | (() => number);
  readonly dataBytes?: number;
  readonly repeat?: number;
  /** Terminate the initiator's Worker after it handled this many inputs. */
  readonly killInitiatorAtStep?: number;
  readonly handshakeTimeoutMs?: number;
  /** The region to use (default: a fresh one for the pair). */
  readonly region?: SharedArrayBuffer;
  /** Upper bound on the whole run. */
  readonly runTimeoutMs?: number;
}

/** A region fit for handshakes and transfers between two hosts. */
export const PAIR_REGION_CONFIG: RegionConfig = {
  stgs: [{ id: 1, extentCount: 8, ephemeralPortMin: 40000, ephemeralPortMax: 40999 }],
  extentBytes: 4 * 1024 * 1024,
  blockCount: 32,
  hostCount: 4,
  ioTimeoutMs: 2000,
  leaseMs: 2000,
  backlogMax: 4,
};

/** Formats a region for a pair of hosts. */
export function pairRegion(): SharedArrayBuffer {
  const region = formatRegion(PAIR_REGION_CONFIG, crypto.randomUUID());
  if (!region.ok) throw new Error(region.message);
  return region.value;
}

interface Side {
  link: HostLink<HandshakeHostInput, HandshakeHostReport>;
  report: SideReport;
  ended: Promise<void>;
}

function startSide(
  job: HandshakeHostJob,
  onReady: (round: number) => void,
  onStep: (step: number) => void,
): Side {
  const link = startWorkerHost<HandshakeHostInput, HandshakeHostReport>(WORKER, job.role);
  const report: SideReport = {};
  link.on("ready", (message) => onReady(message.round));
  link.on("step", (message) => onStep(message.step));
  link.on("outcome", (message) => (report.outcome = message.outcome));
  link.on("transfer", (message) => (report.transfer = message.transfer));
  const ended = link.next(["done", "error"], Number.POSITIVE_INFINITY).then(
    (message) => {
      if (message.type === "done") report.setupMs = message.setupMs;
      else report.error = message.error;
    },
    (error: Error) => void (report.error ??= error.message),
  );
  link.post({ type: "job", job });
  return { link, report, ended };
}

/** Both sides' reports. */
export interface PairReport {
  readonly listener: SideReport;
  readonly initiator: SideReport;
}

const PORT_ATTEMPTS_MAX = 5;

/**
 * Runs a handshake between two Worker hosts. With a port chooser, a well-known port taken by
 * another process between choosing and binding (EADDRINUSE at the listener's bind) is replaced
 * and the pair started again, at most 5 times.
 *
 * @returns both sides' reports
 */
export async function runHandshakePair(options: PairOptions): Promise<PairReport> {
  const choose = options.wellKnownPort;
  for (let attempt = 1;; attempt++) {
    const wellKnownPort = typeof choose === "number" ? choose : choose();
    const report = await runPairOnce({ ...options, wellKnownPort });
    const outcome = report.listener.outcome;
    const portTaken = outcome?.status === "failed" && outcome.reason.code === "EADDRINUSE";
    if (!portTaken || typeof choose === "number" || attempt >= PORT_ATTEMPTS_MAX) return report;
  }
}

async function runPairOnce(
  options: PairOptions & { readonly wellKnownPort: number },
): Promise<PairReport> {
  const region = options.region ?? pairRegion();
  // [listener, initiator]: the flow says which side listens first.
  const roles = [roleOf("client", options.flow), roleOf("server", options.flow)]
    .sort((a, b) => Number(listensFirst(b)) - Number(listensFirst(a)));
  const config = {
    wellKnownPort: options.wellKnownPort,
    handshakeTimeoutMs: options.handshakeTimeoutMs ?? 3000,
  };
  const base = { config, region, dataBytes: options.dataBytes ?? 0, repeat: options.repeat ?? 1 };
  const sides: { initiator?: Side } = {};
  const listener = startSide(
    { ...base, role: roles[0]! },
    (round) => sides.initiator?.link.post({ type: "go", round }),
    () => {},
  );
  const initiator: Side = sides.initiator = startSide(
    { ...base, role: roles[1]!, reportSteps: options.killInitiatorAtStep !== undefined },
    () => {},
    (step) => {
      if (step === options.killInitiatorAtStep) {
        sides.initiator!.link.terminate();
        sides.initiator!.report.killed = true;
        endKilled();
      }
    },
  );
  let endKilled = () => {};
  const killed = new Promise<void>((resolve) => (endKilled = resolve));
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<void>((
    resolve,
  ) => (timer = setTimeout(resolve, options.runTimeoutMs ?? 60_000)));
  // A listener that ends first (it failed, say) gives the initiator two handshake timeouts more.
  const graceMs = 2 * (options.handshakeTimeoutMs ?? 3000);
  let graceTimer: ReturnType<typeof setTimeout> | undefined;
  const grace = () => new Promise<void>((resolve) => (graceTimer = setTimeout(resolve, graceMs)));
  const listenerThenGrace = listener.ended.then(() =>
    Promise.race([initiator.ended, killed, grace()])
  );
  try {
    await Promise.race([
      Promise.all([listenerThenGrace, Promise.race([initiator.ended, killed])]),
      timeout,
    ]);
  } finally {
    clearTimeout(timer);
    clearTimeout(graceTimer);
    listener.link.terminate();
    initiator.link.terminate();
  }
  return { listener: listener.report, initiator: initiator.report };
}
