/**
 * The race, ring and attach-fuzz properties of the STP suite, each over a region factory.
 *
 * @module
 */

import fc from "fast-check";
import { F } from "../src/core/stp/block.ts";
import {
  blockWord,
  HEADER_WORDS,
  type RegionConfig,
  type RegionLayout,
  STG_WORDS,
} from "../src/core/stp/layout.ts";
import * as ops from "../src/core/stp/ops.ts";
import { formatRegion, type RegionFactory } from "../src/core/stp/region.ts";
import { recvStep, sendStep } from "../src/core/stp/ring.ts";
import { runSteps, type Step, type StpContext, type WaitOn } from "../src/core/stp/steps.ts";
import { connectedPair, patternBytes, SMALL_CONFIG, value, withHosts } from "./stp_harness.ts";

const RACE_CONFIG: RegionConfig = {
  ...SMALL_CONFIG,
  stgs: [{ id: 1, extentCount: 16, ephemeralPortMin: 100, ephemeralPortMax: 120 }],
  blockCount: 14,
  backlogMax: 8,
};

/** Runs a core operation one yield at a time, letting the scheduler interleave other hosts. */
async function drive<T>(s: fc.Scheduler, label: string, step: Step<T>): Promise<T> {
  for (let count = 0; count < 100_000; count++) {
    const next = step.next();
    if (next.done === true) return next.value;
    await s.schedule(Promise.resolve(), label);
  }
  throw new Error(`${label} did not finish`);
}

/** Polls until ready; asserts a waiter would have been woken (its word changed) each time. */
async function pollUntilReady<T>(
  s: fc.Scheduler,
  ctx: StpContext,
  label: string,
  poll: () => Step<{ ok: true; value: ops.Poll<T> } | { ok: false; code: string; message: string }>,
): Promise<T> {
  let waitedOn: WaitOn | undefined;
  for (let round = 0; round < 1000; round++) {
    const polled = await drive(s, label, poll());
    if (!polled.ok) throw new Error(`${label}: ${polled.code} ${polled.message}`);
    const ready = polled.value.kind === "ready";
    if (ready && waitedOn !== undefined && ctx.memory.load(waitedOn.index) === waitedOn.value) {
      throw new Error(
        `${label}: progress without a wake-up on word ${waitedOn.index} (lost wake-up)`,
      );
    }
    if (polled.value.kind === "ready") return polled.value.value;
    waitedOn = polled.value.wait;
    await s.schedule(Promise.resolve(), `${label} waits`);
  }
  throw new Error(`${label} never became ready`);
}

/**
 * Concurrent allocations and connects from several hosts, interleaved by fc.scheduler: no block
 * is taken twice, every connector is paired with exactly one accepted block, no lost wake-up.
 */
export function raceProperty(
  factory: RegionFactory,
): fc.IAsyncPropertyWithHooks<[fc.Scheduler, number]> {
  return fc.asyncProperty(
    fc.scheduler(),
    fc.integer({ min: 1, max: 3 }),
    (s, perHost) =>
      withHosts(factory, RACE_CONFIG, 3, async ({ region, hosts }) => {
        const [h1, h2, h3] = hosts as [StpContext, StpContext, StpContext];
        const listener = value(runSteps(ops.allocate(h1, 0)));
        value(runSteps(ops.bind(h1, listener, 1, 5)));
        value(runSteps(ops.listen(h1, listener, RACE_CONFIG.backlogMax)));
        const connectOne = async (ctx: StpContext, label: string) => {
          const block = value(await drive(s, label, ops.allocate(ctx, 0)));
          const pending = value(await drive(s, label, ops.connect(ctx, block, 1, 5)));
          await pollUntilReady(s, ctx, label, () => ops.pollConnected(ctx, block, pending));
          return block;
        };
        const connectors = [h2, h3].flatMap((ctx) =>
          Array.from({ length: perHost }, (_, i) => connectOne(ctx, `host ${ctx.hostId} #${i}`))
        );
        const acceptAll = async () => {
          const accepted: ops.BlockRef[] = [];
          for (let i = 0; i < 2 * perHost; i++) {
            const got = await pollUntilReady(s, h1, `accept #${i}`, () => ops.accept(h1, listener));
            accepted.push(got.block);
          }
          return accepted;
        };
        const [accepted, ...connected] = await s.waitFor(Promise.all([acceptAll(), ...connectors]));
        const all = [listener, ...(accepted as ops.BlockRef[]), ...(connected as ops.BlockRef[])];
        if (new Set(all.map((b) => b.index)).size !== all.length) {
          throw new Error("a block was allocated twice");
        }
        const peerOf = (b: ops.BlockRef) =>
          region.memory.load(blockWord(region.layout, b.index, F.peerIndex));
        for (const c of connected as ops.BlockRef[]) {
          const a = (accepted as ops.BlockRef[]).filter((x) => peerOf(x) === c.index);
          if (a.length !== 1 || peerOf(c) !== a[0]?.index) {
            throw new Error(`connector ${c.index} paired ${a.length} times`);
          }
        }
      }),
  );
}

/**
 * Writes and reads of random sizes (some larger than the ring), with counters starting anywhere
 * (including just before 2^31 and 2^32), deliver exactly the bytes sent, in order, then EOF.
 */
export function ringProperty(
  factory: RegionFactory,
): fc.IProperty<[number[], number[], number, number]> {
  const ringBytes = SMALL_CONFIG.extentBytes;
  return fc.property(
    fc.array(fc.integer({ min: 1, max: 3 * ringBytes }), { minLength: 1, maxLength: 12 }),
    fc.array(fc.integer({ min: 1, max: 3 * ringBytes }), { minLength: 1, maxLength: 12 }),
    fc.constantFrom(0, 0x7fff_ff00, -256, 12345),
    fc.integer({ min: 0, max: 255 }),
    (writes, reads, start, salt) =>
      withHosts(factory, SMALL_CONFIG, 2, ({ region, hosts }) => {
        const [a, b] = hosts as [StpContext, StpContext];
        const pair = connectedPair(region, a, b, start);
        const [tx, rx, c] = [pair.sender.end, pair.receiver.end, pair.sender.ref];
        const total = writes.reduce((sum, n) => sum + n, 0);
        const sent = patternBytes(total, salt);
        const received = new Uint8Array(total);
        let written = 0;
        let read = 0;
        let writeIndex = 0;
        let writeEnd = writes[0] ?? 0;
        for (let round = 0; round < 4 * total + 100 && read < total; round++) {
          if (written < total) {
            const step = sendStep(b, tx, sent.subarray(written, writeEnd));
            if (step.kind === "moved") written += step.bytes;
            else if (step.kind !== "waiting") throw new Error(`send: ${JSON.stringify(step)}`);
            if (written === writeEnd) writeEnd += writes[++writeIndex] ?? 0;
          }
          const want = reads[round % reads.length] ?? 1;
          const step = recvStep(a, rx, received.subarray(read, Math.min(total, read + want)));
          if (step.kind === "moved") read += step.bytes;
          else if (step.kind !== "waiting") throw new Error(`recv: ${JSON.stringify(step)}`);
        }
        if (read !== total || !sent.every((byte, i) => received[i] === byte)) {
          throw new Error(`received ${read} of ${total} bytes, or in the wrong order`);
        }
        value(runSteps(ops.close(b, c)));
        const eof = recvStep(a, rx, new Uint8Array(1));
        if (eof.kind !== "eof") {
          throw new Error(`expected end of stream, got ${JSON.stringify(eof)}`);
        }
      }),
  );
}

/** Every offset and length of a layout lies inside `bytes` bytes. */
function layoutInside(layout: RegionLayout, bytes: number): boolean {
  return layout.regionBytes <= bytes && layout.deviceOffset + layout.deviceBytes <= bytes &&
    layout.stgs.every((s) => s.firstExtent + s.extentCount <= layout.extentCount);
}

/** Random bytes and mutated or truncated headers never throw, hang or read out of bounds. */
export function attachFuzzProperty(
  factory: RegionFactory,
): fc.IProperty<[Uint8Array, Array<[number, number]>, number]> {
  const pristine = new Uint8Array(value(formatRegion(SMALL_CONFIG, crypto.randomUUID())));
  const headerAndTable = HEADER_WORDS + SMALL_CONFIG.stgs.length * STG_WORDS;
  return fc.property(
    fc.uint8Array({ maxLength: 1024 }),
    fc.array(fc.tuple(fc.nat(headerAndTable - 1), fc.integer()), { maxLength: 4 }),
    fc.nat(pristine.length),
    (random, mutations, length) => {
      const randomResult = factory.attach(random);
      if (randomResult.ok) randomResult.value.close?.();
      if (randomResult.ok && !layoutInside(randomResult.value.layout, random.length)) {
        throw new Error("random bytes attached with a layout outside the buffer");
      }
      const mutated = pristine.slice(0, mutations.length === 0 ? length : pristine.length);
      const words = new DataView(mutated.buffer);
      for (const [word, replacement] of mutations) words.setInt32(word * 4, replacement, true);
      const result = factory.attach(mutated);
      if (result.ok) result.value.close?.();
      if (result.ok && !layoutInside(result.value.layout, mutated.length)) {
        throw new Error("a mutated header attached with a layout outside the buffer");
      }
      if (!result.ok && result.code !== "EINVAL") {
        throw new Error(`attach failed with ${result.code}`);
      }
    },
  );
}
