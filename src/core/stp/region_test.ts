import assert from "node:assert/strict";
import { H, NIL_REGION_ID, type RegionConfig, regionIdOf, regionIdWords } from "./layout.ts";
import { attachRegion, formatRegion } from "./region.ts";

const CONFIG: RegionConfig = {
  stgs: [{ id: 1, extentCount: 2, ephemeralPortMin: 100, ephemeralPortMax: 110 }],
  extentBytes: 4096,
  blockCount: 2,
  hostCount: 2,
  ioTimeoutMs: 100,
  leaseMs: 100,
  backlogMax: 1,
};

Deno.test("a formatted region carries its id in the header and attach reads it back", () => {
  const id = crypto.randomUUID();
  const buffer = formatRegion(CONFIG, id);
  assert.ok(buffer.ok);
  const layout = attachRegion(buffer.value);
  assert.ok(layout.ok);
  assert.equal(layout.value.regionId, id);
  const other = formatRegion(CONFIG, crypto.randomUUID());
  assert.ok(other.ok);
  const otherLayout = attachRegion(other.value);
  assert.ok(otherLayout.ok && otherLayout.value.regionId !== id);
});

Deno.test("a region id must be a lower-case UUID and round-trips through the header words", () => {
  for (const bad of ["", "not-a-uuid", "6F1C2D3E-4B5A-4C7D-8E9F-A0B1C2D3E4F5"]) {
    const made = formatRegion(CONFIG, bad);
    assert.equal(!made.ok && made.code, "EINVAL");
  }
  for (const id of [NIL_REGION_ID, "ffffffff-ffff-ffff-ffff-ffffffffffff", crypto.randomUUID()]) {
    const words = regionIdWords(id);
    assert.ok(words.ok);
    assert.equal(regionIdOf(words.value), id);
  }
});

Deno.test("attach refuses a region of layout version 1 (before the region id)", () => {
  const buffer = formatRegion(CONFIG, crypto.randomUUID());
  assert.ok(buffer.ok);
  new Int32Array(buffer.value)[H.version] = 1;
  const layout = attachRegion(buffer.value);
  assert.ok(!layout.ok && /version 1 is not 2/.test(layout.message), JSON.stringify(layout));
});
