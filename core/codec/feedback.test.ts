import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ErrorFeedback, encodeUpdate } from "./index.js";

describe("ErrorFeedback", () => {
  const params = { method: "topk", density: 0.25, bits: 2, groupSize: 256 } as const;
  const pseudoGradient = Float32Array.of(0.5, -3, 0.25, 1, -0.125, 2, 0.75, -1);

  it("exports a copy of the residual and imports it into another worker's", () => {
    const feedback = new ErrorFeedback(pseudoGradient.length);
    encodeUpdate(pseudoGradient, params, feedback);
    const exported = feedback.exportResidual();
    assert.ok(
      exported.some((v) => v !== 0),
      "top-k left something out",
    );
    exported[0] = 99;
    assert.notEqual(feedback.residual[0], 99, "the export shares memory with the residual");
    exported[0] = feedback.residual[0]!;

    const restored = new ErrorFeedback(pseudoGradient.length);
    restored.importResidual(exported);
    // The next encode sends exactly what it would have without the round trip.
    assert.deepEqual(
      encodeUpdate(pseudoGradient, params, restored),
      encodeUpdate(pseudoGradient, params, feedback),
    );
    assert.deepEqual(restored.residual, feedback.residual);
  });

  it("refuses a residual of another size or with a non-finite value, unchanged", () => {
    const feedback = new ErrorFeedback(3);
    feedback.importResidual(Float32Array.of(1, 2, 3));
    assert.throws(() => feedback.importResidual(new Float32Array(4)), /4 values for 3 parameters/);
    assert.throws(
      () => feedback.importResidual(Float32Array.of(0, Number.NaN, 0)),
      /value 1 is not finite/,
    );
    assert.deepEqual(feedback.residual, Float32Array.of(1, 2, 3));
  });
});
