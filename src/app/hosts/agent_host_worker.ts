/**
 * The agent's side host, a Worker (see `side_host.ts`): listens on a free port pair of
 * 127.0.0.1 as the embedded default's client, serves one job over the channels, and reports
 * `listening`, progress and its result. It loads the client's module graph only: nothing of the
 * server or the repository writer.
 *
 * @module
 */

import { createTcpSockets } from "../../adapters/tcp.ts";
import type { StorageSockets } from "../../adapters/shm.ts";
import { createRouter, unavailableSockets } from "../../core/dispatch/router.ts";
import { importAgentKey } from "./agent_key.ts";
import { serveAgentJob } from "../agent/agent_side.ts";
import { freePortPair } from "./ports.ts";
import { serveSideHost, type SideHostContext, type SideHostJob } from "./side_host.ts";

/** How many listening cycles the embedded agent side runs before it gives up. */
const LISTEN_CYCLES_MAX = 10;

/** Asks the supervisor for a port to a hash worker (once per job). */
function hashWorkerPort({ link }: SideHostContext): Promise<MessagePort> {
  link.post({ type: "want-hash-worker" });
  return link.next("hash-port", Number.POSITIVE_INFINITY).then((message) => message.port);
}

async function runAgent(
  job: SideHostJob,
  storage: StorageSockets | undefined,
  context: SideHostContext,
): Promise<void> {
  const { link, cancelled } = context;
  const sockets = createRouter({
    network: createTcpSockets({ ioTimeoutMs: job.ioTimeoutMs }),
    storage: storage ?? unavailableSockets("storage", "no storage region is attached"),
  });
  const key = job.key === null ? null : await importAgentKey(job.key);
  let reason = "no cycle ran";
  for (let cycle = 0; cycle < LISTEN_CYCLES_MAX && !cancelled.aborted; cycle++) {
    const outcome = await serveAgentJob({
      listen: { host: "127.0.0.1", port: freePortPair() },
      roots: job.agent!.roots,
      excluded: job.agent!.excluded,
      key,
      sockets,
      storage,
      zeroCopy: job.agent!.zeroCopy,
      ioTimeoutMs: job.ioTimeoutMs,
      handshakeTimeoutMs: job.handshakeTimeoutMs,
      hashWorker: () => hashWorkerPort(context),
      progressEveryMs: job.progressEveryMs,
      signal: cancelled,
      onEvent: (event) => {
        if (event.type === "listening") link.post({ type: "listening", port: event.port });
        else if (event.type === "progress") link.post(event);
      },
    });
    if (outcome.status !== "no-job") return link.post({ type: "agent-result", result: outcome });
    reason = outcome.reason;
  }
  throw new Error(`the agent side set up no job channel: ${reason}`);
}

await serveSideHost(runAgent);
