import assert from "node:assert/strict";
import {
  HostCrashedError,
  type HostLink,
  HostTimeoutError,
  startProcessHost,
  startWorkerHost,
} from "./host_link.ts";
import type { FixtureInput, FixtureOutput } from "./_host_link_fixture.ts";

const FIXTURE = new URL("./_host_link_fixture.ts", import.meta.url);
const WAIT_MS = 30_000;

type Fixture = HostLink<FixtureInput, FixtureOutput>;

const transports: Array<[string, () => Fixture]> = [
  ["a Worker", () => startWorkerHost<FixtureInput, FixtureOutput>(FIXTURE, "fixture worker")],
  [
    "a process",
    () =>
      startProcessHost<FixtureInput, FixtureOutput>(
        { script: FIXTURE, flags: ["--allow-read"], stderr: "null" },
        "fixture process",
      ),
  ],
];

for (const [where, start] of transports) {
  Deno.test(`a host in ${where}: next takes messages by type, in order, leaving the others queued`, async () => {
    const host = start();
    try {
      host.post({ type: "ask", n: 1 });
      host.post({ type: "ask", n: 2 });
      assert.deepEqual(await host.next("answer", WAIT_MS), { type: "answer", n: 2 });
      assert.deepEqual(await host.next("answer", WAIT_MS), { type: "answer", n: 4 });
      assert.deepEqual(await host.next(["note"], WAIT_MS), { type: "note", n: 1 });
      const notes: number[] = [];
      host.on("note", (note) => notes.push(note.n)); // the queued one, then new ones
      host.post({ type: "ask", n: 3 });
      await host.next("answer", WAIT_MS);
      assert.deepEqual(notes, [2, 3]);
    } finally {
      host.terminate();
      await host.ended;
    }
  });

  Deno.test(`a host in ${where} that crashes rejects the pending and later waits`, async () => {
    const host = start();
    try {
      const waiting = host.next("answer", WAIT_MS);
      host.post({ type: "crash" });
      await assert.rejects(waiting, HostCrashedError);
      await assert.rejects(host.next("note", WAIT_MS), HostCrashedError);
    } finally {
      host.terminate();
      await host.ended;
    }
  });

  Deno.test(`a host in ${where} that sends nothing in time rejects the wait with a timeout`, async () => {
    const host = start();
    try {
      await assert.rejects(host.next("answer", 50), HostTimeoutError);
    } finally {
      host.terminate();
      await host.ended;
    }
  });
}

Deno.test("a process host's exit code is in the rejection of a wait it leaves pending", async () => {
  const host = startProcessHost<FixtureInput, FixtureOutput>(
    { script: FIXTURE, flags: ["--allow-read"], stderr: "null" },
    "fixture process",
  );
  const waiting = host.next("answer", WAIT_MS);
  host.post({ type: "exit", code: 7 });
  await assert.rejects(waiting, /fixture process ended: exited with code 7/);
  assert.equal(await host.ended, "exited with code 7");
});
