import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { before, describe, it } from "node:test";
import * as tf from "@tensorflow/tfjs";
import {
  canonicalFederation,
  canonicalJson,
  type FederationSpec,
  federationSpecHash,
} from "../../core/api/index.js";
import { OuterOptimizer } from "../../core/codec/index.js";
import { mlpDefinition } from "../../test/fixtures/diloco.js";
import { scratchDirectory } from "../../test/fixtures/scratch.js";
import {
  CHECKPOINT_FORMAT,
  CHECKPOINT_FORMAT_V1,
  type Checkpoint,
  CheckpointError,
  decodeCheckpoint,
  encodeCheckpoint,
  latestCheckpoint,
  readCheckpoint,
  writeCheckpoint,
} from "./checkpoint.js";
import type { Batch } from "./data.js";
import { parameterHash, type WorkerLocalState } from "./diloco.js";
import { exportCheckpoint } from "./export.js";
import { initialParameters, Model, type ModelDefinition, parameterLayout } from "./model.js";
import { parseSafetensors, readF32, writeSafetensors } from "./safetensors.js";

const federation: FederationSpec = canonicalFederation({
  id: "export-test",
  model: { preset: "MLP" },
  data: { synthetic: { preset: "GaussianClusters" } },
} as FederationSpec);

function checkpointOf(
  definition: ModelDefinition,
  rounds = 3,
  local: Checkpoint["local"] = [],
): Checkpoint {
  const global = initialParameters(definition, 11);
  const outer = new OuterOptimizer(global.length);
  outer.step(
    global.slice(),
    global.map((v) => v / 10),
  );
  return {
    federation,
    federationSpecHash: federationSpecHash(federation),
    member: "alpha",
    worker: 0,
    rounds,
    definition,
    global,
    outerState: outer.serialize(),
    local,
  };
}

/** A worker's local state of `rounds` with values derived from `tag`. */
function localStateOf(
  size: number,
  rounds: number,
  tag: number,
  errorFeedback = true,
): WorkerLocalState {
  const values = (offset: number) =>
    Float32Array.from({ length: size }, (_, i) => Math.sin(tag + offset + i));
  return {
    round: rounds,
    innerStepCount: 10 * tag + 7,
    inner: {
      firstMoment: values(1),
      secondMoment: values(2).map(Math.abs),
      stepCount: 10 * tag + 7,
    },
    residual: errorFeedback ? values(3) : null,
    pendingShareScale: errorFeedback ? 0.25 * tag : 0,
  };
}

/** The checkpoint as version 1 wrote it: the global model and outer state, no local state. */
function encodeV1(checkpoint: Checkpoint): Uint8Array {
  const layout = parameterLayout(checkpoint.definition);
  return writeSafetensors(
    [
      ...layout.map((spec) => ({
        name: `global/${spec.name}`,
        dtype: "F32" as const,
        shape: spec.shape,
        data: checkpoint.global.subarray(spec.offset, spec.offset + spec.size),
      })),
      {
        name: "outer/state",
        dtype: "U8" as const,
        shape: [checkpoint.outerState.length],
        data: checkpoint.outerState,
      },
    ],
    {
      format: CHECKPOINT_FORMAT_V1,
      federationId: checkpoint.federation.id,
      federation: canonicalJson(checkpoint.federation),
      federationSpecHash: checkpoint.federationSpecHash,
      member: checkpoint.member,
      worker: String(checkpoint.worker),
      rounds: String(checkpoint.rounds),
      definition: canonicalJson(checkpoint.definition),
      globalHash: parameterHash(checkpoint.global),
    },
  );
}

const mlp: ModelDefinition = mlpDefinition(5, 3, [7, 6], "Tanh");
const transformer: ModelDefinition = {
  kind: "transformer",
  vocabularySize: 9,
  layers: 1,
  modelWidth: 8,
  heads: 2,
  contextLength: 4,
  feedForwardMultiplier: 2,
};

describe("checkpoints", () => {
  const scratch = scratchDirectory("fedtrain-checkpoint-");

  it("round-trips the global model, outer state, round and federation", async () => {
    const checkpoint = checkpointOf(transformer);
    const decoded = decodeCheckpoint(encodeCheckpoint(checkpoint));
    assert.deepEqual(decoded, { ...checkpoint, format: CHECKPOINT_FORMAT });
    const restored = OuterOptimizer.deserialize(decoded.outerState, checkpoint.global.length);
    assert.equal(restored.stepCount, 1);
  });

  it("round-trips each worker's local state, with and without error feedback", () => {
    const size = initialParameters(mlp, 11).length;
    const checkpoint = checkpointOf(mlp, 4, [
      { worker: 0, state: localStateOf(size, 4, 1) },
      { worker: 2, state: localStateOf(size, 4, 2, false) },
    ]);
    const bytes = encodeCheckpoint(checkpoint);
    const decoded = decodeCheckpoint(bytes);
    assert.deepEqual(decoded, { ...checkpoint, format: CHECKPOINT_FORMAT });
    const names = [...parseSafetensors(bytes).entries.keys()].filter((name) =>
      name.startsWith("worker"),
    );
    assert.deepEqual(names, [
      "worker0/inner/m",
      "worker0/inner/v",
      "worker0/feedback/residual",
      "worker2/inner/m",
      "worker2/inner/v",
    ]);
  });

  it("refuses local state of another round, or twice for one worker", () => {
    const size = initialParameters(mlp, 11).length;
    assert.throws(
      () =>
        encodeCheckpoint(checkpointOf(mlp, 4, [{ worker: 0, state: localStateOf(size, 3, 1) }])),
      /local state is of round 3, the checkpoint's is 4/,
    );
    const twice = [0, 0].map((worker) => ({ worker, state: localStateOf(size, 4, 1) }));
    assert.throws(() => encodeCheckpoint(checkpointOf(mlp, 4, twice)), /given twice/);
  });

  it("rejects a checkpoint whose local state was altered", () => {
    const size = initialParameters(mlp, 11).length;
    const bytes = encodeCheckpoint(
      checkpointOf(mlp, 4, [{ worker: 0, state: localStateOf(size, 4, 1) }]),
    );
    const file = parseSafetensors(bytes);
    const [begin] = file.entries.get("worker0/feedback/residual")!.data_offsets;
    const at = file.data.byteOffset + begin;
    bytes[at] = (bytes[at]! + 1) % 256;
    assert.throws(() => decodeCheckpoint(bytes), /worker 0's local state does not match/);
  });

  it("reads a version 1 checkpoint, with no local state", () => {
    const checkpoint = checkpointOf(mlp, 5);
    const decoded = decodeCheckpoint(encodeV1(checkpoint));
    assert.deepEqual(decoded, { ...checkpoint, local: [], format: CHECKPOINT_FORMAT_V1 });
  });

  it("writes atomically under a sortable name and finds the newest", async () => {
    await writeCheckpoint(scratch.path, checkpointOf(mlp, 2));
    const newest = await writeCheckpoint(scratch.path, checkpointOf(mlp, 10));
    assert.equal(await latestCheckpoint(scratch.path, "export-test", 0), newest);
    assert.equal(await latestCheckpoint(scratch.path, "export-test", 1), null);
    assert.equal((await readCheckpoint(newest)).rounds, 10);
  });

  it("rejects a checkpoint whose parameters were altered", () => {
    const bytes = encodeCheckpoint(checkpointOf(mlp));
    const headerLength = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    const firstParameterByte = 8 + headerLength;
    bytes[firstParameterByte] = (bytes[firstParameterByte]! + 1) % 256;
    assert.throws(() => decodeCheckpoint(bytes), /do not match their recorded hash/);
    const notOurs = writeSafetensors([], { format: "someone-elses" });
    assert.throws(() => decodeCheckpoint(notOurs), CheckpointError);
  });
});

describe("export", () => {
  const scratch = scratchDirectory("fedtrain-export-");
  before(async () => {
    await tf.setBackend("cpu");
  });

  it("writes safetensors named by the parameter layout, values bit-identical", async () => {
    // A checkpoint file with worker-local state: only the global model is exported.
    const size = initialParameters(transformer, 11).length;
    const checkpoint = decodeCheckpoint(
      encodeCheckpoint(
        checkpointOf(transformer, 3, [{ worker: 0, state: localStateOf(size, 3, 1) }]),
      ),
    );
    const out = join(scratch.path, "st");
    await exportCheckpoint(checkpoint, out, "safetensors");
    const file = parseSafetensors(new Uint8Array(await readFile(join(out, "model.safetensors"))));
    const layout = parameterLayout(transformer);
    assert.deepEqual(
      [...file.entries.keys()],
      layout.map((spec) => spec.name),
    );
    for (const spec of layout) {
      assert.deepEqual(file.entries.get(spec.name)?.shape, spec.shape);
      assert.deepEqual(
        new Uint32Array(readF32(file, spec.name).buffer),
        new Uint32Array(checkpoint.global.slice(spec.offset, spec.offset + spec.size).buffer),
      );
    }
    assert.equal(file.metadata.federationSpecHash, checkpoint.federationSpecHash);
  });

  it("writes an MLP that tf.loadLayersModel loads and that computes fedtrain's loss", async () => {
    const checkpoint = checkpointOf(mlp);
    const out = join(scratch.path, "tfjs-mlp");
    await exportCheckpoint(checkpoint, out, "tfjs");
    const modelJson = JSON.parse(await readFile(join(out, "model.json"), "utf8"));
    const weights = await readFile(join(out, "weights.bin"));
    const weightSpecs = modelJson.weightsManifest[0].weights;
    assert.deepEqual(modelJson.weightsManifest[0].paths, ["weights.bin"]);
    const weightData = weights.buffer.slice(
      weights.byteOffset,
      weights.byteOffset + weights.length,
    );
    const decoded = tf.io.decodeWeights(weightData, weightSpecs);
    for (const spec of parameterLayout(mlp)) {
      assert.deepEqual(
        decoded[spec.name]!.dataSync(),
        checkpoint.global.slice(spec.offset, spec.offset + spec.size),
      );
    }
    const layers = await tf.loadLayersModel(
      tf.io.fromMemory({ modelTopology: modelJson.modelTopology, weightSpecs, weightData }),
    );
    const batch: Extract<Batch, { kind: "classification" }> = {
      kind: "classification",
      size: 4,
      features: Float32Array.from({ length: 20 }, (_, i) => Math.sin(i)),
      labels: new Int32Array([0, 1, 2, 1]),
    };
    const logits = layers.predict(tf.tensor2d(batch.features, [4, 5])) as tf.Tensor2D;
    const exportedLoss = tf.losses
      .softmaxCrossEntropy(tf.oneHot(tf.tensor1d(batch.labels, "int32"), 3), logits)
      .dataSync()[0]!;
    const model = new Model(mlp, checkpoint.global);
    const fedtrainLoss = tf.tidy(() => model.loss(batch).dataSync()[0]!);
    model.dispose();
    assert.ok(
      Math.abs(exportedLoss - fedtrainLoss) < 1e-5,
      `exported model loss ${exportedLoss} vs fedtrain ${fedtrainLoss}`,
    );
  });

  it("names fedtrain's tanh-approximated GELU gelu_new, as Keras does", async () => {
    const out = join(scratch.path, "tfjs-gelu");
    await exportCheckpoint(checkpointOf({ ...mlp, activation: "GELU" }), out, "tfjs");
    const modelJson = JSON.parse(await readFile(join(out, "model.json"), "utf8"));
    const activations = modelJson.modelTopology.config.layers.map(
      (layer: { config: { activation: string } }) => layer.config.activation,
    );
    assert.deepEqual(activations, ["gelu_new", "gelu_new", "linear"]);
  });

  it("writes the transformer's weights manifest and definition", async () => {
    const checkpoint = checkpointOf(transformer);
    const out = join(scratch.path, "tfjs-transformer");
    await exportCheckpoint(checkpoint, out, "both");
    const modelJson = JSON.parse(await readFile(join(out, "model.json"), "utf8"));
    assert.equal(modelJson.format, "fedtrain-char-transformer");
    assert.deepEqual(modelJson.userDefinedMetadata.fedtrain.definition, transformer);
    const weights = await readFile(join(out, "weights.bin"));
    const decoded = tf.io.decodeWeights(
      weights.buffer.slice(weights.byteOffset, weights.byteOffset + weights.length),
      modelJson.weightsManifest[0].weights,
    );
    const spec = parameterLayout(transformer).find((s) => s.name === "block0/attention/qkv")!;
    assert.deepEqual(decoded[spec.name]!.shape, [8, 24]);
    assert.deepEqual(
      decoded[spec.name]!.dataSync(),
      checkpoint.global.slice(spec.offset, spec.offset + spec.size),
    );
  });
});
