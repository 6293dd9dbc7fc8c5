import assert from "node:assert/strict";
import { test } from "node:test";
import { scoreUpdates } from "./index.js";

const f32 = (...values: number[]): Float32Array => Float32Array.from(values);

test("scores each update against the aggregate", () => {
  const aggregate = f32(1, 0);
  const [same, flipped, orthogonal, zero] = scoreUpdates(
    [f32(2, 0), f32(-10, 0), f32(0, 3), f32(0, 0)],
    aggregate,
  );
  assert.deepEqual(same, { cosine: 1, relativeDistance: 1, relativeNorm: 2 });
  assert.deepEqual(flipped, { cosine: -1, relativeDistance: 11, relativeNorm: 10 });
  assert.deepEqual(orthogonal, { cosine: 0, relativeDistance: Math.sqrt(10), relativeNorm: 3 });
  assert.deepEqual(zero, { cosine: 0, relativeDistance: 1, relativeNorm: 0 });
  // Against a zero aggregate: a nonzero update is infinitely far, a zero one is not.
  assert.deepEqual(scoreUpdates([f32(1, 1), f32(0, 0)], f32(0, 0)), [
    {
      cosine: 0,
      relativeDistance: Number.POSITIVE_INFINITY,
      relativeNorm: Number.POSITIVE_INFINITY,
    },
    { cosine: 0, relativeDistance: 0, relativeNorm: 0 },
  ]);
  assert.throws(() => scoreUpdates([f32(1)], aggregate), RangeError);
});
