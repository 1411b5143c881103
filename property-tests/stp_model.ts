/**
 * Model-based test of the control block table: allocate, bind, listen, connect, accept and close
 * from several simulated hosts, checked after every command against a simple model (counts and
 * sets), and at the end: everything closed leaves the region exactly as formatted.
 *
 * @module
 */

import type fc from "fast-check";
import * as ops from "../src/core/stp/ops.ts";
import type { Region } from "../src/core/stp/region.ts";
import { runSteps, type StpContext } from "../src/core/stp/steps.ts";
import { BlockState, F, stateOf } from "../src/core/stp/block.ts";
import { blockWord, extentWord, portWord } from "../src/core/stp/layout.ts";
import { SMALL_CONFIG } from "./stp_harness.ts";

type Phase = "allocated" | "bound" | "listening" | "queued" | "connected";

/** One socket as the model sees it. */
interface ModelSocket {
  readonly host: number;
  phase: Phase;
  stg?: number;
  port?: number;
  holdsPort: boolean;
  queuedOn?: ModelSocket;
  /** Order of arrival in the listener's queue (accept takes the oldest). */
  queuedAt?: number;
  /** A listener's backlog in effect (connectors queued beyond it are refused). */
  backlog?: number;
  pairedWith?: ModelSocket;
  closed: boolean;
}

/** The model: open sockets and what they hold. */
interface Model {
  readonly sockets: ModelSocket[];
  readonly blocksMax: number;
  readonly extentsFree: Map<number, number>;
}

/** The real system: the region, its hosts, and the block of each model socket. */
interface Real {
  readonly region: Region;
  readonly hosts: StpContext[];
  readonly refs: Map<ModelSocket, ops.BlockRef>;
  readonly pending: Map<ModelSocket, ops.PendingConnect>;
}

const STGS = SMALL_CONFIG.stgs;
const live = (m: Model) => m.sockets.filter((s) => !s.closed);
/** A closed connected socket keeps its block (and port) until its peer closes too. */
const holdsBlock = (s: ModelSocket) => !s.closed || s.pairedWith?.closed === false;
const blocksInUse = (m: Model) => m.sockets.filter(holdsBlock).length;
const portsHeld = (m: Model, stg: number) =>
  new Set(
    m.sockets.filter((s) => holdsBlock(s) && s.holdsPort && s.stg === stg).map((s) => s.port),
  );
const ctxOf = (r: Real, s: ModelSocket) => r.hosts[s.host - 1] as StpContext;
const refOf = (r: Real, s: ModelSocket) => r.refs.get(s) as ops.BlockRef;
const pick = <T>(items: T[], n: number): T | undefined =>
  items.length === 0 ? undefined : items[n % items.length];

function freeEphemeral(m: Model, stg: number): number | undefined {
  const config = STGS.find((s) => s.id === stg);
  if (config === undefined) return undefined;
  const held = portsHeld(m, stg);
  for (let p = config.ephemeralPortMin; p <= config.ephemeralPortMax; p++) {
    if (!held.has(p)) return p;
  }
  return undefined;
}

/** Whether `port` is in the STG's ephemeral range and not held in the model. */
function ephemeralFree(m: Model, stg: number, port: number): boolean {
  const config = STGS.find((s) => s.id === stg);
  if (config === undefined || port < config.ephemeralPortMin || port > config.ephemeralPortMax) {
    return false;
  }
  return !portsHeld(m, stg).has(port);
}

function expectCode(result: { ok: boolean; code?: string }, code: string, what: string): void {
  if (result.ok || result.code !== code) {
    throw new Error(`${what}: expected ${code}, got ${JSON.stringify(result)}`);
  }
}

/** Every port the commands can touch: the explicit ones and the ephemeral ranges. */
const CANDIDATE_PORTS = STGS.map((s) => {
  const ports = [1, 2, 3];
  for (let p = s.ephemeralPortMin; p <= s.ephemeralPortMax; p++) ports.push(p);
  return ports;
});

/** Ports held in the real region, among those the commands can touch (cheap to scan). */
function realPorts(r: Real): string[] {
  const { memory, layout } = r.region;
  return STGS.flatMap((s, index) =>
    (CANDIDATE_PORTS[index] ?? []).filter((p) => memory.load(portWord(layout, index, p)) !== 0)
      .map((p) => `${s.id}:${p}`)
  ).sort();
}

function checkAgainstModel(m: Model, r: Real): void {
  const { memory, layout } = r.region;
  let blocks = 0;
  for (let b = 0; b < layout.blockCount; b++) {
    if (stateOf(memory.load(blockWord(layout, b, F.state))) !== BlockState.free) blocks++;
  }
  if (blocks !== blocksInUse(m)) {
    throw new Error(`blocks in use ${blocks}, model says ${blocksInUse(m)}`);
  }
  const modelPorts = STGS.flatMap((s) => [...portsHeld(m, s.id)].map((p) => `${s.id}:${p}`)).sort();
  const ports = realPorts(r);
  if (JSON.stringify(ports) !== JSON.stringify(modelPorts)) {
    throw new Error(`ports ${ports} but model holds ${modelPorts}`);
  }
  const indices = live(m).map((s) => refOf(r, s).index);
  if (new Set(indices).size !== indices.length) {
    throw new Error(`a block is held twice: ${indices}`);
  }
  let extents = 0;
  for (let e = 0; e < layout.extentCount; e++) {
    if (memory.load(extentWord(layout, e)) !== 0) extents++;
  }
  const extentsUsed = [...m.extentsFree.entries()].reduce(
    (sum, [stg, free]) => sum + (STGS.find((s) => s.id === stg)?.extentCount ?? 0) - free,
    0,
  );
  if (extents !== extentsUsed) {
    throw new Error(`extents in use ${extents}, model says ${extentsUsed}`);
  }
}

type Cmd = fc.Command<Model, Real>;

class Allocate implements Cmd {
  constructor(readonly host: number) {}
  check = () => true;
  run(m: Model, r: Real) {
    const s: ModelSocket = { host: this.host, phase: "allocated", holdsPort: false, closed: false };
    const block = runSteps(ops.allocate(ctxOf(r, s), 0));
    if (blocksInUse(m) >= m.blocksMax) return expectCode(block, "ENOBUFS", "allocate when full");
    if (!block.ok) {
      throw new Error(`allocate failed with ${blocksInUse(m)} blocks in use: ${block.message}`);
    }
    m.sockets.push(s);
    r.refs.set(s, block.value);
    checkAgainstModel(m, r);
  }
  toString = () => `allocate(host ${this.host})`;
}

class Bind implements Cmd {
  constructor(readonly n: number, readonly stg: number, readonly port: number) {}
  check = (m: Model) => live(m).some((s) => s.phase === "allocated");
  run(m: Model, r: Real) {
    const s = pick(live(m).filter((x) => x.phase === "allocated"), this.n) as ModelSocket;
    const port = runSteps(ops.bind(ctxOf(r, s), refOf(r, s), this.stg, this.port));
    if (this.port === 0 && freeEphemeral(m, this.stg) === undefined) {
      return expectCode(port, "EADDRNOTAVAIL", "bind 0");
    }
    if (this.port !== 0 && portsHeld(m, this.stg).has(this.port)) {
      return expectCode(port, "EADDRINUSE", "bind taken");
    }
    if (!port.ok) throw new Error(`bind failed: ${port.message}`);
    if (this.port === 0 && !ephemeralFree(m, this.stg, port.value)) {
      throw new Error(`dynamic port ${port.value} was not free`);
    }
    Object.assign(s, { phase: "bound", stg: this.stg, port: port.value, holdsPort: true });
    checkAgainstModel(m, r);
  }
  toString = () => `bind(#${this.n}, stg ${this.stg}, port ${this.port})`;
}

/** The backlog `listen(backlog)` puts in effect: at least 1, at most the region's maximum. */
const backlogInEffect = (backlog: number) =>
  Math.min(Math.max(1, backlog), SMALL_CONFIG.backlogMax);

class Listen implements Cmd {
  constructor(readonly n: number, readonly backlog = SMALL_CONFIG.backlogMax) {}
  check = (m: Model) => live(m).some((s) => s.phase === "bound");
  run(m: Model, r: Real) {
    const s = pick(live(m).filter((x) => x.phase === "bound"), this.n) as ModelSocket;
    const used = runSteps(ops.listen(ctxOf(r, s), refOf(r, s), this.backlog));
    const expected = backlogInEffect(this.backlog);
    if (!used.ok || used.value !== expected) {
      throw new Error(
        `listen(${this.backlog}): expected backlog ${expected}, got ${JSON.stringify(used)}`,
      );
    }
    Object.assign(s, { phase: "listening", backlog: expected });
    checkAgainstModel(m, r);
  }
  toString = () => `listen(#${this.n}, backlog ${this.backlog})`;
}

export {
  Allocate,
  Bind,
  blocksInUse,
  checkAgainstModel,
  ctxOf,
  ephemeralFree,
  expectCode,
  freeEphemeral,
  Listen,
  live,
  pick,
  refOf,
};
export type { Cmd, Model, ModelSocket, Real };
