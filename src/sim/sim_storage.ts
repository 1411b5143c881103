/**
 * The simulated storage system: one region in plain memory shared by every simulated host, its
 * waits and wake-ups on virtual time, and the real storage sockets (`createStorageSockets`, the
 * STP core and its pump) running on it unchanged.
 *
 * A host can die: from then on its stores and compare-exchanges no longer reach the region (its
 * heartbeat stops, so its lease runs out and a survivor reclaims its blocks), and every call it
 * makes fails, as the calls of a process that is gone never complete.
 *
 * @module
 */

import { SocketError } from "../core/dispatch/errors.ts";
import type { Sockets } from "../core/dispatch/sockets.ts";
import { blockWord, type RegionLayout } from "../core/stp/layout.ts";
import { BlockState, F, ownerOf, stateOf } from "../core/stp/block.ts";
import { plainMemory, type RegionMemory } from "../core/stp/memory.ts";
import type { Region, WaitResult } from "../core/stp/region.ts";
import { type RegionUsage, regionUsage } from "../core/stp/usage.ts";
import { createStorageSockets, type StorageSockets } from "../adapters/shm.ts";
import type { VirtualTime } from "./virtual_time.ts";

/** The storage fault kinds. */
export const STORAGE_FAULTS = [
  "host-dies", // a host stops mid-run; its lease runs out and its blocks are reclaimed
  "rings-fill", // rings of one small extent: every transfer fills them and waits for room
  "blocks-exhausted", // a squatter holds all but a few control blocks
  "ports-exhausted", // a squatter holds all but one dynamic port of the STG
] as const;
/** One storage fault kind. */
export type StorageFault = typeof STORAGE_FAULTS[number];

/** The shared region of a world. */
export class SimStorage {
  readonly #words: RegionMemory;
  readonly #waiters = new Map<number, Set<() => void>>();

  /**
   * @param time the world's virtual time
   * @param buffer the formatted region
   * @param layout its layout
   */
  constructor(
    readonly time: VirtualTime,
    readonly buffer: ArrayBufferLike,
    readonly layout: RegionLayout,
  ) {
    this.#words = plainMemory(buffer);
  }

  /** Indices of the blocks that are not free and name `hostId` as their owner. */
  blocksOwnedBy(hostId: number): number[] {
    const owned: number[] = [];
    for (let block = 0; block < this.layout.blockCount; block++) {
      const word = this.#words.load(blockWord(this.layout, block, F.state));
      if (stateOf(word) !== BlockState.free && ownerOf(word) === hostId) owned.push(block);
    }
    return owned;
  }

  /** What is in use in the region now (blocks, ports, extents). */
  usage(): RegionUsage {
    return regionUsage(this.#words, this.layout);
  }

  #notify(index: number): void {
    const waiters = this.#waiters.get(index);
    if (waiters === undefined) return;
    this.#waiters.delete(index);
    for (const wake of waiters) wake();
  }

  #wait(index: number, value: number, timeoutMs: number): Promise<WaitResult> {
    if (this.#words.load(index) !== value) return Promise.resolve("not-equal");
    return new Promise((resolve) => {
      const set = this.#waiters.get(index) ?? new Set();
      this.#waiters.set(index, set);
      const wake = () => {
        cancel();
        resolve("ok");
      };
      set.add(wake);
      const cancel = this.time.at(timeoutMs, "region-wait-timeout", () => {
        set.delete(wake);
        resolve("timed-out");
      });
    });
  }

  /** One host's view: the shared words, with its writes dropped once `dead()` says so. */
  #memoryOf(dead: () => boolean): RegionMemory {
    const words = this.#words;
    const touch = () => this.time.touch();
    return {
      byteLength: words.byteLength,
      load: (index) => words.load(index),
      store: (index, value) => {
        if (!dead()) words.store(index, value);
      },
      compareExchange: (index, expected, replacement) => {
        if (dead()) return words.load(index) === expected ? ~expected : words.load(index);
        return words.compareExchange(index, expected, replacement);
      },
      add: (index, delta) => (dead() ? words.load(index) : words.add(index, delta)),
      notify: (index) => {
        if (dead()) return;
        touch();
        this.#notify(index);
      },
      readBytes: (offset, into) => words.readBytes(offset, into),
      writeBytes: (offset, from) => {
        if (!dead()) words.writeBytes(offset, from);
      },
    };
  }

  /**
   * Opens a host on the region: the real storage sockets over this host's view.
   *
   * @param pid the label recorded with its slot
   * @returns the host's storage sockets and a switch that kills it
   */
  host(pid: number): SimStorageHost {
    let dead = false;
    const region: Region = {
      memory: this.#memoryOf(() => dead),
      layout: this.layout,
      wait: (index, value, timeoutMs) => this.#wait(index, value, timeoutMs),
    };
    const sockets = createStorageSockets({ region, pid, spinCount: 0 });
    return {
      sockets: deadable(sockets, () => dead),
      storage: sockets,
      kill: () => (dead = true),
      get dead() {
        return dead;
      },
    };
  }
}

/** A simulated storage host. */
export interface SimStorageHost {
  /** Its storage sockets as its code sees them (every call fails once it is dead). */
  readonly sockets: Sockets;
  /** The storage sockets themselves (offerStg, dispose, reclaim). */
  readonly storage: StorageSockets;
  /** Kills the host: its writes stop reaching the region. */
  kill(): void;
  /** Whether it was killed. */
  readonly dead: boolean;
}

/**
 * Wraps a host's sockets so that once `dead()` every call fails (a process that is gone). The
 * pending calls of the real sockets keep running against the region, whose writes are dropped.
 */
export function deadable(sockets: Sockets, dead: () => boolean): Sockets {
  const gone = (call: string) =>
    Promise.reject(new SocketError("ECONNRESET", `${call}: this host is dead`));
  return {
    socket: (kind) => dead() ? gone("socket") : sockets.socket(kind),
    bind: (fd, address) => dead() ? gone("bind") : sockets.bind(fd, address),
    listen: (fd, backlog) => dead() ? gone("listen") : sockets.listen(fd, backlog),
    getsockname: (fd) => dead() ? gone("getsockname") : sockets.getsockname(fd),
    accept: (fd) => dead() ? gone("accept") : sockets.accept(fd),
    connect: (fd, address) => dead() ? gone("connect") : sockets.connect(fd, address),
    send: (fd, bytes) => dead() ? gone("send") : sockets.send(fd, bytes),
    recv: (fd, into) => dead() ? gone("recv") : sockets.recv(fd, into),
    close: (fd) => dead() ? gone("close") : sockets.close(fd),
  };
}
