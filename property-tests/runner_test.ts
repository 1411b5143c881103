import assert from "node:assert/strict";
import { runSuites } from "./_runner.ts";
import { descriptorSuite, socketsSuite } from "./dispatch_suite.ts";
import { createTcpSockets } from "../src/adapters/tcp.ts";
import type { Sockets } from "../src/core/dispatch/sockets.ts";
import { TRIP_AT, trippingSuite } from "./_tripping_suite.ts";
import { collectStrays } from "../scripts/conformance.ts";
import { handshakeSuite, type MachineFactory } from "./handshake_suite.ts";
import { createHandshake } from "../src/core/handshake/mod.ts";
import type { HandshakeInput } from "../src/core/handshake/types.ts";
import { invariant } from "../src/core/assert.ts";

/** TCP, but recv corrupts the third byte of any read longer than three bytes. */
function corruptingSockets(): Sockets {
  const tcp = createTcpSockets({ ioTimeoutMs: 5_000 });
  return {
    ...tcp,
    async recv(fd, into) {
      const got = await tcp.recv(fd, into);
      if (got !== null && got > 3) into[2]! ^= 0x01;
      return got;
    },
  };
}

/** TCP, but listen before bind is accepted silently. */
function lenientSockets(): Sockets {
  const tcp = createTcpSockets({ ioTimeoutMs: 5_000 });
  return {
    ...tcp,
    listen: (fd, backlog) => tcp.listen(fd, backlog).catch(() => {}),
  };
}

const network = { kind: "network", host: "127.0.0.1", port: 0 } as const;

Deno.test("runSuites() reports every property of a passing suite as passed with its run count", async () => {
  const results = await runSuites([descriptorSuite()], { runs: 7, seed: 42 });
  assert.equal(results.length, 3);
  for (const result of results) {
    assert.ok(result.passed, result.report ?? "");
    assert.equal(result.runs, 7);
    assert.equal(result.seed, 42);
  }
});

for (
  const [bug, create] of [["a recv that corrupts a byte", corruptingSockets], [
    "a listen that is accepted before bind",
    lenientSockets,
  ]] as const
) {
  Deno.test(`the sockets suite catches ${bug}, and its replay options find the same counterexample`, async () => {
    const suite = socketsSuite(() => ({ sockets: create(), kind: "network", anyAddress: network }));
    const [failure] = await runSuites([suite], { runs: 300 });
    assert.ok(failure !== undefined && !failure.passed, `the suite did not catch ${bug}`);
    assert.match(failure.report!, /seed/);
    assert.ok(failure.path !== undefined && failure.path.length > 0);
    assert.ok(failure.replay?.runs !== undefined, "a model-based failure replays by seed and runs");
    const [replayed] = await runSuites([suite], failure.replay);
    assert.ok(replayed !== undefined && !replayed.passed, "the replay fails the same way");
    const counterexample = (report: string) => /Counterexample: (.*)/.exec(report)?.[1];
    assert.equal(counterexample(replayed.report!), counterexample(failure.report!));
  });
}

Deno.test("runSuites() skips properties once the time budget is spent", async () => {
  const results = await runSuites([descriptorSuite(), descriptorSuite()], { budgetMs: -1 });
  assert.ok(results.every((result) => result.skipped === true));
});

Deno.test("every way a property trips an invariant is that property's failure, with what replays it, and the run goes on", async () => {
  const strays = collectStrays();
  let results;
  try {
    results = await runSuites([trippingSuite()], { seed: 99, strays });
  } finally {
    strays.dispose();
  }
  const [predicate, generation, build, escaped, holds] = results;
  assert.equal(results.length, 5);
  for (const failure of [predicate!, generation!, build!, escaped!]) {
    assert.ok(!failure.passed, `${failure.property} passed`);
    assert.equal(failure.seed, 99);
    assert.equal(failure.replay?.seed, 99);
    assert.match(failure.report!, /invariant violated/);
  }
  assert.ok(holds!.passed, holds!.report ?? "");
  for (const failure of [predicate!, escaped!]) {
    assert.equal(failure.counterexample, `[${TRIP_AT}]`, failure.report ?? "");
    assert.ok(failure.replay?.path !== undefined, `${failure.property} replays by path`);
  }
  assert.match(generation!.counterexample!, /generating the input threw InvariantError/);
  assert.match(escaped!.report!, /escaped the property/);
  assert.match(build!.report!, /threw before fast-check could report a run/);
  assert.equal(build!.counterexample, undefined);
});

Deno.test("a tripped property's replay options fail it again on the same counterexample", async () => {
  const strays = collectStrays();
  try {
    for (const name of ["in its predicate", "while generating", "escape in a promise"]) {
      const [first] = await runSuites([trippingSuite()], { property: name, strays });
      assert.ok(first !== undefined && !first.passed && first.replay !== undefined);
      const [again] = await runSuites([trippingSuite()], {
        property: name,
        strays,
        ...first.replay,
      });
      assert.ok(again !== undefined && !again.passed, `${name}: the replay passed`);
      assert.equal(again.counterexample, first.counterexample, name);
    }
  } finally {
    strays.dispose();
  }
});

Deno.test("the handshake suite over machines that trip an invariant builds, and reports each property's failure", async () => {
  // Building the suite used to run the machines (for the steps faults can hit): the invariant
  // fired there, outside any property, and ended `deno task conformance` with one line.
  const tripping: MachineFactory = (role, config) => {
    const machine = createHandshake(role, config);
    return new Proxy(machine, {
      get(target, key) {
        if (key !== "handle") return Reflect.get(target, key, target);
        return (input: HandshakeInput, nowMs: number) => {
          invariant(input.type !== "received" || input.message.type !== "ack", "no ack arrives");
          return target.handle(input, nowMs);
        };
      },
    });
  };
  const results = await runSuites([handshakeSuite(tripping)], { runs: 20, seed: 3 });
  assert.ok(results.length > 0);
  for (const result of results) {
    assert.ok(!result.passed, `${result.property} passed`);
    assert.match(result.report!, /no ack arrives/);
    assert.equal(result.replay?.seed, 3);
  }
});
