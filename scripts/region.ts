/**
 * `deno task region`: storage regions in files, so separate processes can share one.
 *
 *     deno task region create [--path P] [--stg ID:EXTENTS:PORTMIN-PORTMAX]... [geometry]
 *     deno task region show P [--json]
 *     deno task region destroy P [--force]
 *     deno task region recv P --port N [--stg ID] [--discard] [--json] > FILE
 *     deno task region send P --port N [--stg ID] [--bytes N] [--json] < FILE
 *
 * `recv` and `send` are netcat for storage sockets: two processes started by hand move bytes
 * through the region file while `region show` watches.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { z } from "zod";
import type { RegionConfig } from "../src/core/stp/layout.ts";
import { regionReport } from "../src/core/stp/report.ts";
import {
  createRegionFile,
  DEFAULT_REGION_DIRECTORY,
  openRegionFile,
  type RegionFile,
  RegionFileError,
  removeRegionFile,
} from "../src/adapters/region_file.ts";
import { LibcFileError, makeDirectory } from "../src/adapters/_libc_files.ts";
import { SocketError } from "../src/core/dispatch/errors.ts";
import { formatReport } from "./_region_show.ts";
import { receiveCommand, sendCommand } from "./_region_transfer.ts";

const DEFAULT_PATH = `${DEFAULT_REGION_DIRECTORY}/region`;

const USAGE = `usage: deno task region <command> [options]

Storage regions in files that separate processes map (default ${DEFAULT_PATH}).

  create [--path P]     make a region file (refuses to replace one)
      --stg ID:EXTENTS:PORTMIN-PORTMAX   an STG: its id, extents (one ring each) and its
                        dynamic port range; repeat for several (default 1:16:49152-50175)
      --extent-bytes N  ring size, a power of two, e.g. 8MiB (default 8MiB)
      --control-blocks N (default 64)    --hosts N  host slots (default 16)
      --io-timeout-ms N (default 30000)  --lease-ms N (default 2000)
      --backlog N       largest listen backlog (default 4)
  show P [--json]       header, STGs (extents, ports in use), control blocks, host slots
  destroy P [--force]   remove the file; refused while a host holds a live lease
  recv P --port N [--stg ID] [--discard]
                        listen on a storage port, accept one connection, write what arrives
                        to stdout (or nowhere), print bytes, time and SHA-256 on stderr
  send P --port N [--stg ID] [--bytes N]
                        connect and send stdin (or N bytes of a test pattern, e.g. 1GiB)
  --json                machine-readable output (recv/send: JSON lines on stderr)
  --help                this text`;

/** A command line that cannot be run, with one line saying why. */
export class UsageError extends Error {}

const SIZE_UNITS: Readonly<Record<string, number>> = { "": 1, k: 1e3, kib: 1024, m: 1e6 };

/** Parses `4096`, `64KiB`, `8MiB`, `1GiB` (binary units; KB/MB/GB decimal). */
export function parseBytes(text: string, what: string): number {
  const match = /^(\d+)\s*([kmg]i?b?)?$/i.exec(text.trim());
  if (match === null) throw new UsageError(`${what}: ${JSON.stringify(text)} is not a size`);
  const unit = (match[2] ?? "").toLowerCase().replace(/b$/, "");
  const scale = SIZE_UNITS[unit] ??
    ({ mi: 1024 ** 2, gi: 1024 ** 3, g: 1e9, ki: 1024 } as Record<string, number>)[unit];
  if (scale === undefined) throw new UsageError(`${what}: unknown unit in ${text}`);
  return Number(match[1]) * scale;
}

/** Parses one `--stg ID:EXTENTS:PORTMIN-PORTMAX`. */
export function parseStg(text: string): RegionConfig["stgs"][number] {
  const match = /^(\d+):(\d+):(\d+)-(\d+)$/.exec(text);
  if (match === null) {
    throw new UsageError(
      `--stg ${text}: expected ID:EXTENTS:PORTMIN-PORTMAX, e.g. 1:16:49152-50175`,
    );
  }
  const [id, extentCount, ephemeralPortMin, ephemeralPortMax] = match.slice(1).map(Number);
  return {
    id: id!,
    extentCount: extentCount!,
    ephemeralPortMin: ephemeralPortMin!,
    ephemeralPortMax: ephemeralPortMax!,
  };
}

const integer = (what: string) => z.int({ error: `${what} must be an integer` });

const CreateSchema = z.strictObject({
  extentBytes: integer("--extent-bytes"),
  blockCount: integer("--control-blocks"),
  hostCount: integer("--hosts"),
  ioTimeoutMs: integer("--io-timeout-ms"),
  leaseMs: integer("--lease-ms"),
  backlogMax: integer("--backlog"),
});

const OPTIONS = {
  path: { type: "string" },
  stg: { type: "string", multiple: true },
  "extent-bytes": { type: "string", default: "8MiB" },
  "control-blocks": { type: "string", default: "64" },
  hosts: { type: "string", default: "16" },
  "io-timeout-ms": { type: "string", default: "30000" },
  "lease-ms": { type: "string", default: "2000" },
  backlog: { type: "string", default: "4" },
  port: { type: "string" },
  bytes: { type: "string" },
  discard: { type: "boolean", default: false },
  force: { type: "boolean", default: false },
  json: { type: "boolean", default: false },
  help: { type: "boolean", default: false },
} as const;

/** The options of a parsed command line (sizes and numbers still as text). */
export interface RegionValues {
  readonly path?: string;
  readonly stg?: string[];
  readonly "extent-bytes": string;
  readonly "control-blocks": string;
  readonly hosts: string;
  readonly "io-timeout-ms": string;
  readonly "lease-ms": string;
  readonly backlog: string;
  readonly port?: string;
  readonly bytes?: string;
  readonly discard: boolean;
  readonly force: boolean;
  readonly json: boolean;
  readonly help: boolean;
}

/** The parsed command line. */
export interface RegionArgs {
  readonly command: string;
  readonly path: string;
  readonly values: RegionValues;
}

/**
 * Parses `deno task region` arguments.
 *
 * @param args the arguments after `region`
 * @returns the command, the region path and the options
 * @throws UsageError with one clear line
 */
export function parseRegionArgs(args: string[]): RegionArgs {
  let parsed;
  try {
    parsed = parseArgs({ args, options: OPTIONS, strict: true, allowPositionals: true });
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
  const { values, positionals } = parsed;
  const [command, positionalPath, extra] = positionals;
  if (extra !== undefined) throw new UsageError(`unexpected argument ${extra}`);
  const commands = ["create", "show", "destroy", "recv", "send"];
  if (!values.help && (command === undefined || !commands.includes(command))) {
    throw new UsageError(`unknown command ${command ?? "(none)"}: one of ${commands.join(", ")}`);
  }
  if (positionalPath !== undefined && values.path !== undefined) {
    throw new UsageError("give the region path once (positional or --path)");
  }
  return {
    command: command ?? "help",
    path: positionalPath ?? values.path ?? DEFAULT_PATH,
    values,
  };
}

/** The geometry `region create` asks for. */
export function createConfig(values: RegionArgs["values"]): RegionConfig {
  const checked = CreateSchema.safeParse({
    extentBytes: parseBytes(values["extent-bytes"], "--extent-bytes"),
    blockCount: Number(values["control-blocks"]),
    hostCount: Number(values.hosts),
    ioTimeoutMs: Number(values["io-timeout-ms"]),
    leaseMs: Number(values["lease-ms"]),
    backlogMax: Number(values.backlog),
  });
  if (!checked.success) throw new UsageError(checked.error.issues[0]?.message ?? "bad geometry");
  const stgs = (values.stg ?? ["1:16:49152-50175"]).map(parseStg);
  return { ...checked.data, stgs };
}

function create(args: RegionArgs): void {
  const config = createConfig(args.values);
  if (args.path.startsWith(`${DEFAULT_REGION_DIRECTORY}/`)) makeDirectory(DEFAULT_REGION_DIRECTORY);
  printReport(args, createRegionFile(args.path, config));
}

function show(args: RegionArgs): void {
  printReport(args, openRegionFile(args.path));
}

/** Prints what `region show` prints about a mapped region, then closes it. */
function printReport(args: RegionArgs, region: RegionFile): void {
  try {
    const report = regionReport(region.memory, region.layout, Date.now());
    console.log(
      args.values.json
        ? JSON.stringify({ path: args.path, ...report })
        : formatReport(args.path, report),
    );
  } finally {
    region.close();
  }
}

function destroy(args: RegionArgs): void {
  const live = removeRegionFile(args.path, { force: args.values.force });
  const note = live.length === 0 ? "" : ` (${live.length} host(s) still held a live lease)`;
  console.log(`removed ${args.path}${note}`);
}

/** Runs one command line; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  try {
    const parsed = parseRegionArgs(args);
    if (parsed.command === "help" || parsed.values.help) {
      console.log(USAGE);
      return 0;
    }
    if (parsed.command === "create") create(parsed);
    else if (parsed.command === "show") show(parsed);
    else if (parsed.command === "destroy") destroy(parsed);
    else if (parsed.command === "recv") await receiveCommand(parsed);
    else await sendCommand(parsed);
    return 0;
  } catch (error) {
    if (
      error instanceof UsageError || error instanceof RegionFileError ||
      error instanceof LibcFileError
    ) {
      console.error(`region: ${error.message}`);
      return error instanceof UsageError ? 2 : 1;
    }
    if (error instanceof SocketError) {
      console.error(`region: ${error.message}`);
      return 1;
    }
    throw error;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
