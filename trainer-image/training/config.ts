// Turns the shared federation spec into what the trainer runs: the model definition, this
// worker's data and the DiLoCo settings. A field that a spec which skipped the API server (a
// workstation run from a file) leaves out takes the CRD's default, read from its schema.
import { crdDefault, type FederationSpec, roundRules } from "../../core/api/index.js";
import type { CodecParams, TopKBits } from "../../core/codec/index.js";
import { brownCorpusSet, loadBrownCorpus } from "./corpus.js";
import {
  ARITHMETIC_VOCABULARY,
  arithmeticSet,
  type ClassificationSet,
  type DataSet,
  type ExampleSet,
  gaussianClustersSet,
  ownedByShard,
  type ShardedClassification,
  type ShardedText,
  type ShardSpec,
  selectExamples,
  type TextCorpus,
} from "./data.js";
import type { DiLoCoConfig } from "./diloco.js";
import type { ModelDefinition } from "./model.js";
import { readTextExamples, splitTextExamples } from "./text-data.js";

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
      schedule:
        SCHEDULES[inner.schedule ?? crdDefault("spec.federation.training.innerOptimizer.schedule")],
      totalSteps: training.rounds * training.innerSteps,
      finalLearningRateRatio:
        inner.finalLearningRateRatio ??
        crdDefault("spec.federation.training.innerOptimizer.finalLearningRateRatio"),
    },
    outer: { ...training.outerOptimizer },
    codec: codecParams(spec),
    errorFeedback:
      spec.sync.compression.topK?.errorFeedback ??
      crdDefault("spec.federation.sync.compression.topK.errorFeedback"),
    overlap: spec.sync.overlap ?? crdDefault("spec.federation.sync.overlap"),
    ...roundRules(spec),
  };
  return config;
}

function codecParams(spec: FederationSpec): CodecParams {
  const compression = spec.sync.compression;
  switch (compression.method) {
    case "None":
      return { method: "none" };
    case "Int8":
      return {
        method: "int8",
        chunkSize:
          compression.int8?.chunkSize ??
          crdDefault("spec.federation.sync.compression.int8.chunkSize"),
      };
    case "TopK":
      return {
        method: "topk",
        density:
          compression.topK?.density ?? crdDefault("spec.federation.sync.compression.topK.density"),
        bits: (compression.topK?.valueBits ??
          crdDefault("spec.federation.sync.compression.topK.valueBits")) as TopKBits,
        groupSize: TOPK_GROUP_SIZE,
      };
  }
}

/** The training data of one worker, the shared evaluation data, and the model to fit them. */
export interface WorkerData {
  data: ShardedClassification | ShardedText;
  definition: ModelDefinition;
}

/** The federation's whole data set and the model definition sized to it. */
export interface FederationData {
  data: DataSet;
  definition: ModelDefinition;
}

/**
 * Builds the federation's data set (every training example, and the held-out set) and the model
 * definition. Text data is read from its URL or from `dataRoot`; the vocabulary (and so the
 * model's) comes from the data.
 */
export async function federationData(
  spec: FederationSpec,
  dataRoot?: string,
): Promise<FederationData> {
  const seed = spec.training.seed;
  const { synthetic, corpus, text } = spec.data;
  if ([synthetic, corpus, text].filter((source) => source !== undefined).length > 1) {
    throw new RangeError("data sets more than one of synthetic, corpus and text: set exactly one");
  }
  let data: DataSet;
  if (synthetic?.preset === "GaussianClusters") {
    data = gaussianClustersSet(seed, synthetic);
  } else if (synthetic?.preset === "Arithmetic") {
    data = arithmeticSet(seed, synthetic);
  } else if (corpus) {
    data = brownCorpusSet(
      await loadBrownCorpus(),
      corpus.encoding ?? crdDefault("spec.federation.data.corpus.encoding"),
    );
  } else if (text) {
    data = splitTextExamples(await readTextExamples(text, dataRoot), text.evalFraction);
  } else {
    throw new RangeError("data needs synthetic, corpus or text");
  }
  return { data, definition: modelDefinition(spec, data) };
}

/**
 * Builds one worker's data (its shard among `shard.workerCount` workers of one process, see
 * ShardSpec) and the model definition.
 */
export async function workerData(
  spec: FederationSpec,
  shard: Omit<ShardSpec, "strategy" | "concentration">,
  dataRoot?: string,
): Promise<WorkerData> {
  const { data, definition } = await federationData(spec, dataRoot);
  const owned = ownedByShard(spec.training.seed, data.train, {
    ...shard,
    strategy: spec.data.sharding.strategy,
    concentration: spec.data.sharding.concentration,
  });
  const train = selectExamples(data.train, owned);
  return {
    data:
      train.kind === "classification"
        ? { train, eval: data.eval as ClassificationSet }
        : { train, eval: data.eval as TextCorpus },
    definition,
  };
}

/** The model definition for the spec's preset, sized to the data. */
export function modelDefinition(
  spec: FederationSpec,
  data: { train: ExampleSet | ClassificationSet | TextCorpus },
): ModelDefinition {
  const model = spec.model;
  if (model.preset === "MLP") {
    if (data.train.kind !== "classification") {
      throw new RangeError("the MLP preset needs classification data (synthetic GaussianClusters)");
    }
    return {
      kind: "mlp",
      inputs: data.train.featureCount,
      classes: data.train.classCount,
      hiddenLayers: model.mlp?.hiddenLayers ?? crdDefault("spec.federation.model.mlp.hiddenLayers"),
      activation: model.mlp?.activation ?? crdDefault("spec.federation.model.mlp.activation"),
    };
  }
  if (data.train.kind !== "text") {
    throw new RangeError(
      "the CharTransformer preset needs text data (Arithmetic, BrownCorpus or text)",
    );
  }
  const settings = model.charTransformer;
  return {
    kind: "transformer",
    vocabularySize: data.train.vocabulary.length || ARITHMETIC_VOCABULARY.length,
    layers: settings?.layers ?? crdDefault("spec.federation.model.charTransformer.layers"),
    modelWidth:
      settings?.modelWidth ?? crdDefault("spec.federation.model.charTransformer.modelWidth"),
    heads: settings?.heads ?? crdDefault("spec.federation.model.charTransformer.heads"),
    contextLength:
      settings?.contextLength ?? crdDefault("spec.federation.model.charTransformer.contextLength"),
    feedForwardMultiplier:
      settings?.feedForwardMultiplier ??
      crdDefault("spec.federation.model.charTransformer.feedForwardMultiplier"),
  };
}
