/**
 * The connect, accept and close commands of the CBT model, and the property that runs them.
 *
 * @module
 */

import fc from "fast-check";
import * as ops from "../src/core/stp/ops.ts";
import type { RegionFactory } from "../src/core/stp/region.ts";
import { runSteps } from "../src/core/stp/steps.ts";
import { regionUsage } from "../src/core/stp/usage.ts";
import { SMALL_CONFIG, value, withHosts } from "./stp_harness.ts";
import {
  Allocate,
  Bind,
  blocksInUse,
  checkAgainstModel,
  type Cmd,
  ctxOf,
  ephemeralFree,
  expectCode,
  freeEphemeral,
  Listen,
  live,
  type Model,
  type ModelSocket,
  pick,
  type Real,
  refOf,
} from "./stp_model.ts";

const STG = 1;
let queueClock = 0;
const PORTS = [1, 2];

class Connect implements Cmd {
  constructor(readonly n: number, readonly port: number) {}
  check = (m: Model) =>
    live(m).some((s) => s.phase === "allocated" || (s.phase === "bound" && s.stg === STG));
  run(m: Model, r: Real) {
    const s = pick(
      live(m).filter((x) => x.phase === "allocated" || (x.phase === "bound" && x.stg === STG)),
      this.n,
    ) as ModelSocket;
    const pending = runSteps(ops.connect(ctxOf(r, s), refOf(r, s), STG, this.port));
    if (s.phase === "allocated") {
      const port = freeEphemeral(m, STG);
      if (port === undefined) {
        return expectCode(pending, "EADDRNOTAVAIL", "connect without a dynamic port");
      }
      const chosen = value(ops.blockAddress(ctxOf(r, s), refOf(r, s))).port;
      if (!ephemeralFree(m, STG, chosen)) throw new Error(`dynamic port ${chosen} was not free`);
      Object.assign(s, { phase: "bound", stg: STG, port: chosen, holdsPort: true });
    }
    const listener = live(m).find((x) =>
      x.phase === "listening" && x.stg === STG && x.port === this.port
    );
    const queued = live(m).filter((x) => x.queuedOn === listener && listener !== undefined).length;
    if (listener === undefined || queued >= (listener.backlog ?? SMALL_CONFIG.backlogMax)) {
      expectCode(pending, "ECONNREFUSED", `connect to ${this.port} (queued ${queued})`);
    } else {
      if (!pending.ok) throw new Error(`connect failed: ${pending.message}`);
      Object.assign(s, { phase: "queued", queuedOn: listener, queuedAt: queueClock++ });
      r.pending.set(s, pending.value);
    }
    checkAgainstModel(m, r);
  }
  toString = () => `connect(#${this.n}, port ${this.port})`;
}

/** Polls a refused connector back to bound, as its connect would. */
export function refused(r: Real, s: ModelSocket): void {
  const polled = runSteps(
    ops.pollConnected(ctxOf(r, s), refOf(r, s), r.pending.get(s) as ops.PendingConnect),
  );
  expectCode(polled, "ECONNREFUSED", "poll of a refused connector");
  Object.assign(s, { phase: "bound", queuedOn: undefined });
}

class Accept implements Cmd {
  constructor(readonly n: number) {}
  check = (m: Model) =>
    live(m).some((s) => s.phase === "listening" && live(m).some((x) => x.queuedOn === s));
  run(m: Model, r: Real) {
    const l = pick(
      live(m).filter((s) => s.phase === "listening" && live(m).some((x) => x.queuedOn === s)),
      this.n,
    ) as ModelSocket;
    const queue = live(m).filter((x) => x.queuedOn === l);
    const connector = queue.sort((a, b) => (a.queuedAt ?? 0) - (b.queuedAt ?? 0))[0] as ModelSocket;
    const accepted = runSteps(ops.accept(ctxOf(r, l), refOf(r, l)));
    const free = m.extentsFree.get(STG) ?? 0;
    if (blocksInUse(m) >= m.blocksMax || free < 2) {
      expectCode(accepted, "ENOBUFS", "accept without a block or ring space");
      return refused(r, connector);
    }
    if (!accepted.ok || accepted.value.kind !== "ready") {
      throw new Error(`accept: ${JSON.stringify(accepted)}`);
    }
    const s: ModelSocket = {
      host: l.host,
      phase: "connected",
      stg: STG,
      port: l.port,
      holdsPort: false,
      closed: false,
      pairedWith: connector,
    };
    m.sockets.push(s);
    r.refs.set(s, accepted.value.value.block);
    m.extentsFree.set(STG, free - 2);
    const polled = runSteps(
      ops.pollConnected(
        ctxOf(r, connector),
        refOf(r, connector),
        r.pending.get(connector) as ops.PendingConnect,
      ),
    );
    if (!polled.ok || polled.value.kind !== "ready") throw new Error("connector not connected");
    Object.assign(connector, { phase: "connected", queuedOn: undefined, pairedWith: s });
    checkAgainstModel(m, r);
  }
  toString = () => `accept(#${this.n})`;
}

export class Close implements Cmd {
  constructor(readonly n: number) {}
  check = (m: Model): boolean => live(m).length > 0;
  run(m: Model, r: Real): void {
    const s = pick(live(m), this.n) as ModelSocket;
    const closed = runSteps(ops.close(ctxOf(r, s), refOf(r, s)));
    if (!closed.ok || closed.value.kind !== "ready") {
      throw new Error(`close: ${JSON.stringify(closed)}`);
    }
    s.closed = true;
    if (s.phase === "listening") {
      for (const c of live(m).filter((x) => x.queuedOn === s)) refused(r, c);
    }
    if (s.phase === "connected" && s.pairedWith?.closed === true) {
      m.extentsFree.set(STG, (m.extentsFree.get(STG) ?? 0) + 2);
    }
    checkAgainstModel(m, r);
  }
  toString = () => `close(#${this.n})`;
}

/** The commands of the CBT model (other model properties add theirs). */
export const commands = [
  fc.integer({ min: 1, max: 3 }).map((h) => new Allocate(h)),
  fc.tuple(fc.nat(9), fc.constantFrom(1, 2), fc.constantFrom(0, 0, ...PORTS)).map(([n, stg, p]) =>
    new Bind(n, stg, p)
  ),
  fc.nat(9).map((n) => new Listen(n)),
  fc.tuple(fc.nat(9), fc.constantFrom(...PORTS, 3)).map(([n, p]) => new Connect(n, p)),
  fc.nat(9).map((n) => new Accept(n)),
  fc.nat(9).map((n) => new Close(n)),
];

/**
 * The model-based CBT property over a region factory.
 *
 * @param factory the region implementation under test
 * @returns a fast-check property
 */
export function cbtModelProperty(factory: RegionFactory): fc.IProperty<[Iterable<Cmd>]> {
  return modelProperty(factory, 3, commands, (start) => start);
}

/**
 * Runs a model's commands against a fresh region: `hostCount` hosts, the empty model and real
 * region (widened by `start` for a model that keeps more), every command checked against the
 * model as it runs, and at the end everything closed must leave the region as formatted. The
 * one runner of the CBT model and the models built on it (leases).
 *
 * @param factory the region implementation under test
 * @param hostCount how many hosts join the region
 * @param modelCommands the commands to draw from
 * @param start the starting model and real state, from the empty ones
 * @returns a fast-check property
 */
export function modelProperty<M extends Model, R extends Real>(
  factory: RegionFactory,
  hostCount: number,
  modelCommands: fc.Arbitrary<fc.Command<M, R>>[],
  start: (empty: { model: Model; real: Real }) => { model: M; real: R },
): fc.IProperty<[Iterable<fc.Command<M, R>>]> {
  return fc.property(
    fc.commands(modelCommands, { size: "+1" }),
    (cmds) =>
      withHosts(factory, SMALL_CONFIG, hostCount, ({ region, hosts }) => {
        const { model, real } = start({
          model: {
            sockets: [],
            blocksMax: SMALL_CONFIG.blockCount,
            extentsFree: new Map(SMALL_CONFIG.stgs.map((s) => [s.id, s.extentCount])),
          },
          real: { region, hosts, refs: new Map(), pending: new Map() },
        });
        fc.modelRun(() => ({ model, real }), cmds);
        closeEverything(model, real);
      }),
  );
}

/** Closes every live socket (checked against the model), then requires an empty region. */
export function closeEverything(model: Model, real: Real): void {
  for (let round = 0; round <= model.sockets.length && live(model).length > 0; round++) {
    new Close(0).run(model, real);
  }
  const usage = regionUsage(real.region.memory, real.region.layout);
  if (usage.blocks.length + usage.ports.length + usage.extents.length !== 0) {
    throw new Error(`after closing everything the region still holds ${JSON.stringify(usage)}`);
  }
}
