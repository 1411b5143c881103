import assert from "node:assert/strict";
import { createHandshake } from "./mod.ts";
import { goldenTranscript, type SimFlow, type TranscriptLine } from "./sim.ts";

async function readGolden(flow: SimFlow): Promise<TranscriptLine[]> {
  const url = new URL(`../../../fixtures/handshake-${flow}.golden.json`, import.meta.url);
  const body = JSON.parse(await Deno.readTextFile(url)) as { calls: TranscriptLine[] };
  return body.calls;
}

Deno.test("the file-system flow produces exactly the golden transcript", async () => {
  assert.deepEqual(goldenTranscript("fs", createHandshake), await readGolden("fs"));
});

Deno.test("the database flow produces exactly the golden transcript", async () => {
  assert.deepEqual(goldenTranscript("db", createHandshake), await readGolden("db"));
});

Deno.test("the file-system golden transcript performs every step of Figs. 4 and 4A", async () => {
  const steps = new Set((await readGolden("fs")).map((line) => line.step));
  const seeds = [82, 84, 86, 90, 92, 94, 96, 98, 100, 112, 114, 115, 118, 120, 122, 124, 126];
  const seeds4A = [132, 134, 136, 138, 140, 142, 144, 146, 152, 154, 156, 158, 160, 162, 164];
  for (const step of [...seeds, ...seeds4A, 166, 168, 170, 172]) {
    assert.ok(steps.has(String(step)), `step ${step} is in the transcript`);
  }
});

Deno.test("the database golden transcript performs every step of Fig. 5", async () => {
  const steps = new Set((await readGolden("db")).map((line) => line.step));
  const client = ["182", "184", "186", "188", "190", "192", "194", "196", "196A", "198", "200"];
  const more = ["202", "204", "206", "208", "210", "212", "214"];
  const server = ["222", "224", "226", "228", "234", "236", "238", "240", "242", "244", "246"];
  for (const step of [...client, ...more, ...server]) {
    assert.ok(steps.has(step), `step ${step} is in the transcript`);
  }
});
