// The two model presets as tfjs computations over an explicit list of variables in a fixed
// order, so the parameters can be read and written as one flat Float32Array (the form DiLoCo
// exchanges). Initial weights come from the seeded plain-JS generator, never from tfjs's own
// initialisers, so every member and backend starts from bit-identical weights.
import * as tf from "@tensorflow/tfjs";
import type { Batch } from "./data.js";
import { fusedKernelsAvailable } from "./fused-kernels.js";
import {
  type LossAndGradients,
  mlpStep,
  transformerLogits,
  transformerStep,
} from "./fused-step.js";
import type { AttentionShape } from "./kernel-math.js";
import { Random } from "./prng.js";

/** A multi-layer perceptron classifier. */
export interface MlpDefinition {
  kind: "mlp";
  inputs: number;
  classes: number;
  hiddenLayers: number[];
  activation: "ReLU" | "GELU" | "Tanh";
}

/** A decoder-only character-level transformer LM (pre-LayerNorm, tied input/output embedding). */
export interface TransformerDefinition {
  kind: "transformer";
  vocabularySize: number;
  layers: number;
  modelWidth: number;
  heads: number;
  contextLength: number;
  feedForwardMultiplier: number;
}

/** What to build. */
export type ModelDefinition = MlpDefinition | TransformerDefinition;

/** How a parameter tensor is initialised. */
type Init = { kind: "uniform"; std: number } | { kind: "zeros" } | { kind: "ones" };

/** One parameter tensor: its place in the flat vector and how it starts. */
export interface ParameterSpec {
  name: string;
  shape: number[];
  size: number;
  /** Offset in the flat parameter vector. */
  offset: number;
  /** Whether AdamW's weight decay applies (weight matrices yes; embeddings, biases, gains no). */
  decay: boolean;
  init: Init;
}

/** The parameters of a model definition, in the fixed order of the flat vector. */
export function parameterLayout(definition: ModelDefinition): ParameterSpec[] {
  const layout: ParameterSpec[] = [];
  let offset = 0;
  const add = (name: string, shape: number[], decay: boolean, init: Init): void => {
    const size = shape.reduce((a, b) => a * b, 1);
    layout.push({ name, shape, size, offset, decay, init });
    offset += size;
  };
  if (definition.kind === "mlp") {
    const widths = [definition.inputs, ...definition.hiddenLayers, definition.classes];
    for (let l = 0; l + 1 < widths.length; l++) {
      const fanIn = widths[l]!;
      // He scaling for ReLU, LeCun otherwise.
      const gain = definition.activation === "ReLU" && l + 2 < widths.length ? 2 : 1;
      add(`dense${l}/kernel`, [fanIn, widths[l + 1]!], true, {
        kind: "uniform",
        std: Math.sqrt(gain / fanIn),
      });
      add(`dense${l}/bias`, [widths[l + 1]!], false, { kind: "zeros" });
    }
    return layout;
  }
  checkTransformer(definition);
  const d = definition.modelWidth;
  const ff = d * definition.feedForwardMultiplier;
  const residualStd = 1 / Math.sqrt(2 * definition.layers);
  // No weight decay on embeddings (nor on gains and biases), as in GPT-style training: decay
  // pulls rarely seen tokens' rows to zero.
  add("embedding/tokens", [definition.vocabularySize, d], false, { kind: "uniform", std: 0.02 });
  add("embedding/positions", [definition.contextLength, d], false, { kind: "uniform", std: 0.02 });
  for (let l = 0; l < definition.layers; l++) {
    add(`block${l}/ln1/gain`, [d], false, { kind: "ones" });
    add(`block${l}/ln1/bias`, [d], false, { kind: "zeros" });
    add(`block${l}/attention/qkv`, [d, 3 * d], true, { kind: "uniform", std: 1 / Math.sqrt(d) });
    add(`block${l}/attention/qkvBias`, [3 * d], false, { kind: "zeros" });
    add(`block${l}/attention/out`, [d, d], true, {
      kind: "uniform",
      std: residualStd / Math.sqrt(d),
    });
    add(`block${l}/attention/outBias`, [d], false, { kind: "zeros" });
    add(`block${l}/ln2/gain`, [d], false, { kind: "ones" });
    add(`block${l}/ln2/bias`, [d], false, { kind: "zeros" });
    add(`block${l}/mlp/in`, [d, ff], true, { kind: "uniform", std: 1 / Math.sqrt(d) });
    add(`block${l}/mlp/inBias`, [ff], false, { kind: "zeros" });
    add(`block${l}/mlp/out`, [ff, d], true, {
      kind: "uniform",
      std: residualStd / Math.sqrt(ff),
    });
    add(`block${l}/mlp/outBias`, [d], false, { kind: "zeros" });
  }
  add("final/ln/gain", [d], false, { kind: "ones" });
  add("final/ln/bias", [d], false, { kind: "zeros" });
  return layout;
}

function checkTransformer(definition: TransformerDefinition): void {
  const { modelWidth, heads, layers, contextLength, feedForwardMultiplier } = definition;
  for (const [name, value] of Object.entries({ modelWidth, heads, layers, contextLength })) {
    if (!(Number.isInteger(value) && value >= 1)) {
      throw new RangeError(`charTransformer.${name} ${value} must be a positive integer`);
    }
  }
  if (modelWidth % heads !== 0) {
    throw new RangeError(
      `charTransformer.modelWidth ${modelWidth} is not a multiple of heads ${heads}`,
    );
  }
  if (!(Number.isInteger(modelWidth * feedForwardMultiplier) && feedForwardMultiplier > 0)) {
    throw new RangeError(
      `charTransformer.feedForwardMultiplier ${feedForwardMultiplier} is invalid`,
    );
  }
}

/** Total number of parameters. */
export function parameterCount(layout: readonly ParameterSpec[]): number {
  const last = layout[layout.length - 1];
  return last ? last.offset + last.size : 0;
}

/**
 * The initial flat parameter vector for `definition` from the federation seed: uniform in
 * ±√3·std (so the standard deviation is std), drawn in layout order from one seeded stream.
 */
export function initialParameters(definition: ModelDefinition, seed: number): Float32Array {
  const layout = parameterLayout(definition);
  const flat = new Float32Array(parameterCount(layout));
  const random = new Random(seed, "init", definition.kind);
  for (const spec of layout) {
    const view = flat.subarray(spec.offset, spec.offset + spec.size);
    switch (spec.init.kind) {
      case "zeros":
        break;
      case "ones":
        view.fill(1);
        break;
      case "uniform": {
        const bound = Math.sqrt(3) * spec.init.std;
        for (let i = 0; i < view.length; i++) view[i] = (2 * random.uniform() - 1) * bound;
        break;
      }
    }
  }
  return flat;
}

let modelCounter = 0;

/** A model's variables on the current tfjs backend, and its loss. */
export class Model {
  readonly layout: ParameterSpec[];
  readonly size: number;
  readonly variables: tf.Variable[];
  private readonly causalMask: tf.Tensor | null;

  constructor(
    readonly definition: ModelDefinition,
    initial: Float32Array,
  ) {
    this.layout = parameterLayout(definition);
    this.size = parameterCount(this.layout);
    if (initial.length !== this.size) {
      throw new RangeError(`${initial.length} initial parameters for a model of ${this.size}`);
    }
    // tfjs variable names are global to the engine; several in-process workers need distinct ones.
    const prefix = `model${modelCounter++}`;
    this.variables = this.layout.map((spec) =>
      tf.variable(
        tf.tensor(initial.subarray(spec.offset, spec.offset + spec.size), spec.shape, "float32"),
        true,
        `${prefix}/${spec.name}`,
      ),
    );
    if (definition.kind === "transformer") {
      const t = definition.contextLength;
      const mask = new Float32Array(t * t);
      for (let i = 0; i < t; i++) for (let j = i + 1; j < t; j++) mask[i * t + j] = -1e9;
      this.causalMask = tf.tensor2d(mask, [t, t]);
    } else {
      this.causalMask = null;
    }
  }

  /**
   * The parameters as one flat vector, in layout order. Asynchronous because WebGPU in Node.js
   * has no synchronous read-back (tfjs's readSync needs OffscreenCanvas).
   */
  async readParameters(): Promise<Float32Array> {
    const flat = new Float32Array(this.size);
    const values = await Promise.all(this.variables.map((variable) => variable.data()));
    this.layout.forEach((spec, i) => {
      flat.set(values[i] as Float32Array, spec.offset);
    });
    return flat;
  }

  /** Overwrites the parameters with a flat vector in layout order. */
  writeParameters(flat: Float32Array): void {
    if (flat.length !== this.size) {
      throw new RangeError(`${flat.length} parameters for a model of ${this.size}`);
    }
    tf.tidy(() => {
      this.layout.forEach((spec, i) => {
        this.variables[i]!.assign(
          tf.tensor(flat.subarray(spec.offset, spec.offset + spec.size), spec.shape, "float32"),
        );
      });
    });
  }

  /**
   * The mean loss of a batch and the gradient of every variable, in layout order; call inside a
   * tidy. On a backend with fedtrain's fused kernels (plain JS and WASM) this runs the written-out
   * forward and backward pass of fused-step.ts, a few dozen kernels; elsewhere, tfjs's autodiff of
   * {@link loss}.
   */
  lossAndGradients(batch: Batch): LossAndGradients {
    if (fusedKernelsAvailable()) return this.fusedStep(batch, true);
    const { value, grads } = tf.variableGrads(() => this.loss(batch), this.variables);
    return { loss: value, gradients: this.variables.map((variable) => grads[variable.name]!) };
  }

  private fusedStep(batch: Batch, withGradients: boolean): LossAndGradients {
    const definition = this.definition;
    if (definition.kind === "mlp") {
      if (batch.kind !== "classification") throw new TypeError("the MLP needs classification data");
      return mlpStep(definition, this.variables, batch, withGradients);
    }
    if (batch.kind !== "text") throw new TypeError("the CharTransformer needs text data");
    return transformerStep(definition, this.variables, batch, withGradients);
  }

  /**
   * Mean cross-entropy (nats per example or per character) of a batch, composed from tfjs ops and
   * differentiable by tfjs's autodiff; call inside a tidy.
   */
  loss(batch: Batch): tf.Scalar {
    const definition = this.definition;
    if (definition.kind === "mlp") {
      if (batch.kind !== "classification") throw new TypeError("the MLP needs classification data");
      let x: tf.Tensor2D = tf.tensor2d(batch.features, [batch.size, definition.inputs]);
      const layers = definition.hiddenLayers.length + 1;
      for (let l = 0; l < layers; l++) {
        x = tf.add(
          tf.matMul(x, this.variables[2 * l] as tf.Tensor2D),
          this.variables[2 * l + 1]!,
        ) as tf.Tensor2D;
        if (l + 1 < layers) x = activate(x, definition.activation);
      }
      return crossEntropy(x, tf.tensor1d(batch.labels, "int32"), definition.classes);
    }
    if (batch.kind !== "text") throw new TypeError("the CharTransformer needs text data");
    return this.transformerLoss(definition, batch);
  }

  private transformerLoss(
    definition: TransformerDefinition,
    batch: Extract<Batch, { kind: "text" }>,
  ): tf.Scalar {
    const logits = this.transformerLogits(definition, batch.inputs, batch.size, batch.length);
    return crossEntropy(logits, tf.tensor1d(batch.targets, "int32"), definition.vocabularySize);
  }

  /**
   * Next-token logits at every position of `size` windows of `length` token ids (row-major),
   * shape [size·length, vocabulary]; position t sees tokens 0..t of its window. Call inside a
   * tidy.
   */
  nextTokenLogits(inputs: Int32Array, size: number, length: number): tf.Tensor2D {
    if (this.definition.kind !== "transformer") {
      throw new TypeError("next-token logits need the CharTransformer");
    }
    if (inputs.length !== size * length) {
      throw new RangeError(`${inputs.length} token ids for ${size} windows of ${length}`);
    }
    return fusedKernelsAvailable()
      ? transformerLogits(this.definition, this.variables, inputs, size, length)
      : this.transformerLogits(this.definition, inputs, size, length);
  }

  private transformerLogits(
    definition: TransformerDefinition,
    inputs: Int32Array,
    b: number,
    t: number,
  ): tf.Tensor2D {
    const d = definition.modelWidth;
    const h = definition.heads;
    if (t > definition.contextLength) {
      throw new RangeError(
        `a window of ${t} exceeds the context length ${definition.contextLength}`,
      );
    }
    const v = this.variables;
    let next = 0;
    const take = (): tf.Variable => v[next++]!;
    const tokens = take();
    const positions = take();
    const ids = tf.tensor1d(inputs, "int32");
    let x = tf.add(
      // A one-hot product instead of gather: gather's gradient (UnsortedSegmentSum) is missing
      // on the WASM backend, and the character vocabulary is small. (WASM's OneHot returns zeros
      // when asked for float32 directly, hence the cast.)
      tf.reshape(tf.matMul(tf.cast(tf.oneHot(ids, definition.vocabularySize), "float32"), tokens), [
        b,
        t,
        d,
      ]),
      t === definition.contextLength ? positions : tf.slice(positions, [0, 0], [t, d]),
    ) as tf.Tensor3D;
    const mask =
      t === definition.contextLength
        ? this.causalMask!
        : tf.slice(this.causalMask!, [0, 0], [t, t]);
    for (let l = 0; l < definition.layers; l++) {
      const [g1, b1, wqkv, bqkv, wo, bo, g2, b2, w1, bi1, w2, bi2] = Array.from(
        { length: 12 },
        take,
      );
      const normed = tf.reshape(layerNorm(x, g1!, b1!), [b * t, d]);
      const qkv = tf.add(tf.matMul(normed, wqkv as tf.Tensor2D), bqkv!);
      const merged = attention(
        qkv as tf.Tensor2D,
        { windows: b, length: t, heads: h, width: d },
        mask,
      );
      const attended = tf.add(tf.matMul(merged, wo as tf.Tensor2D), bo!);
      x = tf.add(x, tf.reshape(attended, [b, t, d]));
      const normed2 = tf.reshape(layerNorm(x, g2!, b2!), [b * t, d]);
      const hidden = gelu(tf.add(tf.matMul(normed2, w1 as tf.Tensor2D), bi1!));
      const out = tf.add(tf.matMul(hidden, w2 as tf.Tensor2D), bi2!);
      x = tf.add(x, tf.reshape(out, [b, t, d]));
    }
    const gf = take();
    const bf = take();
    const final = tf.reshape(layerNorm(x, gf, bf), [b * t, d]) as tf.Tensor2D;
    return tf.matMul(final, tokens as tf.Tensor2D, false, true);
  }

  /** Mean loss over evaluation batches (weighted by batch size), read back to the host. */
  async evaluate(batches: readonly Batch[]): Promise<number> {
    let total = 0;
    let count = 0;
    for (const batch of batches) {
      const loss = tf.tidy(() =>
        fusedKernelsAvailable() ? this.fusedStep(batch, false).loss : this.loss(batch),
      );
      total += ((await loss.data())[0] ?? Number.NaN) * batch.size;
      count += batch.size;
      loss.dispose();
    }
    return total / count;
  }

  dispose(): void {
    for (const variable of this.variables) variable.dispose();
    this.causalMask?.dispose();
  }
}

/** The MLP's hidden activation. */
export function activate(x: tf.Tensor2D, activation: MlpDefinition["activation"]): tf.Tensor2D {
  switch (activation) {
    case "ReLU":
      return tf.relu(x);
    case "Tanh":
      return tf.tanh(x);
    case "GELU":
      return gelu(x);
  }
}

// The layers below are composed from differentiable tfjs primitives: the form tfjs's autodiff
// trains on backends without fedtrain's fused kernels, and the reference those kernels are tested
// against (fused.test.ts).

/**
 * Causal multi-head attention over packed [q | k | v] rows [windows·length, 3d], with `mask` the
 * additive causal mask [length, length]: the merged heads [windows·length, d].
 */
export function attention(qkv: tf.Tensor2D, shape: AttentionShape, mask: tf.Tensor): tf.Tensor2D {
  const { windows: b, length: t, heads: h, width: d } = shape;
  const hd = d / h;
  const heads = (m: tf.Tensor2D): tf.Tensor4D =>
    tf.transpose(tf.reshape(m, [b, t, h, hd]), [0, 2, 1, 3]);
  const [q, k, v] = tf.split(qkv, 3, 1) as [tf.Tensor2D, tf.Tensor2D, tf.Tensor2D];
  const scores = tf.add(
    tf.mul(tf.matMul(heads(q), heads(k), false, true), 1 / Math.sqrt(hd)),
    mask,
  );
  const attended = tf.matMul(tf.softmax(scores), heads(v));
  return tf.reshape(tf.transpose(attended, [0, 2, 1, 3]), [b * t, d]);
}

/** GELU, tanh approximation (as in GPT-2). */
export function gelu<T extends tf.Tensor>(x: T): T {
  const inner = tf.mul(tf.add(x, tf.mul(tf.pow(x, 3), 0.044715)), Math.sqrt(2 / Math.PI));
  return tf.mul(tf.mul(x, 0.5), tf.add(tf.tanh(inner), 1)) as T;
}

/** LayerNorm over the last axis, with gain and bias. */
export function layerNorm(x: tf.Tensor, gain: tf.Tensor, bias: tf.Tensor): tf.Tensor {
  const mean = tf.mean(x, -1, true);
  const centred = tf.sub(x, mean);
  const variance = tf.mean(tf.square(centred), -1, true);
  return tf.add(tf.mul(tf.mul(centred, tf.rsqrt(tf.add(variance, 1e-5))), gain), bias);
}

/** Mean softmax cross-entropy of logits [rows, classes] against integer labels. */
export function crossEntropy(logits: tf.Tensor, labels: tf.Tensor1D, classes: number): tf.Scalar {
  const logProbabilities = tf.logSoftmax(logits);
  const picked = tf.sum(
    tf.mul(logProbabilities, tf.cast(tf.oneHot(labels, classes), "float32")),
    1,
  );
  return tf.neg(tf.mean(picked)) as tf.Scalar;
}
