import assert from "node:assert/strict";
import { Yielder } from "./_file_side.ts";

/** Busy synchronous work of about `ms` (what a restore's steps between yields are). */
function busy(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    // spin
  }
}

Deno.test("a loop that only yields through a Yielder still lets due timers fire and pending I/O complete", async () => {
  const yielder = new Yielder();
  let timerFired = 0;
  const interval = setInterval(() => timerFired++, 10);
  let readDone = false;
  const read = Deno.readFile(new URL(import.meta.url)).then(() => (readDone = true));
  try {
    // Bounded by turns, not by time: it ends as soon as both happened.
    for (let turn = 0; turn < 100_000 && (timerFired < 3 || !readDone); turn++) {
      busy(1);
      await yielder.maybe();
    }
  } finally {
    clearInterval(interval);
    await read;
  }
  assert.ok(timerFired >= 3, `an interval timer fired ${timerFired} times`);
  assert.ok(readDone, "a file read completed");
});
