// In-process runs of several workers on one tfjs backend: the DiLoCo loop over an
// InProcessExchange, and the per-step synchronous data-parallel baseline. Used by the tests and
// the benchmarks; the trainer itself runs one worker per process.
import { AdamW, type AdamWConfig } from "./adamw.js";
import type { Batch, BatchSampler } from "./data.js";
import {
  type DiLoCoConfig,
  DiLoCoWorker,
  InProcessExchange,
  parameterHash as parameterHashOf,
  type RoundReport,
} from "./diloco.js";
import { initialParameters, Model, type ModelDefinition } from "./model.js";

/** One point of a run's eval-loss curve. */
export interface CurvePoint {
  round: number;
  /** Inner steps per worker so far. */
  steps: number;
  /** Bytes each worker has sent so far. */
  bytesPerWorker: number;
  evalLoss: number;
  trainLoss: number;
}

/** The outcome of an in-process run. */
export interface SimulationResult {
  finalEvalLoss: number;
  bytesPerWorker: number;
  curve: CurvePoint[];
  /** Global-model hash of every worker after the last round (all equal in a correct run). */
  finalHashes: string[];
  seconds: number;
}

/** An in-process DiLoCo run of `samplers.length` workers from the seed's initial weights. */
export async function simulateDiLoCo(options: {
  definition: ModelDefinition;
  seed: number;
  samplers: BatchSampler[];
  config: DiLoCoConfig;
  evalBatches: Batch[];
  /** Evaluate every this many rounds (and after the last); default 1. */
  evalEvery?: number;
  onPoint?: (point: CurvePoint) => void;
  /** Replaces a round's updates before they are committed (robustness benchmarks). */
  tamper?: ConstructorParameters<typeof InProcessExchange>[1];
}): Promise<SimulationResult> {
  const started = performance.now();
  const initial = initialParameters(options.definition, options.seed);
  const ids = options.samplers.map((_, i) => `worker-${i}`);
  const exchange = new InProcessExchange(ids, options.tamper);
  const models = ids.map(() => new Model(options.definition, initial));
  const evalModel = new Model(options.definition, initial);
  const workers = ids.map(
    (id, i) =>
      new DiLoCoWorker(
        id,
        models[i]!,
        initial,
        options.samplers[i]!,
        exchange.endpoint(id),
        options.config,
      ),
  );
  const curve: CurvePoint[] = [];
  const evalEvery = options.evalEvery ?? 1;
  const trainLosses = new Map<number, number[]>();
  let bytes = 0;
  const onRound = (worker: DiLoCoWorker) => async (report: RoundReport) => {
    const losses = trainLosses.get(report.round) ?? [];
    losses.push(report.trainLoss);
    trainLosses.set(report.round, losses);
    if (worker !== workers[0]) return;
    bytes += report.bytesSent;
    const last = report.round === options.config.rounds - 1;
    if (!last && (report.round + 1) % evalEvery !== 0) return;
    evalModel.writeParameters(worker.global);
    const point: CurvePoint = {
      round: report.round,
      steps: (report.round + 1) * options.config.innerSteps,
      bytesPerWorker: bytes,
      evalLoss: await evalModel.evaluate(options.evalBatches),
      trainLoss: report.trainLoss,
    };
    curve.push(point);
    options.onPoint?.(point);
  };
  try {
    await Promise.all(workers.map((worker) => worker.run(onRound(worker))));
    return {
      finalEvalLoss: curve[curve.length - 1]?.evalLoss ?? Number.NaN,
      bytesPerWorker: workers[0]!.bytesSent,
      curve,
      finalHashes: workers.map((worker) => parameterHashOf(worker.global)),
      seconds: (performance.now() - started) / 1000,
    };
  } finally {
    for (const worker of workers) worker.dispose();
    for (const model of models) model.dispose();
    evalModel.dispose();
  }
}

/**
 * The data-parallel baseline: every step each worker computes the gradient of its own batch and
 * the gradients are averaged (fp32, every step) before one AdamW step. With equal batch sizes the
 * average of the per-worker mean gradients is the gradient of the mean loss over the union of the
 * batches, so it is computed as one step on the concatenated batch. Each worker sends its fp32
 * gradient, 4 bytes per parameter, every step.
 */
export async function simulateDataParallel(options: {
  definition: ModelDefinition;
  seed: number;
  samplers: BatchSampler[];
  steps: number;
  inner: AdamWConfig;
  evalBatches: Batch[];
  evalEvery: number;
  onPoint?: (point: CurvePoint) => void;
}): Promise<SimulationResult> {
  const started = performance.now();
  const initial = initialParameters(options.definition, options.seed);
  const model = new Model(options.definition, initial);
  const optimizer = new AdamW(model, options.inner);
  const curve: CurvePoint[] = [];
  const bytesPerStep = 4 * model.size;
  try {
    for (let step = 0; step < options.steps; step++) {
      const last = step === options.steps - 1;
      const evaluate = last || (step + 1) % options.evalEvery === 0;
      const trainLoss = await optimizer.step(
        concatBatches(options.samplers.map((s) => s.next())),
        evaluate,
      );
      if (!evaluate) continue;
      const point: CurvePoint = {
        round: step,
        steps: step + 1,
        bytesPerWorker: bytesPerStep * (step + 1),
        evalLoss: await model.evaluate(options.evalBatches),
        trainLoss: trainLoss ?? Number.NaN,
      };
      curve.push(point);
      options.onPoint?.(point);
      await new Promise((resolve) => setImmediate(resolve));
    }
    return {
      finalEvalLoss: curve[curve.length - 1]?.evalLoss ?? Number.NaN,
      bytesPerWorker: bytesPerStep * options.steps,
      curve,
      finalHashes: [parameterHashOf(await model.readParameters())],
      seconds: (performance.now() - started) / 1000,
    };
  } finally {
    optimizer.dispose();
    model.dispose();
  }
}

/** Joins batches of one kind along the example axis. */
export function concatBatches(batches: readonly Batch[]): Batch {
  const first = batches[0];
  if (!first) throw new RangeError("no batches to join");
  const size = batches.reduce((sum, b) => sum + b.size, 0);
  if (first.kind === "classification") {
    const parts = batches as Extract<Batch, { kind: "classification" }>[];
    return {
      kind: "classification",
      size,
      features: joinFloat(parts.map((b) => b.features)),
      labels: joinInt(parts.map((b) => b.labels)),
    };
  }
  const parts = batches as Extract<Batch, { kind: "text" }>[];
  return {
    kind: "text",
    size,
    length: first.length,
    inputs: joinInt(parts.map((b) => b.inputs)),
    targets: joinInt(parts.map((b) => b.targets)),
  };
}

function joinFloat(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

function joinInt(parts: Int32Array[]): Int32Array {
  const out = new Int32Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}
