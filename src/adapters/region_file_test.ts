import assert from "node:assert/strict";
import { H, type RegionConfig } from "../core/stp/layout.ts";
import { formatRegion } from "../core/stp/region.ts";
import { regionUsage } from "../core/stp/usage.ts";
import {
  createRegionFile,
  openRegionFile,
  type RegionFile,
  RegionFileError,
  type RegionFileProblem,
  removeRegionFile,
} from "./region_file.ts";
import { createStorageSockets } from "./shm.ts";
import { readWholeFile, writeNewFile } from "./_libc_files.ts";
import { withShmDirectory } from "../../scripts/_region_testing.ts";

const CONFIG: RegionConfig = {
  stgs: [
    { id: 4, extentCount: 2, ephemeralPortMin: 41000, ephemeralPortMax: 41009 },
    { id: 5, extentCount: 4, ephemeralPortMin: 42000, ephemeralPortMax: 42009 },
  ],
  extentBytes: 8192,
  blockCount: 8,
  hostCount: 4,
  ioTimeoutMs: 5000,
  leaseMs: 2000,
  backlogMax: 2,
};

async function closeAll(...regions: RegionFile[]): Promise<void> {
  for (const region of regions) region.close();
  await Promise.all(regions.map((region) => region.closed));
}

function problemOf(call: () => unknown): RegionFileProblem | "none" {
  try {
    const region = call() as RegionFile;
    region.close();
    return "none";
  } catch (error) {
    assert.ok(error instanceof RegionFileError, `a RegionFileError, got ${error}`);
    return error.problem;
  }
}

Deno.test("a region file created here is opened by a second mapping with the same id and layout", async () => {
  await withShmDirectory(async (directory) => {
    const created = createRegionFile(`${directory}/r`, CONFIG);
    const opened = openRegionFile(`${directory}/r`);
    assert.equal(opened.layout.regionId, created.layout.regionId);
    assert.deepEqual(opened.layout, created.layout);
    assert.equal(opened.path, `${directory}/r`);
    assert.equal(opened.wakeMethod, "futex");
    created.memory.store(opened.layout.cbtOffset / 4 + 1, 77);
    assert.equal(opened.memory.load(opened.layout.cbtOffset / 4 + 1), 77, "MAP_SHARED");
    await closeAll(created, opened);
    return ["r"];
  });
});

Deno.test("hosts on two mappings of one region file connect, wait on each other and exchange bytes", async () => {
  await withShmDirectory(async (directory) => {
    const serverRegion = createRegionFile(`${directory}/r`, CONFIG);
    const clientRegion = openRegionFile(`${directory}/r`);
    const server = createStorageSockets({ region: serverRegion });
    const client = createStorageSockets({ region: clientRegion });
    assert.notEqual(server.hostId, client.hostId);
    const listener = await server.socket("storage");
    await server.bind(listener, { kind: "storage", stg: 5, port: 0 });
    await server.listen(listener, 1);
    const connector = await client.socket("storage");
    const address = await server.getsockname(listener);
    const [accepted] = await Promise.all([
      server.accept(listener),
      client.connect(connector, address),
    ]);
    // More than two rings' worth, so both sides block on a full or empty ring and are woken.
    const message = new Uint8Array(5 * CONFIG.extentBytes + 3).map((_, i) => (i * 7) & 0xff);
    const received = new Uint8Array(message.length);
    let got = 0;
    await Promise.all([
      client.send(connector, message).then(() => client.close(connector)),
      (async () => {
        for (let reads = 0; got < message.length && reads < 10_000; reads++) {
          got += (await server.recv(accepted, received.subarray(got, got + 1000))) ?? 0;
        }
      })(),
    ]);
    assert.deepEqual(received, message);
    await server.close(accepted);
    await server.close(listener);
    await server.dispose();
    await client.dispose();
    assert.deepEqual(regionUsage(serverRegion.memory, serverRegion.layout), {
      blocks: [],
      ports: [],
      extents: [],
    });
    await closeAll(serverRegion, clientRegion);
    return ["r"];
  });
});

Deno.test("a missing, foreign, old, tiny or truncated file fails typed, naming it, and stays unchanged", async () => {
  await withShmDirectory((directory) => {
    const good = formatRegion(CONFIG, crypto.randomUUID());
    if (!good.ok) throw new Error(good.message);
    const region = new Uint8Array(good.value);
    const oldVersion = region.slice();
    new DataView(oldVersion.buffer).setInt32(H.version * 4, 1, true);
    const files: Record<string, [Uint8Array | undefined, RegionFileProblem]> = {
      missing: [undefined, "not-found"],
      foreign: [
        new TextEncoder().encode("#!/bin/sh\necho not a region\n".repeat(20)),
        "not-a-region",
      ],
      old: [oldVersion, "version"],
      tiny: [region.slice(0, 100), "too-small"],
      empty: [new Uint8Array(0), "too-small"],
      truncated: [region.slice(0, region.length - 4096), "truncated"],
    };
    for (const [name, [bytes, problem]] of Object.entries(files)) {
      const path = `${directory}/${name}`;
      if (bytes !== undefined) writeNewFile(path, bytes);
      try {
        openRegionFile(path);
        assert.fail(`${name} opened`);
      } catch (error) {
        assert.ok(error instanceof RegionFileError, `${name}: ${error}`);
        assert.equal(error.problem, problem, `${name}: ${error.message}`);
        assert.ok(error.message.includes(path), error.message);
      }
      if (bytes !== undefined) assert.deepEqual(readWholeFile(path), bytes, `${name} changed`);
    }
    return Object.keys(files).filter((name) => name !== "missing");
  });
});

Deno.test("create refuses to replace an existing file and leaves no staging file behind", async () => {
  await withShmDirectory((directory) => {
    const path = `${directory}/taken`;
    const precious = new TextEncoder().encode("precious");
    writeNewFile(path, precious);
    assert.equal(problemOf(() => createRegionFile(path, CONFIG)), "exists");
    assert.deepEqual(readWholeFile(path), precious);
    assert.equal(
      problemOf(() => createRegionFile(`${directory}/bad`, { ...CONFIG, stgs: [] })),
      "invalid",
    );
    assert.equal(problemOf(() => createRegionFile(`${directory}/none/r`, CONFIG)), "io");
    return ["taken"]; // and nothing else: removing the directory fails if a staging file is left
  });
});

Deno.test("close ends a pending wait early and makes later use of the memory throw, not crash", async () => {
  await withShmDirectory(async (directory) => {
    const region = createRegionFile(`${directory}/r`, CONFIG);
    const word = region.layout.cbtOffset / 4 + 1;
    const waiting = region.wait(word, 0, 60_000); // only close can end it this early
    await new Promise((resolve) => setTimeout(resolve, 20));
    region.close();
    assert.equal(await waiting, "ok");
    await region.closed;
    assert.throws(() => region.memory.load(word), TypeError);
    assert.throws(
      () => region.memory.writeBytes(region.layout.deviceOffset, new Uint8Array(4)),
      TypeError,
    );
    assert.equal(await region.wait(word, 0, 60_000), "ok", "a wait after close returns at once");
    return ["r"];
  });
});

Deno.test("the polling fallback sees a change without any wake and times out without one", async () => {
  await withShmDirectory(async (directory) => {
    const region = createRegionFile(`${directory}/r`, CONFIG, { wakeMethod: "poll" });
    assert.equal(region.wakeMethod, "poll");
    const word = region.layout.cbtOffset / 4 + 1;
    assert.equal(await region.wait(word, 0, 5), "timed-out");
    assert.equal(await region.wait(word, 9, 5), "not-equal");
    setTimeout(() => region.memory.store(word, 1), 5); // a store, no notify
    assert.equal(await region.wait(word, 0, 60_000), "ok");
    await closeAll(region);
    return ["r"];
  });
});

Deno.test("a process that closes its region with a wait pending exits at once", async () => {
  await withShmDirectory(async (directory) => {
    const path = `${directory}/r`;
    createRegionFile(path, CONFIG).close();
    const module = new URL("./region_file.ts", import.meta.url).href;
    const script = `
      import { openRegionFile } from ${JSON.stringify(module)};
      const region = openRegionFile(${JSON.stringify(path)});
      region.wait(region.layout.cbtOffset / 4 + 1, 0, 120_000).then((r) => console.log("wait", r));
      setTimeout(() => region.close(), 50);
    `;
    const started = performance.now();
    const child = await new Deno.Command(Deno.execPath(), {
      args: ["eval", "--allow-ffi", "--allow-read", "--allow-write", script],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const seconds = (performance.now() - started) / 1000;
    assert.equal(child.code, 0, new TextDecoder().decode(child.stderr));
    assert.equal(new TextDecoder().decode(child.stdout).trim(), "wait ok");
    assert.ok(seconds < 60, `the child lived ${seconds} s: its pending wait kept it alive`);
    return ["r"];
  });
});

Deno.test("removing a region file is refused while a host holds a live lease, and never removes a non-region", async () => {
  await withShmDirectory(async (directory) => {
    const region = createRegionFile(`${directory}/r`, CONFIG);
    const host = createStorageSockets({ region });
    assert.equal(problemOf(() => removeRegionFile(`${directory}/r`)), "in-use");
    await host.dispose();
    region.close();
    assert.deepEqual(removeRegionFile(`${directory}/r`), []);
    writeNewFile(`${directory}/notes`, new TextEncoder().encode("not a region\n".repeat(20)));
    assert.equal(
      problemOf(() => removeRegionFile(`${directory}/notes`, { force: true })),
      "not-a-region",
    );
    return ["notes"];
  });
});
