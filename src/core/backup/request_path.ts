/**
 * A file-system path as a request names it (an HTTP job, a snapshot query): not empty, no NUL
 * byte, at most PATH_MAX bytes. One schema for the HTTP adapter and the job options.
 *
 * @module
 */

import { z } from "zod";

/** Longest path a request may name, in UTF-8 bytes (Linux PATH_MAX). */
export const REQUEST_PATH_BYTES_MAX = 4096;

/** A file-system path in a request: not empty, no NUL byte, at most PATH_MAX bytes. */
export const RequestPathSchema = z.string().min(1)
  .refine((path) => !path.includes("\0"), "contains a NUL byte")
  .refine(
    (path) => new TextEncoder().encode(path).length <= REQUEST_PATH_BYTES_MAX,
    `is longer than ${REQUEST_PATH_BYTES_MAX} bytes`,
  );
