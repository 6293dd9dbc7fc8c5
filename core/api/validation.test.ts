import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { schemaInvalid as invalid, member } from "../../test/fixtures/manifests.js";
import { validateTrainingFederation } from "./validation.js";

describe("validateTrainingFederation", () => {
  test("accepts the valid member and fills in the schema's defaults", () => {
    const result = validateTrainingFederation(member());
    assert.ok(result.valid, JSON.stringify(!result.valid && result.errors));
    const { spec } = result.object;
    assert.equal(spec.suspend, false);
    assert.equal(spec.contribution.replicas, 1);
    assert.equal(spec.contribution.gpuResourceName, "nvidia.com/gpu");
    assert.equal(spec.contribution.backend, "Auto");
    assert.equal(spec.federation.training.rounds, 100);
    assert.equal(spec.federation.training.outerOptimizer.learningRate, 0.7);
    assert.equal(spec.federation.training.outerOptimizer.momentum, 0.9);
    assert.equal(spec.federation.sync.compression.topK?.valueBits, 4);
    assert.equal(spec.federation.sync.compression.topK?.density, 0.01);
    assert.deepEqual(spec.federation.sync.quorum, { minMembers: 1 });
    assert.equal(spec.federation.model.charTransformer?.layers, 2);
    assert.equal(spec.federation.data.sharding.strategy, "IID");
  });

  test("does not modify its input", () => {
    const input = member();
    validateTrainingFederation(input);
    assert.deepEqual(input, member());
  });

  test(`rejects ${invalid.length} invalid manifests, each at the expected field`, () => {
    assert.ok(invalid.length >= 20);
    for (const [name, mutate, path] of invalid) {
      const manifest = member();
      mutate(manifest);
      const result = validateTrainingFederation(manifest);
      assert.equal(result.valid, false, `${name}: accepted`);
      if (result.valid) continue;
      const paths = result.errors.map((e) => e.path);
      assert.ok(paths.includes(path), `${name}: expected an error at ${path}, got ${paths}`);
      for (const other of paths) {
        assert.ok(other.startsWith(path), `${name}: unexpected error at ${other}`);
      }
    }
  });

  test("names the supported values of an enum", () => {
    const manifest = member();
    manifest.spec.contribution.backend = "TPU";
    const result = validateTrainingFederation(manifest);
    assert.ok(!result.valid);
    assert.match(result.errors[0]?.message ?? "", /"Auto", "CUDA", "WebGPU", "CPU"/);
  });
});
