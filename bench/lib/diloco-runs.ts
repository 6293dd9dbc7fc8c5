// The pieces of the DiLoCo benchmarks (diloco.ts, diloco-sweep.ts): a task (model, data dealt to
// in-process workers, evaluation windows and the loss levels that give a loss its meaning), a
// method (per-step data-parallel or DiLoCo with a codec and an outer optimiser), and one run of a
// method on a task from a seed, with its eval-loss curve against samples and bytes sent.
import type {
  AggregationRule,
  CodecParams,
  NormBound,
  OuterOptimizerConfig,
} from "../../core/codec/index.js";
import type { AdamWConfig } from "../../trainer-image/training/adamw.js";
import { brownCorpusSet, loadBrownCorpus } from "../../trainer-image/training/corpus.js";
import {
  type ArithmeticSpec,
  arithmeticSet,
  type Batch,
  BatchSampler,
  evaluationBatches,
  ownedByShard,
  selectExamples,
  type TextCorpus,
  type TextExamples,
} from "../../trainer-image/training/data.js";
import {
  arithmeticLossLevels,
  type LossLevels,
  natsToBits,
  textLossLevels,
} from "../../trainer-image/training/levels.js";
import type { TransformerDefinition } from "../../trainer-image/training/model.js";
import {
  type CurvePoint,
  type SimulationResult,
  simulateDataParallel,
  simulateDiLoCo,
} from "../../trainer-image/training/simulate.js";

/** A training task of the benchmark: the model, the data and the budget every method gets. */
export interface TaskSpec {
  name: string;
  data: { preset: "Arithmetic"; spec: ArithmeticSpec } | { preset: "BrownCorpus" };
  /** Seed of the data set (Arithmetic's generator): fixed, so every run sees the same data. */
  dataSeed: number;
  /** The model; its vocabulary size is taken from the data. */
  definition: Omit<TransformerDefinition, "vocabularySize">;
  workers: number;
  /** Examples per inner step on each worker (data-parallel: per worker per step). */
  batchSize: number;
  /** Inner steps per worker: every method trains on workers × steps × batchSize samples. */
  steps: number;
  /** Evaluation windows of the held-out text (at most). */
  evalWindows: number;
}

/** A task ready to run: its evaluation windows and levels, and fresh samplers per seed. */
export interface Task {
  spec: TaskSpec;
  definition: TransformerDefinition;
  levels: LossLevels;
  evalBatches: Batch[];
  /** Characters (or bytes) the eval loss is averaged over. */
  evalCharacters: number;
  /** Training characters (or bytes) in the whole data set. */
  trainCharacters: number;
  /** The workers' batch samplers for a run seed: its deal of the examples and batch order. */
  samplers(seed: number): BatchSampler[];
}

/** Builds a task: the data set, its deal to the workers, the evaluation windows and levels. */
export async function buildTask(spec: TaskSpec): Promise<Task> {
  let set: { train: TextExamples; eval: TextCorpus };
  if (spec.data.preset === "Arithmetic") {
    set = arithmeticSet(spec.dataSeed, spec.data.spec);
  } else {
    set = brownCorpusSet(await loadBrownCorpus(), "Character");
  }
  const definition: TransformerDefinition = {
    ...spec.definition,
    kind: "transformer",
    vocabularySize: set.train.vocabulary.length,
  };
  const evalBatches = evaluationBatches(set.eval, 64, definition.contextLength, spec.evalWindows);
  const wholeTrain: TextCorpus = {
    kind: "text",
    tokens: set.train.tokens,
    vocabulary: set.train.vocabulary,
  };
  const levels =
    spec.data.preset === "Arithmetic"
      ? arithmeticLossLevels(spec.data.spec, wholeTrain, evalBatches)
      : textLossLevels(wholeTrain, evalBatches);
  return {
    spec,
    definition,
    levels,
    evalBatches,
    evalCharacters: evalBatches.reduce((n, b) => n + b.size, 0) * definition.contextLength,
    trainCharacters: set.train.tokens.length,
    samplers: (seed) =>
      Array.from({ length: spec.workers }, (_, workerIndex) => {
        const owned = ownedByShard(seed, set.train, {
          workerIndex,
          workerCount: spec.workers,
          strategy: "IID",
          concentration: 1,
        });
        return new BatchSampler(
          selectExamples(set.train, owned),
          spec.batchSize,
          seed,
          workerIndex,
          definition.contextLength,
        );
      }),
  };
}

/** One method of the comparison. */
export interface Method {
  name: string;
  /** Per-step synchronous fp32 gradient averaging (the baseline); innerSteps is then 1. */
  dataParallel?: boolean;
  /** Inner steps per round (H). */
  innerSteps: number;
  codec: CodecParams;
  outer: OuterOptimizerConfig;
  inner: Omit<AdamWConfig, "totalSteps">;
  /** DiLoCoConfig.startWithPendingShare (default on). */
  startWithPendingShare?: boolean;
  /** How the round's updates are combined (default the mean). */
  aggregation?: AggregationRule;
  normBound?: NormBound;
}

/** One point of a run's curve. */
export interface RunPoint {
  /** Training samples every worker together has seen so far. */
  samples: number;
  bytesPerWorker: number;
  evalLoss: number;
}

/** One run of a method on a task from a seed. */
export interface RunResult {
  method: string;
  seed: number;
  dataParallel: boolean;
  innerSteps: number;
  codec: CodecParams;
  /** The outer optimiser; absent for the data-parallel baseline, which has none. */
  outer?: OuterOptimizerConfig;
  inner: AdamWConfig;
  /** Whether rounds start from the global model plus the worker's pending share (error feedback). */
  startWithPendingShare: boolean;
  /** Bytes each worker sent: its encoded update per round, or its fp32 gradient per step. */
  bytesPerWorker: number;
  finalEvalLoss: number;
  /** finalEvalLoss in bits per character (or byte). */
  finalEvalBits: number;
  samples: number;
  seconds: number;
  curve: RunPoint[];
}

/** How many curve points a run records. */
const CURVE_POINTS = 12;

/** Runs `method` on `task` from `seed`, reporting each curve point as it comes. */
export async function runMethod(
  task: Task,
  method: Method,
  seed: number,
  onPoint: (point: RunPoint) => void = () => {},
  tamper?: Parameters<typeof simulateDiLoCo>[0]["tamper"],
): Promise<RunResult> {
  const { spec, definition, evalBatches } = task;
  const inner: AdamWConfig = { ...method.inner, totalSteps: spec.steps };
  const samplesPerStep = spec.workers * spec.batchSize;
  const curve: RunPoint[] = [];
  const record = (point: CurvePoint) => {
    const entry = {
      samples: point.steps * samplesPerStep,
      bytesPerWorker: point.bytesPerWorker,
      evalLoss: point.evalLoss,
    };
    curve.push(entry);
    onPoint(entry);
  };
  let result: SimulationResult;
  if (method.dataParallel) {
    result = await simulateDataParallel({
      definition,
      seed,
      samplers: task.samplers(seed),
      steps: spec.steps,
      inner,
      evalBatches,
      evalEvery: Math.max(1, Math.round(spec.steps / CURVE_POINTS)),
      onPoint: record,
    });
  } else {
    const rounds = Math.round(spec.steps / method.innerSteps);
    if (rounds * method.innerSteps !== spec.steps) {
      throw new RangeError(`H = ${method.innerSteps} does not divide the ${spec.steps} steps`);
    }
    result = await simulateDiLoCo({
      definition,
      seed,
      samplers: task.samplers(seed),
      config: {
        rounds,
        innerSteps: method.innerSteps,
        inner,
        outer: method.outer,
        codec: method.codec,
        errorFeedback: true,
        startWithPendingShare: method.startWithPendingShare !== false,
        aggregation: method.aggregation ?? { kind: "mean" },
        ...(method.normBound ? { normBound: method.normBound } : {}),
        overlap: false,
      },
      ...(tamper ? { tamper } : {}),
      evalBatches,
      evalEvery: Math.max(1, Math.round(rounds / CURVE_POINTS)),
      onPoint: record,
    });
  }
  return {
    method: method.name,
    seed,
    dataParallel: method.dataParallel === true,
    innerSteps: method.dataParallel ? 1 : method.innerSteps,
    codec: method.codec,
    ...(method.dataParallel ? {} : { outer: method.outer }),
    inner,
    startWithPendingShare:
      !method.dataParallel &&
      method.codec.method !== "none" &&
      method.startWithPendingShare !== false,
    bytesPerWorker: result.bytesPerWorker,
    finalEvalLoss: result.finalEvalLoss,
    finalEvalBits: natsToBits(result.finalEvalLoss),
    samples: spec.steps * samplesPerStep,
    seconds: result.seconds,
    curve,
  };
}

/** A byte count for people. */
export function formatBytes(bytes: number): string {
  if (bytes >= 1e9) return `${(bytes / 1e9).toFixed(2)} GB`;
  if (bytes >= 1e6) return `${(bytes / 1e6).toFixed(2)} MB`;
  if (bytes >= 1e3) return `${(bytes / 1e3).toFixed(1)} kB`;
  return `${bytes} B`;
}

/** A markdown-style table with the first column left-aligned and the rest right-aligned. */
export function formatTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) =>
    `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(" | ")} |`;
  const rule = `|${widths.map((w, i) => (i === 0 ? "-".repeat(w + 2) : `${"-".repeat(w + 1)}:`)).join("|")}|`;
  return [line(header), rule, ...rows.map(line)].join("\n");
}
