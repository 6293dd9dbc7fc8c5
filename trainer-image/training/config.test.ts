import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { describe, it } from "node:test";
import { parse } from "yaml";
import { canonicalFederation, type FederationSpec } from "../../core/api/index.js";
import type { AggregationRule } from "../../core/codec/index.js";
import { dilocoConfig, modelDefinition, workerData } from "./config.js";

async function exampleFederation(): Promise<FederationSpec> {
  const file = new URL(
    "../../../examples/federation/base/trainingfederation.yaml",
    import.meta.url,
  );
  const manifest = parse(await readFile(file, "utf8")) as { spec: { federation: FederationSpec } };
  return manifest.spec.federation;
}

describe("config from the federation spec", () => {
  it("maps the example federation's schedule, compression and aggregation", async () => {
    const config = dilocoConfig(await exampleFederation());
    assert.equal(config.rounds, 20);
    assert.equal(config.innerSteps, 50);
    assert.equal(config.inner.learningRate, 0.003);
    assert.deepEqual(config.outer, { learningRate: 0.7, momentum: 0.9, nesterov: true });
    assert.deepEqual(config.codec, { method: "topk", density: 0.02, bits: 4, groupSize: 256 });
    assert.equal(config.errorFeedback, true);
    // Top-k updates: the trimmed mean votes only with the updates that sent each coordinate.
    assert.deepEqual(config.aggregation, {
      kind: "trimmedMean",
      trimFraction: 0.2,
      sparse: true,
    });
    assert.deepEqual(config.normBound, { action: "clip", medianMultiple: 3 });
    assert.equal(config.overlap, false);
  });

  it("maps a stated tolerance onto each robust rule", async () => {
    const spec = await exampleFederation();
    const cases: [FederationSpec["sync"]["aggregation"], AggregationRule][] = [
      [
        { rule: "TrimmedMean", tolerate: 2 },
        { kind: "trimmedMean", tolerate: 2, sparse: true },
      ],
      [
        { rule: "Median", tolerate: 1 },
        { kind: "median", tolerate: 1, sparse: true },
      ],
      [{ rule: "Median" }, { kind: "median", sparse: true }],
      [
        { rule: "CentredClip", tolerate: 1 },
        { kind: "centredClip", radiusMedianMultiple: 2, iterations: 3, tolerate: 1 },
      ],
      [
        { rule: "CentredClip", centredClip: { radius: 0.5, iterations: 3 } },
        { kind: "centredClip", radius: 0.5, iterations: 3 },
      ],
    ];
    for (const [aggregation, expected] of cases) {
      spec.sync.aggregation = aggregation;
      assert.deepEqual(dilocoConfig(spec).aggregation, expected, aggregation.rule);
    }
    // Dense updates: every update votes on every coordinate.
    spec.sync.compression = { method: "Int8" };
    spec.sync.aggregation = { rule: "Median" };
    assert.deepEqual(dilocoConfig(spec).aggregation, { kind: "median" });
  });

  it("builds the worker's data and a model sized to it", async () => {
    const spec = await exampleFederation();
    const { data, definition } = await workerData(spec, { workerIndex: 1, workerCount: 2 });
    assert.equal(data.train.kind, "text");
    assert.deepEqual(definition, {
      kind: "transformer",
      vocabularySize: 14,
      layers: 2,
      modelWidth: 64,
      heads: 4,
      contextLength: 32,
      feedForwardMultiplier: 4,
    });
    const mlp = await workerData(
      {
        ...spec,
        model: { preset: "MLP", mlp: { hiddenLayers: [16], activation: "Tanh" } },
        data: {
          synthetic: {
            preset: "GaussianClusters",
            trainExamples: 100,
            evalExamples: 10,
            features: 5,
            classes: 3,
            noise: 1,
            maxOperand: 9,
          },
          sharding: { strategy: "IID", concentration: 1 },
        },
      },
      { workerIndex: 0, workerCount: 2 },
    );
    assert.deepEqual(mlp.definition, {
      kind: "mlp",
      inputs: 5,
      classes: 3,
      hiddenLayers: [16],
      activation: "Tanh",
    });
    await assert.rejects(
      workerData({ ...spec, model: { preset: "MLP" } }, { workerIndex: 0, workerCount: 2 }),
      /MLP preset needs classification data/,
    );
  });
});

describe("defaults for a spec that skipped the API server", () => {
  /**
   * The example federation in canonical form, a variant chosen, and every field the trainer
   * defaults itself left out.
   */
  async function sparse(
    compression: FederationSpec["sync"]["compression"]["method"],
    rule: FederationSpec["sync"]["aggregation"]["rule"],
    preset: FederationSpec["model"]["preset"],
  ): Promise<FederationSpec> {
    const spec = canonicalFederation(await exampleFederation());
    const inner = spec.training.innerOptimizer as Partial<typeof spec.training.innerOptimizer>;
    delete inner.schedule;
    delete inner.finalLearningRateRatio;
    const sync = spec.sync as Partial<typeof spec.sync>;
    delete sync.overlap;
    spec.sync.compression = { method: compression };
    spec.sync.aggregation = { rule };
    spec.model = { preset };
    return spec;
  }
  const classification = { train: { kind: "classification", featureCount: 5, classCount: 3 } };
  const text = { train: { kind: "text", vocabulary: ["a", "b"] } };

  const cases: [string, Parameters<typeof sparse>][] = [
    ["Int8, Mean, MLP", ["Int8", "Mean", "MLP"]],
    ["TopK, TrimmedMean, CharTransformer", ["TopK", "TrimmedMean", "CharTransformer"]],
    ["None, CentredClip, CharTransformer", ["None", "CentredClip", "CharTransformer"]],
    ["TopK, Median, MLP", ["TopK", "Median", "MLP"]],
  ];
  for (const [name, args] of cases)
    it(`are the CRD's: ${name}`, async () => {
      const spec = await sparse(...args);
      const defaulted = canonicalFederation(spec);
      assert.deepEqual(dilocoConfig(spec), dilocoConfig(defaulted));
      const data = (spec.model.preset === "MLP" ? classification : text) as Parameters<
        typeof modelDefinition
      >[1];
      assert.deepEqual(modelDefinition(spec, data), modelDefinition(defaulted, data));
    });
});
