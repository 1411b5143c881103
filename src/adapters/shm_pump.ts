/**
 * The waiting half of the shm adapter: a pump that polls the core and waits where it says, and
 * the descriptor-table helpers every storage call shares.
 *
 * @module
 */

import {
  type Result,
  SocketError,
  type SocketErrorCode,
  toSocketError,
} from "../core/dispatch/errors.ts";
import type { SocketEntry, SocketTable } from "../core/dispatch/socket_table.ts";
import type { StateCall } from "../core/dispatch/socket_state.ts";
import type { StorageAddress } from "../core/dispatch/sockets.ts";
import type { RegionLayout } from "../core/stp/layout.ts";
import type * as ops from "../core/stp/ops.ts";
import type { Region } from "../core/stp/region.ts";
import type { RingEnd } from "../core/stp/ring.ts";
import type { WaitOn } from "../core/stp/steps.ts";
import { pollingWait } from "./shm_memory.ts";

/** What a storage descriptor refers to in the region. */
export interface Handle {
  readonly ref: ops.BlockRef;
  end?: RingEnd;
  /** The span handed out by `reserve`, until `commit` (a scratch copy: commit copies it in). */
  reserved?: { readonly view: Uint8Array; readonly byteOffset: number; readonly copy: boolean };
  /** Whether a span handed out by `peek` awaits its `release`. */
  peeked?: boolean;
}

/** Largest number of wake-ups one call waits through (each is bounded in time as well). */
const WAKEUPS_MAX = 100_000_000;

/**
 * Waits where the core says, in slices short enough to keep the lease renewed: spins
 * `spinCount` loads first (cheap when the peer answers within microseconds), then waits with
 * the region's own `wait`.
 */
export class Pump {
  readonly layout: RegionLayout;
  readonly #wait: NonNullable<Region["wait"]>;

  constructor(
    readonly region: Region,
    readonly spinCount: number,
    readonly renew: () => void,
  ) {
    this.layout = region.layout;
    this.#wait = region.wait?.bind(region) ?? pollingWait(region.memory);
  }

  /** Waits on `wait` until it changes or `deadlineMs`; false when the deadline has passed. */
  async wait(wait: WaitOn, deadlineMs: number): Promise<boolean> {
    const remainingMs = deadlineMs - Date.now();
    if (remainingMs <= 0) return false;
    const memory = this.region.memory;
    for (let spin = 0; spin < this.spinCount; spin++) {
      if (memory.load(wait.index) !== wait.value) return true;
    }
    const sliceMs = Math.max(1, Math.min(remainingMs, this.layout.leaseMs / 4));
    await this.#wait(wait.index, wait.value, sliceMs);
    this.renew();
    return true;
  }

  /** Polls until ready; ETIMEDOUT after `ioTimeoutMs` without success. */
  async until<T>(poll: () => Result<ops.Poll<T>>, what: string): Promise<Result<T>> {
    const deadlineMs = Date.now() + this.layout.ioTimeoutMs;
    for (let wakeups = 0; wakeups < WAKEUPS_MAX; wakeups++) {
      const polled = poll();
      if (!polled.ok) return polled;
      if (polled.value.kind === "ready") return { ok: true, value: polled.value.value };
      if (!(await this.wait(polled.value.wait, deadlineMs))) break;
    }
    return {
      ok: false,
      code: "ETIMEDOUT",
      message: `${what} waited ${this.layout.ioTimeoutMs} ms`,
    };
  }
}

/** Throws a failure of `call` on `fd`, after reporting it to the table. */
export function failCall(
  table: SocketTable<Handle>,
  fd: number,
  call: StateCall,
  code: SocketErrorCode,
  message: string,
): never {
  table.complete(fd, call, { type: "error", code, message });
  throw new SocketError(code, message, { call, fd });
}

/** The entry of a descriptor for a call, or throw the table's verdict. */
export function begin(
  table: SocketTable<Handle>,
  fd: number,
  call: StateCall,
): SocketEntry<Handle> & { handle: Handle } {
  const entry = table.begin(fd, call);
  if (!entry.ok) throw toSocketError(entry, { call, fd });
  if (entry.value.handle === undefined) {
    failCall(table, fd, call, "EBADF", "descriptor has no control block");
  }
  return entry.value as SocketEntry<Handle> & { handle: Handle };
}

export const storageAddress = (address: { stg: number; port: number }): StorageAddress => ({
  kind: "storage",
  stg: address.stg,
  port: address.port,
});
