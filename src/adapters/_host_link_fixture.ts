/**
 * A host for the host-link tests, run as a Worker and as a process: it answers each `ask` with
 * `note` then `answer`, crashes on `crash` (an uncaught error), and ends on `exit`.
 *
 * @module
 */

import { hostSide } from "./host_link.ts";

/** What the test host receives. */
export type FixtureInput =
  | { readonly type: "ask"; readonly n: number }
  | { readonly type: "crash" }
  | { readonly type: "exit"; readonly code: number };

/** What the test host sends. */
export type FixtureOutput =
  | { readonly type: "note"; readonly n: number }
  | { readonly type: "answer"; readonly n: number };

const side = hostSide<FixtureInput, FixtureOutput>();
for (let turns = 0; turns < 1000; turns++) {
  const message = await side.next(["ask", "crash", "exit"], Number.POSITIVE_INFINITY);
  if (message.type === "ask") {
    side.post({ type: "note", n: message.n });
    side.post({ type: "answer", n: message.n * 2 });
  } else if (message.type === "crash") {
    setTimeout(() => {
      throw new Error("the fixture crashed on purpose");
    });
  } else if (side.kind === "process") Deno.exit(message.code);
  else break;
}
