/**
 * Waiting on a word of a file mapping shared by several processes. `Atomics.wait` refuses a
 * buffer that is not a SharedArrayBuffer, so the file region waits with the Linux `futex`
 * system call on the mapped word:
 *
 * - the **shared** operations (`FUTEX_WAIT` = 0, `FUTEX_WAKE` = 1, no `FUTEX_PRIVATE_FLAG`), so a
 *   wake in one process reaches a waiter in another (the kernel keys the word by file and
 *   offset);
 * - the wait is an FFI call declared `nonblocking`, so it sleeps on a thread of Deno's blocking
 *   pool, not on the JS thread, and is bounded by a relative timespec;
 * - the wake is a synchronous call;
 * - a short spin comes first: a peer that answers within microseconds costs no system call
 *   (adaptive: a spin that keeps failing, as when both sides share one core, shrinks to none).
 *
 * The system call number differs by architecture (`futex` is 202 on x86_64, 98 on aarch64).
 * Where it is not available (another architecture, no FFI) the waiter polls instead: it re-reads
 * the word every millisecond until it changes or the time runs out, and a wake does nothing.
 *
 * A pending nonblocking FFI call keeps Deno's event loop alive until it returns (checked on Deno
 * 2.9: a process whose script ended with a 5 s futex wait pending exited after 5 s;
 * `Deno.exit` does not wait for it). {@link WordWaiter.drain} therefore wakes every wait of this
 * process on close, and every wait is bounded by its caller's slice.
 *
 * @module
 */

import type { WaitResult } from "../core/stp/region.ts";
import { type Libc, libc } from "./_libc.ts";
import { pollWord } from "./shm_memory.ts";

/** How a waiter sleeps: `futex`, or `poll` (re-read every millisecond) where futex is missing. */
export type WakeMethod = "futex" | "poll";

/** The futex system call number of each architecture Deno builds for. */
export const SYS_FUTEX: Readonly<Partial<Record<typeof Deno.build.arch, bigint>>> = {
  x86_64: 202n,
  aarch64: 98n,
};
const FUTEX_WAIT = 0;
const FUTEX_WAKE = 1;
const WAKE_ALL = 0x7fff_ffff;
/** Largest number of wake rounds `drain` makes before it gives up on a wait (each 1 ms). */
const DRAIN_ROUNDS_MAX = 10_000;

/** Waits and wakes on the words of one mapping. */
export interface WordWaiter {
  /** `futex`, or `poll` where futex is not available. */
  readonly method: WakeMethod;
  /** Waits while word `index` holds `value`, at most `timeoutMs` (see `Region.wait`). */
  wait(index: number, value: number, timeoutMs: number): Promise<WaitResult>;
  /** Wakes every waiter, in any process, on word `index`. */
  wake(index: number): void;
  /**
   * Stops new waits, wakes the pending ones of this process and resolves once none is pending
   * (after that the mapping may be unmapped).
   */
  drain(): Promise<void>;
}

/** Options of {@link wordWaiter}. */
export interface WordWaiterOptions {
  /** `futex` (default where available) or `poll`. */
  readonly method?: WakeMethod;
  /** How long to spin re-reading the word before sleeping, µs (default {@link SPIN_MICROS_DEFAULT}). */
  readonly spinMicros?: number;
}

/** The wake method this machine supports: futex on x86_64 and aarch64 Linux with libc. */
export function futexAvailable(): boolean {
  return SYS_FUTEX[Deno.build.arch] !== undefined && typeof libc() !== "string";
}

/**
 * A waiter on the Int32 words of a mapping that starts at `base`.
 *
 * @param base the mapping's address
 * @param words an Int32 view of the whole mapping
 * @param options the method and the spin
 * @returns the waiter
 */
export function wordWaiter(
  base: Deno.PointerObject,
  words: Int32Array,
  options: WordWaiterOptions = {},
): WordWaiter {
  const symbols = libc();
  const sys = SYS_FUTEX[Deno.build.arch];
  const method = options.method ?? (futexAvailable() ? "futex" : "poll");
  if (method === "futex" && (typeof symbols === "string" || sys === undefined)) {
    throw new TypeError(
      typeof symbols === "string" ? symbols : `no futex syscall number for ${Deno.build.arch}`,
    );
  }
  const state = { closed: false, pending: new Map<number, number>() };
  const spin = new AdaptiveSpin((options.spinMicros ?? SPIN_MICROS_DEFAULT) / 1000);
  const sleep = method === "futex"
    ? futexSleep(symbols as Libc, sys as bigint, base)
    : pollSleep(words, state);
  return {
    method,
    async wait(index, value, timeoutMs) {
      if (state.closed) return "ok";
      const spinUntil = performance.now() + spin.budgetMs;
      for (let loads = 0; loads < 64 || performance.now() < spinUntil; loads++) {
        if (Atomics.load(words, index) !== value) {
          if (loads >= 64) spin.caught();
          return loads === 0 ? "not-equal" : "ok";
        }
      }
      state.pending.set(index, (state.pending.get(index) ?? 0) + 1);
      try {
        const result = await sleep(index, value, timeoutMs);
        spin.slept();
        return result;
      } finally {
        const left = (state.pending.get(index) ?? 1) - 1;
        if (left === 0) state.pending.delete(index);
        else state.pending.set(index, left);
      }
    },
    wake(index) {
      if (method === "futex" && !state.closed) {
        const address = Deno.UnsafePointer.offset(base, index * 4);
        (symbols as Libc).futexWake(sys as bigint, address, FUTEX_WAKE, WAKE_ALL, null, null, 0);
      }
    },
    async drain() {
      state.closed = true;
      // A wait may not have entered the kernel yet when woken: wake again each millisecond.
      for (let round = 0; round < DRAIN_ROUNDS_MAX && state.pending.size > 0; round++) {
        if (method === "futex") {
          for (const index of state.pending.keys()) {
            const address = Deno.UnsafePointer.offset(base, index * 4);
            (symbols as Libc).futexWake(
              sys as bigint,
              address,
              FUTEX_WAKE,
              WAKE_ALL,
              null,
              null,
              0,
            );
          }
        }
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
    },
  };
}

/**
 * How long a wait spins before it sleeps, adapted to what spinning buys. A spin pays off when
 * the peer runs on another core and answers within microseconds; when both share a core (a
 * loaded machine), spinning only delays the peer, and every round trip costs the whole spin
 * twice. A spin catches the peer only while the peer spins too (a sleeping peer answers tens
 * of microseconds later), so both sides settle spinning or settle sleeping. Hence: each wait the
 * spin caught restores the full budget, each it missed takes a sixteenth away (a core shared
 * for good ends the spinning after sixteen waits), and every {@link PROBE_EVERY} waits one wait
 * spins the full budget again, which lifts two sleeping sides back to spinning once they have
 * cores again. Measured on the 2-core machine under varying load, alternating runs (16-byte
 * round trip between two processes, median): a fixed 50 µs spin 17-208 µs (median 172), this
 * 16-121 µs (median 67).
 */
export class AdaptiveSpin {
  #budgetMs: number;
  #waits = 0;

  /** @param maxMs the longest spin, ms (also the first) */
  constructor(readonly maxMs: number) {
    this.#budgetMs = maxMs;
  }

  /** The spin of the next wait, ms. */
  get budgetMs(): number {
    return ++this.#waits % PROBE_EVERY === 0 ? this.maxMs : this.#budgetMs;
  }

  /** The spin saw the change: spin in full again. */
  caught(): void {
    this.#budgetMs = this.maxMs;
  }

  /** The wait had to sleep. */
  slept(): void {
    this.#budgetMs = Math.max(0, this.#budgetMs - this.maxMs / 16);
  }
}

/**
 * The longest spin of a wait, µs. It must outlast a *sleeping* peer's answer (its futex wake,
 * the hop from Deno's blocking pool back to its JS thread, its reply: 60-120 µs measured here),
 * or a probe of two sides that both settled sleeping never catches the other and they stay
 * asleep for good. With 50 µs, 3 of 7 quiet-machine runs of `stp-rtt-proc` stayed there (87-128
 * µs per round trip instead of 13); with 200 µs none of 6 did (13-22 µs).
 */
export const SPIN_MICROS_DEFAULT = 200;

/** One wait in this many spins the whole budget again (see {@link AdaptiveSpin}). */
export const PROBE_EVERY = 32;

/** One futex sleep: `ok` when woken, `not-equal` when the word differed, `timed-out`. */
function futexSleep(
  symbols: Libc,
  sys: bigint,
  base: Deno.PointerObject,
): (index: number, value: number, timeoutMs: number) => Promise<WaitResult> {
  return async (index, value, timeoutMs) => {
    const timespec = new BigInt64Array([
      BigInt(Math.floor(timeoutMs / 1000)),
      BigInt(Math.floor((timeoutMs % 1000) * 1_000_000)),
    ]);
    const address = Deno.UnsafePointer.offset(base, index * 4);
    const startedMs = performance.now();
    const returned = await symbols.futexWait(
      sys,
      address,
      FUTEX_WAIT,
      value,
      new Uint8Array(timespec.buffer),
      null,
      0,
    );
    if (Number(returned) === 0) return "ok";
    // -1: EAGAIN (the word differed), ETIMEDOUT or EINTR. errno lives on the pool thread that
    // made the call, so the elapsed time tells a timeout from the others.
    return performance.now() - startedMs >= timeoutMs ? "timed-out" : "not-equal";
  };
}

/** One polling sleep: re-reads the word every millisecond until it changes, close, or time. */
function pollSleep(
  words: Int32Array,
  state: { readonly closed: boolean },
): (index: number, value: number, timeoutMs: number) => Promise<WaitResult> {
  return (index, value, timeoutMs) =>
    pollWord(() => Atomics.load(words, index), value, timeoutMs, () => state.closed);
}
