// `npm run bench -- kernels [--quick] [--backend CPU|JS|WASM|WebGPU|CUDA|Auto]`: the tfjs kernels
// one training step launches (forward, backward and the AdamW update, one `AdamW.step`), for each
// model preset as the trainer builds it from a federation spec that sets nothing but the preset
// and its data (CRD defaults for the rest, batch size included), and the step's median time. On
// an accelerator every kernel is a launch with a fixed cost, so at these model sizes the count,
// not the arithmetic, sets the step time. Counted with tf.profile on the trainer's CPU backend
// (native, else WASM) unless --backend says otherwise. Where the backend has fedtrain's fused
// kernels, the same step through tfjs's autodiff (the path of backends without them) is counted
// and timed in the same run as the baseline. The count depends on the backend (the record names
// it) and the code, not on the machine; the times depend on both. About 30 s on 2 cores.
// Writes bench/results/kernels.json (through run.ts); with --quick, out/bench/kernels-quick.json
// (the same work: there is nothing to shorten).
import * as tf from "@tensorflow/tfjs";
import {
  canonicalFederation,
  type FederationSpec,
  validateTrainingFederation,
} from "../core/api/index.js";
import { AdamW, type AdamWConfig } from "../trainer-image/training/adamw.js";
import { type BackendChoice, initBackend } from "../trainer-image/training/backend.js";
import { dilocoConfig, workerData } from "../trainer-image/training/config.js";
import { type Batch, BatchSampler } from "../trainer-image/training/data.js";
import {
  fusedKernelsAvailable,
  withoutFusedKernels,
} from "../trainer-image/training/fused-kernels.js";
import {
  initialParameters,
  Model,
  type ModelDefinition,
  parameterCount,
  parameterLayout,
} from "../trainer-image/training/model.js";

/** The kernels of one training step, split into the loss's gradient and the optimiser. */
export interface StepKernels {
  /** Median wall time of a step (loss read back) on this backend and machine. */
  msPerStep: number;
  /** Kernels of one whole `AdamW.step`. */
  kernelsPerStep: number;
  /** Kernels of the loss and its gradient alone (`Model.lossAndGradients`). */
  forwardBackward: number;
  /** The rest: the AdamW update of every variable. */
  optimiser: number;
  /** Kernel name → count in one step, most frequent first. */
  byName: Record<string, number>;
  /** Kernel name → count in the optimiser's share, most frequent first. */
  optimiserByName: Record<string, number>;
}

/**
 * Counts the kernels of one `AdamW.step(batch, false)` on a fresh model of `definition` with
 * optimiser settings `inner`, after one warm-up step (so that nothing done once per optimiser
 * counts), on the current tfjs backend.
 */
export async function countStepKernels(
  definition: ModelDefinition,
  batch: Batch,
  inner: AdamWConfig,
): Promise<StepKernels> {
  const model = new Model(definition, initialParameters(definition, 1));
  const optimizer = new AdamW(model, inner);
  try {
    await optimizer.step(batch, false);
    const stepProfile = await tf.profile(async () => {
      await optimizer.step(batch, false);
    });
    const step = stepProfile.kernels.map((kernel) => kernel.name);
    const gradientProfile = await tf.profile(() => {
      tf.tidy(() => {
        model.lossAndGradients(batch);
      });
    });
    const forwardBackward = gradientProfile.kernels.map((kernel) => kernel.name);
    // The step computes the same gradient before it updates anything: if its kernels do not begin
    // with the gradient's, the split below would not describe the step.
    if (step.slice(0, forwardBackward.length).join() !== forwardBackward.join()) {
      throw new Error(
        `the step's ${step.length} kernels do not begin with the ${forwardBackward.length} kernels of its gradient: the forward+backward / optimiser split does not apply`,
      );
    }
    const stepHistogram = histogram(step);
    const gradientHistogram = histogram(forwardBackward);
    const optimiserHistogram = new Map<string, number>();
    for (const [name, count] of stepHistogram) {
      const rest = count - (gradientHistogram.get(name) ?? 0);
      if (rest !== 0) optimiserHistogram.set(name, rest);
    }
    const times: number[] = [];
    for (let i = 0; i < TIMED_STEPS; i++) {
      const started = performance.now();
      await optimizer.step(batch, true);
      times.push(performance.now() - started);
    }
    return {
      msPerStep: median(times),
      kernelsPerStep: step.length,
      forwardBackward: forwardBackward.length,
      optimiser: step.length - forwardBackward.length,
      byName: sortedByCount(stepHistogram),
      optimiserByName: sortedByCount(optimiserHistogram),
    };
  } finally {
    optimizer.dispose();
    model.dispose();
  }
}

/** Steps timed after the profiled ones; the median is reported. */
const TIMED_STEPS = 5;

function median(samples: readonly number[]): number {
  const sorted = [...samples].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

function histogram(names: readonly string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const name of names) counts.set(name, (counts.get(name) ?? 0) + 1);
  return counts;
}

function sortedByCount(counts: Map<string, number>): Record<string, number> {
  return Object.fromEntries(
    [...counts].sort(([a, x], [b, y]) => y - x || (a < b ? -1 : a > b ? 1 : 0)),
  );
}

/** The presets and the synthetic data each one trains on by default. */
const PRESETS = [
  { preset: "CharTransformer", data: "Arithmetic" },
  { preset: "MLP", data: "GaussianClusters" },
] as const;

/**
 * spec.federation as a trainer holds it when its manifest sets only the model preset and the
 * data: validated against the CRD schema and put in canonical form (every default applied).
 */
function defaultedFederation(preset: string, data: string): FederationSpec {
  const validation = validateTrainingFederation({
    apiVersion: "fedtrain.dev/v1alpha1",
    kind: "TrainingFederation",
    metadata: { name: "kernels" },
    spec: {
      federation: { id: "kernels", model: { preset }, data: { synthetic: { preset: data } } },
    },
  });
  if (!validation.valid) {
    throw new Error(`the ${preset} spec is invalid: ${JSON.stringify(validation.errors)}`);
  }
  return canonicalFederation(validation.object.spec.federation);
}

/** The kernels of a step of one preset, and the model and batch they were counted on. */
export interface PresetKernels extends StepKernels {
  parameters: number;
  variables: number;
  batchSize: number;
  definition: ModelDefinition;
  /** Whether the step ran on fedtrain's fused kernels (false: the backend has none). */
  fused: boolean;
  /**
   * Baseline measured in the same run: the same step through tfjs's autodiff of the composed
   * model and the flat AdamW of tfjs ops (the trainer's path on backends without the fused
   * kernels), or null where the step above already is that path.
   */
  autodiff: StepKernels | null;
  /** Autodiff's step time over the fused step's, on this machine (null without a baseline). */
  speedUp: number | null;
  /** Wall time of the warm-up, profiled and timed runs of both paths. */
  seconds: number;
}

/** Counts the kernels of a step of `preset` as the trainer would build it from its defaults. */
async function presetKernels(preset: string, data: string): Promise<PresetKernels> {
  const spec = defaultedFederation(preset, data);
  const { data: shard, definition } = await workerData(spec, { workerIndex: 0, workerCount: 1 });
  const contextLength = definition.kind === "transformer" ? definition.contextLength : 0;
  const batchSize = spec.training.batchSize;
  const sampler = new BatchSampler(shard.train, batchSize, spec.training.seed, 0, contextLength);
  sampler.startRound(0);
  const layout = parameterLayout(definition);
  const variables = layout.length;
  const parameters = parameterCount(layout);
  const started = performance.now();
  const batch = sampler.next();
  const inner = dilocoConfig(spec).inner;
  const fused = fusedKernelsAvailable();
  const kernels = await countStepKernels(definition, batch, inner);
  console.log(
    `${preset}: ${describeStep(kernels)}; ${parameters} parameters in ${variables} variables, batch ${batchSize}; top: ${topNames(kernels.byName, 8)}`,
  );
  let autodiff: StepKernels | null = null;
  if (fused) {
    autodiff = await withoutFusedKernels(() => countStepKernels(definition, batch, inner));
    console.log(`${preset} through autodiff (baseline): ${describeStep(autodiff)}`);
  }
  const speedUp = autodiff ? autodiff.msPerStep / kernels.msPerStep : null;
  const seconds = (performance.now() - started) / 1000;
  return {
    ...kernels,
    parameters,
    variables,
    batchSize,
    definition,
    fused,
    autodiff,
    speedUp,
    seconds,
  };
}

function describeStep(step: StepKernels): string {
  return `${step.kernelsPerStep} kernels per step (forward+backward ${step.forwardBackward}, optimiser ${step.optimiser}), ${step.msPerStep.toFixed(0)} ms per step`;
}

function topNames(counts: Record<string, number>, n: number): string {
  return Object.entries(counts)
    .slice(0, n)
    .map(([name, count]) => `${name} ${count}`)
    .join(", ");
}

const BACKENDS: readonly BackendChoice[] = ["CPU", "JS", "WASM", "WebGPU", "CUDA", "Auto"];

function backendChoice(args: string[]): BackendChoice {
  const index = args.indexOf("--backend");
  if (index < 0) return "CPU";
  const name = args[index + 1] ?? "";
  const choice = BACKENDS.find((known) => known.toLowerCase() === name.toLowerCase());
  if (!choice) {
    throw new RangeError(`--backend ${name}: unknown backend; use one of ${BACKENDS.join(", ")}`);
  }
  return choice;
}

/** Counts the kernels of a step of every preset; see the top of this file. */
export async function run(args: string[]): Promise<unknown> {
  const choice = backendChoice(args);
  const started = performance.now();
  const backend = await initBackend(choice);
  const presets: Record<string, PresetKernels> = {};
  for (const { preset, data } of PRESETS) presets[preset] = await presetKernels(preset, data);
  return {
    presets,
    backend: backend.tfjsBackend,
    fedtrainBackend: backend.backend,
    device: backend.device,
    tfjs: tf.version.tfjs,
    wallSeconds: (performance.now() - started) / 1000,
  };
}
