/**
 * Starting a job's side hosts, and starting them early: a CLI that knows it will run an
 * embedded job calls {@link prestartSideHosts} first, so the two Workers load their module
 * graphs while the main isolate still loads and checks its own; `runSides` then takes them
 * instead of starting new ones. This module is kept light (it loads only the host link) so a
 * CLI can call it before importing the job.
 *
 * @module
 */

import { type HostLink, startWorkerHost } from "../../adapters/host_link.ts";
import type { SideHostInput, SideHostReport } from "../hosts/side_host.ts";

/** A side of a job: the agent's (the client) or the server's. */
export type Side = "client" | "server";

/** The supervisor's link to a side host. */
export type SideLink = HostLink<SideHostInput, SideHostReport>;

/**
 * Each side's Worker entry: a host loads its own role's module graph (the client's walk and
 * packer, or the server's repository writer), not both.
 */
export const SIDE_HOST_WORKERS: Readonly<Record<Side, URL>> = {
  client: new URL("../hosts/agent_host_worker.ts", import.meta.url),
  server: new URL("../hosts/server_host_worker.ts", import.meta.url),
};

/** Hosts started ahead of their job and not taken yet: at most one per side. */
const prestarted: Partial<Record<Side, SideLink>> = {};

/**
 * Starts a client and a server host now, for the next job of this process to take. A host
 * already waiting is kept; a host that crashes while it waits reports that when taken.
 *
 * @example Starting the hosts before the job's own modules load
 * ```ts
 * import assert from "node:assert/strict";
 * import { workerHostsRunning } from "../../adapters/host_link.ts";
 * import { prestartSideHosts, startSideHost } from "./side_host_start.ts";
 * prestartSideHosts();
 * assert.equal(workerHostsRunning(), 2);
 * for (const side of ["client", "server"] as const) startSideHost(side).terminate();
 * assert.equal(workerHostsRunning(), 0); // the job took the two started ahead
 * ```
 */
export function prestartSideHosts(): void {
  for (const side of ["client", "server"] as const) prestarted[side] ??= newHost(side);
}

/**
 * A side's host: the one started ahead for it, or a new one.
 *
 * @param side which side
 * @returns the link to the host (it waits for its `job`)
 */
export function startSideHost(side: Side): SideLink {
  const link = prestarted[side] ?? newHost(side);
  delete prestarted[side];
  return link;
}

function newHost(side: Side): SideLink {
  return startWorkerHost<SideHostInput, SideHostReport>(SIDE_HOST_WORKERS[side], `${side} host`);
}
