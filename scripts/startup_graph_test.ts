import assert from "node:assert/strict";
import { modulesNamed, runtimeModules } from "./_module_graph.ts";

Deno.test("a local restore loads nothing of the backup job, the remote client or the progress bar", async () => {
  const modules = await runtimeModules(new URL("./restore.ts", import.meta.url));
  assert.deepEqual(
    modulesNamed(modules, [
      "/scripts/backup.ts",
      "/jobs/backup_job.ts",
      "/jobs/job_hosts.ts",
      "/scripts/_remote.ts",
      "/agent/snapshot_source.ts",
      "npm:cli-progress@",
      "npm:eventsource-parser@",
    ]),
    [],
  );
  assert.equal(modulesNamed(modules, ["/repository/restore.ts"]).length, 1);
});

Deno.test("the backup CLI loads the job, the source checks, retention and the remote client only when it runs them", async () => {
  const modules = await runtimeModules(new URL("./backup.ts", import.meta.url));
  assert.deepEqual(
    modulesNamed(modules, [
      "/jobs/backup_job.ts",
      "/jobs/job_hosts.ts",
      "/agent/snapshot_source.ts",
      "/repository/retention.ts",
      "/repository/repository.ts",
      "/scripts/_remote.ts",
      "npm:eventsource-parser@",
      "npm:@streamparser/json@",
    ]),
    [],
  );
  assert.equal(modulesNamed(modules, ["/jobs/side_host_start.ts"]).length, 1);
});

Deno.test("parsing a backup's command line without keep rules never looks up a time zone", async () => {
  const { parseBackupArgs } = await import("./backup.ts");
  const original = Intl.DateTimeFormat;
  let made = 0;
  const counting = function (...args: ConstructorParameters<typeof Intl.DateTimeFormat>) {
    made++;
    return new original(...args);
  };
  Intl.DateTimeFormat = counting as unknown as typeof Intl.DateTimeFormat;
  try {
    const plain = parseBackupArgs(["--source", "/tmp", "--repo", "/tmp/repo"]);
    assert.equal(made, 0);
    assert.equal(plain.request.keep, undefined);
    const kept = parseBackupArgs(["--source", "/tmp", "--repo", "/tmp/r", "--keep-last", "2"]);
    assert.ok(made > 0);
    assert.equal(kept.request.keep?.last, 2);
  } finally {
    Intl.DateTimeFormat = original;
  }
});
