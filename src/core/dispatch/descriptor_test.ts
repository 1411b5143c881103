import assert from "node:assert/strict";
import {
  DescriptorSpace,
  kindOfDescriptor,
  NETWORK_FD_MAX,
  NETWORK_FD_MIN,
  STORAGE_FD_MAX,
  STORAGE_FD_MIN,
} from "./descriptor.ts";

Deno.test("kindOfDescriptor() tells the kind from the value alone", () => {
  assert.equal(kindOfDescriptor(NETWORK_FD_MIN), "network");
  assert.equal(kindOfDescriptor(NETWORK_FD_MAX), "network");
  assert.equal(kindOfDescriptor(STORAGE_FD_MIN), "storage");
  assert.equal(kindOfDescriptor(STORAGE_FD_MAX), "storage");
  for (const value of [-1, 0, 1, 2, 2 ** 31, 3.5, Number.NaN, Infinity]) {
    assert.equal(kindOfDescriptor(value), undefined, `${value} has no kind`);
  }
});

Deno.test("allocate() hands out increasing values and does not reuse a closed one before wrapping", () => {
  const space = new DescriptorSpace("network", { range: { min: 3, max: 6 } });
  const values = [space.allocate(), space.allocate()].map((r) => (assert.ok(r.ok), r.value));
  assert.deepEqual(values, [3, 4]);
  assert.ok(space.release(3).ok);
  const next = space.allocate();
  assert.ok(next.ok && next.value === 5, "3 is not reused yet");
  const wrapped = [space.allocate(), space.allocate()].map((r) => (assert.ok(r.ok), r.value));
  assert.deepEqual(wrapped, [6, 3], "after the end, the space wraps and skips live 4 and 5");
});

Deno.test("allocate() returns ENOBUFS when liveMax descriptors are live", () => {
  const space = new DescriptorSpace("storage", { liveMax: 2 });
  assert.ok(space.allocate().ok);
  assert.ok(space.allocate().ok);
  const full = space.allocate();
  assert.ok(!full.ok && full.code === "ENOBUFS");
});

Deno.test("release() of a value that is not live is EBADF", () => {
  const space = new DescriptorSpace("network");
  const released = space.release(NETWORK_FD_MIN);
  assert.ok(!released.ok && released.code === "EBADF");
});

Deno.test("a range outside the kind's range is a RangeError", () => {
  assert.throws(() => new DescriptorSpace("network", { range: { min: 0, max: 10 } }), RangeError);
  assert.throws(
    () => new DescriptorSpace("storage", { range: { min: 3, max: 10 } }),
    RangeError,
  );
});
