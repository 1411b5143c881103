/**
 * The check the side that receives the STG info makes (steps 160-162 of the file-system flow,
 * 200-202 of the database flow): the region id, the STG id and that STG's length the peer sent
 * must all match the region this side attached. The seeds send the STG id and length and leave
 * their use open; lanfree sends the region id too, so two sides that attached different regions
 * fail at once, naming the step and what differed, instead of connecting to nobody and timing
 * out.
 *
 * @module
 */

import type { SocketErrorCode } from "../dispatch/errors.ts";
import type { AttachedRegion } from "./config.ts";
import type { Learned, Step } from "./types.ts";

/** Why the STG info does not fit this side's region. */
export interface StgInfoMismatch {
  /** The failure's code (EADDRNOTAVAIL). */
  readonly code: SocketErrorCode;
  /** `step N: ` and what differed. */
  readonly message: string;
}

/**
 * Checks the STG info a side received against the region it attached.
 *
 * @param step the step that received the STG info (`"160"` or `"200"`)
 * @param learned what the peer sent: `stg`, `stgLengthBytes`, `regionId`
 * @param attached this side's region, if any
 * @returns undefined when all three match, else EADDRNOTAVAIL with what differed
 *
 * @example Two regions
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkStgInfo } from "./stg_info.ts";
 * const mine = { regionId: "00000000-0000-0000-0000-000000000001", stgs: [{ id: 1, lengthBytes: 4096 }] };
 * const offered = { stg: 1, stgLengthBytes: 4096, regionId: "00000000-0000-0000-0000-000000000002" };
 * assert.match(checkStgInfo("160", offered, mine)?.message ?? "", /attached different regions/);
 * ```
 */
export function checkStgInfo(
  step: Step,
  learned: Learned,
  attached: AttachedRegion | undefined,
): StgInfoMismatch | undefined {
  const mismatch = (message: string): StgInfoMismatch => ({
    code: "EADDRNOTAVAIL",
    message: `step ${step}: ${message}`,
  });
  if (attached === undefined) {
    return mismatch("this side has no storage region attached to check the STG info against");
  }
  if (learned.regionId !== attached.regionId) {
    return mismatch(
      `both sides attached different regions: the peer's is ${learned.regionId}, ` +
        `this side's is ${attached.regionId}`,
    );
  }
  const stg = attached.stgs.find((s) => s.id === learned.stg);
  if (stg === undefined) {
    const ids = attached.stgs.map((s) => s.id).join(", ");
    return mismatch(`STG ${learned.stg} is not in this side's region (its STGs: ${ids})`);
  }
  if (stg.lengthBytes !== learned.stgLengthBytes) {
    return mismatch(
      `STG ${stg.id} is ${stg.lengthBytes} bytes in this side's region, ` +
        `the peer says ${learned.stgLengthBytes}`,
    );
  }
  return undefined;
}
