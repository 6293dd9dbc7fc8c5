// The inner optimiser: AdamW (decoupled weight decay, Loshchilov & Hutter) with linear warm-up,
// run on the accelerator for the H inner steps of every round.
import * as tf from "@tensorflow/tfjs";
import type { Batch } from "./data.js";
import type { Model } from "./model.js";

/** AdamW settings, as in the federation spec's training.innerOptimizer. */
export interface AdamWConfig {
  learningRate: number;
  weightDecay: number;
  warmupSteps: number;
  beta1: number;
  beta2: number;
  /** Added to the second-moment root; default 1e-8. */
  epsilon?: number;
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
    this.firstMoments = model.variables.map((v) => tf.variable(tf.zerosLike(v), false));
    this.secondMoments = model.variables.map((v) => tf.variable(tf.zerosLike(v), false));
  }

  /** Learning rate of the next step: linear warm-up to the peak, then constant. */
  currentLearningRate(): number {
    const { learningRate, warmupSteps } = this.config;
    return warmupSteps > 0
      ? learningRate * Math.min(1, (this.stepCount + 1) / warmupSteps)
      : learningRate;
  }

  /**
   * One step on `batch`. The loss is read back to the host only when `readLoss` is set, since a
   * read-back stalls an accelerator's queue.
   */
  async step(batch: Batch, readLoss: boolean): Promise<number | null> {
    const { beta1, beta2, weightDecay } = this.config;
    const epsilon = this.config.epsilon ?? 1e-8;
    const lr = this.currentLearningRate();
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

  dispose(): void {
    for (const moment of [...this.firstMoments, ...this.secondMoments]) moment.dispose();
  }
}
