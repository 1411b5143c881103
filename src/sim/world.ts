/**
 * The simulated world: a backup server and an agent (client) with a shared region and a
 * network, on virtual time, running the real code: the handshake machines and their driver
 * (`runHandshake`), the session (`JobSessions`), `runBackupClient` and `runBackupServer`, then
 * `runRestoreSender` and `runRestoreReceiver` over a second handshake, and the repository code
 * under them. Only their I/O, clock and timers are swapped: the network is {@link SimNetwork},
 * the storage sockets are the real ones over {@link SimStorage}, time is {@link VirtualTime}.
 *
 * One seed picks one fault (or none), the tree to back up, the latencies and the schedule; the
 * same seed gives the same run. After the run {@link checkInvariants} checks what must hold
 * whatever the fault.
 *
 * @module
 */

import { createRouter } from "../core/dispatch/router.ts";
import type { Sockets } from "../core/dispatch/sockets.ts";
import { formatRegion } from "../core/stp/region.ts";
import { attachRegion } from "../core/stp/region.ts";
import type { RegionConfig } from "../core/stp/layout.ts";
import type { Channels } from "../core/handshake/types.ts";
import { listensFirst, roleOf } from "../core/handshake/mod.ts";
import { describeFailure, JobSessions, runHandshake } from "../app/hosts/channels.ts";
import type { Session } from "../app/hosts/session.ts";
import type { HandshakeOutcome } from "../app/hosts/handshake_driver.ts";
import { runBackupClient } from "../app/agent/backup_client.ts";
import { runBackupServer } from "../app/server/backup_server.ts";
import { runRestoreSender } from "../app/server/restore_sender.ts";
import { runRestoreReceiver } from "../app/agent/restore_receiver.ts";
import { type ArmedNetworkFault, NETWORK_FAULTS, SimNetwork } from "./sim_network.ts";
import { SimStorage, type SimStorageHost, STORAGE_FAULTS } from "./sim_storage.ts";
import { DISK_FAULTS, type DiskFault, SimDisk } from "./sim_disk.ts";
import { type RepoFs, withRepoFs } from "../app/repository/repo_fs.ts";
import { removeLeftovers } from "../app/repository/snapshot_writer.ts";
import { type SeededRandom, VirtualTime } from "./virtual_time.ts";

/** Every fault kind a seed may draw. */
export const FAULT_KINDS = [...NETWORK_FAULTS, ...STORAGE_FAULTS, ...DISK_FAULTS] as const;
/** One fault kind. */
export type FaultKind = typeof FAULT_KINDS[number];

/** The I/O timeout of every socket in the world (virtual ms). */
export const SIM_IO_TIMEOUT_MS = 2_000;
const HANDSHAKE_TIMEOUT_MS = 3_000;
const LEASE_MS = 1_000;
const LATENCY_MS_MAX = 3;
/** Network calls a seeded network fault may land on (a small backup makes about this many). */
const NETWORK_CALLS_SPAN = 80;
/** Virtual ms within which a seeded host death lands. */
const DEATH_SPAN_MS = 120;

/** How one side's part of a phase ended. */
export type SideOutcome =
  | { readonly status: "done"; readonly detail: string }
  | { readonly status: "failed"; readonly detail: string }
  | { readonly status: "not-run"; readonly detail: string };

/** What the world did with a seed. */
export interface WorldRun {
  readonly seed: number;
  /** The fault drawn (`none` for a clean run). */
  readonly fault: FaultKind | "none";
  /** Faults that fired, in order. */
  readonly fired: string[];
  /** The channels the seed set up. */
  readonly flow: SimFlow;
  readonly backup: { readonly client: SideOutcome; readonly server: SideOutcome };
  readonly restore: { readonly receiver: SideOutcome; readonly sender: SideOutcome };
  /** The snapshot the server committed, if it did. */
  readonly committed: string | undefined;
  /** Whether the client's host was killed. */
  readonly clientDied: boolean;
  /** Whether the server crashed (a disk fault): it could report nothing. */
  readonly serverCrashed: boolean;
  /** Why the world stopped before its end (a deadlock, a throw), if it did. */
  readonly stopped: string | undefined;
  /** Virtual ms the run took. */
  readonly virtualMs: number;
  /** Leaks found at the end (open descriptors, bound ports, blocks, extents, host slots). */
  readonly leftovers: string[];
  /** The event trace, one line per event. */
  readonly trace: string[];
  /** Events run and macrotask turns waited (what a seed costs). */
  readonly cost: { readonly events: number; readonly turns: number };
}

/**
 * Wrappers a mutant test puts around parts of the world, to show that the invariants catch a
 * broken implementation. A real run has none.
 */
export interface WorldHooks {
  /** Wraps the repository's write calls (over the simulated disk). */
  readonly repoFs?: (disk: RepoFs) => RepoFs;
  /** Wraps a host's sockets (`server` or `agent`), as its code sees them. */
  readonly sockets?: (host: string, sockets: Sockets) => Sockets;
}

/** Where a world keeps its files. */
export interface WorldPaths {
  /** The directory holding the others. */
  readonly base: string;
  readonly source: string;
  readonly repo: string;
  readonly target: string;
}

/** Draws the fault of a seed: each allowed kind, or none, alike. */
export function drawFault(
  random: SeededRandom,
  allowed: readonly FaultKind[],
): FaultKind | "none" {
  const index = random.below(allowed.length + 1);
  return index === allowed.length ? "none" : allowed[index]!;
}

/** The region of a world; the fault shapes it (one-extent rings fill at once). */
export function regionConfig(fault: FaultKind | "none"): RegionConfig {
  return {
    stgs: [{ id: 1, extentCount: 8, ephemeralPortMin: 40000, ephemeralPortMax: 40015 }],
    extentBytes: fault === "rings-fill" ? 4096 : 64 * 1024,
    blockCount: 24,
    hostCount: 4,
    ioTimeoutMs: SIM_IO_TIMEOUT_MS,
    leaseMs: LEASE_MS,
    backlogMax: 4,
  };
}

/** A host of the world: its router and its storage. */
interface Host {
  readonly name: string;
  readonly sockets: Sockets;
  readonly storage: SimStorageHost;
  kill(): void;
  /** What a live host still holds once its work is done (its descriptors, its blocks). */
  held(): string[];
}

/** The trace of a run: lines stamped with virtual time, bounded. */
export class Trace {
  readonly lines: string[] = [];
  /**
   * @param time the world's clock
   * @param base the world's directory, written `<world>` in lines (so a replay's trace is the
   *   same text wherever its temporary directory is)
   * @param linesMax lines kept
   */
  constructor(readonly time: VirtualTime, readonly base = "", readonly linesMax = 4000) {}

  /** Adds a line. */
  add(line: string): void {
    if (this.lines.length < this.linesMax) {
      const text = this.base === "" ? line : line.replaceAll(this.base, "<world>");
      this.lines.push(`${String(this.time.nowMs).padStart(6)} ms  ${text}`);
    } else if (this.lines.length === this.linesMax) this.lines.push("… (trace cut)");
  }
}

/** Wraps a host's router so that every call that changes a connection is traced. */
function traced(name: string, sockets: Sockets, trace: Trace): Sockets {
  const log = <T>(what: string, call: () => Promise<T>): Promise<T> =>
    call().then(
      (value) => {
        trace.add(`${name} ${what}${value === undefined ? "" : ` -> ${JSON.stringify(value)}`}`);
        return value;
      },
      (error: Error) => {
        trace.add(`${name} ${what} failed: ${error.message}`);
        throw error;
      },
    );
  return {
    socket: (kind) => log(`socket(${kind})`, () => sockets.socket(kind)),
    bind: (fd, a) => log(`bind(${fd}, ${JSON.stringify(a)})`, () => sockets.bind(fd, a)),
    listen: (fd, backlog) => log(`listen(${fd}, ${backlog})`, () => sockets.listen(fd, backlog)),
    getsockname: (fd) => sockets.getsockname(fd),
    accept: (fd) => log(`accept(${fd})`, () => sockets.accept(fd)),
    connect: (fd, a) => log(`connect(${fd}, ${JSON.stringify(a)})`, () => sockets.connect(fd, a)),
    send: (fd, bytes) =>
      sockets.send(fd, bytes).catch((error: Error) => {
        trace.add(`${name} send(${fd}, ${bytes.length} B) failed: ${error.message}`);
        throw error;
      }),
    recv: (fd, into) =>
      sockets.recv(fd, into).then((got) => {
        if (got === null) trace.add(`${name} recv(${fd}) -> end of stream`);
        return got;
      }, (error: Error) => {
        trace.add(`${name} recv(${fd}) failed: ${error.message}`);
        throw error;
      }),
    close: (fd) => log(`close(${fd})`, () => sockets.close(fd)),
  };
}

/** Opens a host on the world's network and region. */
function openHost(
  name: string,
  pid: number,
  network: SimNetwork,
  storage: SimStorage,
  trace: Trace,
  hooks: WorldHooks,
): Host {
  const net = network.host(name);
  const st = storage.host(pid);
  const router = createRouter({ network: net.sockets, storage: st.sockets });
  const sockets = traced(name, router, trace);
  return {
    name,
    sockets: hooks.sockets?.(name, sockets) ?? sockets,
    storage: st,
    kill: () => {
      trace.add(`${name} dies: its connections reset, its region writes stop`);
      net.kill();
      st.kill();
    },
    held: () => {
      if (st.dead) return []; // the OS and the lease take care of a dead host's
      const found: string[] = [];
      if (net.openCount() > 0) found.push(`${name} holds ${net.openCount()} network descriptors`);
      const blocks = storage.blocksOwnedBy(st.storage.hostId);
      if (blocks.length > 0) found.push(`${name} holds control blocks ${blocks.join(",")}`);
      return found;
    },
  };
}

/** How a phase's two sides ended, and the agent side's value. */
interface PhaseResult<A, S> {
  agent: SideOutcome & { value?: A };
  server: SideOutcome & { value?: S };
}

const outcomeOf = (error: unknown): SideOutcome => ({
  status: "failed",
  detail: error instanceof Error ? `${error.name}: ${error.message}` : String(error),
});

/** Which channels a seed sets up: the file-system flow, the database flow, or the network path. */
export type SimFlow = "fs" | "db" | "network";

/** The flows a seed draws from. */
export const SIM_FLOWS: readonly SimFlow[] = ["fs", "db", "network"];

/**
 * Runs one phase: a handshake of the seed's flow (the side that listens first starts; its peer
 * starts once it listens, as the job channel tells it, and never if it ended before), then the
 * two sides' work on a session each; each side closes its channels at its end.
 */
async function runPhase<A, S>(
  hosts: { readonly agent: Host; readonly server: Host },
  flow: SimFlow,
  wellKnownPort: number,
  trace: Trace,
  work: { agent: (s: Session) => Promise<A>; server: (s: Session) => Promise<S> },
): Promise<PhaseResult<A, S>> {
  const config = { wellKnownPort, handshakeTimeoutMs: HANDSHAKE_TIMEOUT_MS };
  const kind = flow === "network" ? "network" as const : "storage" as const;
  const roles = {
    agent: roleOf("client", flow === "db" ? "db" : "fs"),
    server: roleOf("server", flow === "db" ? "db" : "fs"),
  };
  const first = listensFirst(roles.agent) ? "agent" : "server";
  const second = first === "agent" ? "server" : "agent";
  const start = (side: "agent" | "server", onListening?: () => void) =>
    runHandshake(
      { role: roles[side], kind, config },
      hosts[side].sockets,
      hosts[side].storage.storage,
      onListening,
    );
  let startSecond = () => {};
  const listening = new Promise<void>((resolve) => (startSecond = resolve));
  const firstHs = start(first, () => startSecond());
  const secondHs = Promise.race([listening.then(() => true), firstHs.then(() => false)])
    .then((started) => started ? start(second) : undefined);
  const outcomes = { [first]: firstHs, [second]: secondHs } as Record<
    "agent" | "server",
    Promise<HandshakeOutcome | undefined>
  >;
  const [agentSide, serverSide] = await Promise.all([
    sideOfPhase(hosts.agent, outcomes.agent, work.agent, trace),
    sideOfPhase(hosts.server, outcomes.server, work.server, trace),
  ]);
  return { agent: agentSide, server: serverSide };
}

/** One side of a phase: its handshake's end, then its work on a session. */
async function sideOfPhase<T>(
  host: Host,
  outcome: Promise<HandshakeOutcome | undefined>,
  body: (s: Session) => Promise<T>,
  trace: Trace,
): Promise<SideOutcome & { value?: T }> {
  const hs = await outcome;
  if (hs === undefined) return { status: "not-run", detail: "its peer never listened" };
  const failure = hs.status === "failed" ? describeFailure(hs.reason) : undefined;
  trace.add(`${host.name} handshake ${hs.status}${failure === undefined ? "" : `: ${failure}`}`);
  if (failure !== undefined) return { status: "failed", detail: failure };
  return await runOnSession(host, (hs as { channels: Channels }).channels, body, trace);
}

async function runOnSession<T>(
  host: Host,
  channels: Channels,
  body: (s: Session) => Promise<T>,
  trace: Trace,
): Promise<SideOutcome & { value?: T }> {
  const sessions = new JobSessions(host.sockets, SIM_IO_TIMEOUT_MS);
  const session = sessions.open(channels);
  try {
    const value = await body(session);
    trace.add(`${host.name} done`);
    return { status: "done", detail: "", value };
  } catch (error) {
    const outcome = outcomeOf(error);
    trace.add(`${host.name} failed: ${outcome.detail}`);
    return outcome;
  } finally {
    await sessions.close();
  }
}

/** Squats on control blocks or ports, as another busy host would. */
async function squat(fault: FaultKind | "none", host: Host, random: SeededRandom): Promise<void> {
  if (fault === "blocks-exhausted") {
    const leave = random.between(0, 6);
    for (let held = 0; held < 24 - leave - 1; held++) {
      await host.storage.sockets.socket("storage").catch(() => {});
    }
  } else if (fault === "ports-exhausted") {
    const leave = random.between(0, 3);
    for (let held = 0; held < 16 - leave; held++) {
      const fd = await host.storage.sockets.socket("storage");
      await host.storage.sockets.bind(fd, { kind: "storage", stg: 1, port: 0 });
    }
  }
}

/**
 * Runs one seed of the world.
 *
 * @param seed the seed
 * @param paths the source (filled already), an initialised repository and a missing target
 * @param allowed the fault kinds this run may draw
 * @param hooks wrappers for mutant tests (none in a real run)
 * @returns what happened, with the trace and the leftovers found; a run that stopped (a
 *   deadlock, or a throw out of the scenario) says why in `stopped`
 */
export async function runWorld(
  seed: number,
  paths: WorldPaths,
  allowed: readonly FaultKind[],
  hooks: WorldHooks = {},
): Promise<WorldRun> {
  const time = new VirtualTime(seed);
  const trace = new Trace(time, paths.base);
  const fault = drawFault(time.random, allowed);
  const network = simNetwork(time, trace, fault, seed);
  const storage = simStorage(time, fault);
  const crash = { kill: () => {} };
  const disk = new SimDisk(
    (DISK_FAULTS as readonly string[]).includes(fault) ? fault as DiskFault : undefined,
    time.random,
    (kind, line) => {
      trace.add(line);
      if (kind === "crash") crash.kill();
    },
  );
  const crashIfDue = () => void (disk.crashIfDue() && crash.kill());
  const context = { time, trace, fault, network, storage, paths, seed, crash, hooks, crashIfDue };
  let stopped: string | undefined;
  const run = await withRepoFs(
    hooks.repoFs?.(disk) ?? disk,
    () => time.run(() => scenario(context)),
  ).catch((error: Error): ScenarioResult => {
    stopped = `${error.name}: ${error.message}`;
    trace.add(`the world stopped: ${stopped}`);
    return STOPPED;
  });
  if (disk.crashed) await recover(disk, paths.repo, trace);
  return {
    ...run,
    seed,
    fault,
    fired: network.fired.concat(run.fired, disk.fired),
    serverCrashed: disk.crashed,
    stopped,
    virtualMs: time.nowMs,
    leftovers: [...run.held, ...leftovers(network, storage)],
    trace: trace.lines,
    cost: { events: time.eventsRun, turns: time.turns },
  };
}

/** What a run that stopped before its end did. */
const STOPPED: ScenarioResult = {
  fired: [],
  flow: "fs",
  backup: {
    client: { status: "not-run", detail: "the world stopped" },
    server: { status: "not-run", detail: "the world stopped" },
  },
  restore: {
    receiver: { status: "not-run", detail: "the world stopped" },
    sender: { status: "not-run", detail: "the world stopped" },
  },
  committed: undefined,
  clientDied: false,
  held: [],
};

/** The world's network, with the seed's network fault armed at a seeded call. */
function simNetwork(
  time: VirtualTime,
  trace: Trace,
  fault: FaultKind | "none",
  seed: number,
): SimNetwork {
  const faults: ArmedNetworkFault[] = (NETWORK_FAULTS as readonly string[]).includes(fault)
    ? [{
      kind: fault as ArmedNetworkFault["kind"],
      atCall: time.random.between(1, NETWORK_CALLS_SPAN),
    }]
    : [];
  const at = faults.length > 0 ? ` at network call ${faults[0]!.atCall}` : "";
  trace.add(`seed ${seed}: fault ${fault}${at}`);
  return new SimNetwork(time, {
    ioTimeoutMs: SIM_IO_TIMEOUT_MS,
    latencyMsMax: LATENCY_MS_MAX,
    faults,
    trace: (line) => trace.add(line),
  });
}

/** The world's region, shaped by the fault, with a seeded id. */
function simStorage(time: VirtualTime, fault: FaultKind | "none"): SimStorage {
  const hex = [...Array(4)].map(() => time.random.below(0x10000).toString(16).padStart(4, "0"));
  const buffer = formatRegion(
    regionConfig(fault),
    `${hex[0]}${hex[1]}-${hex[2]}-4${hex[3]!.slice(1)}-a000-000000000000`,
  );
  if (!buffer.ok) throw new Error(`region: ${buffer.message}`);
  const layout = attachRegion(buffer.value);
  if (!layout.ok) throw new Error(`region: ${layout.message}`);
  return new SimStorage(time, buffer.value, layout.value);
}

/** The machine comes back up after the server crashed: the disk loses what was not durable,
 * and the next writer's start-up clean-up runs. */
async function recover(disk: SimDisk, repo: string, trace: Trace): Promise<void> {
  for (const line of await disk.revertUnsynced()) trace.add(`after the crash: ${line}`);
  const cleaned = await removeLeftovers(repo);
  trace.add(`the next writer's clean-up ${cleaned ? "ran" : "found no repository"}`);
}

interface ScenarioContext {
  readonly time: VirtualTime;
  readonly trace: Trace;
  readonly fault: FaultKind | "none";
  readonly network: SimNetwork;
  readonly storage: SimStorage;
  readonly paths: WorldPaths;
  readonly seed: number;
  /** Set by the scenario: what a crash of the server does (kill its host, close its files). */
  readonly crash: { kill: () => void };
  /** A crash drawn past the backup's disk calls strikes now (a later power loss). */
  readonly crashIfDue: () => void;
  readonly hooks: WorldHooks;
}

type ScenarioResult =
  & { readonly held: string[] }
  & Omit<
    WorldRun,
    "seed" | "fault" | "virtualMs" | "leftovers" | "trace" | "cost" | "serverCrashed" | "stopped"
  >;

async function scenario(ctx: ScenarioContext): Promise<ScenarioResult> {
  const { time, trace, fault, network, storage, paths } = ctx;
  const server = openHost("server", 1, network, storage, trace, ctx.hooks);
  const agent = openHost("agent", 2, network, storage, trace, ctx.hooks);
  const squatter = openHost("squatter", 3, network, storage, trace, {});
  ctx.crash.kill = () => {
    server.kill();
    // The OS closes a dead process's files (its repository lock goes with them).
    for (const { path, file } of time.opened) {
      if (!path.startsWith(paths.repo)) continue;
      try {
        file.close();
      } catch {
        // closed already
      }
    }
  };
  await squat(fault, squatter, time.random);
  const fired: string[] = [];
  let clientDied = false;
  if (fault === "host-dies") {
    time.at(time.random.between(0, DEATH_SPAN_MS), "kill", () => {
      clientDied = true;
      fired.push("host-dies");
      agent.kill();
    });
  }
  if (fault === "rings-fill" || fault === "blocks-exhausted" || fault === "ports-exhausted") {
    fired.push(fault);
  }
  const flow = time.random.pick(SIM_FLOWS);
  trace.add(`flow ${flow}`);
  const backup = await runPhase({ agent, server }, flow, 7000, trace, {
    agent: (session) =>
      runBackupClient(session, {
        mode: "fs",
        source: paths.source,
        incremental: true,
        dataChannel: flow === "network" ? "network" : "storage",
      }),
    server: (session) => runBackupServer(session, { repo: paths.repo, lockWaitMs: 500 }),
  });
  ctx.crashIfDue();
  const committed = backup.server.value?.manifest.id;
  if (committed !== undefined) {
    const parent = backup.server.value?.manifest.parent ?? null;
    trace.add(
      `server committed ${committed} ${parent === null ? "(full)" : `on parent ${parent}`}`,
    );
  }
  let restore: PhaseResult<unknown, unknown> = {
    agent: { status: "not-run", detail: "nothing committed" },
    server: { status: "not-run", detail: "nothing committed" },
  };
  if (committed !== undefined && !clientDied && !server.storage.dead) {
    restore = await runPhase({ agent, server }, flow, 7002, trace, {
      agent: (session) => runRestoreReceiver(session, { target: paths.target }),
      server: (session) => runRestoreSender(session, { repo: paths.repo, snapshot: committed }),
    });
  }
  const held = await shutDown([server, agent], squatter, trace);
  return {
    fired,
    flow,
    backup: { client: strip(backup.agent), server: strip(backup.server) },
    restore: { receiver: strip(restore.agent), sender: strip(restore.server) },
    committed,
    clientDied,
    held,
  };
}

const strip = (outcome: SideOutcome): SideOutcome => ({
  status: outcome.status,
  detail: outcome.detail,
} as SideOutcome);

/**
 * Ends the run's hosts. A dead host's blocks stay until its lease runs out: the survivors wait
 * that long and reclaim them (as their sweep would). Then what a live side still holds, its
 * work done, is a leak; then the live hosts are disposed.
 *
 * @returns what the live sides held before they were disposed
 */
async function shutDown(sides: Host[], squatter: Host, trace: Trace): Promise<string[]> {
  const live = [...sides, squatter].filter((host) => !host.storage.dead);
  const dead = sides.filter((host) => host.storage.dead);
  if (dead.length > 0) {
    await new Promise((resolve) => setTimeout(resolve, 2 * LEASE_MS));
    const reclaimed = squatter.storage.storage.reclaim();
    trace.add(
      `the lease of ${dead.map((h) => h.name).join(", ")} ran out; ` +
        `${squatter.name} reclaimed ${reclaimed} blocks`,
    );
  }
  const held = sides.flatMap((host) => host.held());
  for (const host of live) await host.storage.storage.dispose();
  return held;
}

/** What is left at the end: open descriptors, bound ports, region resources. */
function leftovers(network: SimNetwork, storage: SimStorage): string[] {
  const found: string[] = [];
  if (network.openDescriptors() > 0) {
    found.push(`${network.openDescriptors()} network descriptors open`);
  }
  for (const port of network.boundPorts()) found.push(`network port ${port} still bound`);
  const usage = storage.usage();
  if (usage.blocks.length > 0) found.push(`control blocks ${usage.blocks.join(",")} not free`);
  if (usage.ports.length > 0) found.push(`storage ports ${usage.ports.join(",")} held`);
  if (usage.extents.length > 0) found.push(`extents ${usage.extents.join(",")} held`);
  return found;
}
