import assert from "node:assert/strict";
import { type AttachedRegion, parseHandshakeConfig } from "./config.ts";
import { createHandshake } from "./mod.ts";
import { runSimulation, SIM_REGION_ID, type SimFlow, simPair } from "./sim.ts";

const OTHER_REGION = "0dd00000-0000-4000-8000-000000000bad";
const OFFERED = { id: 1, lengthBytes: 1 << 20, regionId: SIM_REGION_ID };

/** Runs a flow where the receiving side attached `attached` (or nothing). */
function run(flow: SimFlow, attached: AttachedRegion | undefined, seed = 1) {
  const pair = simPair(flow, (role, config) => {
    const receiver = role === "fs-client" || role === "db-client";
    const own = receiver ? { ...config, region: attached } : { ...config, stg: OFFERED };
    const parsed = parseHandshakeConfig(own);
    if (!parsed.ok) throw new Error(parsed.message);
    return createHandshake(role, parsed.value);
  }, { wellKnownPort: 7000 });
  return runSimulation(pair, { seed, delayMsMax: 3 });
}

const CASES: Array<[string, AttachedRegion | undefined, RegExp]> = [
  [
    "another region",
    { regionId: OTHER_REGION, stgs: [{ id: 1, lengthBytes: 1 << 20 }] },
    new RegExp(`both sides attached different regions: the peer's is ${SIM_REGION_ID}`),
  ],
  [
    "an STG the receiver's region lacks",
    { regionId: SIM_REGION_ID, stgs: [{ id: 2, lengthBytes: 1 << 20 }] },
    /STG 1 is not in this side's region \(its STGs: 2\)/,
  ],
  [
    "another STG length",
    { regionId: SIM_REGION_ID, stgs: [{ id: 1, lengthBytes: 1 << 21 }] },
    /STG 1 is 2097152 bytes in this side's region, the peer says 1048576/,
  ],
  ["no region at all", undefined, /no storage region attached/],
];

for (const flow of ["fs", "db"] as const) {
  const step = flow === "fs" ? "160" : "200";
  for (const [what, attached, pattern] of CASES) {
    Deno.test(`${flow} flow: STG info naming ${what} fails the receiver at step ${step} and the sender at once`, () => {
      for (let seed = 1; seed <= 5; seed++) {
        const outcome = run(flow, attached, seed);
        assert.deepEqual(outcome.violations, []);
        const receiver = outcome.client;
        assert.equal(receiver.status, "failed");
        assert.equal(receiver.reason?.code, "EADDRNOTAVAIL");
        assert.equal(receiver.reason?.step, step);
        assert.match(receiver.reason?.message ?? "", new RegExp(`^step ${step}: `));
        assert.match(receiver.reason?.message ?? "", pattern);
        // The sender fails too, from the receiver's error report or its closing, never from
        // its own deadline.
        assert.equal(outcome.server.status, "failed");
        assert.notEqual(
          outcome.server.reason?.code,
          "ETIMEDOUT",
          `${outcome.server.reason?.message}`,
        );
      }
    });
  }
  Deno.test(`${flow} flow: matching region id, STG id and length establish`, () => {
    const attached = {
      regionId: SIM_REGION_ID,
      stgs: [{ id: 3, lengthBytes: 4096 }, { id: 1, lengthBytes: 1 << 20 }],
    };
    const outcome = run(flow, attached);
    assert.equal(outcome.client.status, "established");
    assert.equal(outcome.server.status, "established");
  });
}
