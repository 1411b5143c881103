/**
 * The Deno services behind the HTTP control app (`createControlApp`): canonical paths, the job
 * queue, snapshot summaries and paged entries with bounded memory, and the region's occupancy.
 * `deno task serve` and the tests build the app from these.
 *
 * @module
 */

import type { ControlServices, StorageOccupancy } from "../../adapters/http.ts";
import { type RegionUsage, regionUsage, usageOfBuffer } from "../../core/stp/usage.ts";
import { attachRegion, type Region } from "../../core/stp/region.ts";
import { plainMemory } from "../../core/stp/memory.ts";
import { type RegionReport, regionReport } from "../../core/stp/report.ts";
import type { RegionLayout } from "../../core/stp/layout.ts";
import type { Suite } from "../../../property-tests/_suite.ts";
import { RepositoryError } from "../errors.ts";
import { type JobQueue, jobsPort } from "../jobs/jobs.ts";
import { suitesPort } from "../../../property-tests/_runner.ts";
import { canonicalPath } from "../paths.ts";
import { openRepository } from "../repository/repository.ts";
import { listSnapshotSummaries, readEntriesPage } from "../repository/snapshot_summaries.ts";

/** What {@link denoControlServices} needs. */
export interface DenoServicesOptions {
  readonly token: string;
  /** Canonical directories requests may touch. */
  readonly roots: readonly string[];
  readonly jobs: JobQueue;
  /** The region: shared memory, a mapped region file, or null. */
  readonly region: SharedArrayBuffer | Region | null;
  readonly suites: () => Suite[];
  /** The dashboard's bundled client script (`deno task dashboard` builds it). */
  readonly dashboardScript?: string;
}

/**
 * What `deno task region show` reports about a region, now.
 *
 * @param region a formatted region (shared memory or a mapped file)
 * @param nowMs the wall clock, ms (for lease ages)
 * @returns the report
 */
export function reportOf(region: SharedArrayBuffer | Region, nowMs: number): RegionReport {
  if (!(region instanceof SharedArrayBuffer)) {
    return regionReport(region.memory, region.layout, nowMs);
  }
  const layout = attachRegion(region);
  if (!layout.ok) throw new Error(layout.message);
  return regionReport(plainMemory(region), layout.value, nowMs);
}

/**
 * The region's occupancy for `GET /v1/storage` and metrics.
 *
 * @param region a formatted region
 * @returns control blocks in use and, per STG, bytes and ports in use
 */
export function occupancyOf(region: SharedArrayBuffer | Region): StorageOccupancy {
  let usage: RegionUsage & { layout: RegionLayout };
  if (region instanceof SharedArrayBuffer) {
    const found = usageOfBuffer(region);
    if (!found.ok) throw new Error(found.message);
    usage = found.value;
  } else usage = { ...regionUsage(region.memory, region.layout), layout: region.layout };
  const { layout, blocks, extents, ports } = usage;
  const inStg = (stg: typeof layout.stgs[number]) => (extent: number) =>
    extent >= stg.firstExtent && extent < stg.firstExtent + stg.extentCount;
  return {
    controlBlocks: { total: layout.blockCount, inUse: blocks.length },
    stgs: layout.stgs.map((stg) => ({
      id: stg.id,
      lengthBytes: stg.extentCount * layout.extentBytes,
      usedBytes: extents.filter(inStg(stg)).length * layout.extentBytes,
      portsInUse: ports.filter((port) => port.startsWith(`${stg.id}:`)).length,
    })),
  };
}

/**
 * Builds the control app's services on Deno.
 *
 * @param options token, roots, job queue, region and suites
 * @returns the services for `createControlApp`
 */
export function denoControlServices(options: DenoServicesOptions): ControlServices {
  const { region } = options;
  return {
    token: options.token,
    roots: options.roots,
    resolvePath: canonicalPath,
    jobs: jobsPort(options.jobs),
    listSnapshots: async (repo) => {
      try {
        return await listSnapshotSummaries(await openRepository(repo));
      } catch (error) {
        const absent = error instanceof RepositoryError &&
          (error.code === "not-found" || error.code === "not-a-repository");
        if (absent) return undefined;
        throw error;
      }
    },
    snapshotEntries: async (repo, id, offset, limit) => {
      try {
        return await readEntriesPage(await openRepository(repo), id, offset, limit);
      } catch (error) {
        if (error instanceof RepositoryError && error.code === "unknown-snapshot") return undefined;
        throw error;
      }
    },
    storageOccupancy: () => region === null ? undefined : occupancyOf(region),
    regionReport: () => region === null ? undefined : reportOf(region, Date.now()),
    dashboardScript: options.dashboardScript,
    suites: suitesPort(options.suites),
  };
}
