/**
 * The rogue-host property of the STP suite: two honest hosts move data over the pure core while
 * a rogue writes random values into random words of the region (header, STG table, host slots,
 * control blocks, ring counters, port and extent tables, ring bytes), interleaved with them by
 * `fc.scheduler`. Whatever it writes, every honest operation ends within the I/O timeout (in
 * virtual time) with a result or a typed error; no exception escapes; no honest access leaves the
 * region, and no honest ring access leaves the host's own connection's ring; an operation that
 * succeeds on a block holds it (its word names the host and the generation), so no block is
 * held by two honest hosts at once. Without rogue writes, every byte arrives and the region ends
 * empty. Runtime-agnostic.
 *
 * @module
 */

import fc from "fast-check";
import { type Failure, type Result, SOCKET_ERROR_CODES } from "../src/core/dispatch/errors.ts";
import { F } from "../src/core/stp/block.ts";
import { CLEARED_FIELDS } from "../src/core/stp/cbt.ts";
import { claimHost } from "../src/core/stp/hosts.ts";
import {
  blockWord,
  extentWord,
  HEADER_WORDS,
  hostWord,
  portWord,
  type RegionConfig,
  STG_WORDS,
  stgWord,
} from "../src/core/stp/layout.ts";
import * as ops from "../src/core/stp/ops.ts";
import type { Region, RegionFactory } from "../src/core/stp/region.ts";
import { regionReport } from "../src/core/stp/report.ts";
import { openRingEnd, recvStep, type RingEnd, sendStep } from "../src/core/stp/ring.ts";
import { runSteps, type Step, type StpContext } from "../src/core/stp/steps.ts";
import { regionUsage } from "../src/core/stp/usage.ts";
import { patternBytes, value } from "./stp_harness.ts";
import { honestMemory, World } from "./stp_rogue_world.ts";

/** A small region: one STG of four 4 KiB rings, six blocks, three host slots. */
export const ROGUE_CONFIG: RegionConfig = {
  stgs: [{ id: 1, extentCount: 4, ephemeralPortMin: 100, ephemeralPortMax: 103 }],
  extentBytes: 4096,
  blockCount: 6,
  hostCount: 3,
  ioTimeoutMs: 400,
  leaseMs: 60_000,
  backlogMax: 2,
};

const START_MS = 1_000_000;
/** Virtual time one wait sleeps at most (the adapter's slice). */
const SLICE_MS = 50;
const LISTEN_PORT = 9;
/** Most scheduler turns a rogue write waits, so writes land throughout the transfer. */
const ROGUE_DELAY_MAX = 80;

/** Where a rogue write lands. */
type Area = "header" | "stg" | "host" | "block" | "port" | "extent" | "ring";
/** How it changes the word it finds there. */
type Change =
  | { readonly kind: "set"; readonly value: number }
  | { readonly kind: "flip"; readonly bit: number }
  | { readonly kind: "add"; readonly delta: number };
/** One write of the rogue host, after `delay` turns of the scheduler. */
export interface RogueWrite {
  readonly area: Area;
  readonly at: number;
  readonly delay: number;
  readonly change: Change;
}

/**
 * Block fields a rogue aims at: every field a block holds while in use (the core's own list of
 * what a free block clears), the state word three times as often, the bells, and the ring
 * counters twice as often.
 */
const BLOCK_FIELDS = [
  F.state,
  F.state,
  F.state,
  F.doorbell,
  F.spaceBell,
  ...CLEARED_FIELDS,
  F.txTail,
  F.rxHead,
];

const rogueWrite: fc.Arbitrary<RogueWrite> = fc.record({
  area: fc.constantFrom<Area>("header", "stg", "host", "block", "block", "block", "port", "extent"),
  at: fc.nat(1 << 20),
  delay: fc.nat(ROGUE_DELAY_MAX),
  change: fc.oneof(
    fc.record({
      kind: fc.constant("set" as const),
      value: fc.oneof(
        fc.integer({ min: -0x8000_0000, max: 0x7fff_ffff }),
        fc.integer({ min: -2, max: 20 }),
        fc.constantFrom(0x7fff_ffff, -0x8000_0000, 4095, 4096, 4097, 65535, 65536),
      ),
    }),
    fc.record({ kind: fc.constant("flip" as const), bit: fc.integer({ min: 0, max: 31 }) }),
    fc.record({
      kind: fc.constant("add" as const),
      delta: fc.constantFrom(-4097, -4096, -1, 1, 16, 4096, 4097, 1 << 12),
    }),
  ),
});

/** A rogue write aimed at a ring's bytes (what the session's checksums are for). */
const ringWrite: fc.Arbitrary<RogueWrite> = fc.record({
  area: fc.constant<Area>("ring"),
  at: fc.nat(1 << 20),
  delay: fc.nat(ROGUE_DELAY_MAX),
  change: fc.record({ kind: fc.constant("flip" as const), bit: fc.integer({ min: 0, max: 31 }) }),
});

/** The word index a rogue write lands on. */
function rogueTarget(region: Region, write: RogueWrite): number {
  const { layout } = region;
  const at = write.at;
  switch (write.area) {
    case "header":
      return at % HEADER_WORDS;
    case "stg":
      return stgWord(layout, at % layout.stgs.length, (at >> 4) % STG_WORDS);
    case "host":
      return hostWord(layout, 1 + (at % layout.hostCount), (at >> 4) % 8);
    case "block": {
      // Mostly the blocks the honest hosts use: the listener, the connector, the accepted one.
      const block = [0, 3, 4, at % layout.blockCount][(at >> 8) % 4]!;
      return blockWord(layout, block, BLOCK_FIELDS[(at >> 4) % BLOCK_FIELDS.length]!);
    }
    case "port": {
      const ports = [LISTEN_PORT, 100, 101, 102, 103, (at >> 4) & 0xffff];
      return portWord(layout, 0, ports[at % ports.length]!);
    }
    case "extent":
      return extentWord(layout, at % layout.extentCount);
    case "ring":
      return layout.deviceOffset / 4 + (at % (layout.deviceBytes / 4));
  }
}

function applyChange(old: number, change: Change): number {
  switch (change.kind) {
    case "set":
      return change.value | 0;
    case "flip":
      return (old ^ (1 << change.bit)) | 0;
    case "add":
      return (old + change.delta) | 0;
  }
}

/** Checks a core failure is typed: a known code and a message. */
function checkTyped(world: World, what: string, failure: { code: string; message: string }) {
  if (!(SOCKET_ERROR_CODES as readonly string[]).includes(failure.code)) {
    world.violations.push(`${what} failed with ${failure.code}, not a socket error code`);
  }
  if (typeof failure.message !== "string" || failure.message.length === 0) {
    world.violations.push(`${what} failed with ${failure.code} and no message`);
  }
}

/** One honest host: its id, a fresh context per call (virtual time), and what it holds. */
class Honest {
  readonly held: ops.BlockRef[] = [];
  readonly memory;

  constructor(readonly world: World, readonly region: Region, readonly hostId: number) {
    this.memory = honestMemory(world, hostId);
  }

  ctx(): StpContext {
    const { layout } = this.region;
    return { memory: this.memory, layout, hostId: this.hostId, nowMs: this.world.nowMs };
  }

  /** Runs a control operation; a success on a block must leave the block naming this host. */
  async call<T>(what: string, step: Step<Result<T>>, holds?: (value: T) => ops.BlockRef) {
    const label = `host ${this.hostId} ${what}`;
    const result = await this.world.drive(label, step);
    this.world.log.push(`${label}: ${result.ok ? "ok" : `${result.code} ${result.message}`}`);
    if (!result.ok) checkTyped(this.world, label, result);
    else if (holds !== undefined) this.#holds(label, holds(result.value));
    return result;
  }

  #holds(label: string, ref: ops.BlockRef): void {
    if (!this.world.names(ref, this.hostId)) {
      this.world.violations.push(
        `${label} succeeded on block ${ref.index} generation ${ref.gen}, which no longer names ` +
          `host ${this.hostId}: another host may hold it`,
      );
    }
  }

  /** Polls an operation until ready, waiting where it says; ETIMEDOUT at the I/O timeout. */
  async until<T>(what: string, poll: () => Step<Result<ops.Poll<T>>>): Promise<Result<T>> {
    const deadlineMs = this.world.nowMs + this.region.layout.ioTimeoutMs;
    const label = `host ${this.hostId} ${what}`;
    for (let polls = 0; polls < 10_000; polls++) {
      const polled = await this.world.drive(label, poll());
      if (!polled.ok) {
        checkTyped(this.world, label, polled);
        this.world.log.push(`${label}: ${polled.code} ${polled.message}`);
        return polled;
      }
      if (polled.value.kind === "ready") {
        this.world.log.push(`${label}: ready`);
        return { ok: true, value: polled.value.value };
      }
      if (this.world.nowMs >= deadlineMs) break;
      await this.world.wait(label, polled.value.wait, SLICE_MS);
    }
    this.world.log.push(`${label}: ETIMEDOUT`);
    return { ok: false, code: "ETIMEDOUT", message: `${what} timed out` };
  }

  /** Closes a block (waiting while it is being paired), then forgets it. */
  async close(ref: ops.BlockRef): Promise<void> {
    await this.until(`close #${ref.index}`, () => ops.close(this.ctx(), ref));
    this.held.splice(this.held.indexOf(ref), 1);
  }

  async closeAll(): Promise<void> {
    for (const ref of [...this.held].reverse()) await this.close(ref);
  }

  /** Opens the ring end of a connected block (a synchronous core step). */
  openRing(ref: ops.BlockRef): Result<RingEnd> {
    const end = openRingEnd(this.ctx(), ref);
    const label = `host ${this.hostId} opens the ring of #${ref.index}`;
    this.world.log.push(`${label}: ${end.ok ? "ok" : `${end.code} ${end.message}`}`);
    if (!end.ok) checkTyped(this.world, label, end);
    else this.world.opened(this.hostId, ref, end.value);
    return end;
  }

  /** Moves bytes with a ring step until `done` says so, an error, or the I/O timeout. */
  async pumpRing(
    what: string,
    step: () => ReturnType<typeof sendStep>,
    progress: (moved: number | "eof") => boolean,
  ): Promise<boolean> {
    const label = `host ${this.hostId} ${what}`;
    let deadlineMs = this.world.nowMs + this.region.layout.ioTimeoutMs;
    for (let steps = 0; steps < 10_000; steps++) {
      await this.world.yieldPoint(label);
      const moved = step();
      if (moved.kind === "failed") {
        checkTyped(this.world, label, moved);
        this.world.log.push(`${label}: ${moved.code} ${moved.message}`);
        return false;
      }
      if (moved.kind === "waiting") {
        if (this.world.nowMs >= deadlineMs) break;
        await this.world.wait(label, moved.wait, SLICE_MS);
        continue;
      }
      deadlineMs = this.world.nowMs + this.region.layout.ioTimeoutMs;
      if (progress(moved.kind === "eof" ? "eof" : moved.bytes)) return true;
    }
    this.world.log.push(`${label}: ETIMEDOUT`);
    return false;
  }
}

/** The server: listens, accepts one connection, reads until end of stream, closes. */
async function server(host: Honest, received: number[]): Promise<boolean> {
  const listener = await host.call("allocate", ops.allocate(host.ctx(), 0), (ref) => ref);
  if (!listener.ok) return false;
  host.held.push(listener.value);
  const ref = listener.value;
  const bound = await host.call("bind", ops.bind(host.ctx(), ref, 1, LISTEN_PORT), () => ref);
  const listening = bound.ok &&
    (await host.call("listen", ops.listen(host.ctx(), ref, 1), () => ref)).ok;
  if (!listening) return false;
  const accepted = await host.until("accept", () => ops.accept(host.ctx(), ref));
  if (!accepted.ok) return false;
  const block = accepted.value.block;
  host.held.push(block);
  if (!host.world.names(block, host.hostId)) {
    host.world.violations.push(`accept returned block ${block.index}, which does not name it`);
  }
  const end = host.openRing(block);
  if (!end.ok) return false;
  const into = new Uint8Array(1500);
  return await host.pumpRing("recv", () => recvStep(host.ctx(), end.value, into), (moved) => {
    if (moved === "eof") return true;
    received.push(...into.subarray(0, moved));
    return false;
  });
}

/** The client: connects to the server's port, sends `bytes` in pieces, closes. */
async function client(host: Honest, bytes: Uint8Array, pieceBytes: number): Promise<boolean> {
  const allocated = await host.call("allocate", ops.allocate(host.ctx(), 3), (ref) => ref);
  if (!allocated.ok) return false;
  const ref = allocated.value;
  host.held.push(ref);
  const pending = await connectWithRetries(host, ref);
  if (!pending.ok) return false;
  const connected = await host.until(
    "connect",
    () => ops.pollConnected(host.ctx(), ref, pending.value),
  );
  if (!connected.ok) {
    if (connected.code === "ETIMEDOUT") {
      await host.world.drive(`host ${host.hostId} cancels`, ops.cancelConnect(host.ctx(), ref));
    }
    return false;
  }
  const end = host.openRing(ref);
  if (!end.ok) return false;
  let sent = 0;
  return await host.pumpRing("send", () => {
    const piece = bytes.subarray(sent, Math.min(bytes.length, sent + pieceBytes));
    return sendStep(host.ctx(), end.value, piece);
  }, (moved) => (sent += moved === "eof" ? 0 : moved) >= bytes.length);
}

/** Connects, retrying a refusal (the server may not listen yet) until the I/O timeout. */
async function connectWithRetries(host: Honest, ref: ops.BlockRef) {
  const deadlineMs = host.world.nowMs + host.region.layout.ioTimeoutMs;
  const attemptsMax = host.region.layout.ioTimeoutMs / SLICE_MS + 1;
  let pending = await host.call(
    "connect #0",
    ops.connect(host.ctx(), ref, 1, LISTEN_PORT),
    () => ref,
  );
  for (let attempt = 1; attempt <= attemptsMax; attempt++) {
    if (pending.ok || pending.code !== "ECONNREFUSED" || host.world.nowMs >= deadlineMs) break;
    await host.world.sleep(`host ${host.hostId} retries connect`, SLICE_MS);
    pending = await host.call(
      `connect #${attempt}`,
      ops.connect(host.ctx(), ref, 1, LISTEN_PORT),
      () => ref,
    );
  }
  return pending;
}

/** Runs one honest host's script, then closes what it holds and sweeps, whatever happened. */
async function runHost(host: Honest, script: () => Promise<boolean>): Promise<boolean> {
  host.world.started();
  try {
    const done = await script();
    await host.closeAll();
    await host.call("sweep", wrapCount(ops.sweepDeadHosts(host.ctx())));
    regionReport(host.memory, host.region.layout, host.world.nowMs);
    return done;
  } finally {
    host.world.finished();
  }
}

/** A sweep's count as a result, so it is logged like every other call. */
function* wrapCount(step: Step<number>): Step<Result<number>> {
  return { ok: true, value: yield* step };
}

/** After the run: a newcomer claims a slot, reclaims what its slot left and sweeps. */
async function newcomer(world: World, region: Region): Promise<void> {
  world.nowMs += region.layout.leaseMs + 1;
  const claim = await world.drive(
    "newcomer claims",
    claimHost(honestMemory(world, 0), region.layout, world.nowMs, 0),
  );
  if (!claim.ok) return checkTyped(world, "newcomer claims", claim as Failure);
  const host = new Honest(world, region, claim.value.hostId);
  world.started();
  try {
    await host.call("reclaims its slot", wrapCount(ops.reclaimPredecessor(host.ctx())));
    await host.call("sweeps", wrapCount(ops.sweepDeadHosts(host.ctx())));
    regionReport(host.memory, region.layout, world.nowMs);
  } finally {
    world.finished();
  }
}

/**
 * The rogue-host property over a region factory.
 *
 * @param factory the region implementation under test
 * @returns a fast-check property
 */
export function rogueHostProperty(
  factory: RegionFactory,
): fc.IAsyncPropertyWithHooks<[fc.Scheduler, RogueWrite[], number, number, number]> {
  const ringBytes = ROGUE_CONFIG.extentBytes;
  return fc.asyncProperty(
    fc.scheduler(),
    fc.array(fc.oneof({ weight: 6, arbitrary: rogueWrite }, { weight: 1, arbitrary: ringWrite }), {
      maxLength: 6,
    }),
    fc.integer({ min: 1, max: 3 * ringBytes }),
    fc.integer({ min: 256, max: 2 * ringBytes }),
    fc.nat(255),
    async (s, writes, total, pieceBytes, salt) => {
      const region = value(factory.create(ROGUE_CONFIG));
      try {
        await runWorld(s, region, writes, patternBytes(total, salt), pieceBytes);
      } finally {
        region.close?.();
      }
    },
  );
}

async function runWorld(
  s: fc.Scheduler,
  region: Region,
  writes: RogueWrite[],
  bytes: Uint8Array,
  pieceBytes: number,
): Promise<void> {
  const world = new World(s, region.memory, region.layout, START_MS);
  const claim = () => value(claimHostNow(world, region)).hostId;
  const [a, b] = [new Honest(world, region, claim()), new Honest(world, region, claim())];
  const received: number[] = [];
  const rogue = writes.map(async (write, i) => {
    for (let turn = 0; turn <= write.delay; turn++) {
      await s.schedule(Promise.resolve(), turn < write.delay ? "rogue waits" : `rogue write ${i}`);
    }
    const index = rogueTarget(region, write);
    region.memory.store(index, applyChange(region.memory.load(index), write.change));
  });
  const report = () => `\n${world.violations.join("\n")}\nlog:\n  ${world.log.join("\n  ")}`;
  const [served, sent] = await s.waitFor((async () => {
    const done = await Promise.all([
      runHost(a, () => server(a, received)),
      runHost(b, () => client(b, bytes, pieceBytes)),
      ...rogue,
    ]);
    await newcomer(world, region);
    return done;
  })()).catch((error) => {
    throw new Error(`${error instanceof Error ? error.message : error}${report()}`);
  });
  if (world.violations.length > 0) throw new Error(`the rules were broken:${report()}`);
  if (writes.length === 0) {
    const intact = served && sent && received.length === bytes.length &&
      bytes.every((byte, i) => received[i] === byte);
    const usage = regionUsage(region.memory, region.layout);
    const left = usage.blocks.length + usage.ports.length + usage.extents.length;
    if (!intact || left !== 0) {
      throw new Error(
        `without a rogue, ${received.length} of ${bytes.length} bytes arrived (served ${served}, ` +
          `sent ${sent}) and the region holds ${JSON.stringify(usage)}${report()}`,
      );
    }
  }
}

function claimHostNow(world: World, region: Region) {
  return runSteps(claimHost(honestMemory(world, 0), region.layout, world.nowMs, 0));
}
