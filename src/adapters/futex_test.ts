import assert from "node:assert/strict";
import { AdaptiveSpin, PROBE_EVERY, SPIN_MICROS_DEFAULT } from "./futex.ts";

Deno.test("a spin that keeps missing shrinks to none, a periodic probe spins in full, a hit restores it", () => {
  const spin = new AdaptiveSpin(0.05);
  const budgets: number[] = [];
  for (let wait = 1; wait < PROBE_EVERY; wait++) {
    budgets.push(spin.budgetMs);
    spin.slept();
  }
  assert.equal(budgets[0], 0.05);
  assert.ok(budgets.slice(0, 16).every((b, i) => i === 0 || b < budgets[i - 1]!), `${budgets}`);
  assert.equal(budgets.at(-1), 0, "a core shared for good ends the spinning");
  assert.equal(spin.budgetMs, 0.05, `wait ${PROBE_EVERY} probes with the full spin`);
  spin.slept();
  spin.caught();
  assert.equal(spin.budgetMs, 0.05, "a hit restores the full spin");
});

/**
 * Two sides that ping-pong, each with its own spin. A wait catches the peer's message when it
 * comes within the wait's spin: a peer that caught the previous message (it was spinning)
 * answers within `spinningAnswerUs`, a peer that slept answers only after its wake-up.
 *
 * @returns how many of the last `PROBE_EVERY` waits of each side caught the peer
 */
function pingPong(maxUs: number, sleepingAnswerUs: number, waits: number): [number, number] {
  const spinningAnswerUs = 5;
  const sides = [new AdaptiveSpin(maxUs / 1000), new AdaptiveSpin(maxUs / 1000)];
  for (const spin of sides) for (let i = 0; i < 16; i++) spin.slept(); // both settled asleep
  const caughtLast = [false, false];
  const tail = [0, 0];
  for (let wait = 0; wait < 2 * waits; wait++) {
    const me = wait % 2;
    const peerAnswerUs = caughtLast[1 - me] ? spinningAnswerUs : sleepingAnswerUs;
    const caught = peerAnswerUs <= sides[me]!.budgetMs * 1000;
    if (caught) sides[me]!.caught();
    else sides[me]!.slept();
    caughtLast[me] = caught;
    if (wait >= 2 * (waits - PROBE_EVERY) && caught) tail[me]!++;
  }
  return [tail[0]!, tail[1]!];
}

Deno.test("two sides that both settled sleeping find each other again: the default spin outlasts a sleeping peer's wake-up", () => {
  const sleepingAnswerUs = 120; // the slow end of what was measured here (60-120 µs)
  assert.deepEqual(
    pingPong(SPIN_MICROS_DEFAULT, sleepingAnswerUs, 10 * PROBE_EVERY),
    [PROBE_EVERY, PROBE_EVERY],
    "both spin and catch every message once a probe found the peer",
  );
  // What the default guards against: a spin shorter than the wake-up never gets out.
  assert.deepEqual(pingPong(50, sleepingAnswerUs, 10 * PROBE_EVERY), [0, 0]);
});
