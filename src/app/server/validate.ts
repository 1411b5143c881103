/**
 * `validate`, as Spectrum Protect's `VALIDATE LANFREE`: for each path between this server and
 * an agent (the file-system flow, the database flow, and the network alone) it sets up the
 * job's channels exactly as a backup would, proves the agent key, and moves a test payload
 * through each channel (control, error, data; the data both ways). A path that does not work is
 * reported with the seeds' step, the side that failed and the reason in words: the agent
 * attached no region, a different region, a different STG, no free control block, STG ports
 * exhausted, or the key refused.
 *
 * @module
 */

import type { FailureReason } from "../../core/handshake/types.ts";
import { type AgentJobOptions, parseAgentAddress, runTowardAgent } from "../jobs/agent_job.ts";
import { errorText } from "../hosts/peer_reports.ts";

/** One path's report. */
export interface PathReport {
  /** `fs`, `db`: the storage path of that flow; `network`: Fig. 4 alone. */
  readonly path: "fs" | "db" | "network";
  /** True when the channels were set up on this path and every payload arrived intact. */
  readonly works: boolean;
  /** Where the payloads went (storage, or the network after a storage failure), if anywhere. */
  readonly dataPath: "storage" | "network" | null;
  /** The seeds' step at which setting up the path failed (`key`: the agent key), or null. */
  readonly step: string | null;
  /** The side that failed, or null. */
  readonly side: "agent" | "server" | null;
  /** The socket error code, or null. */
  readonly code: string | null;
  /** Why, in words (one of the reasons above, or the failure's own message), or null. */
  readonly reason: string | null;
  /** The full message of the failure, or null. */
  readonly detail: string | null;
  /** Each channel carried its payload intact. */
  readonly channels: { readonly control: boolean; readonly error: boolean; readonly data: boolean };
  /** Bytes of the payload session through storage (sent and received). */
  readonly storageBytes: number;
  /** Bytes of the payload session over the network. */
  readonly networkBytes: number;
  /** How long this path's check took. */
  readonly seconds: number;
}

/** A validation's report. */
export interface ValidateReport {
  /** The agent validated. */
  readonly agent: string;
  /** True only when every path works. */
  readonly ok: boolean;
  /** Each path's report: `fs`, `db`, `network`. */
  readonly paths: readonly PathReport[];
}

/**
 * The reason in words of a storage set-up failure.
 *
 * @param reason the failure (with its step and code)
 * @param side which side failed
 * @returns the reason
 */
export function storageReason(reason: FailureReason, side: "agent" | "server"): string {
  const text = reason.message;
  if (reason.code === "EADDRNOTAVAIL" && /no storage region attached/.test(text)) {
    return `the ${side} attached no region`;
  }
  if (reason.code === "EADDRNOTAVAIL" && /different regions/.test(text)) {
    return `the ${side} attached a different region`;
  }
  if (reason.code === "EADDRNOTAVAIL" && /^step \d+: STG \d+/.test(text)) {
    return `the ${side}'s region has a different STG`;
  }
  if (reason.code === "EADDRNOTAVAIL" && /no free port/.test(text)) return "STG ports exhausted";
  if (reason.code === "ENOBUFS" && /no free control block/.test(text)) {
    return "no free control block";
  }
  if (reason.code === "ENOBUFS") return "no STG space for the rings";
  return text;
}

const NO_CHANNELS = { control: false, error: false, data: false };

async function validatePath(
  agent: string,
  path: PathReport["path"],
  options: AgentJobOptions,
): Promise<PathReport> {
  const startedMs = performance.now();
  const seconds = () => (performance.now() - startedMs) / 1000;
  try {
    const result = await runTowardAgent({
      kind: "validate",
      agent: parseAgentAddress(agent),
      mode: path === "db" ? "db" : "fs",
      channel: path === "network" ? "network" : "auto",
    }, options);
    if (result.kind !== "validate") throw new Error(`a ${result.kind} is no validation`);
    const first = result.storageFailures[0]; // the one that says most about why
    const payloads = result.validate;
    const intact = payloads.control && payloads.error && payloads.data;
    const wanted = path === "network" ? "network" : "storage";
    return {
      path,
      works: intact && result.dataPath === wanted,
      dataPath: result.dataPath,
      step: first?.reason.step ?? null,
      side: first?.side ?? null,
      code: first?.reason.code ?? null,
      reason: first === undefined
        ? (result.dataPath === wanted ? null : result.fallbackReason)
        : storageReason(first.reason, first.side),
      detail: result.fallbackReason,
      channels: { control: payloads.control, error: payloads.error, data: payloads.data },
      storageBytes: result.bytes.storage,
      networkBytes: result.bytes.network,
      seconds: seconds(),
    };
  } catch (error) {
    const detail = errorText(error);
    const keyRefused = /agent key refused/.test(detail);
    return {
      path,
      works: false,
      dataPath: null,
      step: keyRefused ? "key" : null,
      side: keyRefused
        ? (/the server's proof|the server has no/.test(detail) ? "agent" : "server")
        : null,
      code: null,
      reason: keyRefused ? "the agent key was refused" : detail,
      detail,
      channels: NO_CHANNELS,
      storageBytes: 0,
      networkBytes: 0,
      seconds: seconds(),
    };
  }
}

/**
 * Validates every path to an agent, one after the other.
 *
 * @param agent the agent's `host:port`
 * @param options the server's region and key, bounds, cancel
 * @returns the report; `ok` only when every path works
 */
export async function validateAgent(
  agent: string,
  options: AgentJobOptions,
): Promise<ValidateReport> {
  const paths: PathReport[] = [];
  for (const path of ["fs", "db", "network"] as const) {
    if (options.signal?.aborted) break;
    paths.push(await validatePath(agent, path, options));
  }
  return { agent, ok: paths.length === 3 && paths.every((p) => p.works), paths };
}
