import assert from "node:assert/strict";
import { readLines } from "./_manifest_file.ts";
import { withTempDir } from "../_testing.ts";

/** Holds the thread for `ms` without giving the event loop a turn (a slow entry check). */
function busyMs(ms: number): void {
  const untilMs = performance.now() + ms;
  // Bounded by the clock.
  while (performance.now() < untilMs) { /* holds the thread */ }
}

Deno.test("reading a manifest's lines lets timers run while the lines are checked, so a host's lease timer is never held up by a long manifest", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/m.jsonl`;
    const lines = 200;
    // 200 short lines, each ended: one read of the file holds them all.
    const text = Array.from({ length: lines }, (_, i) => `{"n":${i}}\n`).join("");
    await Deno.writeTextFile(path, text);
    let timerRan = false;
    let timerRanBeforeLastLine = false;
    let seen = 0;
    await readLines(path, () => {
      if (seen === 0) setTimeout(() => (timerRan = true), 0);
      seen++;
      busyMs(1); // 200 lines hold the thread for 200 ms: longer than a short lease
      if (seen === lines) timerRanBeforeLastLine = timerRan;
    });
    assert.equal(seen, lines);
    assert.ok(
      timerRanBeforeLastLine,
      "a timer set at the first line did not run before the last line: the reader held the " +
        "thread for the whole file",
    );
  });
});
