// The inner optimiser: AdamW (decoupled weight decay, Loshchilov & Hutter) with linear warm-up and
// a cosine or linear decay over the run, run on the accelerator for the H inner steps of every
// round.
import * as tf from "@tensorflow/tfjs";
import type { Batch } from "./data.js";
import { type Model, type ParameterSpec, parameterCount } from "./model.js";

/** How the learning rate decays after warm-up. */
export type LearningRateSchedule = "cosine" | "linear" | "constant";

/** AdamW settings, as in the federation spec's training.innerOptimizer. */
export interface AdamWConfig {
  learningRate: number;
  weightDecay: number;
  warmupSteps: number;
  beta1: number;
  beta2: number;
  /** Added to the second-moment root; default 1e-8. */
  epsilon?: number;
  /** Decay after warm-up; default constant. */
  schedule?: LearningRateSchedule;
  /** Steps of the whole run, over which the schedule decays (needed unless constant). */
  totalSteps?: number;
  /** The learning rate at the end of the decay, as a fraction of the peak; default 0.1. */
  finalLearningRateRatio?: number;
}

/**
 * The learning rate of step `step` (0-based): linear warm-up to the peak over `warmupSteps`,
 * then the schedule's decay to `finalLearningRateRatio` × peak at `totalSteps`, flat after.
 */
export function learningRateAt(config: AdamWConfig, step: number): number {
  const { learningRate, warmupSteps } = config;
  if (step < warmupSteps) return (learningRate * (step + 1)) / warmupSteps;
  const schedule = config.schedule ?? "constant";
  if (schedule === "constant") return learningRate;
  const total = config.totalSteps ?? 0;
  const final = config.finalLearningRateRatio ?? 0.1;
  const span = total - warmupSteps;
  const progress = span > 0 ? Math.min(1, (step - warmupSteps) / span) : 1;
  const fraction = schedule === "cosine" ? 0.5 * (1 + Math.cos(Math.PI * progress)) : 1 - progress;
  return learningRate * (final + (1 - final) * fraction);
}

/**
 * AdamW's state on the host, as a checkpoint holds it: each moment as one flat vector in the
 * model's parameter layout order (the order of Model.readParameters), and the steps taken.
 */
export interface AdamWState {
  firstMoment: Float32Array;
  secondMoment: Float32Array;
  stepCount: number;
}

/**
 * An AdamW state frozen on the accelerator, without a read-back to the host: it holds the moment
 * tensors of that moment (references on most backends, which the optimiser's next step does not
 * write into since it assigns new tensors to its variables; a device-side copy on WASM). The cost
 * is one more set of moments in device memory.
 */
export class AdamWSnapshot {
  constructor(
    private readonly layout: readonly ParameterSpec[],
    private readonly firstMoments: readonly tf.Tensor[],
    private readonly secondMoments: readonly tf.Tensor[],
    readonly stepCount: number,
  ) {}

  /** Another hold on the same state, disposed on its own. */
  clone(): AdamWSnapshot {
    return new AdamWSnapshot(
      this.layout,
      this.firstMoments.map((moment) => tf.clone(moment)),
      this.secondMoments.map((moment) => tf.clone(moment)),
      this.stepCount,
    );
  }

  /** Reads the snapshot back to the host (asynchronous: WebGPU has no synchronous read-back). */
  async read(): Promise<AdamWState> {
    return {
      firstMoment: await flatten(this.layout, this.firstMoments),
      secondMoment: await flatten(this.layout, this.secondMoments),
      stepCount: this.stepCount,
    };
  }

  dispose(): void {
    for (const moment of [...this.firstMoments, ...this.secondMoments]) moment.dispose();
  }
}

async function flatten(
  layout: readonly ParameterSpec[],
  tensors: readonly tf.Tensor[],
): Promise<Float32Array> {
  const flat = new Float32Array(parameterCount(layout));
  const values = await Promise.all(tensors.map((tensor) => tensor.data()));
  layout.forEach((spec, i) => {
    flat.set(values[i] as Float32Array, spec.offset);
  });
  return flat;
}

/** AdamW state for one model: first and second moments per variable, and the step count. */
export class AdamW {
  private readonly firstMoments: tf.Variable[];
  private readonly secondMoments: tf.Variable[];
  /** Steps taken; also drives warm-up. */
  stepCount = 0;

  constructor(
    private readonly model: Model,
    readonly config: AdamWConfig,
  ) {
    if (!(config.learningRate > 0)) throw new RangeError("inner learning rate must be positive");
    if (!(config.beta1 >= 0 && config.beta1 < 1 && config.beta2 >= 0 && config.beta2 < 1)) {
      throw new RangeError("AdamW betas must be in [0, 1)");
    }
    const schedule = config.schedule ?? "constant";
    if (
      schedule !== "constant" &&
      !(Number.isInteger(config.totalSteps) && config.totalSteps! >= 1)
    ) {
      throw new RangeError(
        `a ${schedule} learning-rate schedule needs totalSteps, the run's steps`,
      );
    }
    const final = config.finalLearningRateRatio ?? 0.1;
    if (!(final >= 0 && final <= 1)) {
      throw new RangeError(`finalLearningRateRatio ${final} must be in [0, 1]`);
    }
    this.firstMoments = model.variables.map((v) => tf.variable(tf.zerosLike(v), false));
    this.secondMoments = model.variables.map((v) => tf.variable(tf.zerosLike(v), false));
  }

  /** Learning rate of the next step (see {@link learningRateAt}). */
  currentLearningRate(): number {
    return learningRateAt(this.config, this.stepCount);
  }

  /**
   * One step on `batch`. The loss is read back to the host only when `readLoss` is set, since a
   * read-back stalls an accelerator's queue. `scheduleStep` places the step in the run's
   * learning-rate schedule when it differs from the steps this optimiser took (a DiLoCo worker
   * that joined a federation late is at the federation's point in the schedule, not at its own
   * step 0); bias correction always follows this optimiser's own steps.
   */
  async step(batch: Batch, readLoss: boolean, scheduleStep?: number): Promise<number | null> {
    const { beta1, beta2, weightDecay } = this.config;
    const epsilon = this.config.epsilon ?? 1e-8;
    const lr =
      scheduleStep === undefined
        ? this.currentLearningRate()
        : learningRateAt(this.config, scheduleStep);
    this.stepCount++;
    const t = this.stepCount;
    const stepSize = (lr * Math.sqrt(1 - beta2 ** t)) / (1 - beta1 ** t);
    const variables = this.model.variables;
    const loss = tf.tidy(() => {
      const { value, grads } = tf.variableGrads(() => this.model.loss(batch), variables);
      variables.forEach((variable, i) => {
        const gradient = grads[variable.name]!;
        const m = this.firstMoments[i]!;
        const v = this.secondMoments[i]!;
        const newM = tf.add(tf.mul(m, beta1), tf.mul(gradient, 1 - beta1));
        const newV = tf.add(tf.mul(v, beta2), tf.mul(tf.square(gradient), 1 - beta2));
        m.assign(newM);
        v.assign(newV);
        let update = tf.mul(tf.div(newM, tf.add(tf.sqrt(newV), epsilon)), stepSize);
        if (weightDecay > 0 && this.model.layout[i]!.decay) {
          update = tf.add(update, tf.mul(variable, lr * weightDecay));
        }
        variable.assign(tf.sub(variable, update));
      });
      return value;
    });
    const result = readLoss ? ((await loss.data())[0] ?? Number.NaN) : null;
    loss.dispose();
    return result;
  }

  /** Freezes the current state on the accelerator (see {@link AdamWSnapshot}). */
  snapshot(): AdamWSnapshot {
    return new AdamWSnapshot(
      this.model.layout,
      this.firstMoments.map((moment) => tf.clone(moment)),
      this.secondMoments.map((moment) => tf.clone(moment)),
      this.stepCount,
    );
  }

  /** The current state, read back to the host. */
  async readState(): Promise<AdamWState> {
    const snapshot = this.snapshot();
    try {
      return await snapshot.read();
    } finally {
      snapshot.dispose();
    }
  }

  /** Replaces the state with `state` (from {@link readState} of an optimiser of the same model). */
  writeState(state: AdamWState): void {
    const size = this.model.size;
    for (const [name, moment] of [
      ["first moment", state.firstMoment],
      ["second moment", state.secondMoment],
    ] as const) {
      if (moment.length !== size) {
        throw new RangeError(`AdamW ${name} of ${moment.length} values for a model of ${size}`);
      }
    }
    if (!(Number.isInteger(state.stepCount) && state.stepCount >= 0)) {
      throw new RangeError(`AdamW step count ${state.stepCount} must be a non-negative integer`);
    }
    tf.tidy(() => {
      this.model.layout.forEach((spec, i) => {
        const slice = (flat: Float32Array) =>
          tf.tensor(flat.subarray(spec.offset, spec.offset + spec.size), spec.shape, "float32");
        this.firstMoments[i]!.assign(slice(state.firstMoment));
        this.secondMoments[i]!.assign(slice(state.secondMoment));
      });
    });
    this.stepCount = state.stepCount;
  }

  dispose(): void {
    for (const moment of [...this.firstMoments, ...this.secondMoments]) moment.dispose();
  }
}
