// Fused training kernels registered with tfjs for its host backends (plain JS "cpu" and "wasm"):
// LayerNorm (with the residual add before it), activations, causal attention, cross-entropy
// with its gradient, the embedding, a matmul with bias, and the AdamW update of every parameter
// at once, each forward and backward a single kernel. The training step built from them
// (fused-step.ts) launches a few dozen kernels where tfjs's autodiff of the same model launched
// hundreds. The arithmetic lives in kernel-math.ts; here it is wired to tfjs's kernel registry.
// On a backend without these kernels (WebGPU, TensorFlow) the model trains through autodiff of
// its composed form instead (fusedKernelsAvailable).
import * as tf from "@tensorflow/tfjs";
import {
  type ActivationKind,
  type AdamWStep,
  type AttentionShape,
  activationBackward,
  activationForward,
  adamwUpdate,
  attentionBackward,
  attentionForward,
  crossEntropy,
  embeddingBackward,
  embeddingForward,
  layerNormBackward,
  layerNormForward,
} from "./kernel-math.js";

/** The registered kernel names. */
export const FUSED_KERNELS = {
  embedding: "FedtrainEmbedding",
  embeddingGrad: "FedtrainEmbeddingGrad",
  layerNorm: "FedtrainLayerNorm",
  layerNormGrad: "FedtrainLayerNormGrad",
  activation: "FedtrainActivation",
  activationGrad: "FedtrainActivationGrad",
  attention: "FedtrainAttention",
  attentionGrad: "FedtrainAttentionGrad",
  crossEntropy: "FedtrainCrossEntropy",
  linear: "FedtrainLinear",
  matMul: "FedtrainMatMul",
  adamw: "FedtrainAdamW",
} as const;

/** The tfjs backends whose tensors live in host memory, for which the kernels are registered. */
const HOST_BACKENDS = ["cpu", "wasm"] as const;

/** What a host backend offers a kernel: synchronous reads and new outputs from host arrays. */
interface HostBackend {
  readSync(dataId: tf.TensorInfo["dataId"]): unknown;
  /** WASM: a new tensor in the heap, filled from `values`. */
  makeOutput?(
    shape: number[],
    dtype: tf.DataType,
    memoryOffset?: number,
    values?: Float32Array,
  ): tf.TensorInfo;
  /** Plain JS: a new tensor holding `values`. */
  makeTensorInfo?(shape: number[], dtype: tf.DataType, values?: Float32Array): tf.TensorInfo;
}

type Inputs = Record<string, tf.TensorInfo | undefined>;
type HostKernel = (
  inputs: Inputs,
  attrs: Record<string, unknown>,
  io: HostIo,
) => tf.TensorInfo | tf.TensorInfo[];

/** Reads inputs as typed arrays and makes outputs, on either host backend. */
class HostIo {
  constructor(readonly backend: HostBackend) {}

  floats(inputs: Inputs, name: string): Float32Array {
    return this.values(inputs, name, "float32") as Float32Array;
  }

  ints(inputs: Inputs, name: string): Int32Array {
    return this.values(inputs, name, "int32") as Int32Array;
  }

  optionalFloats(inputs: Inputs, name: string): Float32Array | null {
    return inputs[name] ? this.floats(inputs, name) : null;
  }

  output(shape: number[], values: Float32Array): tf.TensorInfo {
    const backend = this.backend;
    // Plain JS also has a makeOutput, with other arguments: ask for makeTensorInfo first.
    if (backend.makeTensorInfo) return backend.makeTensorInfo(shape, "float32", values);
    if (backend.makeOutput) return backend.makeOutput(shape, "float32", undefined, values);
    throw new Error("the backend cannot make tensors from host arrays");
  }

  private values(inputs: Inputs, name: string, dtype: tf.DataType): unknown {
    const info = inputs[name];
    if (!info) throw new TypeError(`kernel input ${name} is missing`);
    if (info.dtype !== dtype) throw new TypeError(`kernel input ${name} is ${info.dtype}`);
    return this.backend.readSync(info.dataId);
  }
}

const width = (info: tf.TensorInfo | undefined): number => info?.shape.at(-1) ?? 0;

const kernels: Record<string, HostKernel> = {
  [FUSED_KERNELS.embedding]: (inputs, attrs, io) => {
    const d = width(inputs.tokens);
    const ids = io.ints(inputs, "ids");
    const x = embeddingForward(
      ids,
      io.floats(inputs, "tokens"),
      io.floats(inputs, "positions"),
      d,
      attrs.length as number,
    );
    return io.output([ids.length, d], x);
  },
  [FUSED_KERNELS.embeddingGrad]: (inputs, attrs, io) => {
    const d = width(inputs.dx);
    const positionRows = attrs.positionRows as number;
    const [dTokens, dPositions] = embeddingBackward(
      io.ints(inputs, "ids"),
      io.floats(inputs, "dx"),
      io.floats(inputs, "tokenGradient"),
      positionRows,
      d,
      attrs.length as number,
    );
    return [
      io.output(inputs.tokenGradient!.shape, dTokens),
      io.output([positionRows, d], dPositions),
    ];
  },
  [FUSED_KERNELS.layerNorm]: (inputs, _attrs, io) => {
    const shape = inputs.x!.shape;
    const result = layerNormForward(
      io.floats(inputs, "x"),
      io.optionalFloats(inputs, "residual"),
      io.floats(inputs, "gain"),
      io.floats(inputs, "bias"),
      width(inputs.x),
    );
    const rows = [result.mean.length];
    const outputs = [
      io.output(shape, result.y),
      io.output(rows, result.mean),
      io.output(rows, result.rstd),
    ];
    return result.sum ? [...outputs, io.output(shape, result.sum)] : outputs;
  },
  [FUSED_KERNELS.layerNormGrad]: (inputs, _attrs, io) => {
    const d = width(inputs.input);
    const [dx, dGain, dBias] = layerNormBackward(
      io.floats(inputs, "dy"),
      io.floats(inputs, "input"),
      io.floats(inputs, "gain"),
      io.floats(inputs, "mean"),
      io.floats(inputs, "rstd"),
      io.optionalFloats(inputs, "residualGradient"),
      d,
    );
    return [io.output(inputs.input!.shape, dx), io.output([d], dGain), io.output([d], dBias)];
  },
  [FUSED_KERNELS.activation]: (inputs, attrs, io) =>
    io.output(
      inputs.x!.shape,
      activationForward(attrs.kind as ActivationKind, io.floats(inputs, "x")),
    ),
  [FUSED_KERNELS.activationGrad]: (inputs, attrs, io) =>
    io.output(
      inputs.x!.shape,
      activationBackward(
        attrs.kind as ActivationKind,
        io.floats(inputs, "dy"),
        io.floats(inputs, "x"),
      ),
    ),
  [FUSED_KERNELS.attention]: (inputs, attrs, io) => {
    const shape = attrs as unknown as AttentionShape;
    const [out, probabilities] = attentionForward(io.floats(inputs, "qkv"), shape);
    return [
      io.output([shape.windows * shape.length, shape.width], out),
      io.output([shape.windows, shape.heads, shape.length, shape.length], probabilities),
    ];
  },
  [FUSED_KERNELS.attentionGrad]: (inputs, attrs, io) =>
    io.output(
      inputs.qkv!.shape,
      attentionBackward(
        io.floats(inputs, "dy"),
        io.floats(inputs, "qkv"),
        io.floats(inputs, "probabilities"),
        attrs as unknown as AttentionShape,
      ),
    ),
  [FUSED_KERNELS.crossEntropy]: (inputs, _attrs, io) => {
    const [loss, dLogits] = crossEntropy(
      io.floats(inputs, "logits"),
      io.ints(inputs, "labels"),
      width(inputs.logits),
    );
    return [io.output([], Float32Array.of(loss)), io.output(inputs.logits!.shape, dLogits)];
  },
  [FUSED_KERNELS.adamw]: (inputs, attrs, io) => {
    const decay = attrs.decay as boolean[];
    const firstMoment = Float32Array.from(io.floats(inputs, "firstMoment"));
    const secondMoment = Float32Array.from(io.floats(inputs, "secondMoment"));
    const outputs: tf.TensorInfo[] = [];
    let offset = 0;
    decay.forEach((decays, i) => {
      const parameters = Float32Array.from(io.floats(inputs, `parameter${i}`));
      const end = offset + parameters.length;
      adamwUpdate(
        parameters,
        io.floats(inputs, `gradient${i}`),
        firstMoment.subarray(offset, end),
        secondMoment.subarray(offset, end),
        decays,
        attrs as unknown as AdamWStep,
      );
      outputs.push(io.output(inputs[`parameter${i}`]!.shape, parameters));
      offset = end;
    });
    if (offset !== firstMoment.length) {
      throw new RangeError(`AdamW moments of ${firstMoment.length} for ${offset} parameters`);
    }
    return [...outputs, io.output([offset], firstMoment), io.output([offset], secondMoment)];
  },
};

/**
 * x·W + bias as the backend's own fused matmul (one kernel), which wants rank-3 operands: the
 * rank-2 tensors are handed to it as views of shape [1, rows, columns] of the same data.
 */
function linearKernel(config: {
  inputs: Inputs;
  backend: unknown;
  attrs?: Record<string, unknown>;
}): tf.TensorInfo {
  const { x, weight, bias } = config.inputs;
  const fused = tf.getKernel("_FusedMatMul", tf.getBackend());
  if (!(x && weight && bias && fused)) throw new Error("FedtrainLinear needs x, weight and bias");
  const out = fused.kernelFunc({
    inputs: {
      a: { ...x, shape: [1, ...x.shape] },
      b: { ...weight, shape: [1, ...weight.shape] },
      bias,
    },
    backend: config.backend as tf.KernelBackend,
    attrs: { transposeA: false, transposeB: false, activation: "linear", leakyreluAlpha: 0 },
  }) as tf.TensorInfo;
  return { ...out, shape: [x.shape[0]!, weight.shape[1]!] };
}

/**
 * a·b with either operand transposed, as one kernel. On a GPU a transposed operand is free; tfjs's
 * WASM matmul takes about 12× longer with one than without (200 ms against 17 ms for a
 * [2048, 128]ᵀ·[2048, 512] product on 2 cores), so here the operand is transposed into a scratch
 * copy first (about 2 ms) and multiplied plainly.
 */
function matMulKernel(config: {
  inputs: Inputs;
  backend: unknown;
  attrs?: Record<string, unknown>;
}): tf.TensorInfo {
  const { a, b } = config.inputs;
  const backend = config.backend as tf.KernelBackend;
  const backendName = tf.getBackend();
  const transpose = tf.getKernel("Transpose", backendName);
  const multiply = tf.getKernel("BatchMatMul", backendName);
  if (!(a && b && transpose && multiply)) throw new Error("FedtrainMatMul needs a and b");
  const scratch: tf.TensorInfo[] = [];
  const operand = (x: tf.TensorInfo, transposed: unknown): tf.TensorInfo => {
    if (!transposed) return x;
    const t = transpose.kernelFunc({ inputs: { x }, backend, attrs: { perm: [1, 0] } });
    scratch.push(t as tf.TensorInfo);
    return t as tf.TensorInfo;
  };
  const out = multiply.kernelFunc({
    inputs: { a: operand(a, config.attrs?.transposeA), b: operand(b, config.attrs?.transposeB) },
    backend,
    attrs: { transposeA: false, transposeB: false },
  }) as tf.TensorInfo;
  for (const info of scratch) backend.disposeData(info.dataId);
  return out;
}

for (const backendName of HOST_BACKENDS) {
  for (const [kernelName, kernel] of Object.entries(kernels)) {
    if (tf.getKernel(kernelName, backendName)) continue;
    tf.registerKernel({
      kernelName,
      backendName,
      kernelFunc: ({ inputs, attrs, backend }) =>
        kernel(
          inputs as Inputs,
          (attrs ?? {}) as Record<string, unknown>,
          new HostIo(backend as HostBackend),
        ),
    });
  }
  for (const [kernelName, kernelFunc] of [
    [FUSED_KERNELS.linear, linearKernel],
    [FUSED_KERNELS.matMul, matMulKernel],
  ] as const) {
    if (!tf.getKernel(kernelName, backendName)) {
      tf.registerKernel({ kernelName, backendName, kernelFunc: kernelFunc as tf.KernelFunc });
    }
  }
}

/** Whether the current backend has the fused kernels (else the model trains through autodiff). */
export function fusedKernelsAvailable(): boolean {
  const backend = tf.getBackend();
  return Object.values(FUSED_KERNELS).every((name) => tf.getKernel(name, backend) !== undefined);
}

const run = (
  name: string,
  inputs: Record<string, tf.Tensor>,
  attrs: Record<string, unknown> = {},
): tf.Tensor[] => {
  const out = tf.engine().runKernel(name, inputs, attrs as tf.NamedAttrMap);
  return Array.isArray(out) ? out : [out];
};

/** Token plus position embedding of `ids` (windows of `length`, row-major): [rows, d]. */
export function embedding(
  ids: tf.Tensor1D,
  tokens: tf.Tensor,
  positions: tf.Tensor,
  length: number,
): tf.Tensor2D {
  return run(FUSED_KERNELS.embedding, { ids, tokens, positions }, { length })[0] as tf.Tensor2D;
}

/** The embedding's gradients [dTokens, dPositions]; `tokenGradient` is added to dTokens. */
export function embeddingGrad(
  ids: tf.Tensor1D,
  dx: tf.Tensor,
  tokenGradient: tf.Tensor,
  positionRows: number,
  length: number,
): [tf.Tensor2D, tf.Tensor2D] {
  return run(FUSED_KERNELS.embeddingGrad, { ids, dx, tokenGradient }, { positionRows, length }) as [
    tf.Tensor2D,
    tf.Tensor2D,
  ];
}

/** LayerNorm's outputs and what its backward pass keeps. */
export interface LayerNormResult {
  y: tf.Tensor2D;
  /** The LayerNorm's input: x, or x + residual. */
  input: tf.Tensor2D;
  mean: tf.Tensor1D;
  rstd: tf.Tensor1D;
}

/** LayerNorm of x (of x + residual when given) over its last axis. */
export function layerNorm(
  x: tf.Tensor2D,
  gain: tf.Tensor,
  bias: tf.Tensor,
  residual?: tf.Tensor2D,
): LayerNormResult {
  const inputs: Record<string, tf.Tensor> = { x, gain, bias };
  if (residual) inputs.residual = residual;
  const [y, mean, rstd, sum] = run(FUSED_KERNELS.layerNorm, inputs);
  return {
    y: y as tf.Tensor2D,
    input: (sum ?? x) as tf.Tensor2D,
    mean: mean as tf.Tensor1D,
    rstd: rstd as tf.Tensor1D,
  };
}

/** LayerNorm's gradients [dInput (+ residualGradient), dGain, dBias]. */
export function layerNormGrad(
  dy: tf.Tensor2D,
  saved: LayerNormResult,
  gain: tf.Tensor,
  residualGradient?: tf.Tensor2D,
): [tf.Tensor2D, tf.Tensor1D, tf.Tensor1D] {
  const inputs: Record<string, tf.Tensor> = {
    dy,
    input: saved.input,
    gain,
    mean: saved.mean,
    rstd: saved.rstd,
  };
  if (residualGradient) inputs.residualGradient = residualGradient;
  return run(FUSED_KERNELS.layerNormGrad, inputs) as [tf.Tensor2D, tf.Tensor1D, tf.Tensor1D];
}

/** An elementwise activation. */
export function activation(kind: ActivationKind, x: tf.Tensor2D): tf.Tensor2D {
  return run(FUSED_KERNELS.activation, { x }, { kind })[0] as tf.Tensor2D;
}

/** The activation's input gradient from its output gradient dy and its input x. */
export function activationGrad(kind: ActivationKind, dy: tf.Tensor2D, x: tf.Tensor2D): tf.Tensor2D {
  return run(FUSED_KERNELS.activationGrad, { dy, x }, { kind })[0] as tf.Tensor2D;
}

/** Causal multi-head attention over packed qkv rows: [output, probabilities]. */
export function attention(qkv: tf.Tensor2D, shape: AttentionShape): [tf.Tensor2D, tf.Tensor4D] {
  return run(FUSED_KERNELS.attention, { qkv }, { ...shape }) as [tf.Tensor2D, tf.Tensor4D];
}

/** Attention's gradient with respect to the packed qkv rows. */
export function attentionGrad(
  dy: tf.Tensor2D,
  qkv: tf.Tensor2D,
  probabilities: tf.Tensor4D,
  shape: AttentionShape,
): tf.Tensor2D {
  return run(
    FUSED_KERNELS.attentionGrad,
    { dy, qkv, probabilities },
    { ...shape },
  )[0] as tf.Tensor2D;
}

/** Mean cross-entropy of logits against integer labels, and its gradient: [loss, dLogits]. */
export function crossEntropyWithGrad(
  logits: tf.Tensor2D,
  labels: tf.Tensor1D,
): [tf.Scalar, tf.Tensor2D] {
  return run(FUSED_KERNELS.crossEntropy, { logits, labels }) as [tf.Scalar, tf.Tensor2D];
}

/** x·W + bias for x [rows, in], W [in, out], bias [out]. */
export function linear(x: tf.Tensor2D, weight: tf.Tensor, bias: tf.Tensor): tf.Tensor2D {
  return run(FUSED_KERNELS.linear, { x, weight, bias })[0] as tf.Tensor2D;
}

/** a·b of rank-2 tensors, either transposed (see matMulKernel). */
export function matMul(
  a: tf.Tensor,
  b: tf.Tensor,
  transposeA = false,
  transposeB = false,
): tf.Tensor2D {
  return run(FUSED_KERNELS.matMul, { a, b }, { transposeA, transposeB })[0] as tf.Tensor2D;
}

/**
 * One AdamW step over every parameter tensor at once: [next parameters…, first moment, second
 * moment]. The moments are flat, in the order of `parameters`.
 */
export function adamwStep(
  parameters: readonly tf.Tensor[],
  gradients: readonly tf.Tensor[],
  firstMoment: tf.Tensor,
  secondMoment: tf.Tensor,
  decay: readonly boolean[],
  step: AdamWStep,
): tf.Tensor[] {
  const inputs: Record<string, tf.Tensor> = { firstMoment, secondMoment };
  parameters.forEach((parameter, i) => {
    inputs[`parameter${i}`] = parameter;
    inputs[`gradient${i}`] = gradients[i]!;
  });
  return run(FUSED_KERNELS.adamw, inputs, { ...step, decay: [...decay] });
}

/**
 * Runs `body` with the fused kernels unregistered for the current backend, so the model trains
 * through tfjs's autodiff as on a backend without them (for tests and the kernels benchmark's
 * baseline), and registers them again afterwards.
 */
export async function withoutFusedKernels<T>(body: () => Promise<T> | T): Promise<T> {
  const backend = tf.getBackend();
  const configs = Object.values(FUSED_KERNELS)
    .map((name) => tf.getKernel(name, backend))
    .filter((config) => config !== undefined);
  for (const config of configs) tf.unregisterKernel(config.kernelName, backend);
  try {
    return await body();
  } finally {
    for (const config of configs) tf.registerKernel(config);
  }
}
