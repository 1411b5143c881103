/**
 * Conformance suite of a control-message codec: round trips, and arbitrary payloads that never
 * throw and never decode to something that re-encodes differently.
 *
 * @module
 */

import fc from "fast-check";
import type { Result } from "../src/core/dispatch/errors.ts";
import { SOCKET_ERROR_CODES } from "../src/core/dispatch/errors.ts";
import {
  ERROR_TEXT_BYTES_MAX,
  type Message,
  MESSAGE_BYTES_MAX,
  WELL_KNOWN_BYTES_MAX,
} from "../src/core/wire/messages.ts";
import { defineProperty, type Suite } from "./_suite.ts";

/** The codec under test. */
export interface MessageCodec {
  /** Encodes a message as one frame payload. */
  encode(message: Message): Uint8Array;
  /** Decodes a payload, or fails typed (EPROTO, EMSGSIZE) without throwing. */
  decode(payload: Uint8Array): Result<Message>;
}

/** Arbitrary valid control messages. */
export function messageArbitrary(): fc.Arbitrary<Message> {
  return fc.oneof(
    fc.uint8Array({ minLength: 1, maxLength: WELL_KNOWN_BYTES_MAX }).map((b) => ({
      type: "wellKnown" as const,
      bytes: Uint8Array.from(b),
    })),
    fc.integer({ min: 0, max: 0x7fff_ffff }).map((fd) => ({ type: "descriptor" as const, fd })),
    fc.integer({ min: 0, max: 0xffff }).map((stg) => ({ type: "stgId" as const, stg })),
    fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }).map((lengthBytes) => ({
      type: "stgLength" as const,
      lengthBytes,
    })),
    fc.record({
      type: fc.constant("port" as const),
      kind: fc.constantFrom("network" as const, "storage" as const),
      port: fc.integer({ min: 1, max: 0xffff }),
    }),
    fc.constant({ type: "ack" as const }),
    fc.record({
      type: fc.constant("error" as const),
      code: fc.constantFrom(...SOCKET_ERROR_CODES),
      text: fc.string({ unit: "grapheme", maxLength: 40 }).filter((t) =>
        new TextEncoder().encode(t).length <= ERROR_TEXT_BYTES_MAX
      ),
    }),
    fc.uint8Array({ minLength: 16, maxLength: 16 }).map((bytes) => {
      const hex = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
      const regionId = [8, 4, 4, 4, 12].reduce<[string[], number]>(
        ([parts, at], n) => [[...parts, hex.slice(at, at + n)], at + n],
        [[], 0],
      )[0].join("-");
      return { type: "regionId" as const, regionId };
    }),
  );
}

/** Payloads close to valid ones: valid encodings with bytes flipped, cut or appended. */
function mutatedPayload(codec: MessageCodec): fc.Arbitrary<Uint8Array> {
  return fc.tuple(messageArbitrary(), fc.nat(), fc.integer({ min: 0, max: 255 }), fc.nat(3)).map(
    ([message, at, byte, how]) => {
      const bytes = codec.encode(message);
      const index = at % bytes.length;
      if (how === 0) return bytes.subarray(0, index);
      if (how === 1) return Uint8Array.of(...bytes, byte);
      const copy = Uint8Array.from(bytes);
      copy[index] = byte;
      return copy;
    },
  );
}

/**
 * The codec suite.
 *
 * @param codec the codec under test
 * @returns the suite
 */
export function wireSuite(codec: MessageCodec): Suite {
  const anyPayload = fc.oneof(
    fc.uint8Array({ maxLength: MESSAGE_BYTES_MAX + 64 }),
    mutatedPayload(codec),
  );
  return {
    name: "wire",
    properties: [
      defineProperty(
        "every message survives encode then decode",
        { numRuns: 500 },
        () =>
          fc.property(messageArbitrary(), (message) => {
            const back = codec.decode(codec.encode(message));
            if (!back.ok) throw new Error(`decode failed: ${back.message}`);
            if (JSON.stringify(back.value, replacer) !== JSON.stringify(message, replacer)) {
              throw new Error(`round trip changed ${JSON.stringify(message, replacer)}`);
            }
          }),
      ),
      defineProperty(
        "any payload decodes to a message that re-encodes to it, or a typed failure",
        { numRuns: 2000 },
        () =>
          fc.property(anyPayload, (payload) => {
            const result = codec.decode(payload);
            if (!result.ok) {
              const expected = payload.length > MESSAGE_BYTES_MAX ? "EMSGSIZE" : "EPROTO";
              if (result.code !== expected) throw new Error(`${result.code}, not ${expected}`);
              return;
            }
            const again = codec.encode(result.value);
            if (again.join(",") !== payload.join(",")) throw new Error("not canonical");
          }),
      ),
      defineProperty(
        "every encoding fits the frame limit",
        { numRuns: 500 },
        () =>
          fc.property(messageArbitrary(), (message) => {
            if (codec.encode(message).length > MESSAGE_BYTES_MAX) throw new Error("too big");
          }),
      ),
    ],
  };
}

function replacer(_key: string, value: unknown): unknown {
  return value instanceof Uint8Array ? [...value] : value;
}
