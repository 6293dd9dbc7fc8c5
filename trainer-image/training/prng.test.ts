import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Random } from "./prng.js";

describe("Random", () => {
  it("repeats a sequence for the same seed and streams, and differs otherwise", () => {
    const draw = (random: Random) => Array.from({ length: 8 }, () => random.nextUint32());
    assert.deepEqual(draw(new Random(42, "init")), draw(new Random(42, "init")));
    assert.notDeepEqual(draw(new Random(42, "init")), draw(new Random(43, "init")));
    assert.notDeepEqual(draw(new Random(42, "init")), draw(new Random(42, "data")));
    assert.notDeepEqual(draw(new Random(42, "batches", 0)), draw(new Random(42, "batches", 1)));
  });

  it("draws uniform, normal and Dirichlet samples with the right moments", () => {
    const random = new Random(1, "moments");
    let sum = 0;
    let sumSquares = 0;
    const n = 20000;
    for (let i = 0; i < n; i++) {
      const x = random.normal();
      sum += x;
      sumSquares += x * x;
    }
    assert.ok(Math.abs(sum / n) < 0.03, `normal mean ${sum / n}`);
    assert.ok(Math.abs(sumSquares / n - 1) < 0.05, `normal variance ${sumSquares / n}`);
    for (let i = 0; i < 1000; i++) {
      const u = random.uniform();
      assert.ok(u >= 0 && u < 1);
    }
    const shares = random.dirichlet(5, 0.3);
    assert.ok(Math.abs(shares.reduce((a, b) => a + b, 0) - 1) < 1e-12);
    assert.ok(shares.every((share) => share >= 0));
  });
});
