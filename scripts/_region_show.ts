/**
 * The human-readable form of a region report (`deno task region show`).
 *
 * @module
 */

import type { RegionReport } from "../src/core/stp/report.ts";

const MIB = 1024 * 1024;

function size(bytes: number): string {
  const [unit, name] = bytes >= MIB ? [MIB, "MiB"] : bytes >= 1024 ? [1024, "KiB"] : [1, "B"];
  return `${(bytes / unit).toFixed(bytes % unit === 0 ? 0 : 1)} ${name}`;
}

/** Port numbers as ranges: `40000-40003, 40007`. */
function ranges(ports: readonly number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < ports.length;) {
    let j = i;
    while (j + 1 < ports.length && ports[j + 1] === ports[j]! + 1) j++;
    parts.push(i === j ? `${ports[i]}` : `${ports[i]}-${ports[j]}`);
    i = j + 1;
  }
  return parts.length === 0 ? "none" : parts.join(", ");
}

/**
 * Formats a region report for a terminal.
 *
 * @param path the region file
 * @param report what `regionReport` read
 * @returns the lines, joined
 */
export function formatReport(path: string, report: RegionReport): string {
  const lines = [
    `region ${path}`,
    `  id ${report.regionId}, layout version ${report.version}, ${size(report.regionBytes)}, ` +
    `extents of ${size(report.extentBytes)}`,
    `  I/O timeout ${report.ioTimeoutMs} ms, lease ${report.leaseMs} ms, ` +
    `backlog at most ${report.backlogMax}`,
    "STGs",
  ];
  for (const stg of report.stgs) {
    lines.push(
      `  ${stg.id}: ${stg.extents.total} extents (${stg.extents.used} used, ${stg.extents.free} ` +
        `free), ${size(stg.lengthBytes)}, ports ${stg.ephemeralPorts.min}-` +
        `${stg.ephemeralPorts.max}, in use: ${ranges(stg.portsInUse)}`,
    );
  }
  const counts = Object.entries(report.blocksByState).filter(([, n]) => n > 0)
    .map(([state, n]) => `${state} ${n}`).join(", ");
  lines.push(`control blocks: ${counts}`);
  for (const block of report.blocks) {
    const where = block.stg === null ? "" : ` stg ${block.stg} port ${block.port}`;
    const problem = block.problem === null ? "" : `; corrupt: ${block.problem}`;
    lines.push(
      `  #${block.index} ${block.state}, owner host ${block.owner}, generation ` +
        `${block.generation}${where}${problem}`,
    );
  }
  lines.push("host slots");
  for (const host of report.hosts) lines.push(...hostLines(host));
  return lines.join("\n");
}

/** A host slot's line, and the line saying who fenced it and why, if it was ever fenced. */
function hostLines(host: RegionReport["hosts"][number]): string[] {
  const lines = [
    host.status === "free"
      ? `  ${host.hostId}: free (incarnations so far ${host.incarnation})`
      : `  ${host.hostId}: ${host.status}, pid ${host.pid}, incarnation ${host.incarnation}, ` +
        `lease age ${host.leaseAgeMs} ms`,
  ];
  const fence = host.fence;
  if (fence !== null) {
    const verdict = fence.current ? "fenced" : "was fenced";
    lines.push(
      `     ${verdict} (incarnation ${fence.incarnation}) by host ${fence.byHost}: ` +
        `${fence.reason}: ${fence.wordName} (word ${fence.word}) was ${fence.value}`,
    );
  }
  return lines;
}
