import assert from "node:assert/strict";
import { checkHead, endLine, headLine } from "./manifest_stream.ts";
import { parseManifest } from "./manifest.ts";
import { testId } from "./_test_data.ts";

const head = {
  format: "lanfree-manifest",
  version: 2,
  id: testId(2),
  kind: "fs",
  source: "/src",
  parent: null,
  createdMs: 1,
  archiveBytes: 1024,
  channelBytes: { storage: 0, network: 0 },
  consolidated: { parent: testId(1), consolidatedMs: 5 },
} as const;

Deno.test("a consolidated snapshot's head is read by the line check as zod reads it, and written back whole", () => {
  const checked = checkHead(head);
  assert.ok(checked.ok, checked.ok ? "" : checked.message);
  const { channelBytes, ...rest } = head;
  const text = `${headLine(rest)}\n${endLine(channelBytes)}`.replace("\n", "");
  const parsed = parseManifest({ ...JSON.parse(text), deleted: [] });
  assert.ok(parsed.ok, parsed.ok ? "" : parsed.message);
  assert.deepEqual(parsed.manifest.consolidated, head.consolidated);
});

Deno.test("a malformed consolidated record is refused by the line check, as by zod", () => {
  for (const consolidated of [{ parent: "x", consolidatedMs: 1 }, { parent: testId(1) }, 7]) {
    const value = { ...head, consolidated };
    assert.equal(checkHead(value).ok, false, JSON.stringify(consolidated));
    assert.equal(parseManifest({ ...value, entries: [], deleted: [] }).ok, false);
  }
});
