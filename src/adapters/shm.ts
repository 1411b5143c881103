/**
 * Storage sockets over a SharedArrayBuffer region: the unified {@link Sockets} API for storage
 * descriptors. The adapter only pumps: it runs the core's operations (`src/core/stp/ops.ts`),
 * waits with Atomics where the core says to wait, bounds every wait by the region's
 * `ioTimeoutMs` (ETIMEDOUT), renews this host's lease, and keeps descriptors in a
 * `SocketTable` so call order is checked exactly as for TCP.
 *
 * @module
 */

import {
  fail,
  type Failure,
  ok,
  type Result,
  SocketError,
  unwrap,
} from "../core/dispatch/errors.ts";
import { SocketTable } from "../core/dispatch/socket_table.ts";
import type { Sockets } from "../core/dispatch/sockets.ts";
import { fenceRecord, incarnationOf } from "../core/stp/fence.ts";
import { claimHost, releaseHost, renewLease } from "../core/stp/hosts.ts";
import type { AttachedRegion, StgInfo } from "../core/handshake/config.ts";
import { HOST, hostWord, type RegionLayout } from "../core/stp/layout.ts";
import { pickStg } from "../core/stp/stg_pick.ts";
import type { RegionMemory } from "../core/stp/memory.ts";
import * as ops from "../core/stp/ops.ts";
import type { Region } from "../core/stp/region.ts";
import { runSteps, type StpContext } from "../core/stp/steps.ts";
import { defaultWaitMode, type WaitMode } from "./shm_memory.ts";
import { sharedRegion } from "./shm_region.ts";
import { type Handle, Pump } from "./shm_pump.ts";
import { storageSockets } from "./shm_sockets.ts";
import { type ZeroCopySockets, zeroCopySockets } from "./shm_zero_copy.ts";

/** Options of {@link createStorageSockets}. */
export interface StorageSocketsOptions {
  /**
   * The region: a SharedArrayBuffer formatted by `formatRegion` (attached here), or a region
   * already attached (a file region from `openRegionFile`, say). The caller keeps owning it:
   * `dispose` does not close it.
   */
  readonly region: SharedArrayBuffer | Region;
  /** A label the region records with this host's slot (`region show`); default `Deno.pid`. */
  readonly pid?: number;
  /** How to wait on a SharedArrayBuffer region (default `async`, see `defaultWaitMode`). */
  readonly waitMode?: WaitMode;
  /** Loads to spin before blocking in a wait (default 2000). */
  readonly spinCount?: number;
  /** The wall clock in ms (default `Date.now`); every host of a region must share it. */
  readonly clock?: () => number;
}

/** Storage sockets: the unified API, the zero-copy calls, and the host-level controls. */
export interface StorageSockets extends Sockets, ZeroCopySockets {
  /** The region's layout. */
  readonly layout: RegionLayout;
  /** The host slot this host claimed (the owner id in its control blocks). */
  readonly hostId: number;
  /** How many times that slot has been claimed, this claim included. */
  readonly incarnation: number;
  /**
   * The control block behind a storage descriptor: its index in the CBT and the generation it
   * had when this socket took it (what `region show` lists). EBADF for a descriptor not open.
   */
  blockOf(fd: number): { readonly index: number; readonly generation: number };
  /**
   * The STG info to offer a peer (steps 138 / 236): an STG of this region with room for one
   * connection's rings, that STG's own length, and the region's id. ENOBUFS when no STG has room.
   */
  offerStg(): Result<StgInfo>;
  /** What a peer's STG info is checked against (steps 160-162 / 200-202): this region. */
  attachedRegion(): AttachedRegion;
  /** Reclaims the blocks of every host whose lease ran out; returns how many. */
  reclaim(): number;
  /** Closes every open descriptor, stops the heartbeat and gives up the lease. */
  dispose(): Promise<void>;
}

/**
 * Opens storage sockets for one host on a region.
 *
 * @param options the region and wait settings
 * @returns the storage sockets on a host slot claimed for them (throws a SocketError EINVAL for
 *   a bad region, ENOBUFS when every host slot is held by a live host)
 *
 * @example Opening a host and a socket
 * ```ts
 * import { createStorageSockets } from "./shm.ts";
 * import { formatRegion } from "../core/stp/region.ts";
 * const region = formatRegion({
 *   stgs: [{ id: 1, extentCount: 2, ephemeralPortMin: 50000, ephemeralPortMax: 50010 }],
 *   extentBytes: 4096, blockCount: 4, hostCount: 2, ioTimeoutMs: 200, leaseMs: 1000,
 *   backlogMax: 2,
 * }, crypto.randomUUID());
 * if (!region.ok) throw new Error(region.message);
 * const host = createStorageSockets({ region: region.value });
 * const fd = await host.socket("storage");
 * await host.bind(fd, { kind: "storage", stg: 1, port: 0 });
 * console.assert((await host.getsockname(fd)).port >= 50000);
 * await host.dispose();
 * ```
 */
export function createStorageSockets(options: StorageSocketsOptions): StorageSockets {
  const region = options.region instanceof SharedArrayBuffer
    ? unwrap(sharedRegion(options.region, options.waitMode ?? defaultWaitMode()))
    : options.region;
  const { memory, layout } = region;
  const clock = options.clock ?? Date.now;
  const lease = new Lease(memory, layout, clock, options.pid ?? Deno.pid);
  const hostId = lease.hostId;
  const ctx = (): StpContext => ({
    memory,
    layout,
    hostId,
    nowMs: lease.renewIfDue(),
    readClockMs: clock,
  });
  runSteps(ops.reclaimPredecessor(ctx())); // what the slot's previous incarnation left
  runSteps(ops.sweepDeadHosts(ctx()));
  const heartbeat = setInterval(() => lease.renew(), layout.leaseMs / 4);
  Deno.unrefTimer(heartbeat);
  // A file region's wait spins adaptively itself; a SharedArrayBuffer's spins here first.
  const spinCount = options.spinCount ?? (options.region instanceof SharedArrayBuffer ? 2000 : 0);
  const pump = new Pump(region, spinCount, () => lease.renew());
  const table = new SocketTable<Handle>("storage");
  const sockets = storageSockets(table, ctx, pump, () => lease.held());
  return {
    ...sockets,
    ...zeroCopySockets(table, ctx, pump, region),
    layout,
    hostId,
    incarnation: lease.incarnation,
    blockOf(fd) {
      const entry = unwrap(table.lookup(fd));
      if (entry.handle === undefined) throw new SocketError("EBADF", "no control block", { fd });
      return { index: entry.handle.ref.index, generation: entry.handle.ref.gen };
    },
    offerStg() {
      const stg = pickStg(memory, layout);
      if (!stg.ok) return stg;
      return ok({
        id: stg.value.id,
        lengthBytes: stg.value.lengthBytes,
        regionId: layout.regionId,
      });
    },
    attachedRegion() {
      const stgs = layout.stgs.map((stg) => ({ id: stg.id, lengthBytes: stg.lengthBytes }));
      return { regionId: layout.regionId, stgs };
    },
    reclaim() {
      lease.renew();
      return runSteps(ops.sweepDeadHosts(ctx()));
    },
    async dispose() {
      clearInterval(heartbeat);
      for (const fd of table.descriptors()) await sockets.close(fd).catch(() => {});
      runSteps(ops.sweepDeadHosts(ctx()));
      lease.release();
    },
  };
}

/**
 * This host's slot and its lease: claimed at creation, renewed by compare-and-exchange (on a
 * timer, after each wait slice, and on the call path when busy), given up on dispose.
 */
class Lease {
  readonly hostId: number;
  readonly incarnation: number;
  #beat: number;
  #renewedMs: number;
  #lost: Failure | undefined;

  constructor(
    readonly memory: RegionMemory,
    readonly layout: RegionLayout,
    readonly clock: () => number,
    pid: number,
  ) {
    const nowMs = clock();
    const claim = unwrap(runSteps(claimHost(memory, layout, nowMs, pid, clock)), {
      call: "socket",
    });
    this.hostId = claim.hostId;
    this.incarnation = claim.incarnation;
    this.#beat = claim.beat;
    this.#renewedMs = nowMs;
  }

  /** Renews now; after a failed renewal (or a fence, or a changed incarnation) it stays lost. */
  renew(): number {
    const nowMs = this.clock();
    if (this.#lost !== undefined) return nowMs;
    this.#lost = this.#standing();
    if (this.#lost !== undefined) return nowMs;
    const renewed = renewLease(this.memory, this.layout, this.hostId, this.#beat, nowMs);
    if (renewed.ok) this.#beat = renewed.value;
    else this.#lost = renewed;
    this.#renewedMs = nowMs;
    return nowMs;
  }

  /** Renews when an eighth of the lease has passed (a busy host never yields to its timer). */
  renewIfDue(): number {
    const nowMs = this.clock();
    return nowMs - this.#renewedMs >= this.layout.leaseMs / 8 ? this.renew() : nowMs;
  }

  /** Ok while this host still holds its slot; ECONNRESET once the lease was lost. */
  held(): Result<void> {
    if (this.#lost !== undefined) return this.#lost;
    const beat = this.memory.load(hostWord(this.layout, this.hostId, HOST.heartbeat));
    if (beat !== this.#beat) {
      this.#lost = fail("ECONNRESET", `host slot ${this.hostId} was reclaimed: lease lost`);
      return this.#lost;
    }
    this.#lost = this.#standing();
    return this.#lost ?? ok(undefined);
  }

  /**
   * Why this host no longer holds its slot although its heartbeat is still there: the slot's
   * incarnation word changed (taken over, or overwritten), or another host fenced this one.
   */
  #standing(): Failure | undefined {
    const { memory, layout, hostId } = this;
    const incarnation = incarnationOf(memory, layout, hostId);
    if (incarnation !== this.incarnation) {
      return fail(
        "ECONNRESET",
        `host slot ${hostId} is incarnation ${incarnation}, this host claimed ${this.incarnation}: ` +
          "the slot was taken over or overwritten",
      );
    }
    const fence = fenceRecord(memory, layout, hostId);
    if (fence === null || !fence.current) return undefined;
    return fail(
      "ECONNRESET",
      `host slot ${hostId} was fenced by host ${fence.byHost}: ${fence.reason} ` +
        `(${fence.wordName}, word ${fence.word}, was ${fence.value})`,
    );
  }

  /** Gives the slot back (if still held). */
  release(): void {
    if (this.#lost === undefined) releaseHost(this.memory, this.layout, this.hostId, this.#beat);
  }
}
