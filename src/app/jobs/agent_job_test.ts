import assert from "node:assert/strict";
import { runAgent } from "../agent/agent.ts";
import { importAgentKey } from "../hosts/agent_key.ts";
import { runAgentBackup, runAgentRestore } from "./agent_job.ts";
import { describeTree, withTempDir } from "../_testing.ts";
import { freePortPair } from "../hosts/ports.ts";
import { openRepository, readManifest, repoPaths } from "../repository/repository.ts";
import type { AgentEvent, AgentOptions } from "../agent/agent.ts";
import type { BackupProgress } from "../agent/backup_client.ts";
import { createRegionFile } from "../../adapters/region_file.ts";
import { createTcpSockets } from "../../adapters/tcp.ts";
import { closeChannels, runHandshake } from "../hosts/channels.ts";
import { recvExactly, writeFrame } from "../../core/wire/frame.ts";
import { encodeMessage } from "../../core/wire/messages.ts";

const KEY = new TextEncoder().encode("agent-job-test-key-0123");

/** An agent in this process on 127.0.0.1 (no region: the network path), until `body` ends. */
async function withAgent(
  roots: string[],
  body: (address: string, events: AgentEvent[]) => Promise<void>,
  regionPath?: string,
  more: Pick<AgentOptions, "handshakeTimeoutMs" | "hooks"> = {},
): Promise<void> {
  const stop = new AbortController();
  const events: AgentEvent[] = [];
  const port = freePortPair();
  let listening = () => {};
  const up = new Promise<void>((resolve) => (listening = resolve));
  const running = runAgent({
    listen: { host: "127.0.0.1", port },
    roots,
    regionPath,
    key: await importAgentKey(KEY),
    signal: stop.signal,
    ...more,
    onEvent: (event) => {
      events.push(event);
      if (event.type === "listening") listening();
    },
  });
  await Promise.race([up, running]);
  try {
    await body(`127.0.0.1:${port}`, events);
  } finally {
    stop.abort(new Error("test done"));
    await running;
  }
}

/** A region file of one STG with ten ephemeral ports from `ephemeralPortMin`. */
function createTestRegion(
  path: string,
  { ephemeralPortMin, leaseMs }: { ephemeralPortMin: number; leaseMs: number },
): void {
  createRegionFile(path, {
    stgs: [{ id: 1, extentCount: 4, ephemeralPortMin, ephemeralPortMax: ephemeralPortMin + 9 }],
    extentBytes: 1 << 20,
    blockCount: 16,
    hostCount: 8,
    ioTimeoutMs: 10_000,
    leaseMs,
    backlogMax: 4,
  }).close();
}

const request = (agent: string, fields: Record<string, unknown>) => ({
  kind: "restore" as const,
  agent,
  mode: "fs" as const,
  channel: "auto" as const,
  snapshot: "latest",
  overwrite: false,
  preservePermissions: false,
  repo: "",
  target: "",
  ...fields,
});

Deno.test("a restore through an agent lists a damaged member (repository side) and restores the rest", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/agent/src/sub`, { recursive: true });
    await Deno.writeTextFile(`${dir}/agent/src/good.txt`, "intact\n");
    await Deno.writeTextFile(`${dir}/agent/src/sub/bad.txt`, "x".repeat(5000));
    await withAgent([`${dir}/agent`], async (agent) => {
      const backup = await runAgentBackup({
        kind: "backup",
        agent,
        mode: "fs",
        channel: "auto",
        source: `${dir}/agent/src`,
        repo: `${dir}/repo`,
        incremental: false,
      }, { region: null, key: KEY });
      const repo = await openRepository(`${dir}/repo`);
      const manifest = await readManifest(repo, backup.snapshot);
      const bad = manifest.entries.find((e) => e.path === "sub/bad.txt");
      assert.ok(bad?.type === "file" && bad.offset !== undefined);
      const archive = await Deno.open(repoPaths.archive(repo, backup.snapshot), { write: true });
      await archive.seek(bad.offset + 512 + 100, Deno.SeekMode.Start); // inside its data
      await archive.write(new TextEncoder().encode("DAMAGE"));
      archive.close();
      const restored = await runAgentRestore(
        request(agent, { repo: `${dir}/repo`, target: `${dir}/agent/out` }),
        { region: null, key: KEY },
      );
      assert.equal(restored.ok, false);
      assert.deepEqual(
        restored.problems.map((p) => [p.path, p.side, p.code]),
        [["sub/bad.txt", "repository", "hash-mismatch"]],
      );
      assert.equal(await Deno.readTextFile(`${dir}/agent/out/good.txt`), "intact\n");
      await assert.rejects(Deno.stat(`${dir}/agent/out/sub/bad.txt`), Deno.errors.NotFound);
      assert.equal(restored.dataPath, "network");
    });
  });
});

Deno.test("a version-1 repository is restored through an agent (members read by name)", async () => {
  await withTempDir(async (dir) => {
    const fixture = new URL("../../../fixtures/repo-v1", import.meta.url).pathname;
    await new Deno.Command("cp", { args: ["-r", fixture, `${dir}/repo`] }).output();
    await Deno.mkdir(`${dir}/agent`);
    await withAgent([`${dir}/agent`], async (agent) => {
      const restored = await runAgentRestore(
        request(agent, { repo: `${dir}/repo`, target: `${dir}/agent/out` }),
        { region: null, key: KEY },
      );
      assert.equal(restored.ok, true);
      const tree = await describeTree(`${dir}/agent/out`);
      assert.deepEqual(tree.map((e) => [e.path, e.type]), [
        ["docs", "dir"],
        ["docs/report.md", "file"],
        ["hello.txt", "file"],
        ["link", "symlink"],
        ["new.txt", "file"],
      ]);
      assert.equal(
        await Deno.readTextFile(`${dir}/agent/out/new.txt`),
        "added in the incremental\n",
      );
    });
  });
});

Deno.test("an agent refuses a target or a source outside its roots, and writes nothing", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/agent`);
    await Deno.mkdir(`${dir}/elsewhere`);
    await Deno.symlink(`${dir}/elsewhere`, `${dir}/agent/escape`);
    const fixture = new URL("../../../fixtures/repo-v1", import.meta.url).pathname;
    await new Deno.Command("cp", { args: ["-r", fixture, `${dir}/repo`] }).output();
    await withAgent([`${dir}/agent`], async (agent, events) => {
      await assert.rejects(
        runAgentRestore(
          request(agent, { repo: `${dir}/repo`, target: `${dir}/agent/escape/out` }),
          {
            region: null,
            key: KEY,
          },
        ),
        /outside this agent's roots/,
      );
      await assert.rejects(
        runAgentBackup({
          kind: "backup",
          agent,
          mode: "fs",
          channel: "auto",
          source: `${dir}/elsewhere`,
          repo: `${dir}/repo2`,
          incremental: false,
        }, { region: null, key: KEY }),
        /outside this agent's roots/,
      );
      assert.deepEqual([...Deno.readDirSync(`${dir}/elsewhere`)], []);
      await assert.rejects(Deno.stat(`${dir}/repo2`), Deno.errors.NotFound);
      assert.equal(events.filter((e) => e.type === "job-refused").length, 2);
    });
  });
});

Deno.test("the progress of a backup from an agent through storage carries the bytes of each channel", async () => {
  await withTempDir(async (dir) => {
    // A region file works at any path (deno task test may not touch /dev/shm directly).
    {
      const regionPath = `${dir}/region`;
      createTestRegion(regionPath, { ephemeralPortMin: 41000, leaseMs: 2000 });
      await Deno.mkdir(`${dir}/agent/src`, { recursive: true });
      const data = new Uint8Array(8 << 20).map((_, i) => (i * 131 + (i >> 12)) & 0xff);
      await Deno.writeFile(`${dir}/agent/src/data.bin`, data);
      const progress: BackupProgress[] = [];
      await withAgent([`${dir}/agent`], async (agent) => {
        const backup = await runAgentBackup({
          kind: "backup",
          agent,
          mode: "fs",
          channel: "storage",
          source: `${dir}/agent/src`,
          repo: `${dir}/repo`,
          incremental: false,
        }, { region: regionPath, key: KEY, onProgress: (p) => progress.push(p) });
        assert.equal(backup.dataPath, "storage");
        assert.ok(progress.length > 0, "the agent reported progress");
        let previous = 0;
        // A report may come before the first data frame reached the server (0 through storage
        // then: an 8 MiB backup may send only that one); the counts never go back.
        for (const { storageBytes, networkBytes } of progress) {
          assert.ok(storageBytes !== undefined, "the storage count is carried");
          assert.ok(storageBytes >= previous, `storage bytes went back: ${storageBytes}`);
          assert.ok(networkBytes !== undefined && networkBytes < 64 * 1024);
          previous = storageBytes;
        }
        assert.ok(previous <= backup.storageBytes);
        assert.ok(backup.storageBytes > 0);
      }, regionPath);
    }
  });
});

/**
 * What a server meets when another server's connection crossed its job channel at the agent's
 * port: its own handshake ended (its last step, 100, sends and waits for nothing), but the
 * agent's failed at step 126 (it took the other server's control connection for our error
 * connection), and the agent either closed both connections at once (`drop`) or first sent its
 * handshake's error message on the control connection (`reject`: a control frame, whose length
 * prefix a session reads as tag 0). Either way the agent never said anything in the session.
 */
for (const ending of ["drop", "reject"] as const) {
  Deno.test(`a job channel the agent's handshake failed on after the server's succeeded (${ending}) is set up again, and the job runs`, async () => {
    await withTempDir(async (dir) => {
      await Deno.mkdir(`${dir}/agent/src`, { recursive: true });
      await Deno.writeTextFile(`${dir}/agent/src/a.txt`, "crossed\n");
      const port = freePortPair();
      const sockets = createTcpSockets({ ioTimeoutMs: 10_000 });
      const crossed = runHandshake(
        {
          role: "fs-client",
          kind: "network",
          config: { wellKnownPort: port, localHost: "127.0.0.1", handshakeTimeoutMs: 10_000 },
        },
        sockets,
        undefined,
      );
      const job = runAgentBackup({
        kind: "backup",
        agent: `127.0.0.1:${port}`,
        mode: "fs",
        channel: "auto",
        source: `${dir}/agent/src`,
        repo: `${dir}/repo`,
        incremental: false,
      }, { region: null, key: KEY });
      const first = await crossed;
      assert.equal(first.status, "established");
      if (first.status !== "established") return;
      if (ending === "reject") {
        const text = "unexpected wellKnown message at step 126 (state DESCRIPTOR_AWAITED)";
        await writeFrame(
          sockets,
          first.channels.control!,
          encodeMessage({
            type: "error",
            code: "EPROTO",
            text,
          }),
        );
        // Closed once the server's first session frame is in (its send went through; its read
        // meets our frame first).
        const header = new Uint8Array(9);
        await recvExactly(sockets, first.channels.control!, header);
        const length = new DataView(header.buffer).getUint32(1);
        await recvExactly(sockets, first.channels.control!, new Uint8Array(length));
      }
      await closeChannels(sockets, first.channels);
      // Then the agent listens again on its port, as it does after a failed handshake.
      const stop = new AbortController();
      const agent = runAgent({
        listen: { host: "127.0.0.1", port },
        roots: [`${dir}/agent`],
        key: await importAgentKey(KEY),
        signal: stop.signal,
        onEvent: () => {},
      });
      try {
        const backup = await job;
        assert.equal(backup.files, 1);
      } finally {
        stop.abort(new Error("test done"));
        await agent;
      }
    });
  });
}

Deno.test("a walk that holds the agent's thread starts once the data path is set up, so the handshake keeps its deadline (a large tree's walk ran it past step 126)", async () => {
  await withTempDir(async (dir) => {
    const regionPath = `${dir}/region`;
    // A lease the held walk below cannot outlast.
    createTestRegion(regionPath, { ephemeralPortMin: 41100, leaseMs: 10_000 });
    await Deno.mkdir(`${dir}/agent/src`, { recursive: true });
    await Deno.writeTextFile(`${dir}/agent/src/a.txt`, "a\n");
    const handshakeTimeoutMs = 2000;
    let walks = 0;
    // A walk whose synchronous stretches add up past the deadline (a 1M-entry tree's do), made
    // one stretch: if it runs beside the set-up, nothing of the handshake runs until it ends.
    const beforeWalk = async () => {
      walks++;
      await new Promise((resolve) => setTimeout(resolve, 0));
      const untilMs = performance.now() + handshakeTimeoutMs + 1000;
      while (performance.now() < untilMs) {
        // held on purpose
      }
    };
    await withAgent(
      [`${dir}/agent`],
      async (agent) => {
        const backup = await runAgentBackup({
          kind: "backup",
          agent,
          mode: "fs",
          channel: "auto",
          source: `${dir}/agent/src`,
          repo: `${dir}/repo`,
          incremental: false,
        }, { region: regionPath, key: KEY, handshakeTimeoutMs });
        assert.equal(backup.dataPath, "storage", `fallback: ${backup.fallbackReason}`);
        assert.equal(backup.files, 1);
        assert.equal(walks, 1);
      },
      regionPath,
      { handshakeTimeoutMs, hooks: { beforeWalk } },
    );
  });
});
