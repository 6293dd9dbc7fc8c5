// The inner optimiser: AdamW (decoupled weight decay, Loshchilov & Hutter) with linear warm-up and
// a cosine or linear decay over the run, run on the accelerator for the H inner steps of every
// round.
import * as tf from "@tensorflow/tfjs";
import type { Batch } from "./data.js";
import { adamwStep, fusedKernelsAvailable } from "./fused-kernels.js";
import type { Model } from "./model.js";

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
    private readonly firstMoment: tf.Tensor,
    private readonly secondMoment: tf.Tensor,
    readonly stepCount: number,
  ) {}

  /** Another hold on the same state, disposed on its own. */
  clone(): AdamWSnapshot {
    return new AdamWSnapshot(
      tf.clone(this.firstMoment),
      tf.clone(this.secondMoment),
      this.stepCount,
    );
  }

  /** Reads the snapshot back to the host (asynchronous: WebGPU has no synchronous read-back). */
  async read(): Promise<AdamWState> {
    const [firstMoment, secondMoment] = await Promise.all([
      this.firstMoment.data() as Promise<Float32Array>,
      this.secondMoment.data() as Promise<Float32Array>,
    ]);
    return {
      firstMoment: new Float32Array(firstMoment),
      secondMoment: new Float32Array(secondMoment),
      stepCount: this.stepCount,
    };
  }

  dispose(): void {
    this.firstMoment.dispose();
    this.secondMoment.dispose();
  }
}

/**
 * AdamW state for one model. The moments are flat, one vector each in layout order. On a backend
 * with fedtrain's fused kernels the whole update is one kernel (fused-kernels.ts); elsewhere it
 * runs on the model's parameters and gradients joined into one vector: a handful of kernels per
 * step instead of about 13 per variable (a kernel launch costs far more on an accelerator than
 * the arithmetic of a small variable). Either way, per element, the arithmetic is AdamW written
 * per variable, bit for bit (adamw.test.ts compares them).
 */
export class AdamW {
  private readonly firstMoment: tf.Variable;
  private readonly secondMoment: tf.Variable;
  /** 1 for the parameters weight decay applies to, 0 for the others (biases, norms). */
  private readonly decayMask: tf.Tensor1D;
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
    this.firstMoment = tf.variable(tf.zeros([model.size]), false);
    this.secondMoment = tf.variable(tf.zeros([model.size]), false);
    const mask = new Float32Array(model.size);
    for (const spec of model.layout)
      if (spec.decay) mask.fill(1, spec.offset, spec.offset + spec.size);
    this.decayMask = tf.tensor1d(mask);
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
    const { variables, layout } = this.model;
    const loss = tf.tidy(() => {
      const { loss, gradients } = this.model.lossAndGradients(batch);
      if (fusedKernelsAvailable()) {
        const outputs = adamwStep(
          variables,
          gradients,
          this.firstMoment,
          this.secondMoment,
          layout.map((spec) => spec.decay),
          { beta1, beta2, epsilon, stepSize, decayRate: lr * weightDecay },
        );
        variables.forEach((variable, i) => {
          variable.assign(outputs[i]!);
        });
        this.firstMoment.assign(outputs[variables.length]!);
        this.secondMoment.assign(outputs[variables.length + 1]!);
        return loss;
      }
      const gradient = joined(gradients);
      const parameters = joined(variables);
      const m = tf.add(tf.mul(this.firstMoment, beta1), tf.mul(gradient, 1 - beta1));
      const v = tf.add(tf.mul(this.secondMoment, beta2), tf.mul(tf.square(gradient), 1 - beta2));
      this.firstMoment.assign(m);
      this.secondMoment.assign(v);
      let update = tf.mul(tf.div(m, tf.add(tf.sqrt(v), epsilon)), stepSize);
      if (weightDecay > 0)
        update = tf.add(update, tf.mul(parameters, tf.mul(this.decayMask, lr * weightDecay)));
      const next = tf.split(
        tf.sub(parameters, update),
        layout.map((spec) => spec.size),
      );
      variables.forEach((variable, i) => {
        variable.assign(tf.reshape(next[i]!, layout[i]!.shape));
      });
      return loss;
    });
    const result = readLoss ? ((await loss.data())[0] ?? Number.NaN) : null;
    loss.dispose();
    return result;
  }

  /** Freezes the current state on the accelerator (see {@link AdamWSnapshot}). */
  snapshot(): AdamWSnapshot {
    return new AdamWSnapshot(
      tf.clone(this.firstMoment),
      tf.clone(this.secondMoment),
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
      this.firstMoment.assign(tf.tensor1d(state.firstMoment, "float32"));
      this.secondMoment.assign(tf.tensor1d(state.secondMoment, "float32"));
    });
    this.stepCount = state.stepCount;
  }

  dispose(): void {
    this.firstMoment.dispose();
    this.secondMoment.dispose();
    this.decayMask.dispose();
  }
}

/** Tensors joined into one flat vector, in order. */
function joined(tensors: readonly tf.Tensor[]): tf.Tensor1D {
  return tf.concat(tensors.map((tensor) => tf.reshape(tensor, [-1]))) as tf.Tensor1D;
}
