// Turns the shared federation spec into what the trainer runs: the model definition, this
// worker's data and the DiLoCo settings. Defaults match the CRD's, for specs that skipped the
// API server (a workstation run from a file).
import type { FederationSpec } from "../../core/api/index.js";
import type { AggregationRule, CodecParams, NormBound, TopKBits } from "../../core/codec/index.js";
import { ARITHMETIC_VOCABULARY, arithmetic, gaussianClusters, type ShardSpec } from "./data.js";
import type { DiLoCoConfig } from "./diloco.js";
import type { ModelDefinition } from "./model.js";
import { readTextData, shardText } from "./text-data.js";

/** Top-k values sharing one magnitude scale; the codec's recommended group. */
const TOPK_GROUP_SIZE = 256;

const SCHEDULES = { Cosine: "cosine", Linear: "linear", Constant: "constant" } as const;

/** DiLoCo settings from `spec.training` and `spec.sync`. */
export function dilocoConfig(spec: FederationSpec): DiLoCoConfig {
  const training = spec.training;
  const inner = training.innerOptimizer;
  const config: DiLoCoConfig = {
    rounds: training.rounds,
    innerSteps: training.innerSteps,
    inner: {
      learningRate: inner.learningRate,
      weightDecay: inner.weightDecay,
      warmupSteps: inner.warmupSteps,
      beta1: inner.beta1,
      beta2: inner.beta2,
      schedule: SCHEDULES[inner.schedule ?? "Cosine"],
      totalSteps: training.rounds * training.innerSteps,
      finalLearningRateRatio: inner.finalLearningRateRatio ?? 0.1,
    },
    outer: { ...training.outerOptimizer },
    codec: codecParams(spec),
    errorFeedback: spec.sync.compression.topK?.errorFeedback ?? true,
    aggregation: aggregationRule(spec),
    overlap: spec.sync.overlap ?? false,
  };
  const bound = spec.sync.aggregation.normBound;
  if (bound) {
    const normBound: NormBound = { action: bound.action === "Drop" ? "drop" : "clip" };
    if (bound.maxNorm !== undefined) normBound.maxNorm = bound.maxNorm;
    if (bound.maxMedianMultiple !== undefined) normBound.medianMultiple = bound.maxMedianMultiple;
    config.normBound = normBound;
  }
  return config;
}

function codecParams(spec: FederationSpec): CodecParams {
  const compression = spec.sync.compression;
  switch (compression.method) {
    case "None":
      return { method: "none" };
    case "Int8":
      return { method: "int8", chunkSize: compression.int8?.chunkSize ?? 4096 };
    case "TopK":
      return {
        method: "topk",
        density: compression.topK?.density ?? 0.02,
        bits: (compression.topK?.valueBits ?? 4) as TopKBits,
        groupSize: TOPK_GROUP_SIZE,
      };
  }
}

function aggregationRule(spec: FederationSpec): AggregationRule {
  const aggregation = spec.sync.aggregation;
  switch (aggregation.rule) {
    case "Mean":
      return { kind: "mean" };
    case "TrimmedMean":
      return { kind: "trimmedMean", trimFraction: aggregation.trimFraction ?? 0.2 };
    case "Median":
      return { kind: "median" };
    case "CentredClip":
      return {
        kind: "centredClip",
        radius: aggregation.centredClip?.radius ?? 1,
        iterations: aggregation.centredClip?.iterations ?? 3,
      };
  }
}

/** The training data of one worker, the shared evaluation data, and the model to fit them. */
export interface WorkerData {
  data: ReturnType<typeof gaussianClusters> | ReturnType<typeof arithmetic>;
  definition: ModelDefinition;
}

/**
 * Builds this worker's data and the model definition. Text data is read from its URL or from
 * `dataRoot`; the vocabulary (and so the model's) comes from the data.
 */
export async function workerData(
  spec: FederationSpec,
  shard: Omit<ShardSpec, "strategy" | "concentration">,
  dataRoot?: string,
): Promise<WorkerData> {
  const sharding: ShardSpec = {
    ...shard,
    strategy: spec.data.sharding.strategy,
    concentration: spec.data.sharding.concentration,
  };
  const seed = spec.training.seed;
  const synthetic = spec.data.synthetic;
  let data: WorkerData["data"];
  if (synthetic && spec.data.text) {
    throw new RangeError("data sets both synthetic and text: set exactly one");
  }
  if (synthetic?.preset === "GaussianClusters") {
    data = gaussianClusters(seed, synthetic, sharding);
  } else if (synthetic?.preset === "Arithmetic") {
    data = arithmetic(seed, synthetic, sharding);
  } else if (spec.data.text) {
    const text = await readTextData(spec.data.text, dataRoot);
    data = shardText(text, spec.data.text.evalFraction, sharding);
  } else {
    throw new RangeError("data needs synthetic or text");
  }
  return { data, definition: modelDefinition(spec, data) };
}

/** The model definition for the spec's preset, sized to the data. */
export function modelDefinition(spec: FederationSpec, data: WorkerData["data"]): ModelDefinition {
  const model = spec.model;
  if (model.preset === "MLP") {
    if (data.train.kind !== "classification") {
      throw new RangeError("the MLP preset needs classification data (synthetic GaussianClusters)");
    }
    return {
      kind: "mlp",
      inputs: data.train.featureCount,
      classes: data.train.classCount,
      hiddenLayers: model.mlp?.hiddenLayers ?? [128, 128],
      activation: model.mlp?.activation ?? "ReLU",
    };
  }
  if (data.train.kind !== "text") {
    throw new RangeError("the CharTransformer preset needs text data (Arithmetic or text)");
  }
  const settings = model.charTransformer;
  return {
    kind: "transformer",
    vocabularySize: data.train.vocabulary.length || ARITHMETIC_VOCABULARY.length,
    layers: settings?.layers ?? 2,
    modelWidth: settings?.modelWidth ?? 128,
    heads: settings?.heads ?? 4,
    contextLength: settings?.contextLength ?? 64,
    feedForwardMultiplier: settings?.feedForwardMultiplier ?? 4,
  };
}
