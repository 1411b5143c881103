/**
 * The server's side host, a Worker (see `side_host.ts`): runs the server's side of one job
 * toward an agent (the embedded one, or one on another host) and reports progress, a drill's
 * pause and its result. It loads the server's module graph only: nothing of the walk, the
 * packer or the database snapshot.
 *
 * @module
 */

import { createTcpSockets } from "../../adapters/tcp.ts";
import type { StorageSockets } from "../../adapters/shm.ts";
import { createRouter, unavailableSockets } from "../../core/dispatch/router.ts";
import { importAgentKey } from "./agent_key.ts";
import { runServerSide } from "../server/server_side.ts";
import type { WriterStep } from "../repository/snapshot_writer.ts";
import { serveSideHost, type SideHostContext, type SideHostJob } from "./side_host.ts";

/** The drill's pause: at `pauseAt`, report it and wait until the job cancels this host. */
async function pauseForDrill(
  step: WriterStep,
  pauseAt: WriterStep | undefined,
  { link, cancelled }: SideHostContext,
): Promise<void> {
  if (step !== pauseAt || cancelled.aborted) return;
  link.post({ type: "paused", step });
  await new Promise((resolve) => cancelled.addEventListener("abort", resolve));
}

/**
 * The writer's steps where a cancel is acted on at once: `locked` (the lock is released, no file
 * made yet: going on left the lock and a partial archive behind), and the steps before the
 * commit point, where all bytes may be in but the manifest is not placed, so the writer's failed
 * commit removes what it placed (going on committed while the job said it was aborted).
 */
const CANCELLABLE_COMMIT_STEPS: ReadonlySet<WriterStep> = new Set([
  "locked",
  "manifest-written",
  "archive-placed",
]);

/**
 * At each writer step: the drill's pause; then a cancel before the commit point aborts the
 * commit, and the commit point itself is reported (a cancel after it keeps the snapshot).
 */
async function atWriterStep(
  step: WriterStep,
  pauseAt: WriterStep | undefined,
  context: SideHostContext,
): Promise<void> {
  await pauseForDrill(step, pauseAt, context);
  if (step === "committed") context.link.post({ type: "committed" });
  if (context.cancelled.aborted && CANCELLABLE_COMMIT_STEPS.has(step)) {
    throw new Error(
      `the snapshot was cancelled at writer step ${step}: ${context.cancelled.reason}`,
    );
  }
}

async function runServer(
  job: SideHostJob,
  storage: StorageSockets | undefined,
  context: SideHostContext,
): Promise<void> {
  const sockets = createRouter({
    network: createTcpSockets({ ioTimeoutMs: job.ioTimeoutMs }),
    storage: storage ?? unavailableSockets("storage", "no storage region is attached"),
  });
  const server = job.server!;
  const result = await runServerSide(server, {
    sockets,
    storage,
    key: job.key === null ? null : await importAgentKey(job.key),
    ioTimeoutMs: job.ioTimeoutMs,
    handshakeTimeoutMs: job.handshakeTimeoutMs,
    signal: context.cancelled,
    onProgress: (progress) => context.link.post({ type: "progress", progress }),
    onWriterStep: (step) => atWriterStep(step, server.pauseAt, context),
  });
  context.link.post({ type: "server-result", result });
}

await serveSideHost(runServer);
