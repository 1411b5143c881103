import assert from "node:assert/strict";
import { runSuites } from "./_runner.ts";
import { descriptorSuite, socketsSuite } from "./dispatch_suite.ts";
import { createTcpSockets } from "../src/adapters/tcp.ts";
import type { Sockets } from "../src/core/dispatch/sockets.ts";

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
