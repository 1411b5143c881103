/**
 * Helpers for the backup tests: temporary directories, and an independent description of a
 * tree on disk (its own recursive lstat walk, not the product's) to compare trees.
 *
 * @module
 */

import { createHash } from "node:crypto";
import type { Address, Sockets } from "../core/dispatch/sockets.ts";
import { createTcpSockets } from "../adapters/tcp.ts";
import { createRouter } from "../core/dispatch/router.ts";
import { Session } from "./hosts/session.ts";

/**
 * One connection through `sockets`: a listener bound to `address` (port 0: an ephemeral one),
 * a client connected to it, the listener closed.
 *
 * @param sockets the router
 * @param address where to listen (`{ kind: "network", host: "127.0.0.1", port: 0 }`, say)
 * @returns the client's and the server's descriptors
 */
export async function connectedPair(
  sockets: Sockets,
  address: Address,
): Promise<readonly [number, number]> {
  const listener = await sockets.socket(address.kind);
  await sockets.bind(listener, address);
  await sockets.listen(listener, 4);
  const client = await sockets.socket(address.kind);
  const [server] = await Promise.all([
    sockets.accept(listener),
    sockets.connect(client, await sockets.getsockname(listener)),
  ]);
  await sockets.close(listener);
  return [client, server] as const;
}

/**
 * A backup session's two sides over one TCP connection on 127.0.0.1 (every channel on it, as on
 * the database flow), with the sockets' I/O timeout far away (120 s), so only a session machine's
 * own time rows can end a quiet session.
 *
 * @param keepaliveMs each side's keepalive period (0: that side sends none)
 * @returns the client's and the server's sessions, and a close that ends both
 */
export async function quietSessionPair(
  keepaliveMs: { client: number; server: number },
): Promise<{ client: Session; server: Session; close(): Promise<void> }> {
  const tcp = createTcpSockets({ ioTimeoutMs: 120_000 });
  const sockets = createRouter({ network: tcp, storage: tcp }); // no storage descriptor is made
  const fds = await connectedPair(sockets, { kind: "network", host: "127.0.0.1", port: 0 });
  const [client, server] = fds.map((fd, side) =>
    new Session(sockets, { control: fd, error: fd, data: fd }, {
      keepaliveMs: side === 0 ? keepaliveMs.client : keepaliveMs.server,
    })
  );
  return {
    client: client!,
    server: server!,
    async close() {
      client!.close();
      server!.close();
      for (const fd of fds) await sockets.close(fd).catch(() => {});
    },
  };
}

/**
 * Runs `body` with a fresh temporary directory, removed afterwards.
 *
 * @param body the test body
 * @returns what the body returns
 */
export async function withTempDir<T>(body: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "lanfree-test-" });
  try {
    return await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** One entry of a tree as seen on disk. */
export interface SeenEntry {
  readonly path: string;
  readonly type: "file" | "dir" | "symlink" | "other";
  readonly mode: number;
  /** Milliseconds; null for symlinks (their own mtime is not restored). */
  readonly mtimeMs: number | null;
  readonly detail: string;
}

/**
 * Describes every entry under `root`: type, mode, mtime, and the content hash or link target.
 *
 * @param root the directory
 * @param depthMax deepest level described
 * @returns entries sorted by path
 */
export async function describeTree(root: string, depthMax = 32): Promise<SeenEntry[]> {
  const out: SeenEntry[] = [];
  const visit = async (relative: string, depth: number): Promise<void> => {
    if (depth > depthMax) throw new RangeError(`tree deeper than ${depthMax}`);
    for await (const item of Deno.readDir(relative === "" ? root : `${root}/${relative}`)) {
      const path = relative === "" ? item.name : `${relative}/${item.name}`;
      const full = `${root}/${path}`;
      const info = await Deno.lstat(full);
      const mode = (info.mode ?? 0) & 0o7777;
      const mtimeMs = info.mtime?.getTime() ?? 0;
      if (info.isSymlink) {
        out.push({
          path,
          type: "symlink",
          mode: 0,
          mtimeMs: null,
          detail: await Deno.readLink(full),
        });
      } else if (info.isDirectory) {
        out.push({ path, type: "dir", mode, mtimeMs, detail: "" });
        await visit(path, depth + 1);
      } else if (info.isFile) {
        const hash = createHash("sha256").update(await Deno.readFile(full)).digest("hex");
        out.push({ path, type: "file", mode, mtimeMs, detail: `${info.size}:${hash}` });
      } else out.push({ path, type: "other", mode, mtimeMs, detail: "" });
    }
  };
  await visit("", 0);
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/**
 * Lists a tar file with GNU tar.
 *
 * @param tarPath the archive
 * @returns the member names, one per line as tar prints them
 */
export async function gnuTarList(tarPath: string): Promise<string[]> {
  const output = await new Deno.Command("tar", { args: ["-tf", tarPath], stderr: "piped" })
    .output();
  if (!output.success) {
    throw new Error(`tar -tf failed: ${new TextDecoder().decode(output.stderr)}`);
  }
  return new TextDecoder().decode(output.stdout).split("\n").filter((line) => line !== "");
}

/**
 * Writes a file with the given bytes, mode and mtime (seconds).
 *
 * @param path the file
 * @param data its content
 * @param mode its permission bits
 * @param mtimeSeconds its modification time
 */
export async function writeFileWith(
  path: string,
  data: Uint8Array | string,
  mode = 0o644,
  mtimeSeconds = 1_600_000_000,
): Promise<void> {
  if (typeof data === "string") await Deno.writeTextFile(path, data);
  else await Deno.writeFile(path, data);
  await Deno.chmod(path, mode);
  await Deno.utime(path, mtimeSeconds, mtimeSeconds);
}

/** The permission flags of `deno task backup`, read from deno.json (the tasks' real ones). */
export async function backupTaskFlags(): Promise<string[]> {
  return await taskFlags("backup");
}

/**
 * The permission flags of a `deno task`, read from deno.json (the tasks' real ones).
 *
 * @param task the task's name
 * @returns its `--allow-*` flags
 */
export async function taskFlags(task: string): Promise<string[]> {
  const config = JSON.parse(
    await Deno.readTextFile(new URL("../../deno.json", import.meta.url)),
  );
  const words = String(config.tasks[task]).split(/\s+/);
  return words.filter((word) => word.startsWith("--allow-"));
}

/** A backup running in a child process with the backup task's permissions. */
export interface BackupChild {
  readonly process: Deno.ChildProcess;
  /** The first line the child printed: `at STEP`, `done SNAPSHOT`, or "" if it printed none. */
  readonly firstLine: Promise<string>;
  /** Kills the child (SIGKILL unless told otherwise) and waits for it to end. */
  kill(signal?: Deno.Signal): Promise<Deno.CommandStatus>;
}

/**
 * Starts `_backup_child.ts`: a real `deno` process backing up `source` into `repo` that stops
 * at the writer step `stopAt` (see `WriterStep`) and waits there to be killed.
 *
 * @param source the directory to back up
 * @param repo the repository
 * @param stopAt the writer step to stop at, or "none"
 * @param incremental whether to back up incrementally
 * @returns the child
 */
export async function spawnBackupChild(
  source: string,
  repo: string,
  stopAt: string,
  incremental = false,
): Promise<BackupChild> {
  const args = [source, repo, stopAt, ...(incremental ? ["--incremental"] : [])];
  return spawnChild("jobs/_backup_child.ts", await backupTaskFlags(), args);
}

/**
 * Starts `_maintenance_child.ts`: a real `deno` process running prune (repacking any archive
 * with an unused byte) or consolidate with the prune task's permissions, that stops at the step
 * `stopAt` and waits there to be killed.
 *
 * @param operation `prune` or `consolidate`
 * @param repo the repository
 * @param stopAt the step to stop at, or "none"
 * @param snapshot the snapshot to consolidate
 * @returns the child
 */
export async function spawnMaintenanceChild(
  operation: "prune" | "consolidate",
  repo: string,
  stopAt: string,
  snapshot = "latest",
): Promise<BackupChild> {
  const flags = await taskFlags(operation);
  return spawnChild("repository/_maintenance_child.ts", flags, [operation, repo, stopAt, snapshot]);
}

/** Starts `script` (relative to this file) with `flags` and `args`; its first line is read. */
function spawnChild(script: string, flags: string[], args: string[]): BackupChild {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...flags, new URL(`./${script}`, import.meta.url).pathname, ...args],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const firstLine = (async () => {
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    // Bounded by the child's output: it prints one line, then waits or exits.
    while (!text.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
    }
    reader.releaseLock();
    return text.split("\n")[0] ?? "";
  })();
  let ended: Promise<Deno.CommandStatus> | undefined;
  return {
    process: child,
    firstLine,
    kill(signal = "SIGKILL") {
      ended ??= (async () => {
        try {
          child.kill(signal);
        } catch {
          // already exited
        }
        const status = await child.status;
        await child.stdout.cancel().catch(() => {});
        await child.stderr.cancel().catch(() => {});
        return status;
      })();
      return ended;
    },
  };
}

/**
 * Copies a directory tree as it is at this moment (`cp -a`): the files a process killed right
 * now would leave on disk (its flocks die with it, so a copied lock file is unlocked).
 *
 * @param from the directory
 * @param to where the copy goes (must not exist)
 */
export async function copyTree(from: string, to: string): Promise<void> {
  const output = await new Deno.Command("cp", { args: ["-a", from, to], stderr: "piped" }).output();
  if (!output.success) {
    throw new Error(`cp -a ${from} ${to} failed: ${new TextDecoder().decode(output.stderr)}`);
  }
}

/**
 * Every name created under `dir` while `body` runs (inotify). The watch may be in place only
 * some time after `watchFs` returns (under load, names created right away were missed), so
 * marker files are created until one is seen (bounded: 100 tries, 100 ms apart) before `body`
 * starts; a sentinel file, seen after it, flushes the events.
 */
export async function createdUnder(dir: string, body: () => Promise<unknown>): Promise<string[]> {
  const watcher = Deno.watchFs(dir, { recursive: true });
  const created: string[] = [];
  const marker = `${dir}/.ready-${crypto.randomUUID()}-`;
  const sentinel = `${dir}/.sentinel-${crypto.randomUUID()}`;
  let watching = false;
  const seen = (async () => {
    for await (const event of watcher) {
      if (event.kind !== "create") continue;
      if (event.paths.some((path) => path.startsWith(marker))) watching = true;
      else if (event.paths.includes(sentinel)) return;
      else if (watching) created.push(...event.paths);
    }
  })();
  const markers: string[] = [];
  try {
    for (let attempt = 0; !watching; attempt++) {
      if (attempt === 100) throw new Error(`the watch on ${dir} saw no file created in 10 s`);
      markers.push(`${marker}${attempt}`);
      await Deno.writeTextFile(markers.at(-1)!, "");
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    for (const path of markers) await Deno.remove(path);
    await body();
    await Deno.writeTextFile(sentinel, "");
    await seen;
  } finally {
    watcher.close();
    for (const path of [...markers, sentinel]) await Deno.remove(path).catch(() => {});
  }
  return created;
}
