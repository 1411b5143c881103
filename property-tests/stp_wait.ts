/**
 * The wait/notify property of the STP suite: a writer and a reader on one connection, each
 * waiting with the region's own `wait` where the core says to, never lose a wake-up. A region
 * whose `notify` drops wake-ups leaves a waiter asleep until its timeout, which fails here.
 * Runtime-agnostic (timers only).
 *
 * @module
 */

import fc from "fast-check";
import * as ops from "../src/core/stp/ops.ts";
import type { Region, RegionFactory } from "../src/core/stp/region.ts";
import { recvStep, sendStep } from "../src/core/stp/ring.ts";
import { runSteps, type StpContext, type WaitOn } from "../src/core/stp/steps.ts";
import { connectedPair, patternBytes, SMALL_CONFIG, value, withHosts } from "./stp_harness.ts";
import { pollingWait } from "../src/adapters/shm_memory.ts";

/**
 * How long one wait may take before the property calls the wake-up lost. Every wait here is
 * followed, within milliseconds, by a publish of the word it waits on and a notify, so only a
 * lost wake-up (or a wait that never sleeps on the word) can reach it.
 */
const WAIT_MS = 1000;
/** Largest number of steps per byte one side takes (each moves a byte or more, or waits). */
const STEPS_PER_BYTE_MAX = 4;
const stepsMax = (bytes: number) => STEPS_PER_BYTE_MAX * bytes + 1000;

const pause = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Waits where a step said; a `timed-out` wait is a lost wake-up. */
async function waitOn(region: Region, wait: WaitOn, who: string): Promise<void> {
  const result = await (region.wait?.bind(region) ?? pollingWait(region.memory))(
    wait.index,
    wait.value,
    WAIT_MS,
  );
  if (result === "timed-out") {
    const now = region.memory.load(wait.index);
    throw new Error(
      `${who} waited ${WAIT_MS} ms on word ${wait.index} (was ${wait.value}, now ${now}) and ` +
        "nothing woke it: a lost wake-up",
    );
  }
}

/** Sends `bytes` in pieces of `writes` sizes, pausing before each so the reader falls asleep. */
async function writer(
  region: Region,
  ctx: StpContext,
  send: ReturnType<typeof connectedPair>["sender"],
  bytes: Uint8Array,
  writes: number[],
  pausesMs: number[],
): Promise<void> {
  let at = 0;
  for (let piece = 0; at < bytes.length; piece++) {
    await pause(pausesMs[piece % pausesMs.length] ?? 0);
    const end = Math.min(bytes.length, at + (writes[piece % writes.length] ?? 1));
    const bound = stepsMax(end - at);
    for (let steps = 0; at < end; steps++) {
      if (steps > bound) throw new Error("the writer made no progress");
      const step = sendStep(ctx, send.end, bytes.subarray(at, end));
      if (step.kind === "moved") at += step.bytes;
      else if (step.kind === "waiting") await waitOn(region, step.wait, "the writer");
      else throw new Error(`send: ${JSON.stringify(step)}`);
    }
  }
  value(runSteps(ops.close(ctx, send.ref)));
}

/** Reads until end of stream in reads of `readBytes`; returns what arrived. */
async function reader(
  region: Region,
  ctx: StpContext,
  receive: ReturnType<typeof connectedPair>["receiver"],
  total: number,
  readBytes: number,
): Promise<Uint8Array> {
  const got = new Uint8Array(total + 1);
  let read = 0;
  for (let steps = 0; steps <= stepsMax(total); steps++) {
    const into = got.subarray(read, Math.min(got.length, read + readBytes));
    const step = recvStep(ctx, receive.end, into);
    if (step.kind === "eof") return got.subarray(0, read);
    if (step.kind === "moved") read += step.bytes;
    else if (step.kind === "waiting") await waitOn(region, step.wait, "the reader");
    else throw new Error(`recv: ${JSON.stringify(step)}`);
  }
  throw new Error("the reader made no progress");
}

/**
 * A writer and a reader in one thread move bytes through a ring smaller than the transfer, each
 * waiting with `region.wait` whenever the core says to wait (reader on an empty ring, writer on
 * a full one) and pausing between writes so the other side is asleep when it is notified. Every
 * byte arrives in order and no wait runs into its timeout.
 *
 * @param factory the region implementation under test
 * @returns a fast-check property
 */
export function waitNotifyProperty(
  factory: RegionFactory,
): fc.IAsyncProperty<[number[], number[], number, number]> {
  const ringBytes = SMALL_CONFIG.extentBytes;
  return fc.asyncProperty(
    fc.array(fc.integer({ min: 1, max: 3 * ringBytes }), { minLength: 1, maxLength: 5 }),
    fc.array(fc.integer({ min: 0, max: 2 }), { minLength: 1, maxLength: 5 }),
    fc.integer({ min: 1, max: 2 * ringBytes }),
    fc.integer({ min: 0, max: 255 }),
    (writes, pausesMs, readBytes, salt) =>
      withHosts(factory, SMALL_CONFIG, 2, async ({ region, hosts }) => {
        const [a, b] = hosts as [StpContext, StpContext];
        const pair = connectedPair(region, a, b);
        const total = Math.min(4 * ringBytes, writes.reduce((sum, n) => sum + n, 0));
        const sent = patternBytes(total, salt);
        const [, received] = await Promise.all([
          writer(region, b, pair.sender, sent, writes, pausesMs),
          reader(region, a, pair.receiver, total, readBytes),
        ]);
        if (received.length !== total || !sent.every((byte, i) => received[i] === byte)) {
          throw new Error(`received ${received.length} of ${total} bytes, or in the wrong order`);
        }
        value(runSteps(ops.close(a, pair.receiver.ref)));
      }),
  );
}
