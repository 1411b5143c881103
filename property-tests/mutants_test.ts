/**
 * The suites catch real bugs: each runs against a deliberately broken implementation and must
 * fail. A suite that passed here would be a suite that cannot fail.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { runSuites } from "./_runner.ts";
import { failureReport } from "./_suite.ts";
import { stpSuite } from "./stp_suite.ts";
import { handshakeSuite } from "./handshake_suite.ts";
import { wireSuite } from "./wire_suite.ts";
import { sharedArrayBufferRegions } from "../src/adapters/shm_region.ts";
import type { Region, RegionFactory } from "../src/core/stp/region.ts";
import type { RegionMemory } from "../src/core/stp/memory.ts";
import { ok } from "../src/core/dispatch/errors.ts";
import { createHandshake } from "../src/core/handshake/mod.ts";
import type { HandshakeAction, HandshakeMachine } from "../src/core/handshake/types.ts";
import { decodeMessage, encodeMessage } from "../src/core/wire/messages.ts";
import type { rogueHostProperty } from "./stp_rogue.ts";

/** A factory whose regions' memory is changed by `mutate`. */
function mutantRegions(
  name: string,
  mutate: (memory: RegionMemory) => RegionMemory,
): RegionFactory {
  const wrap = (region: Region): Region => ({ ...region, memory: mutate(region.memory) });
  return {
    name,
    create(config) {
      const region = sharedArrayBufferRegions.create(config);
      return region.ok ? ok(wrap(region.value)) : region;
    },
    attach(bytes) {
      const region = sharedArrayBufferRegions.attach(bytes);
      return region.ok ? ok(wrap(region.value)) : region;
    },
  };
}

async function failedProperties(suite: Parameters<typeof runSuites>[0][number], runs?: number) {
  const results = await runSuites([suite], runs === undefined ? {} : { runs });
  return results.filter((result) => !result.passed).map((result) => result.property);
}

Deno.test("the STP suite catches a region that hands out a control block twice", async () => {
  // A compare-and-exchange that always "wins": two hosts can take the same free block.
  const broken = mutantRegions("double-allocating", (memory) => ({
    load: (i) => memory.load(i),
    store: (i, v) => memory.store(i, v),
    add: (i, d) => memory.add(i, d),
    notify: (i) => memory.notify(i),
    readBytes: (o, into) => memory.readBytes(o, into),
    writeBytes: (o, from) => memory.writeBytes(o, from),
    byteLength: memory.byteLength,
    compareExchange: (index, expected, replacement) => {
      memory.store(index, replacement);
      return expected;
    },
  }));
  const failed = await failedProperties(stpSuite(broken));
  assert.ok(failed.length > 0, "no STP property failed for a double-allocating region");
});

Deno.test("the STP suite catches a ring that drops a byte", async () => {
  const broken = mutantRegions("byte-dropping", (memory) => ({
    byteLength: memory.byteLength,
    load: (i) => memory.load(i),
    store: (i, v) => memory.store(i, v),
    add: (i, d) => memory.add(i, d),
    notify: (i) => memory.notify(i),
    compareExchange: (i, e, r) => memory.compareExchange(i, e, r),
    readBytes: (o, into) => memory.readBytes(o, into),
    // Every write of more than one byte loses its last byte.
    writeBytes: (o, from) =>
      memory.writeBytes(o, from.length > 1 ? from.subarray(0, from.length - 1) : from),
  }));
  const failed = await failedProperties(stpSuite(broken));
  assert.ok(
    failed.some((name) => name.includes("ring")),
    `the ring property did not fail: ${failed}`,
  );
});

Deno.test("the STP suite catches a region whose notify drops wake-ups", async () => {
  // Publishes happen, wake-ups do not: a waiter sleeps until its timeout.
  const broken = mutantRegions("wake-up-dropping", (memory) => ({
    byteLength: memory.byteLength,
    load: (i) => memory.load(i),
    store: (i, v) => memory.store(i, v),
    add: (i, d) => memory.add(i, d),
    compareExchange: (i, e, r) => memory.compareExchange(i, e, r),
    readBytes: (o, into) => memory.readBytes(o, into),
    writeBytes: (o, from) => memory.writeBytes(o, from),
    notify: () => {},
  }));
  const property = stpSuite(broken).properties.find((p) =>
    p.name.includes("woken by every notify")
  );
  // Each failing run waits out its timeout: stop at the first failure instead of shrinking.
  const details = await property!.check({ endOnFailure: true });
  assert.ok(details.failed, "the wait/notify property did not fail");
  assert.match(failureReport(details) ?? "", /lost wake-up/);
});

/** A machine that skips sending the well-known string (step 90) but acts as if it sent it. */
function skippingStep90(machine: HandshakeMachine): HandshakeMachine {
  const filter = (actions: HandshakeAction[], nowMs: number): HandshakeAction[] =>
    actions.flatMap((action) => {
      if (action.type === "send" && action.message.type === "wellKnown") {
        return filter(machine.handle({ type: "sent", id: action.id }, nowMs), nowMs);
      }
      return [action];
    });
  return new Proxy(machine, {
    get(target, key) {
      if (key === "handle") {
        return (input: Parameters<HandshakeMachine["handle"]>[0], nowMs: number) =>
          filter(target.handle(input, nowMs), nowMs);
      }
      return Reflect.get(target, key, target);
    },
  });
}

Deno.test("the handshake suite catches a machine that skips a step", async () => {
  const failed = await failedProperties(
    handshakeSuite((role, config) => {
      const machine = createHandshake(role, config);
      return role === "fs-server" ? skippingStep90(machine) : machine;
    }),
    50,
  );
  assert.ok(failed.length > 0, "no handshake property failed when step 90 was skipped");
});

Deno.test("the wire suite catches a codec that loses a field", async () => {
  const failed = await failedProperties(
    wireSuite({
      encode: (message) =>
        encodeMessage(
          message.type === "port" ? { ...message, port: message.port & 0xff } : message,
        ),
      decode: decodeMessage,
    }),
  );
  assert.ok(failed.length > 0, "no wire property failed for a codec that truncates ports");
});

/** Copies a directory tree (files and subdirectories). */
async function copyTree(from: string, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for await (const entry of Deno.readDir(from)) {
    if (entry.isDirectory) await copyTree(`${from}/${entry.name}`, `${to}/${entry.name}`);
    else if (entry.isFile) await Deno.copyFile(`${from}/${entry.name}`, `${to}/${entry.name}`);
  }
}

/**
 * The rogue-host property over a copy of the STP core in which one check is skipped: `check`,
 * found exactly once in `file` (under `src/core/stp/`), is replaced by `skipped`. The copy lives
 * in a fresh temporary directory, removed by `dispose`.
 */
async function rogueOverMutant(
  file: string,
  check: string,
  skipped: string,
): Promise<{ property: typeof rogueHostProperty; dispose: () => Promise<void> }> {
  const project = new URL("..", import.meta.url).pathname;
  const root = await Deno.makeTempDir({ prefix: "lanfree-mutant-" });
  await copyTree(`${project}/src/core`, `${root}/src/core`);
  await Deno.mkdir(`${root}/property-tests`);
  for (const name of ["stp_rogue.ts", "stp_rogue_world.ts", "stp_harness.ts"]) {
    await Deno.copyFile(`${project}/property-tests/${name}`, `${root}/property-tests/${name}`);
  }
  const path = `${root}/src/core/stp/${file}`;
  const source = await Deno.readTextFile(path);
  assert.equal(source.split(check).length, 2, `the check is in ${file} exactly once: ${check}`);
  await Deno.writeTextFile(path, source.replace(check, skipped));
  const module = await import(`file://${root}/property-tests/stp_rogue.ts`);
  return {
    property: module.rogueHostProperty,
    dispose: () => Deno.remove(root, { recursive: true }),
  };
}

/** Runs the rogue-host property over a mutant until its first failure; returns the report. */
async function rogueFailure(file: string, check: string, skipped: string): Promise<string> {
  const mutant = await rogueOverMutant(file, check, skipped);
  try {
    const details = await fc.check(mutant.property(sharedArrayBufferRegions), {
      numRuns: 5000,
      endOnFailure: true,
    });
    assert.ok(details.failed, `the rogue-host property passed 5000 runs with ${file} mutated`);
    return failureReport(details) ?? "";
  } finally {
    await mutant.dispose();
  }
}

Deno.test("the rogue-host property catches a ring step that skips the check of its extent entry", async () => {
  // Without it a host keeps writing into a ring the extent table no longer gives its connection.
  const report = await rogueFailure(
    "ring_end.ts",
    "if (holder !== end.ringOwner + 1) {",
    "if (false) {",
  );
  assert.match(report, /outside its ring|not the ring it opened/);
});

Deno.test("the rogue-host property catches a port table read that skips the block range check", async () => {
  // Without it a port word naming block 4096 sends connect or bind outside the region.
  const report = await rogueFailure(
    "cbt.ts",
    "if (block < 0 || block >= ctx.layout.blockCount) {",
    "if (false) {",
  );
  assert.match(report, /outside the region/);
});
