import assert from "node:assert/strict";
import type { Result } from "../dispatch/errors.ts";
import { claimHost } from "./hosts.ts";
import { plainMemory } from "./memory.ts";
import * as ops from "./ops.ts";
import { attachRegion, formatRegion } from "./region.ts";
import { runSteps } from "./steps.ts";
import { pickStg } from "./stg_pick.ts";

function value<T>(result: Result<T>): T {
  if (!result.ok) throw new Error(`${result.code}: ${result.message}`);
  return result.value;
}

Deno.test("pickStg offers the STG with the most free extents and ENOBUFS when none has room", () => {
  const buffer = value(formatRegion({
    stgs: [
      { id: 1, extentCount: 3, ephemeralPortMin: 100, ephemeralPortMax: 110 },
      { id: 2, extentCount: 2, ephemeralPortMin: 200, ephemeralPortMax: 210 },
    ],
    extentBytes: 4096,
    blockCount: 8,
    hostCount: 2,
    ioTimeoutMs: 100,
    leaseMs: 1000,
    backlogMax: 2,
  }, crypto.randomUUID()));
  const layout = value(attachRegion(buffer));
  const memory = plainMemory(buffer);
  const ctx = (hostId: number) => ({ memory, layout, hostId, nowMs: 1000 });
  const a = ctx(value(runSteps(claimHost(memory, layout, 1000, 0))).hostId);
  const b = ctx(value(runSteps(claimHost(memory, layout, 1000, 0))).hostId);
  assert.equal(value(pickStg(memory, layout)).id, 1);
  // One connection in STG 1 leaves it 1 free extent: STG 2 (2 free) is offered next.
  const listener = value(runSteps(ops.allocate(a, 0)));
  value(runSteps(ops.bind(a, listener, 1, 5)));
  value(runSteps(ops.listen(a, listener, 1)));
  value(runSteps(ops.connect(b, value(runSteps(ops.allocate(b, 0))), 1, 5)));
  assert.equal(value(runSteps(ops.accept(a, listener))).kind, "ready");
  assert.equal(value(pickStg(memory, layout)).id, 2);
  const none = pickStg(memory, layout, 3);
  assert.ok(!none.ok && none.code === "ENOBUFS");
  assert.match(none.message, /free extents: STG 1: 1, STG 2: 2/);
});
