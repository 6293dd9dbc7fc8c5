import assert from "node:assert/strict";
import { test } from "node:test";
import { DILOCO_OUTER, OuterOptimizer } from "./index.js";

const deltas = [Float32Array.of(0.1, -0.2), Float32Array.of(0.1, 0), Float32Array.of(0, 0.3)];

test("Nesterov outer steps against a hand computation (lr 0.7, μ 0.9)", () => {
  // v ← 0.9 v + Δ; p ← p − 0.7 (Δ + 0.9 v)
  // coordinate 0: v 0.1, 0.19, 0.171;  p 1 → 0.867 → 0.6773 → 0.56957
  // coordinate 1: v −0.2, −0.18, 0.138; p 2 → 2.266 → 2.3794 → 2.08246
  const expected = [
    { v: [0.1, -0.2], p: [0.867, 2.266] },
    { v: [0.19, -0.18], p: [0.6773, 2.3794] },
    { v: [0.171, 0.138], p: [0.56957, 2.08246] },
  ];
  const optimizer = new OuterOptimizer(2);
  assert.deepEqual(optimizer.config, DILOCO_OUTER);
  const params = Float32Array.of(1, 2);
  for (let step = 0; step < 3; step++) {
    optimizer.step(params, deltas[step]!);
    for (let i = 0; i < 2; i++) {
      // float32 storage of v and p each round: a few ulps of values near 2 (ulp 2.4e-7).
      assert.ok(
        Math.abs(optimizer.momentumBuffer[i]! - expected[step]!.v[i]!) < 1e-6,
        `v step ${step}`,
      );
      assert.ok(Math.abs(params[i]! - expected[step]!.p[i]!) < 1e-6, `p step ${step}`);
    }
  }
  assert.equal(optimizer.stepCount, 3);
});

test("heavy-ball outer steps against a hand computation", () => {
  // v 0.1, 0.19, 0.171; p ← p − 0.7 v: 1 → 0.93 → 0.797 → 0.6773
  const optimizer = new OuterOptimizer(2, { learningRate: 0.7, momentum: 0.9, nesterov: false });
  const params = Float32Array.of(1, 2);
  const expected = [0.93, 0.797, 0.6773];
  for (let step = 0; step < 3; step++) {
    optimizer.step(params, deltas[step]!);
    assert.ok(Math.abs(params[0]! - expected[step]!) < 1e-6, `step ${step}`);
  }
});

test("state survives serialisation bit for bit and training continues identically", () => {
  const a = new OuterOptimizer(3, { learningRate: 0.5, momentum: 0.8, nesterov: true });
  const pa = Float32Array.of(1, 2, 3);
  a.step(pa, Float32Array.of(0.3, -0.1, 0.7));
  const b = OuterOptimizer.deserialize(a.serialize(), 3);
  assert.deepEqual(b.config, a.config);
  assert.equal(b.stepCount, 1);
  assert.deepEqual([...b.momentumBuffer], [...a.momentumBuffer]);
  const pb = Float32Array.from(pa);
  const delta = Float32Array.of(-0.2, 0.4, 0.05);
  a.step(pa, delta);
  b.step(pb, delta);
  assert.deepEqual([...pb], [...pa]);
});

test("the last aggregate, kept for centred clipping, survives serialisation", () => {
  const a = new OuterOptimizer(2, DILOCO_OUTER, { keepLastAggregate: true });
  assert.deepEqual([...a.lastAggregate!], [0, 0], "zeros before the first step");
  a.step(Float32Array.of(1, 1), Float32Array.of(0.25, -0.5));
  assert.deepEqual([...a.lastAggregate!], [0.25, -0.5]);
  const b = OuterOptimizer.deserialize(a.serialize(), 2);
  assert.deepEqual([...b.lastAggregate!], [0.25, -0.5]);
  assert.deepEqual([...b.momentumBuffer], [...a.momentumBuffer]);
  // Restored into an optimiser that keeps one; a state without one restores as zeros.
  const c = new OuterOptimizer(2, DILOCO_OUTER, { keepLastAggregate: true });
  c.restore(b);
  assert.deepEqual([...c.lastAggregate!], [0.25, -0.5]);
  assert.equal(c.stepCount, 1);
  c.restore(new OuterOptimizer(2));
  assert.deepEqual([...c.lastAggregate!], [0, 0]);
  assert.equal(new OuterOptimizer(2).lastAggregate, null);
  const bad = a.serialize();
  new DataView(bad.buffer).setFloat32(32 + 8 + 4, Number.POSITIVE_INFINITY, true);
  assert.throws(() => OuterOptimizer.deserialize(bad, 2), /last aggregate 1 is not finite/);
});

test("malformed optimiser state is rejected with CodecError", () => {
  const good = new OuterOptimizer(2).serialize();
  const edit = (f: (v: DataView) => void): Uint8Array => {
    const bytes = Uint8Array.from(good);
    f(new DataView(bytes.buffer));
    return bytes;
  };
  const cases: [string, Uint8Array, number, string][] = [
    ["truncated header", good.subarray(0, 10), 2, "truncated"],
    ["truncated buffer", good.subarray(0, good.length - 1), 2, "truncated"],
    ["trailing byte", Uint8Array.of(...good, 0), 2, "trailing-bytes"],
    ["magic", edit((v) => v.setUint8(0, 0)), 2, "bad-magic"],
    ["version", edit((v) => v.setUint8(4, 9)), 2, "unsupported-version"],
    ["unknown flag", edit((v) => v.setUint8(5, 4)), 2, "bad-header"],
    ["last-aggregate flag without the vector", edit((v) => v.setUint8(5, 2)), 2, "truncated"],
    ["model size", good, 3, "element-count-mismatch"],
    ["momentum 1", edit((v) => v.setFloat64(16, 1, true)), 2, "bad-header"],
    ["NaN momentum buffer", edit((v) => v.setFloat32(32, Number.NaN, true)), 2, "bad-value"],
  ];
  for (const [name, bytes, n, code] of cases) {
    assert.throws(() => OuterOptimizer.deserialize(bytes, n), { name: "CodecError", code }, name);
  }
});

test("outer steps are deterministic: same inputs give bit-identical parameters", () => {
  const run = (): Float32Array => {
    const optimizer = new OuterOptimizer(3);
    const params = Float32Array.of(0.1, 0.2, 0.3);
    for (let r = 0; r < 10; r++)
      optimizer.step(params, Float32Array.of(r / 7, -r / 11, 1 / (r + 1)));
    return params;
  };
  assert.deepEqual(new Uint32Array(run().buffer), new Uint32Array(run().buffer));
});

test("state read from a view into a larger buffer (as a Node Buffer slice or an object-store read gives)", () => {
  const a = new OuterOptimizer(3);
  a.step(new Float32Array([1, 2, 3]), new Float32Array([0.5, -0.25, 0.125]));
  const state = a.serialize();
  const pool = Buffer.alloc(state.length + 13, 0xff);
  pool.set(state, 13);
  const view = pool.subarray(13);
  const b = OuterOptimizer.deserialize(view, 3);
  assert.deepEqual(b.serialize(), state);
});
