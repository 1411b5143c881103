import assert from "node:assert/strict";
import { PAIR_REGION_CONFIG, runHandshakePair } from "./handshake_pair.ts";
import { freePortPair } from "./ports.ts";
import { formatRegion } from "../../core/stp/region.ts";
import { usageOfBuffer } from "../../core/stp/usage.ts";
import { createStorageSockets } from "../../adapters/shm.ts";

function shortTimeoutRegion(): SharedArrayBuffer {
  const region = formatRegion(
    { ...PAIR_REGION_CONFIG, ioTimeoutMs: 400, leaseMs: 200 },
    crypto.randomUUID(),
  );
  if (!region.ok) throw new Error(region.message);
  return region.value;
}

function blocksInUse(region: SharedArrayBuffer): number {
  const usage = usageOfBuffer(region);
  if (!usage.ok) throw new Error(usage.message);
  return usage.value.blocks.length;
}

/** Reclaims a dead host's blocks as a live host would once its lease ran out. */
async function reclaimAfterLease(region: SharedArrayBuffer): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, 500));
  const janitor = createStorageSockets({ region, waitMode: "async" });
  janitor.reclaim();
  await janitor.dispose();
}

for (const flow of ["fs", "db"] as const) {
  Deno.test(`the ${flow} flow between two Worker hosts establishes, moves 64 MiB through storage with matching SHA-256, and carries the network messages`, async () => {
    const { listener, initiator } = await runHandshakePair({
      flow,
      wellKnownPort: freePortPair,
      dataBytes: 64 * 1024 * 1024,
      // Generous: a Worker's first start type-checks its module, seconds on a loaded machine.
      handshakeTimeoutMs: 20_000,
    });
    assert.equal(listener.error, undefined);
    assert.equal(initiator.error, undefined);
    assert.equal(listener.outcome?.status, "established", JSON.stringify(listener.outcome));
    assert.equal(initiator.outcome?.status, "established", JSON.stringify(initiator.outcome));
    assert.equal(listener.transfer?.bytes, 64 * 1024 * 1024);
    assert.equal(listener.transfer?.sha256, initiator.transfer?.sha256);
    if (flow === "fs") {
      assert.deepEqual(listener.transfer?.messages, {
        control: "hello on control",
        error: "hello on error",
      });
    }
  });

  Deno.test(`the ${flow} flow with the initiator killed at each step: the survivor ends, and no control block stays held`, async () => {
    const clean = await runHandshakePair({
      flow,
      wellKnownPort: freePortPair,
      killInitiatorAtStep: 10_000,
    });
    assert.equal(clean.initiator.outcome?.status, "established");
    const stepsMax = 30;
    for (let step = 1; step <= stepsMax; step++) {
      const region = shortTimeoutRegion();
      const { listener, initiator } = await runHandshakePair({
        flow,
        region,
        wellKnownPort: freePortPair,
        killInitiatorAtStep: step,
        handshakeTimeoutMs: 600,
        runTimeoutMs: 10_000,
      });
      if (!initiator.killed) break; // the clean run needs fewer steps: every stage was covered
      assert.equal(listener.error, undefined, `step ${step}: ${listener.error}`);
      assert.ok(listener.outcome !== undefined, `step ${step}: the survivor reported an outcome`);
      if (listener.outcome.status === "failed") {
        assert.ok(listener.outcome.reason.message.length > 0, `step ${step}: failure has a reason`);
      }
      await reclaimAfterLease(region);
      assert.equal(
        blocksInUse(region),
        0,
        `step ${step}: blocks held after the dead host was reclaimed`,
      );
    }
  });
}
