/**
 * Storage sockets over a SharedArrayBuffer region: the unified {@link Sockets} API for storage
 * descriptors. The adapter only pumps: it runs the core's operations (`src/core/stp/ops.ts`),
 * waits with Atomics where the core says to wait, bounds every wait by the region's
 * `ioTimeoutMs` (ETIMEDOUT), renews this host's lease, and keeps descriptors in a
 * `SocketTable` so call order is checked exactly as for TCP.
 *
 * @module
 */

import { unwrap } from "../core/dispatch/errors.ts";
import { SocketTable } from "../core/dispatch/socket_table.ts";
import type { Sockets } from "../core/dispatch/sockets.ts";
import { registerHost, renewLease, unregisterHost } from "../core/stp/hosts.ts";
import type { RegionLayout } from "../core/stp/layout.ts";
import * as ops from "../core/stp/ops.ts";
import { attachRegion } from "../core/stp/region.ts";
import { runSteps, type StpContext } from "../core/stp/steps.ts";
import { atomicsMemory, defaultWaitMode, type WaitMode } from "./shm_memory.ts";
import { type Handle, Pump } from "./shm_pump.ts";
import { storageSockets } from "./shm_sockets.ts";

/** Options of {@link createStorageSockets}. */
export interface StorageSocketsOptions {
  /** The region, formatted by `formatRegion`. */
  readonly region: SharedArrayBuffer;
  /** This host's id, 1..hostCount of the region, unique among live hosts. */
  readonly hostId: number;
  /** How to wait; default `sync` in Workers, `async` on the main thread. */
  readonly waitMode?: WaitMode;
  /** Loads to spin before blocking in a wait (default 2000). */
  readonly spinCount?: number;
  /** The wall clock in ms (default `Date.now`); every host of a region must share it. */
  readonly clock?: () => number;
}

/** Storage sockets plus the host-level controls. */
export interface StorageSockets extends Sockets {
  /** The region's layout. */
  readonly layout: RegionLayout;
  /** Reclaims the blocks of every host whose lease ran out; returns how many. */
  reclaim(): number;
  /** Closes every open descriptor, stops the heartbeat and gives up the lease. */
  dispose(): Promise<void>;
}

/**
 * Opens storage sockets for one host on a region.
 *
 * @param options the region, the host id and wait settings
 * @returns the storage sockets (throws a SocketError EINVAL for a bad region, EADDRINUSE when the
 *   host id is held by a live host)
 *
 * @example Opening a host and a socket
 * ```ts
 * import { createStorageSockets } from "./shm.ts";
 * import { formatRegion } from "../core/stp/region.ts";
 * const region = formatRegion({
 *   stgs: [{ id: 1, extentCount: 2, ephemeralPortMin: 50000, ephemeralPortMax: 50010 }],
 *   extentBytes: 4096, blockCount: 4, hostCount: 2, ioTimeoutMs: 200, leaseMs: 1000,
 *   backlogMax: 2,
 * });
 * if (!region.ok) throw new Error(region.message);
 * const host = createStorageSockets({ region: region.value, hostId: 1 });
 * const fd = await host.socket("storage");
 * await host.bind(fd, { kind: "storage", stg: 1, port: 0 });
 * console.assert((await host.getsockname(fd)).port >= 50000);
 * await host.dispose();
 * ```
 */
export function createStorageSockets(options: StorageSocketsOptions): StorageSockets {
  const layout = unwrap(attachRegion(options.region));
  const { memory, words } = atomicsMemory(options.region);
  const clock = options.clock ?? Date.now;
  const hostId = options.hostId;
  unwrap(registerHost(memory, layout, hostId, clock()));
  let renewedMs = clock();
  const ctx = (): StpContext => {
    const nowMs = clock();
    if (nowMs - renewedMs >= layout.leaseMs / 8) {
      // A busy host never yields to its heartbeat timer: renew on the call path as well.
      renewLease(memory, layout, hostId, nowMs);
      renewedMs = nowMs;
    }
    return { memory, layout, hostId, nowMs };
  };
  runSteps(ops.sweepDeadHosts(ctx())); // a previous incarnation's leftovers
  const heartbeat = setInterval(
    () => renewLease(memory, layout, hostId, clock()),
    layout.leaseMs / 4,
  );
  Deno.unrefTimer(heartbeat);
  const pump = new Pump(
    words,
    layout,
    options.waitMode ?? defaultWaitMode(),
    options.spinCount ?? 2000,
    () => renewLease(memory, layout, hostId, clock()),
  );
  const table = new SocketTable<Handle>("storage");
  const sockets = storageSockets(table, ctx, pump);
  return {
    ...sockets,
    layout,
    reclaim() {
      renewLease(memory, layout, hostId, clock());
      return runSteps(ops.sweepDeadHosts(ctx()));
    },
    async dispose() {
      clearInterval(heartbeat);
      for (const fd of table.descriptors()) await sockets.close(fd).catch(() => {});
      unregisterHost(memory, layout, hostId);
    },
  };
}
