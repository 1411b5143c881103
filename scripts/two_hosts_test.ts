import assert from "node:assert/strict";
import { createRegionFile, openRegionFile } from "../src/adapters/region_file.ts";
import { createStorageSockets } from "../src/adapters/shm.ts";
import { regionUsage } from "../src/core/stp/usage.ts";
import { hostSlots } from "../src/core/stp/hosts.ts";
import type { RegionConfig } from "../src/core/stp/layout.ts";
import { describeTree } from "../src/app/_testing.ts";
import type { AgentEvent } from "../src/app/agent/agent.ts";
import type { ValidateReport } from "../src/app/server/validate.ts";
import { withShmDirectory } from "./_region_testing.ts";
import { cleanUpOnSignal, killQuietly } from "./_leftovers.ts";
import {
  type AgentProcess,
  runOn,
  type ServerProcess,
  startAgent,
  startServer,
  TEST_TOKEN,
  type TwoHosts,
  twoHosts,
} from "./_two_hosts.ts";

const KEY = "two-hosts-agent-key-0123";
const MIB = 1 << 20;

/** The region both hosts map: 8 rings of 8 MiB, 10 STG ports, a 2 s lease. */
const REGION: RegionConfig = {
  stgs: [{ id: 1, extentCount: 8, ephemeralPortMin: 40000, ephemeralPortMax: 40009 }],
  extentBytes: 8 * MIB,
  blockCount: 32,
  hostCount: 16,
  ioTimeoutMs: 10_000,
  leaseMs: 2000,
  backlogMax: 4,
};

async function randomFile(path: string, bytes: number): Promise<void> {
  const data = new Uint8Array(bytes);
  for (let at = 0; at < bytes; at += 65536) {
    crypto.getRandomValues(data.subarray(at, Math.min(bytes, at + 65536)));
  }
  await Deno.writeFile(path, data);
}

/** A small tree of random files, a subdirectory and a symlink. */
async function smallTree(root: string): Promise<void> {
  await Deno.mkdir(`${root}/sub/deeper`, { recursive: true });
  await randomFile(`${root}/a.bin`, 3 * MIB + 17);
  await randomFile(`${root}/sub/b.bin`, 200_000);
  await Deno.writeTextFile(`${root}/sub/deeper/notes.txt`, "two hosts\n");
  await Deno.symlink("sub/b.bin", `${root}/link`);
}

/**
 * Files of data, written out: much to move. (Holes would not do: a backup stores a file's holes
 * as holes, so a sparse file of zeros crosses in an instant.)
 */
async function denseTree(root: string, files: number, bytes: number): Promise<void> {
  await Deno.mkdir(root, { recursive: true });
  const chunk = new Uint8Array(MIB).map((_, i) => (i * 131) & 0xff);
  for (let i = 0; i < files; i++) {
    for (let written = 0; written < bytes; written += chunk.length) {
      chunk[0] = written & 0xff; // not one repeated block
      const part = chunk.subarray(0, Math.min(chunk.length, bytes - written));
      await Deno.writeFile(`${root}/f${i}.bin`, part, { append: written > 0 });
    }
  }
}

async function listing(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    if (entry.isDirectory) {
      for (const inner of await listing(`${dir}/${entry.name}`)) {
        names.push(`${entry.name}/${inner}`);
      }
    } else names.push(entry.name);
  }
  return names.sort();
}

function blocksIn(path: string): number {
  const region = openRegionFile(path);
  try {
    return regionUsage(region.memory, region.layout).blocks.length;
  } finally {
    region.close();
  }
}

async function eventually(check: () => boolean, what: string, waitMs = 20_000): Promise<void> {
  const deadline = Date.now() + waitMs;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`${what} within ${waitMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

const isJob = (job: number, type: AgentEvent["type"]) => (event: AgentEvent) =>
  event.type === type && "job" in event && event.job === job;

interface World {
  hosts: TwoHosts;
  dir: string;
  region: string;
  otherRegion: string;
  otherStg: string;
  server: ServerProcess;
  agents: AgentProcess[];
}

Deno.test({
  name: "two hosts (two network namespaces, or 127.0.0.1/127.0.0.2 when they cannot be made)",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    await withShmDirectory(async (shm) => {
      const hosts = await twoHosts();
      const dir = await Deno.makeTempDir({ prefix: "lanfree-two-hosts-" });
      await Deno.mkdir(`${dir}/agent`);
      await Deno.mkdir(`${dir}/server`);
      const region = `${shm}/region`;
      createRegionFile(region, REGION).close();
      const regionId = (() => {
        const file = openRegionFile(region);
        file.close();
        return file.layout.regionId;
      })();
      createRegionFile(`${shm}/other`, REGION).close();
      createRegionFile(`${shm}/other-stg`, {
        ...REGION,
        stgs: [{ ...REGION.stgs[0]!, id: 2 }],
      }, { regionId }).close(); // the same region id, another STG
      const world: World = {
        hosts,
        dir,
        region,
        otherRegion: `${shm}/other`,
        otherStg: `${shm}/other-stg`,
        server: undefined as unknown as ServerProcess,
        agents: [],
      };
      const forget = cleanUpOnSignal(async () => { // killed: no process, namespace or file left
        for (const agent of world.agents) killQuietly(agent.host);
        killQuietly(world.server?.child);
        killQuietly(world.server?.client);
        await hosts.close();
        await Deno.remove(dir, { recursive: true });
      });
      try {
        world.server = await startServer(hosts, { root: `${dir}/server`, region, key: KEY });
        await scenarios(t, world);
      } finally {
        for (const agent of world.agents) await agent.stop().catch(() => {});
        await world.server?.stop().catch(() => {});
        await hosts.close();
        await Deno.remove(dir, { recursive: true });
        forget();
      }
      return ["region", "other", "other-stg"];
    });
  },
});

async function agent(world: World, index: number, spec: { region?: string; key?: string | null }) {
  const started = await startAgent(world.hosts, {
    index,
    roots: [`${world.dir}/agent`],
    region: spec.region,
    key: spec.key === undefined ? KEY : spec.key,
  });
  world.agents.push(started);
  return started;
}

/** What every step works with. */
interface Context {
  readonly world: World;
  readonly main: AgentProcess;
  readonly bare: AgentProcess;
  readonly other: AgentProcess;
  readonly wrongKey: AgentProcess;
}

async function scenarios(t: Deno.TestContext, world: World): Promise<void> {
  const { dir } = world;
  const main = await agent(world, 0, { region: world.region });
  const bare = await agent(world, 1, {});
  const other = await agent(world, 2, { region: world.otherRegion });
  const wrongKey = await agent(world, 3, { region: world.region, key: "another-agent-key-4567" });
  const context: Context = { world, main, bare, other, wrongKey };
  await smallTree(`${dir}/agent/src`);

  await t.step(
    `a backup and a restore go through storage, shown by the bytes per channel (${world.hosts.kind})`,
    () => throughStorage(context),
  );

  await t.step(
    "an agent without a region: the data goes over the network, with the agent's reason",
    () => agentWithoutRegion(context),
  );

  await t.step(
    "an agent holding another region: the handshake fails at the STG check, then the network",
    () => agentWithAnotherRegion(context),
  );

  await t.step(
    "a wrong agent key: refused, nothing read or written",
    () => wrongKeyRefused(context),
  );

  await denseTree(`${dir}/agent/big`, 1, 256 * MIB);
  await t.step(
    "the agent killed mid-backup: the job fails, the repository is unchanged, the blocks are reclaimed",
    () => agentKilledMidBackup(context),
  );

  await t.step("two jobs on one agent at once, each through storage", () => twoJobsAtOnce(context));

  await validateScenarios(t, context);

  await t.step(
    "backup and restore --server --agent print the same summary fields (--json)",
    () => cliFronts(context),
  );

  await t.step(
    "SIGTERM stops an agent mid-backup: the job fails with the reason, its slot and blocks are freed",
    () => sigtermStopsAgent(context),
  );

  await denseTree(`${dir}/agent/many`, 48, 4 * MIB);
  await t.step(
    "the server killed mid-restore: the agent reports it, no half-written file under its name",
    () => serverKilledMidRestore(context),
  );
}

async function throughStorage({ main, world }: Context): Promise<void> {
  const { dir, server } = world;
  const backup = await server.wait(
    (await server.submit({
      kind: "backup",
      agent: main.address,
      source: `${dir}/agent/src`,
      repo: `${dir}/server/repo`,
    })).id,
  );
  assert.equal(backup.state, "succeeded", String(backup.error));
  const summary = backup.result as Record<string, number | string | null>;
  assert.equal(summary.dataPath, "storage");
  assert.equal(summary.fallbackReason, null);
  assert.ok((summary.storageBytes as number) >= (summary.fileBytes as number));
  assert.ok(
    (summary.networkBytes as number) < 64 * 1024,
    "only control and errors on the network",
  );
  // The agent process packed the archive in the ring and the server wrote it from there.
  const frames = summary as unknown as Record<string, Record<string, number>>;
  assert.ok(
    frames.dataFrames!.inPlace! >= 1 && frames.dataFrames!.copied === 0,
    JSON.stringify(frames.dataFrames),
  );
  assert.ok(frames.receivedFrames!.lent! >= 1, JSON.stringify(summary.receivedFrames));
  assert.equal(frames.receivedFrames!.copied, 0, "no frame copied out of the ring");
  const restore = await server.wait(
    (await server.submit({
      kind: "restore",
      agent: main.address,
      repo: `${dir}/server/repo`,
      snapshot: "latest",
      target: `${dir}/agent/restored`,
    })).id,
  );
  assert.equal(restore.state, "succeeded", String(restore.error));
  const restored = restore.result as Record<string, number | string | null>;
  assert.equal(restored.dataPath, "storage");
  assert.ok((restored.storageBytes as number) >= (restored.bytes as number));
  assert.ok((restored.networkBytes as number) < 64 * 1024);
  // The agent wrote the files from views of the ring (each record one commit by the server).
  const restoreFrames = restore.result as Record<string, Record<string, number>>;
  const lent = restoreFrames.receivedFrames!;
  assert.ok(lent.lent! >= 3 && lent.copied === 0, JSON.stringify(lent));
  // The server read the archive's bytes straight into the ring.
  const read = restoreFrames.sentPieces!;
  assert.ok(read.inPlace! >= 2 && read.copied === 0, JSON.stringify(read));
  assert.deepEqual(
    await describeTree(`${dir}/agent/restored`),
    await describeTree(`${dir}/agent/src`),
  );
}

async function agentWithoutRegion({ bare, world }: Context): Promise<void> {
  const { dir, server } = world;
  const job = await server.wait(
    (await server.submit({
      kind: "backup",
      agent: bare.address,
      source: `${dir}/agent/src`,
      repo: `${dir}/server/repo-bare`,
    })).id,
  );
  assert.equal(job.state, "succeeded", String(job.error));
  const summary = job.result as Record<string, number | string | null>;
  assert.equal(summary.dataPath, "network");
  assert.match(
    String(summary.fallbackReason),
    /agent: EADDRNOTAVAIL at step 160 \(\w+\): .*no storage region attached/,
  );
  assert.equal(summary.storageBytes, 0);
}

async function agentWithAnotherRegion({ other, world }: Context): Promise<void> {
  const { dir, server } = world;
  const job = await server.wait(
    (await server.submit({
      kind: "restore",
      agent: other.address,
      repo: `${dir}/server/repo`,
      target: `${dir}/agent/restored-other`,
    })).id,
  );
  assert.equal(job.state, "succeeded", String(job.error));
  const summary = job.result as Record<string, unknown>;
  assert.equal(summary.dataPath, "network");
  assert.match(
    String(summary.fallbackReason),
    /agent: EADDRNOTAVAIL at step 160 \(\w+\): .*different regions/,
  );
  assert.deepEqual(
    await describeTree(`${dir}/agent/restored-other`),
    await describeTree(`${dir}/agent/src`),
  );
}

async function wrongKeyRefused({ world, wrongKey }: Context): Promise<void> {
  const { dir, server } = world;
  for (
    const request of [
      { kind: "backup", source: `${dir}/agent/src`, repo: `${dir}/server/repo-refused` },
      { kind: "restore", repo: `${dir}/server/repo`, target: `${dir}/agent/refused` },
    ]
  ) {
    const job = await server.wait(
      (await server.submit({ ...request, agent: wrongKey.address })).id,
    );
    assert.equal(job.state, "failed");
    assert.match(String(job.error), /agent key refused/);
  }
  assert.ok(wrongKey.events.some((e) => e.type === "job-refused"));
  assert.ok(!wrongKey.events.some((e) => e.type === "job-started"), "no job reached its paths");
  await assert.rejects(Deno.stat(`${dir}/server/repo-refused`), Deno.errors.NotFound);
  await assert.rejects(Deno.stat(`${dir}/agent/refused`), Deno.errors.NotFound);
}

async function agentKilledMidBackup({ world }: Context): Promise<void> {
  const { dir, server } = world;
  const doomed = await agent(world, 4, { region: world.region });
  const before = await listing(`${dir}/server/repo`);
  const submitted = await server.submit({
    kind: "backup",
    agent: doomed.address,
    source: `${dir}/agent/big`,
    repo: `${dir}/server/repo`,
  });
  await doomed.waitFor((e) => e.type === "job-progress" && e.progress.bytes > 0);
  // Killed as soon as it sends data: the server must notice on its own.
  doomed.host.kill("SIGKILL");
  await doomed.host.ended;
  const job = await server.wait(submitted.id);
  assert.equal(job.state, "failed");
  assert.deepEqual(await listing(`${dir}/server/repo`), before, "the repository is as it was");
  await eventually(() => blocksIn(world.region) === 0, "the dead agent's blocks are reclaimed");
}

async function twoJobsAtOnce({ main, world }: Context): Promise<void> {
  const { dir, server } = world;
  const mark = main.events.length;
  // Both are submitted at once; the big one (256 MiB) takes far longer than a submit, so both
  // must be running on the agent together before either ends. (Waiting for the big one's bytes
  // before submitting the second raced with the zero-copy path, which can finish it first.)
  const [big, small] = await Promise.all([
    server.submit({
      kind: "backup",
      agent: main.address,
      source: `${dir}/agent/big`,
      repo: `${dir}/server/repo-big`,
    }),
    server.submit({
      kind: "backup",
      agent: main.address,
      source: `${dir}/agent/src`,
      repo: `${dir}/server/repo-small`,
    }),
  ]);
  const [bigDone, smallDone] = [await server.wait(big.id), await server.wait(small.id)];
  for (const job of [bigDone, smallDone]) {
    assert.equal(job.state, "succeeded", String(job.error));
    assert.equal((job.result as { dataPath: string }).dataPath, "storage");
  }
  const events = main.events.slice(mark);
  const order = events.map((e) => `${e.type}:${"job" in e ? e.job : ""}`);
  const started = order.flatMap((entry, at) => entry.startsWith("job-started:") ? [at] : []);
  const firstDone = order.findIndex((entry) => entry.startsWith("job-done:"));
  assert.equal(started.length, 2, `two jobs started: ${order.join(" ")}`);
  assert.ok(
    firstDone > Math.max(...started),
    `both jobs ran on the agent at once: ${order.join(" ")}`,
  );
}

async function cliFronts({ main, world }: Context): Promise<void> {
  const { dir, server } = world;
  const env = { LANFREE_TOKEN: TEST_TOKEN };
  const front = ["--server", server.url, "--agent", main.address, "--json"];
  const backup = await runOn(world.hosts, "server", "./backup.ts", [
    ...front,
    "--source",
    `${dir}/agent/src`,
    "--repo",
    `${dir}/server/repo-cli`,
  ], env);
  assert.equal(backup.code, 0, backup.stderr);
  const summary = JSON.parse(backup.stdout);
  for (
    const field of ["snapshot", "dataPath", "fallbackReason", "storageBytes", "networkBytes"]
  ) {
    assert.ok(field in summary, field);
  }
  assert.equal(summary.dataPath, "storage");
  const restore = await runOn(world.hosts, "server", "./restore.ts", [
    ...front,
    "--repo",
    `${dir}/server/repo-cli`,
    "--snapshot",
    "latest",
    "--target",
    `${dir}/agent/restored-cli`,
  ], env);
  assert.equal(restore.code, 0, restore.stderr);
  const restored = JSON.parse(restore.stdout);
  assert.deepEqual(
    [restored.snapshot, restored.dataPath, restored.ok],
    [summary.snapshot, "storage", true],
  );
  assert.ok(restored.storageBytes >= restored.bytes && restored.networkBytes > 0);
  assert.deepEqual(
    await describeTree(`${dir}/agent/restored-cli`),
    await describeTree(`${dir}/agent/src`),
  );
}

async function sigtermStopsAgent({ world }: Context): Promise<void> {
  const { dir, server } = world;
  const stopped = await agent(world, 6, { region: world.region });
  const submitted = await server.submit({
    kind: "backup",
    agent: stopped.address,
    source: `${dir}/agent/big`,
    repo: `${dir}/server/repo-stopped`,
  });
  await stopped.waitFor((e) => e.type === "job-progress" && e.progress.bytes > 0);
  assert.equal(await stopped.stop(), "exited with code 0");
  const job = await server.wait(submitted.id);
  assert.equal(job.state, "failed");
  assert.match(String(job.error), /agent stopping: SIGTERM/);
  const order = stopped.events.map((e) => e.type).filter((type) => type !== "job-progress");
  assert.deepEqual(order.slice(-3), ["stopping", "job-failed", "stopped"]);
  const pid = stopped.host.child.pid;
  const file = openRegionFile(world.region);
  try {
    const live = hostSlots(file.memory, file.layout, Date.now()).filter((slot) =>
      slot.status === "live" && slot.pid === pid
    );
    assert.deepEqual(live, [], "its host slot was released");
  } finally {
    file.close();
  }
  await eventually(() => blocksIn(world.region) === 0, "no block stays held");
}

async function serverKilledMidRestore({ main, world }: Context): Promise<void> {
  const { dir, server } = world;
  const backup = await server.wait(
    (await server.submit({
      kind: "backup",
      agent: main.address,
      source: `${dir}/agent/many`,
      repo: `${dir}/server/repo-many`,
    })).id,
  );
  assert.equal(backup.state, "succeeded", String(backup.error));
  const done = main.events.length;
  await server.submit({
    kind: "restore",
    agent: main.address,
    repo: `${dir}/server/repo-many`,
    target: `${dir}/agent/half`,
  });
  const progress = await main.waitFor(
    (e) => e.type === "job-progress" && e.progress.files > 0,
    { from: done },
  ) as { job: number };
  await server.stop("SIGKILL");
  const failed = await main.waitFor(isJob(progress.job, "job-failed")) as { reason: string };
  assert.ok(failed.reason.length > 0);
  const written = await listing(`${dir}/agent/half`);
  for (const name of written.filter((n) => !/\.lanfree-[0-9a-f]+\.partial$/.test(n))) {
    const info = await Deno.stat(`${dir}/agent/half/${name}`);
    assert.equal(info.size, 4 * MIB, `${name} is whole under its real name`);
  }
  assert.ok(written.filter((n) => !n.endsWith(".partial")).length < 48, "the restore was cut");
}

async function validateScenarios(t: Deno.TestContext, context: Context): Promise<void> {
  await t.step("validate: every path works, exit status 0", () => validateWorks(context));
  await t.step(
    "validate: no region, another region, another STG, each with its step, exit status 1",
    () => validateRegionReasons(context),
  );
  await t.step(
    "validate: no free control block, STG ports exhausted",
    () => validateExhausted(context),
  );
  await t.step("validate: the key refused", () => validateKeyRefused(context));
}

/** A validation through the server's endpoint. */
async function validate(world: World, address: string): Promise<ValidateReport> {
  const { server } = world;
  const job = await server.wait((await server.submit({ kind: "validate", agent: address })).id);
  return job.result as ValidateReport;
}

/** `deno task validate --json` run on the server's host. */
function validateCli(world: World, address: string) {
  const args = ["--server", world.server.url, "--agent", address, "--json"];
  return runOn(world.hosts, "server", "./validate.ts", args, { LANFREE_TOKEN: TEST_TOKEN });
}

function pathOf(report: ValidateReport, path: "fs" | "db" | "network") {
  return report.paths.find((p) => p.path === path)!;
}

async function validateWorks({ world, main }: Context): Promise<void> {
  const run = await validateCli(world, main.address);
  assert.equal(run.code, 0, run.stderr);
  const report = JSON.parse(run.stdout) as ValidateReport;
  assert.ok(report.ok);
  assert.deepEqual(report.paths.map((p) => [p.path, p.works, p.dataPath]), [
    ["fs", true, "storage"],
    ["db", true, "storage"],
    ["network", true, "network"],
  ]);
}

async function validateRegionReasons({ world, bare, other }: Context): Promise<void> {
  const cases: Array<[AgentProcess, RegExp]> = [
    [bare, /attached no region/],
    [other, /attached a different region/],
    [await agent(world, 5, { region: world.otherStg }), /region has a different STG/],
  ];
  for (const [subject, reason] of cases) {
    const run = await validateCli(world, subject.address);
    assert.equal(run.code, 1, run.stdout);
    const report = JSON.parse(run.stdout) as ValidateReport;
    for (const [path, step] of [["fs", "160"], ["db", "200"]] as const) {
      const found = pathOf(report, path);
      const seen = [found.works, found.step, found.side];
      assert.deepEqual(seen, [false, step, "agent"], JSON.stringify(found));
      assert.match(String(found.reason), reason);
    }
    assert.ok(pathOf(report, "network").works);
  }
}

async function validateExhausted({ world, main }: Context): Promise<void> {
  const file = openRegionFile(world.region);
  const holder = createStorageSockets({ region: file });
  try {
    const held: number[] = [];
    for (let i = 0; i < REGION.blockCount; i++) {
      const fd = await holder.socket("storage").catch(() => undefined);
      if (fd === undefined) break;
      held.push(fd);
    }
    const noBlock = await validate(world, main.address);
    assert.equal(noBlock.ok, false);
    assert.match(String(pathOf(noBlock, "fs").reason), /no free control block/);
    assert.deepEqual([pathOf(noBlock, "fs").step, pathOf(noBlock, "db").step], ["162", "202"]);
    for (const fd of held.slice(10)) await holder.close(fd);
    for (const fd of held.slice(0, 10)) {
      await holder.bind(fd, { kind: "storage", stg: 1, port: 0 }); // every port of the STG
    }
    const noPort = await validate(world, main.address);
    assert.match(String(pathOf(noPort, "fs").reason), /STG ports exhausted/);
    assert.deepEqual([pathOf(noPort, "fs").step, pathOf(noPort, "db").step], ["164", "204"]);
  } finally {
    await holder.dispose();
    file.close();
    await file.closed;
  }
}

async function validateKeyRefused({ world, wrongKey }: Context): Promise<void> {
  const report = await validate(world, wrongKey.address);
  assert.equal(report.ok, false);
  for (const path of report.paths) {
    assert.deepEqual([path.works, path.step, path.reason], [
      false,
      "key",
      "the agent key was refused",
    ]);
  }
}
