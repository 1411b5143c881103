/**
 * Storage sockets between separate OS processes: real `deno` subprocesses running
 * `deno task region recv` and `send` on one region file under /dev/shm.
 */

import assert from "node:assert/strict";
import { region, REGION_FLAGS, REGION_SCRIPT, withShmDirectory } from "./_region_testing.ts";

const MIB = 1024 * 1024;

/** One JSON event a `recv` or `send` process printed on stderr. */
type Event = Record<string, unknown> & { event: string };

/** A `region recv`/`send` process whose JSON events are read as they come. */
class Host {
  readonly child: Deno.ChildProcess;
  readonly events: Event[] = [];
  readonly #lines: Promise<void>;
  #waiters = new Set<() => void>();

  constructor(args: string[]) {
    this.child = new Deno.Command(Deno.execPath(), {
      args: ["run", ...REGION_FLAGS, REGION_SCRIPT, ...args, "--json"],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    this.#lines = this.#read();
  }

  async #read(): Promise<void> {
    let buffered = "";
    for await (const text of this.child.stderr.pipeThrough(new TextDecoderStream())) {
      buffered += text;
      const lines = buffered.split("\n");
      buffered = lines.pop() ?? "";
      for (const line of lines.filter((l) => l.startsWith("{"))) {
        this.events.push(JSON.parse(line));
      }
      for (const wake of this.#waiters) wake();
    }
    if (buffered.trim().length > 0) this.events.push({ event: "text", text: buffered });
    for (const wake of this.#waiters) wake();
  }

  /** Resolves with the first event named `name` (throws if the process ends without it). */
  async next(name: string): Promise<Event> {
    for (let waits = 0; waits < 10_000; waits++) {
      const found = this.events.find((e) => e.event === name);
      if (found !== undefined) return found;
      const ended = await Promise.race([
        new Promise<false>((resolve) => this.#waiters.add(() => resolve(false))),
        this.#lines.then(() => true),
      ]);
      this.#waiters.clear();
      if (ended && this.events.every((e) => e.event !== name)) {
        throw new Error(`no ${name} event: ${JSON.stringify(this.events)}`);
      }
    }
    throw new Error(`no ${name} event after 10 000 wake-ups`);
  }

  /** Waits for the end; returns the exit code and the last event. */
  async end(): Promise<{ code: number; last: Event | undefined }> {
    const status = await this.child.status;
    await this.#lines;
    return { code: status.code, last: this.events.at(-1) };
  }
}

async function createRegion(path: string, ...geometry: string[]): Promise<void> {
  const made = await region(["create", "--path", path, ...geometry]);
  assert.equal(made.code, 0, made.stderr);
}

async function showRegion(path: string) {
  const shown = await region(["show", path, "--json"]);
  assert.equal(shown.code, 0, shown.stderr);
  return JSON.parse(shown.stdout);
}

Deno.test("1 GiB moves between two processes through a region file with the same SHA-256 at both ends", async () => {
  await withShmDirectory(async (directory) => {
    const path = `${directory}/r`;
    await createRegion(path, "--stg", "1:2:40000-40009", "--extent-bytes", "8MiB", "--hosts", "4");
    const receiver = new Host(["recv", path, "--port", "7000", "--discard"]);
    await receiver.next("listening");
    const sender = new Host(["send", path, "--port", "7000", "--bytes", "1GiB"]);
    const [received, sent] = await Promise.all([receiver.end(), sender.end()]);
    assert.equal(sent.code, 0, JSON.stringify(sender.events));
    assert.equal(received.code, 0, JSON.stringify(receiver.events));
    assert.equal(received.last?.bytes, 1024 * MIB);
    assert.equal(sent.last?.bytes, 1024 * MIB);
    assert.equal(received.last?.sha256, sent.last?.sha256);
    console.log(`1 GiB: ${Number(received.last?.megabytesPerSecond).toFixed(0)} MB/s with hashing`);
    const after = await showRegion(path);
    assert.deepEqual(after.blocks, []);
    return ["r"];
  });
});

Deno.test("8 process pairs at once share one region and no control block is handed out twice", async () => {
  await withShmDirectory(async (directory) => {
    const path = `${directory}/r`;
    const pairs = 8;
    await createRegion(
      path,
      ...["--stg", "1:8:40000-40099", "--stg", "2:8:41000-41099", "--extent-bytes", "256KiB"],
      ...["--hosts", "20", "--control-blocks", "40"],
    );
    const receivers = Array.from(
      { length: pairs },
      (_, i) =>
        new Host(["recv", path, "--stg", `${1 + (i % 2)}`, "--port", `${7000 + i}`, "--discard"]),
    );
    await Promise.all(receivers.map((r) => r.next("listening")));
    const senders = receivers.map((_, i) =>
      new Host([
        "send",
        path,
        "--stg",
        `${1 + (i % 2)}`,
        "--port",
        `${7000 + i}`,
        "--bytes",
        "48MiB",
      ])
    );
    const ends = await Promise.all([...receivers, ...senders].map((host) => host.end()));
    ends.forEach((end, i) =>
      assert.equal(end.code, 0, `process ${i}: ${JSON.stringify(end.last)}`)
    );
    const blocks: string[] = [];
    const slots: string[] = [];
    for (let i = 0; i < pairs; i++) {
      const [r, s] = [receivers[i]!, senders[i]!];
      assert.equal(r.events.at(-1)?.sha256, s.events.at(-1)?.sha256, `pair ${i} hash`);
      for (
        const event of [
          await r.next("listening"),
          await r.next("accepted"),
          await s.next("connected"),
        ]
      ) {
        const block = event.block as { index: number; generation: number };
        blocks.push(`${block.index}/${block.generation}`);
      }
      for (const event of [await r.next("listening"), await s.next("connected")]) {
        slots.push(`${event.hostId}/${event.incarnation}`);
      }
    }
    assert.equal(new Set(blocks).size, blocks.length, `a block was handed out twice: ${blocks}`);
    assert.equal(new Set(slots).size, slots.length, `a host slot was held twice: ${slots}`);
    const after = await showRegion(path);
    assert.deepEqual(after.blocks, []);
    assert.ok(after.hosts.every((h: { status: string }) => h.status === "free"));
    return ["r"];
  });
});

Deno.test("kill -9 of a sender mid-transfer: the receiver gets ECONNRESET within the lease, and its blocks and slot come back", async () => {
  await withShmDirectory(async (directory) => {
    const path = `${directory}/r`;
    const leaseMs = 1000;
    const ioTimeoutMs = 30_000;
    await createRegion(
      path,
      ...["--stg", "1:2:40000-40009", "--extent-bytes", "1MiB", "--hosts", "4"],
      ...["--lease-ms", `${leaseMs}`, "--io-timeout-ms", `${ioTimeoutMs}`],
    );
    const receiver = new Host(["recv", path, "--port", "7000", "--discard"]);
    await receiver.next("listening");
    const sender = new Host(["send", path, "--port", "7000", "--bytes", "1000GiB"]);
    const connected = await sender.next("connected");
    await receiver.next("receiving");
    const during = await showRegion(path);
    assert.equal(during.blocksByState.connected, 2);
    sender.child.kill("SIGKILL");
    const killedMs = performance.now();
    const killed = await sender.end();
    assert.notEqual(killed.code, 0);
    const received = await receiver.end();
    const detectedMs = performance.now() - killedMs;
    assert.equal(received.code, 1);
    const failed = receiver.events.find((e) => e.event === "failed");
    assert.equal(failed?.code, "ECONNRESET", JSON.stringify(receiver.events));
    // ETIMEDOUT would have taken the I/O timeout; the lease found the dead peer long before.
    assert.ok(detectedMs < ioTimeoutMs / 2, `ECONNRESET after ${detectedMs} ms`);
    console.log(`dead peer found ${detectedMs.toFixed(0)} ms after kill -9 (lease ${leaseMs} ms)`);
    const after = await showRegion(path);
    assert.deepEqual(after.blocks, [], "the dead sender's blocks were reclaimed");
    const deadSlot = after.hosts.find((h: { hostId: number }) => h.hostId === connected.hostId);
    assert.equal(deadSlot.status, "free", "the dead sender's slot was reclaimed");
    assert.deepEqual(after.stgs[0].portsInUse, []);
    assert.equal(after.stgs[0].extents.used, 0);
    return ["r"];
  });
});
