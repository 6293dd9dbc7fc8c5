import assert from "node:assert/strict";
import { test } from "node:test";
import {
  type AggregationRule,
  aggregate,
  applyNormBound,
  centredClip,
  l2Norm,
  mean,
  median,
  roundProtection,
  trimmedMean,
} from "./index.js";
import { SeededRandom } from "./seeded-random.js";

const f32 = (...values: number[]): Float32Array => Float32Array.from(values);
const close = (actual: Float32Array, expected: number[], tolerance: number, name: string): void => {
  assert.equal(actual.length, expected.length, name);
  for (let i = 0; i < expected.length; i++) {
    assert.ok(
      Math.abs(actual[i]! - expected[i]!) <= tolerance,
      `${name} [${i}]: ${actual[i]} vs ${expected[i]}`,
    );
  }
};

test("coordinate-wise rules against hand-computed answers", () => {
  const three = [f32(1, 2, 3), f32(4, 5, 6), f32(7, 8, 100)];
  const five = [f32(1, -5), f32(2, 0), f32(3, 1), f32(4, 2), f32(100, -50)];
  const four = [f32(1, 10), f32(2, 20), f32(3, 30), f32(10, -40)];
  const cases: {
    name: string;
    updates: Float32Array[];
    rule: AggregationRule;
    expected: number[];
  }[] = [
    { name: "mean of 3", updates: three, rule: { kind: "mean" }, expected: [4, 5, 109 / 3] },
    { name: "median of 3", updates: three, rule: { kind: "median" }, expected: [4, 5, 6] },
    {
      name: "median of 4 (mean of the middle two)",
      updates: four,
      rule: { kind: "median" },
      expected: [2.5, 15],
    },
    { name: "median of 5", updates: five, rule: { kind: "median" }, expected: [3, 0] },
    // ⌈0.2 · 5⌉ = 1 value trimmed at each end, per coordinate:
    // coordinate 0 sorted 1 2 3 4 100 → (2+3+4)/3 = 3; coordinate 1 sorted −50 −5 0 1 2 → (−5+0+1)/3.
    {
      name: "trimmed mean 0.2 of 5",
      updates: five,
      rule: { kind: "trimmedMean", trimFraction: 0.2 },
      expected: [3, -4 / 3],
    },
    // ⌈0.19 · 5⌉ = 1 as well: a fraction rounds up, it never trims nothing.
    {
      name: "trimmed mean 0.19 of 5",
      updates: five,
      rule: { kind: "trimmedMean", trimFraction: 0.19 },
      expected: [3, -4 / 3],
    },
    // ⌈0.25 · 4⌉ = 1: coordinate 0 sorted 1 2 3 10 → 2.5; coordinate 1 sorted −40 10 20 30 → 15.
    {
      name: "trimmed mean 0.25 of 4",
      updates: four,
      rule: { kind: "trimmedMean", trimFraction: 0.25 },
      expected: [2.5, 15],
    },
    // ⌈0.3 · 5⌉ = 2 of 5: only the middle value is left, the median.
    {
      name: "trimmed mean 0.3 of 5",
      updates: five,
      rule: { kind: "trimmedMean", trimFraction: 0.3 },
      expected: [3, 0],
    },
    {
      name: "trimmed mean tolerating 2 of 5",
      updates: five,
      rule: { kind: "trimmedMean", tolerate: 2 },
      expected: [3, 0],
    },
    { name: "single update", updates: [f32(7, -7)], rule: { kind: "median" }, expected: [7, -7] },
  ];
  for (const { name, updates, rule, expected } of cases) {
    // Expected values are rounded once to float32, as the rules promise.
    assert.deepEqual([...aggregate(updates, rule)], expected.map(Math.fround), name);
  }
});

test("a trimmed mean tolerating one faulty member excludes an outlier at n = 3 and n = 4", () => {
  const rule: AggregationRule = { kind: "trimmedMean", tolerate: 1 };
  const outlier = 1e6;
  // n = 3: one trimmed at each end leaves the middle value.
  assert.deepEqual([...aggregate([f32(1), f32(2), f32(outlier)], rule)], [2]);
  assert.deepEqual([...aggregate([f32(-outlier), f32(1), f32(2)], rule)], [1]);
  // n = 4: the two middle values' mean.
  assert.deepEqual([...aggregate([f32(1), f32(outlier), f32(2), f32(3)], rule)], [2.5]);
  assert.deepEqual([...aggregate([f32(1), f32(-outlier), f32(2), f32(3)], rule)], [1.5]);
  // Both rounds give the stated protection; the mean would have moved by ~outlier / n.
  for (const n of [3, 4])
    assert.deepEqual(roundProtection(rule, n), { required: 1, provided: 1, unprotected: false });
  assert.ok(aggregate([f32(1), f32(2), f32(outlier)], { kind: "mean" })[0]! > outlier / 4);
});

test("a round too small for the stated protection is flagged", () => {
  const cases: [string, AggregationRule, number, ReturnType<typeof roundProtection>][] = [
    ["mean: states nothing", { kind: "mean" }, 5, { required: 0, provided: 0, unprotected: false }],
    [
      "tolerate 1 with 2 updates",
      { kind: "trimmedMean", tolerate: 1 },
      2,
      { required: 1, provided: 0, unprotected: true },
    ],
    [
      "tolerate 2 with 4 updates: trims 1",
      { kind: "trimmedMean", tolerate: 2 },
      4,
      { required: 2, provided: 1, unprotected: true },
    ],
    [
      "trimFraction 0.2 of 4 rounds up to 1",
      { kind: "trimmedMean", trimFraction: 0.2 },
      4,
      { required: 1, provided: 1, unprotected: false },
    ],
    [
      "trimFraction 0.2 of 2: nothing can be trimmed",
      { kind: "trimmedMean", trimFraction: 0.2 },
      2,
      { required: 1, provided: 0, unprotected: true },
    ],
    [
      "median tolerating 1 with 3",
      { kind: "median", tolerate: 1 },
      3,
      { required: 1, provided: 1, unprotected: false },
    ],
    [
      "median tolerating 2 with 4",
      { kind: "median", tolerate: 2 },
      4,
      { required: 2, provided: 1, unprotected: true },
    ],
    [
      "median stating nothing",
      { kind: "median" },
      2,
      { required: 0, provided: 0, unprotected: false },
    ],
    [
      "centred clipping tolerating 1 with 2",
      { kind: "centredClip", radius: 1, iterations: 1, tolerate: 1 },
      2,
      { required: 1, provided: 0, unprotected: true },
    ],
  ];
  for (const [name, rule, n, expected] of cases)
    assert.deepEqual(roundProtection(rule, n), expected, name);
  // An unprotected round is still aggregated: a trimmed mean of two trims nothing.
  assert.deepEqual([...aggregate([f32(1), f32(3)], { kind: "trimmedMean", tolerate: 1 })], [2]);
});

test("sparse-aware rules vote only with the updates that sent a coordinate", () => {
  // Four top-k-like updates; zeros are coordinates not sent.
  const updates = [f32(1, 0, 0, 4), f32(0, 2, 0, 5), f32(0, 0, 0, 6), f32(3, 0, 0, 1e6)];
  // Dense median of each column: (0,0,1,3) → 0.5, (0,0,0,2) → 0, 0, (4,5,6,1e6) → 5.5.
  assert.deepEqual([...aggregate(updates, { kind: "median" })], [0.5, 0, 0, 5.5]);
  // Sparse: coordinate 0 sent by 2 (median 2, × 2/4 = 1, the mean's value), coordinate 1 by one
  // (2 × 1/4 = 0.5, the mean's value), coordinate 2 by nobody, coordinate 3 by all four.
  assert.deepEqual(
    [...aggregate(updates, { kind: "median", sparse: true })],
    [1, 0.5, 0, 5.5].map(Math.fround),
  );
  // Trimmed mean tolerating one: coordinate 3 trims 4 and 1e6 → 5.5; coordinates with one or two
  // senders cannot trim and keep the mean's value.
  assert.deepEqual(
    [...aggregate(updates, { kind: "trimmedMean", tolerate: 1, sparse: true })],
    [1, 0.5, 0, 5.5].map(Math.fround),
  );
  // Without outliers the sparse rules are the mean.
  const agreeing = [f32(2, 0, 1), f32(2, 4, 0), f32(0, 4, 1)];
  const meanOf = [...aggregate(agreeing, { kind: "mean" })];
  assert.deepEqual([...aggregate(agreeing, { kind: "median", sparse: true })], meanOf);
  assert.deepEqual(
    [...aggregate(agreeing, { kind: "trimmedMean", trimFraction: 0.2, sparse: true })],
    meanOf,
  );
});

test("centred clipping against a hand computation", () => {
  // Updates (0, 0) and (3, 4) around reference 0 with radius 1:
  // iteration 1: distances 0 and 5, weights 1 and 1/5 → v = ((0,0) + (3,4)/5) / 2 = (0.3, 0.4);
  // iteration 2: distances 0.5 and 4.5, weights 1 and 1/4.5 →
  //   v += ((−0.3, −0.4) + (2.7, 3.6)/4.5) / 2 = (0.15, 0.2) → (0.45, 0.6).
  const updates = [f32(0, 0), f32(3, 4)];
  close(centredClip(updates, 1, 1), [0.3, 0.4], 1e-7, "1 iteration");
  close(centredClip(updates, 1, 2), [0.45, 0.6], 1e-7, "2 iterations");
  // A radius above every distance makes one iteration the plain mean.
  close(centredClip(updates, 10, 1), [1.5, 2], 0, "no clipping");
  // Around a reference of (3, 4), the far update is (0, 0) instead.
  close(centredClip(updates, 1, 1, f32(3, 4)), [2.7, 3.6], 1e-6, "reference");
  assert.deepEqual(
    [...aggregate(updates, { kind: "centredClip", radius: 1, iterations: 2 })],
    [...centredClip(updates, 1, 2)],
  );
  // A radius relative to the spread: distances from 0 are 1, 1, 1 and 50 (median 1), so with
  // 2 × the median the three stay whole and the far one is scaled to 2/50 of itself:
  // v = ((1,0) + (0,1) + (−1,0) + (30,40)·2/50) / 4 = (1.2, 2.6) / 4 = (0.3, 0.65).
  const spread = [f32(1, 0), f32(0, 1), f32(-1, 0), f32(30, 40)];
  close(centredClip(spread, { medianMultiple: 2 }, 1), [0.3, 0.65], 1e-7, "relative radius");
  // Scale-free: the same updates ×1000 give the result ×1000.
  const scaled = spread.map((u) => Float32Array.from(u, (v) => 1000 * v));
  close(centredClip(scaled, { medianMultiple: 2 }, 1), [300, 650], 1e-3, "scaled");
  assert.deepEqual(
    [...aggregate(spread, { kind: "centredClip", radiusMedianMultiple: 2, iterations: 1 })],
    [...centredClip(spread, { medianMultiple: 2 }, 1)],
  );
});

test("L2 norm and the norm bound against hand-computed answers", () => {
  assert.equal(l2Norm(f32(3, 4)), 5);
  const updates = [f32(3, 4), f32(0, 1), f32(30, 40), f32(6, 8)];
  // Norms 5, 1, 50, 10; median (5 + 10)/2 = 7.5; bound 2 × 7.5 = 15.
  const dropped = applyNormBound(updates, { action: "drop", medianMultiple: 2 });
  assert.deepEqual(dropped.report, {
    bound: 15,
    norms: [5, 1, 50, 10],
    kept: [0, 1, 3],
    dropped: [2],
    clipped: [],
  });
  assert.deepEqual(dropped.updates, [updates[0], updates[1], updates[3]]);

  const clipped = applyNormBound(updates, { action: "clip", maxNorm: 6 });
  assert.deepEqual(clipped.report, {
    bound: 6,
    norms: [5, 1, 50, 10],
    kept: [0, 1, 2, 3],
    dropped: [],
    clipped: [2, 3],
  });
  close(clipped.updates[2]!, [3.6, 4.8], 1e-6, "clipped (30, 40)");
  close(clipped.updates[3]!, [3.6, 4.8], 1e-6, "clipped (6, 8)");
  assert.equal(clipped.updates[0], updates[0], "updates within the bound are passed through");

  const nan = applyNormBound([f32(1, 0), f32(Number.NaN, 0)], { action: "clip", maxNorm: 10 });
  assert.deepEqual(nan.report.dropped, [1], "a non-finite norm cannot be clipped, only dropped");
});

test("robustness: one sign-flipped ×10 update among 4 honest ones", () => {
  const random = new SeededRandom(11);
  const n = 1000;
  const signal = random.normalArray(n);
  // Honest updates: the signal plus small independent noise.
  const honest = [0, 1, 2, 3].map(() => {
    const noise = random.normalArray(n, 0.1);
    return Float32Array.from(signal, (s, i) => s + noise[i]!);
  });
  const attacker = Float32Array.from(honest[0]!, (v) => -10 * v);
  const updates = [...honest, attacker];
  const honestMean = mean(honest);
  const distance = (a: Float32Array): number =>
    l2Norm(Float32Array.from(a, (v, i) => v - honestMean[i]!));
  // How far the honest updates themselves spread around their mean, coordinate by coordinate.
  let honestSpread = 0;
  for (let i = 0; i < n; i++) {
    for (const h of honest) honestSpread += (h[i]! - honestMean[i]!) ** 2;
  }
  const spread = Math.sqrt(honestSpread / honest.length);

  const plain = distance(mean(updates));
  const trimmed = distance(trimmedMean(updates, 1));
  const med = distance(median(updates));
  // The plain mean is dragged by (attacker − honest mean)/5 ≈ 11/5 of the signal: ‖·‖ ≈ 2.2 √n.
  assert.ok(plain > 2 * Math.sqrt(n), `plain mean moved ${plain}`);
  // Trimmed mean and median stay within the honest spread: with one outlier per coordinate, every
  // kept value is an honest one, so they land inside the honest range of that coordinate.
  assert.ok(trimmed <= spread, `trimmed mean moved ${trimmed} (honest spread ${spread})`);
  assert.ok(med <= spread, `median moved ${med} (honest spread ${spread})`);
  for (let i = 0; i < n; i++) {
    const values = honest.map((h) => h[i]!);
    const [low, high] = [Math.min(...values), Math.max(...values)];
    const t = trimmedMean(updates, 1)[i]!;
    assert.ok(t >= low && t <= high, `trimmed mean coordinate ${i} outside the honest range`);
  }

  // The norm bound catches the attacker by its norm (10× the median) and says so.
  const { updates: kept, report } = applyNormBound(updates, { action: "drop", medianMultiple: 3 });
  assert.deepEqual(report.dropped, [4]);
  assert.ok(distance(mean(kept)) < 1e-6);
  const clipped = applyNormBound(updates, { action: "clip", medianMultiple: 1.5 });
  assert.deepEqual(clipped.report.clipped, [4]);
  assert.ok(
    Math.abs(l2Norm(clipped.updates[4]!) - clipped.report.bound) <= 1e-4 * clipped.report.bound,
  );
});

test("aggregation is deterministic: same inputs give bit-identical outputs", () => {
  const rules: AggregationRule[] = [
    { kind: "mean" },
    { kind: "trimmedMean", trimFraction: 0.2 },
    { kind: "median" },
    { kind: "centredClip", radius: 0.5, iterations: 3 },
  ];
  const make = (): Float32Array[] => {
    const random = new SeededRandom(12);
    return [0, 1, 2, 3, 4, 5].map(() => random.normalArray(10_007));
  };
  for (const rule of rules) {
    const a = aggregate(make(), rule);
    const b = aggregate(make(), rule);
    assert.ok(Buffer.from(a.buffer).equals(Buffer.from(b.buffer)), rule.kind);
  }
});

test("invalid aggregation inputs are refused with a RangeError", () => {
  const cases: [string, () => unknown][] = [
    ["no updates", () => mean([])],
    ["lengths differ", () => median([f32(1, 2), f32(1)])],
    ["trimming every value", () => trimmedMean([f32(1), f32(2)], 1)],
    ["negative trim", () => trimmedMean([f32(1)], -1)],
    ["fractional trim", () => trimmedMean([f32(1), f32(2), f32(3)], 0.5)],
    ["trim fraction 0.5", () => roundProtection({ kind: "trimmedMean", trimFraction: 0.5 }, 4)],
    ["trim fraction 0", () => roundProtection({ kind: "trimmedMean", trimFraction: 0 }, 4)],
    ["neither tolerate nor fraction", () => roundProtection({ kind: "trimmedMean" }, 4)],
    [
      "both tolerate and fraction",
      () => roundProtection({ kind: "trimmedMean", tolerate: 1, trimFraction: 0.2 }, 4),
    ],
    ["fractional tolerance", () => roundProtection({ kind: "median", tolerate: 0.5 }, 4)],
    ["zero radius", () => centredClip([f32(1)], 0, 1)],
    ["zero radius multiple", () => centredClip([f32(1)], { medianMultiple: 0 }, 1)],
    [
      "both radii",
      () =>
        aggregate([f32(1)], {
          kind: "centredClip",
          radius: 1,
          radiusMedianMultiple: 2,
          iterations: 1,
        }),
    ],
    ["no radius", () => aggregate([f32(1)], { kind: "centredClip", iterations: 1 })],
    ["zero iterations", () => centredClip([f32(1)], 1, 0)],
    ["reference length", () => centredClip([f32(1)], 1, 1, f32(1, 2))],
    [
      "both bounds",
      () => applyNormBound([f32(1)], { action: "drop", maxNorm: 1, medianMultiple: 2 }),
    ],
    ["no bound", () => applyNormBound([f32(1)], { action: "drop" })],
    ["negative bound", () => applyNormBound([f32(1)], { action: "drop", maxNorm: -1 })],
  ];
  for (const [name, run] of cases) assert.throws(run, RangeError, name);
});
