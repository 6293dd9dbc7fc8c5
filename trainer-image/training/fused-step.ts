// The models' loss and gradients written out as a forward pass that keeps what its backward pass
// needs and a backward pass in reverse, over the fused kernels of fused-kernels.ts and tfjs's
// matmuls and column sums: no autodiff tape, so no reshape, identity, broadcast or accumulation
// kernels of its own. The arithmetic is the model of model.ts (fused.test.ts compares the loss
// and every gradient with tfjs's autodiff of it).
import * as tf from "@tensorflow/tfjs";
import type { Batch } from "./data.js";
import {
  activation,
  activationGrad,
  attention,
  attentionGrad,
  crossEntropyWithGrad,
  embedding,
  embeddingGrad,
  type LayerNormResult,
  layerNorm,
  layerNormGrad,
  linear,
  matMul,
} from "./fused-kernels.js";
import type { AttentionShape } from "./kernel-math.js";
import type { MlpDefinition, TransformerDefinition } from "./model.js";

/** A batch's mean loss and the gradient of every parameter tensor, in layout order. */
export interface LossAndGradients {
  loss: tf.Scalar;
  gradients: tf.Tensor[];
}

/** The weight gradients of y = x·W + b and the gradient of its input: [dx, dW, db]. */
function linearGrad(
  dy: tf.Tensor2D,
  x: tf.Tensor2D,
  weight: tf.Tensor,
  needInput: boolean,
): [tf.Tensor2D | null, tf.Tensor2D, tf.Tensor1D] {
  const dWeight = matMul(x, dy, true, false);
  const dBias = tf.sum(dy, 0) as tf.Tensor1D;
  const dx = needInput ? matMul(dy, weight, false, true) : null;
  return [dx, dWeight, dBias];
}

/** The MLP's loss, and its gradients when `withGradients`; call inside a tidy. */
export function mlpStep(
  definition: MlpDefinition,
  variables: readonly tf.Tensor[],
  batch: Extract<Batch, { kind: "classification" }>,
  withGradients: boolean,
): LossAndGradients {
  const layers = definition.hiddenLayers.length + 1;
  const inputs: tf.Tensor2D[] = [tf.tensor2d(batch.features, [batch.size, definition.inputs])];
  const preActivations: tf.Tensor2D[] = [];
  let x = inputs[0]!;
  for (let l = 0; l < layers; l++) {
    x = linear(x, variables[2 * l]!, variables[2 * l + 1]!);
    if (l + 1 < layers) {
      preActivations.push(x);
      x = activation(definition.activation, x);
      inputs.push(x);
    }
  }
  const [loss, dLogits] = crossEntropyWithGrad(x, tf.tensor1d(batch.labels, "int32"));
  if (!withGradients) return { loss, gradients: [] };
  const gradients: tf.Tensor[] = new Array(2 * layers);
  let dy = dLogits;
  for (let l = layers - 1; l >= 0; l--) {
    const [dx, dWeight, dBias] = linearGrad(dy, inputs[l]!, variables[2 * l]!, l > 0);
    gradients[2 * l] = dWeight;
    gradients[2 * l + 1] = dBias;
    if (dx) dy = activationGrad(definition.activation, dx, preActivations[l - 1]!);
  }
  return { loss, gradients };
}

/** One transformer block's parameters, in layout order (model.ts parameterLayout). */
const BLOCK_PARAMETERS = [
  "ln1Gain",
  "ln1Bias",
  "qkv",
  "qkvBias",
  "out",
  "outBias",
  "ln2Gain",
  "ln2Bias",
  "mlpIn",
  "mlpInBias",
  "mlpOut",
  "mlpOutBias",
] as const;

type BlockParameters = Record<(typeof BLOCK_PARAMETERS)[number], tf.Tensor>;

/** Where block l's parameters start: after the token and position embeddings. */
const blockStart = (l: number): number => 2 + l * BLOCK_PARAMETERS.length;

function blockParameters(variables: readonly tf.Tensor[], l: number): BlockParameters {
  const start = blockStart(l);
  return Object.fromEntries(
    BLOCK_PARAMETERS.map((name, i) => [name, variables[start + i]!]),
  ) as BlockParameters;
}

/** What one block's forward pass keeps for its backward pass. */
interface BlockActivations {
  ln1: LayerNormResult;
  qkv: tf.Tensor2D;
  attended: tf.Tensor2D;
  probabilities: tf.Tensor4D;
  ln2: LayerNormResult;
  preActivation: tf.Tensor2D;
  hidden: tf.Tensor2D;
}

/** The transformer's forward pass: next-token logits [rows, vocabulary] and what backward needs. */
interface TransformerForward {
  logits: tf.Tensor2D;
  blocks: BlockActivations[];
  final: LayerNormResult;
  ids: tf.Tensor1D;
  shape: AttentionShape;
}

function transformerForward(
  definition: TransformerDefinition,
  variables: readonly tf.Tensor[],
  inputs: Int32Array,
  windows: number,
  length: number,
): TransformerForward {
  if (length > definition.contextLength) {
    throw new RangeError(
      `a window of ${length} exceeds the context length ${definition.contextLength}`,
    );
  }
  const shape: AttentionShape = {
    windows,
    length,
    heads: definition.heads,
    width: definition.modelWidth,
  };
  const ids = tf.tensor1d(inputs, "int32");
  const tokens = variables[0]!;
  let x = embedding(ids, tokens, variables[1]!, length);
  // The residual branch not yet added to x: each LayerNorm kernel adds it before normalising.
  let branch: tf.Tensor2D | undefined;
  const blocks: BlockActivations[] = [];
  for (let l = 0; l < definition.layers; l++) {
    const p = blockParameters(variables, l);
    const ln1 = layerNorm(x, p.ln1Gain, p.ln1Bias, branch);
    x = ln1.input;
    const qkv = linear(ln1.y, p.qkv, p.qkvBias);
    const [attended, probabilities] = attention(qkv, shape);
    const ln2 = layerNorm(x, p.ln2Gain, p.ln2Bias, linear(attended, p.out, p.outBias));
    x = ln2.input;
    const preActivation = linear(ln2.y, p.mlpIn, p.mlpInBias);
    const hidden = activation("GELU", preActivation);
    branch = linear(hidden, p.mlpOut, p.mlpOutBias);
    blocks.push({ ln1, qkv, attended, probabilities, ln2, preActivation, hidden });
  }
  const gains = variables.length - 2;
  const final = layerNorm(x, variables[gains]!, variables[gains + 1]!, branch);
  const logits = matMul(final.y, tokens, false, true);
  return { logits, blocks, final, ids, shape };
}

/** Next-token logits of `windows` windows of `length` ids, [rows, vocabulary]; call inside a tidy. */
export function transformerLogits(
  definition: TransformerDefinition,
  variables: readonly tf.Tensor[],
  inputs: Int32Array,
  windows: number,
  length: number,
): tf.Tensor2D {
  return transformerForward(definition, variables, inputs, windows, length).logits;
}

/** The transformer's loss, and its gradients when `withGradients`; call inside a tidy. */
export function transformerStep(
  definition: TransformerDefinition,
  variables: readonly tf.Tensor[],
  batch: Extract<Batch, { kind: "text" }>,
  withGradients: boolean,
): LossAndGradients {
  const { size: windows, length } = batch;
  const forward = transformerForward(definition, variables, batch.inputs, windows, length);
  const [loss, dLogits] = crossEntropyWithGrad(forward.logits, tf.tensor1d(batch.targets, "int32"));
  if (!withGradients) return { loss, gradients: [] };
  const { shape } = forward;
  const gradients: tf.Tensor[] = new Array(variables.length);
  const tokens = variables[0]! as tf.Tensor2D;
  const gains = variables.length - 2;
  // Tied embedding: the output projection's share of the token gradient goes into the
  // embedding's backward kernel.
  const dTokensOut = matMul(dLogits, forward.final.y, true, false);
  let dx: tf.Tensor2D;
  [dx, gradients[gains]!, gradients[gains + 1]!] = layerNormGrad(
    matMul(dLogits, tokens),
    forward.final,
    variables[gains]!,
  );
  for (let l = definition.layers - 1; l >= 0; l--) {
    const p = blockParameters(variables, l);
    const a = forward.blocks[l]!;
    // dx is the gradient of x after the block: it reaches the MLP branch and, along the
    // residual, the LayerNorm input before it.
    const [dHidden, dMlpOut, dMlpOutBias] = linearGrad(dx, a.hidden, p.mlpOut, true);
    const dPre = activationGrad("GELU", dHidden!, a.preActivation);
    const [dLn2, dMlpIn, dMlpInBias] = linearGrad(dPre, a.ln2.y, p.mlpIn, true);
    const [dMid, dLn2Gain, dLn2Bias] = layerNormGrad(dLn2!, a.ln2, p.ln2Gain, dx);
    const [dAttended, dOut, dOutBias] = linearGrad(dMid, a.attended, p.out, true);
    const dQkv = attentionGrad(dAttended!, a.qkv, a.probabilities, shape);
    const [dLn1, dQkvWeight, dQkvBias] = linearGrad(dQkv, a.ln1.y, p.qkv, true);
    const [dBefore, dLn1Gain, dLn1Bias] = layerNormGrad(dLn1!, a.ln1, p.ln1Gain, dMid);
    const blockGradients: BlockParameters = {
      ln1Gain: dLn1Gain,
      ln1Bias: dLn1Bias,
      qkv: dQkvWeight,
      qkvBias: dQkvBias,
      out: dOut,
      outBias: dOutBias,
      ln2Gain: dLn2Gain,
      ln2Bias: dLn2Bias,
      mlpIn: dMlpIn,
      mlpInBias: dMlpInBias,
      mlpOut: dMlpOut,
      mlpOutBias: dMlpOutBias,
    };
    BLOCK_PARAMETERS.forEach((name, i) => {
      gradients[blockStart(l) + i] = blockGradients[name];
    });
    dx = dBefore;
  }
  [gradients[0]!, gradients[1]!] = embeddingGrad(
    forward.ids,
    dx,
    dTokensOut,
    definition.contextLength,
    length,
  );
  return { loss, gradients };
}
