/**
 * The `-2proc` benchmark rows: the agent (`deno task agent`) and the server (`deno task serve`)
 * as two processes on this machine mapping one region file under /dev/shm, as two hosts would.
 * `backup-2proc` is the MB/s of a backup of the dataset from the agent into a repository of the
 * server, `restore-2proc` of the restore of that snapshot into a directory of the agent, both
 * taken from the jobs' own summaries (file bytes over the job's time, from the server starting
 * its side to the agent's last message), as `backup-e2e` is from its own.
 *
 * @module
 */

import { createRegionFile } from "../src/adapters/region_file.ts";
import { makeTempDirectory, removeDirectory, unlinkFile } from "../src/adapters/_libc_files.ts";
import { jobRegionConfig } from "../src/app/jobs/backup_job.ts";
import { loopbackHosts, startAgent, startServer } from "./_two_hosts.ts";
import { cleanUpOnSignal, killQuietly, removeQuietly, sweepStaleScratch } from "./_leftovers.ts";

/** One benchmark row. */
export interface Row {
  readonly name: string;
  readonly value: number;
  readonly unit: string;
}

const KEY = "bench-2proc-agent-key-01";

async function sync(): Promise<void> {
  await new Deno.Command("sync").output();
}

/**
 * Measures `backup-2proc` and `restore-2proc` on a dataset.
 *
 * @param data the dataset's directory
 * @param scratch a directory for the repository and the restored copy (removed after)
 * @returns the two rows
 */
export async function bench2proc(data: string, scratch: string): Promise<Row[]> {
  sweepStaleScratch();
  const shm = makeTempDirectory("/dev/shm/lanfree-bench-");
  const children: { kill(signal: Deno.Signal): void }[] = [];
  const forget = cleanUpOnSignal(() => { // a bench stopped by a signal leaves nothing either
    for (const child of children) killQuietly(child);
    for (const path of [shm, `${scratch}/server`, `${scratch}/agent`]) removeQuietly(path);
  });
  const region = `${shm}/region`;
  createRegionFile(region, jobRegionConfig(64, 64, 30_000)).close();
  const hosts = loopbackHosts("127.0.0.1");
  await Deno.mkdir(`${scratch}/server`, { recursive: true });
  await Deno.mkdir(`${scratch}/agent`, { recursive: true });
  const agent = await startAgent(hosts, {
    index: 0,
    roots: [data, `${scratch}/agent`],
    region,
    key: KEY,
  });
  children.push(agent.host);
  const server = await startServer(hosts, { root: `${scratch}/server`, region, key: KEY });
  children.push(server.child, server.client);
  try {
    await sync();
    const backup = await server.wait(
      (await server.submit({
        kind: "backup",
        agent: agent.address,
        source: data,
        repo: `${scratch}/server/repo`,
        channel: "storage",
      })).id,
    );
    if (backup.state !== "succeeded") throw new Error(`backup-2proc: ${backup.error}`);
    await sync();
    const restore = await server.wait(
      (await server.submit({
        kind: "restore",
        agent: agent.address,
        repo: `${scratch}/server/repo`,
        target: `${scratch}/agent/out`,
        channel: "storage",
      })).id,
    );
    if (restore.state !== "succeeded") throw new Error(`restore-2proc: ${restore.error}`);
    const rate = (job: typeof backup) =>
      (job.result as { megabytesPerSecond: number }).megabytesPerSecond;
    return [
      { name: "backup-2proc", value: rate(backup), unit: "MB/s" },
      { name: "restore-2proc", value: rate(restore), unit: "MB/s" },
    ];
  } finally {
    await agent.stop();
    await server.stop();
    unlinkFile(region);
    removeDirectory(shm);
    await Deno.remove(`${scratch}/server`, { recursive: true });
    await Deno.remove(`${scratch}/agent`, { recursive: true });
    forget();
  }
}
