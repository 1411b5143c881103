/**
 * The zero-copy ring property of the STP suite: a producer that reserves spans, fills them in
 * place and commits part of each, and a consumer that peeks spans and releases part of each,
 * move exactly the committed bytes, in order, across the ring's wrap-around and the counters'
 * 2^31 and 2^32 crossings. Runtime-agnostic.
 *
 * @module
 */

import fc from "fast-check";
import * as ops from "../src/core/stp/ops.ts";
import type { RegionFactory } from "../src/core/stp/region.ts";
import { commitStep, peekStep, releaseStep, reserveStep } from "../src/core/stp/ring.ts";
import { runSteps, type StpContext } from "../src/core/stp/steps.ts";
import { connectedPair, patternBytes, SMALL_CONFIG, value, withHosts } from "./stp_harness.ts";

/** One producer or consumer move: ask for at most `ask` bytes, take `share` of what came. */
type Move = { readonly ask: number; readonly share: number };

const move = (ringBytes: number) =>
  fc.record({
    ask: fc.integer({ min: 1, max: 2 * ringBytes }),
    least: fc.integer({ min: 1, max: 2 * ringBytes }),
    share: fc.constantFrom(0, 0.3, 1, 1, 1),
  });

/**
 * Reserve/commit and peek/release with random sizes and partial commits deliver exactly the
 * committed bytes in order; a span never exceeds what was asked or the ring; a reserved span
 * shorter than its `minBytes` (and the ask) ends at the ring's end; committing or releasing more
 * than the span is EINVAL and changes nothing.
 *
 * @param factory the region implementation under test
 * @returns a fast-check property
 */
export function zeroCopyRingProperty(
  factory: RegionFactory,
): fc.IProperty<[Move[], Move[], number, number]> {
  const ringBytes = SMALL_CONFIG.extentBytes;
  return fc.property(
    fc.array(move(ringBytes), { minLength: 1, maxLength: 16 }),
    fc.array(move(ringBytes), { minLength: 1, maxLength: 16 }),
    fc.constantFrom(0, 0x7fff_f000, -3000, 777),
    fc.integer({ min: 1, max: 4 * ringBytes }),
    (produce, consume, start, total) =>
      withHosts(factory, SMALL_CONFIG, 2, ({ region, hosts }) => {
        const [a, b] = hosts as [StpContext, StpContext];
        const { sender, receiver } = connectedPair(region, a, b, start);
        const sent = patternBytes(total, start & 0xff);
        const received = new Uint8Array(total);
        let [written, read] = [0, 0];
        for (let round = 0; round < 8 * total + 100 && read < total; round++) {
          const p = produce[round % produce.length]!;
          if (written < total) {
            const ask = Math.min(p.ask, total - written);
            const span = reserveStep(b, sender.end, ask, p.least);
            if (span.kind === "span") {
              if (span.length > p.ask || span.length > ringBytes) throw new Error("span too long");
              const endsAt = span.byteOffset - sender.end.txOffset + span.length;
              if (span.length < Math.min(p.least, ask, ringBytes) && endsAt !== ringBytes) {
                throw new Error(`a ${span.length}-byte span under minBytes ${p.least} mid-ring`);
              }
              const n = round % 3 === 0 ? Math.ceil(span.length * p.share) : span.length;
              const over = commitStep(b, sender.end, span.length + 1);
              if (over.ok || over.code !== "EINVAL") throw new Error("commit beyond the span");
              region.memory.writeBytes(span.byteOffset, sent.subarray(written, written + n));
              written += value(commitStep(b, sender.end, n));
            } else if (span.kind !== "waiting") throw new Error(`reserve: ${JSON.stringify(span)}`);
          }
          const c = consume[round % consume.length]!;
          const span = peekStep(a, receiver.end, c.ask);
          if (span.kind === "span") {
            const n = round % 2 === 0 ? Math.ceil(span.length * c.share) : span.length;
            region.memory.readBytes(span.byteOffset, received.subarray(read, read + n));
            read += value(releaseStep(a, receiver.end, n));
          } else if (span.kind !== "waiting") throw new Error(`peek: ${JSON.stringify(span)}`);
        }
        if (read !== total || !sent.every((byte, i) => received[i] === byte)) {
          throw new Error(`received ${read} of ${total} bytes, or in the wrong order`);
        }
        value(runSteps(ops.close(b, sender.ref)));
        if (peekStep(a, receiver.end, 1).kind !== "eof") throw new Error("no end of stream");
      }),
  );
}
