import assert from "node:assert/strict";
import { runSides } from "./job_hosts.ts";
import { SIDE_HOST_WORKERS } from "./side_host_start.ts";
import { workerHostsRunning } from "../../adapters/host_link.ts";
import { modulesNamed, runtimeModules } from "../../../scripts/_module_graph.ts";

/** What only the server's side runs: the repository writer and the restore sender. */
const SERVER_ONLY = [
  "/server/server_side.ts",
  "/server/backup_server.ts",
  "/server/restore_sender.ts",
  "/repository/snapshot_writer.ts",
];
/** What only the agent's side runs: the walk, the packer, the database snapshot. */
const AGENT_ONLY = [
  "/agent/agent_side.ts",
  "/agent/backup_client.ts",
  "/agent/tree_walk.ts",
  "/agent/tar_pack.ts",
  "/agent/db_snapshot.ts",
  "node:sqlite",
];

Deno.test("the agent's host loads the client's modules and none of the server's", async () => {
  const modules = await runtimeModules(SIDE_HOST_WORKERS.client);
  assert.deepEqual(modulesNamed(modules, SERVER_ONLY), []);
  assert.equal(modulesNamed(modules, ["/agent/agent_side.ts"]).length, 1);
});

Deno.test("the server's host loads the server's modules and none of the agent's", async () => {
  const modules = await runtimeModules(SIDE_HOST_WORKERS.server);
  assert.deepEqual(modulesNamed(modules, AGENT_ONLY), []);
  assert.equal(modulesNamed(modules, ["/server/server_side.ts"]).length, 1);
});

Deno.test("a job starts the server's host together with the agent's, before the agent listens", async () => {
  const source = await Deno.makeTempDir({ prefix: "lanfree-test-hosts-" });
  try {
    const base = { region: null, ioTimeoutMs: 5000, handshakeTimeoutMs: 5000, key: null };
    const cancel = new AbortController();
    const run = runSides({
      region: null,
      agent: { ...base, progressEveryMs: 250, agent: { roots: [source], excluded: [] } },
      server: {
        ...base,
        progressEveryMs: 250,
        server: {
          kind: "backup",
          agent: { host: "127.0.0.1", port: 1 },
          mode: "fs",
          channel: "network",
          source,
          incremental: false,
          repo: `${source}/repo`,
          lockWaitMs: 1000,
        },
      },
      progressFrom: "agent",
      signal: cancel.signal,
    });
    assert.equal(workerHostsRunning(), 2);
    cancel.abort(new Error("the test is done"));
    await assert.rejects(run, /job cancelled: the test is done/);
    assert.equal(workerHostsRunning(), 0);
  } finally {
    await Deno.remove(source, { recursive: true });
  }
});

Deno.test("neither side's host loads the restore code until a restore job asks for it", async () => {
  const restoreOnly = [
    "/agent/restore_receiver.ts",
    "/repository/restore.ts",
    "/server/restore_sender.ts",
    "/repository/_archive_read.ts",
  ];
  for (const entry of Object.values(SIDE_HOST_WORKERS)) {
    assert.deepEqual(modulesNamed(await runtimeModules(entry), restoreOnly), [], entry.href);
  }
  const server = await runtimeModules(SIDE_HOST_WORKERS.server);
  assert.deepEqual(modulesNamed(server, ["npm:tar-stream@", "node:fs"]), []);
});

Deno.test("the job's own isolate loads the region adapters and the repository writer only after a failure", async () => {
  const modules = await runtimeModules(new URL("./backup_job.ts", import.meta.url));
  assert.deepEqual(
    modulesNamed(modules, [
      "/adapters/shm.ts",
      "/adapters/region_file.ts",
      "/repository/snapshot_writer.ts",
    ]),
    [],
  );
});
