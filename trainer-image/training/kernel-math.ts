// The arithmetic of the fused training kernels, on plain typed arrays: what the kernels registered
// for tfjs's host backends (plain JS and WASM; fused-kernels.ts) compute. Activations are row-major
// [rows, width] matrices (rows = windows × positions); sums run in float64 and results are stored
// as float32. Each function matches the composition of tfjs ops that model.ts differentiates
// (fused.test.ts compares values and gradients).

/** LayerNorm's variance floor, as in model.ts. */
export const LAYER_NORM_EPSILON = 1e-5;

/** Token embedding rows plus position rows: x[n] = tokens[ids[n]] + positions[n mod length]. */
export function embeddingForward(
  ids: Int32Array,
  tokens: Float32Array,
  positions: Float32Array,
  width: number,
  length: number,
): Float32Array {
  const x = new Float32Array(ids.length * width);
  const vocabulary = tokens.length / width;
  for (let n = 0; n < ids.length; n++) {
    if (!(ids[n]! >= 0 && ids[n]! < vocabulary)) {
      throw new RangeError(`token id ${ids[n]} at ${n} is outside 0..${vocabulary - 1}`);
    }
    const token = ids[n]! * width;
    const position = (n % length) * width;
    const row = n * width;
    for (let c = 0; c < width; c++) x[row + c] = tokens[token + c]! + positions[position + c]!;
  }
  return x;
}

/**
 * The embedding's gradients: dx rows summed into the token rows they came from (added to
 * `tokenGradient`, the tied output projection's share) and into their positions.
 */
export function embeddingBackward(
  ids: Int32Array,
  dx: Float32Array,
  tokenGradient: Float32Array,
  positionRows: number,
  width: number,
  length: number,
): [Float32Array, Float32Array] {
  const dTokens = Float64Array.from(tokenGradient);
  const dPositions = new Float64Array(positionRows * width);
  for (let n = 0; n < ids.length; n++) {
    const token = ids[n]! * width;
    const position = (n % length) * width;
    const row = n * width;
    for (let c = 0; c < width; c++) {
      const g = dx[row + c]!;
      dTokens[token + c]! += g;
      dPositions[position + c]! += g;
    }
  }
  return [Float32Array.from(dTokens), Float32Array.from(dPositions)];
}

/** LayerNorm's forward results: the output and, per row, the mean and 1/√(variance + ε). */
export interface LayerNormForward {
  /** x + residual when a residual was given (the LayerNorm's input), else null. */
  sum: Float32Array | null;
  y: Float32Array;
  mean: Float32Array;
  rstd: Float32Array;
}

/** LayerNorm over the last axis of (x + residual), with gain and bias. */
export function layerNormForward(
  x: Float32Array,
  residual: Float32Array | null,
  gain: Float32Array,
  bias: Float32Array,
  width: number,
): LayerNormForward {
  const rows = x.length / width;
  const sum = residual ? new Float32Array(x.length) : null;
  if (sum && residual) for (let i = 0; i < x.length; i++) sum[i] = x[i]! + residual[i]!;
  const input = sum ?? x;
  const y = new Float32Array(x.length);
  const mean = new Float32Array(rows);
  const rstd = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    const row = r * width;
    let total = 0;
    for (let c = 0; c < width; c++) total += input[row + c]!;
    const mu = total / width;
    let squares = 0;
    for (let c = 0; c < width; c++) {
      const centred = input[row + c]! - mu;
      squares += centred * centred;
    }
    const s = 1 / Math.sqrt(squares / width + LAYER_NORM_EPSILON);
    mean[r] = mu;
    rstd[r] = s;
    for (let c = 0; c < width; c++) y[row + c] = (input[row + c]! - mu) * s * gain[c]! + bias[c]!;
  }
  return { sum, y, mean, rstd };
}

/**
 * LayerNorm's gradients from dy: [dx, dGain, dBias], where dx also carries `residualGradient`
 * (the gradient that reaches the LayerNorm's input along the residual path) when given.
 */
export function layerNormBackward(
  dy: Float32Array,
  input: Float32Array,
  gain: Float32Array,
  mean: Float32Array,
  rstd: Float32Array,
  residualGradient: Float32Array | null,
  width: number,
): [Float32Array, Float32Array, Float32Array] {
  const rows = input.length / width;
  const dx = new Float32Array(input.length);
  const dGain = new Float64Array(width);
  const dBias = new Float64Array(width);
  const xHat = new Float64Array(width);
  const dxHat = new Float64Array(width);
  for (let r = 0; r < rows; r++) {
    const row = r * width;
    const mu = mean[r]!;
    const s = rstd[r]!;
    let meanDxHat = 0;
    let meanDxHatXHat = 0;
    for (let c = 0; c < width; c++) {
      const g = dy[row + c]!;
      const normed = (input[row + c]! - mu) * s;
      xHat[c] = normed;
      dxHat[c] = g * gain[c]!;
      dGain[c]! += g * normed;
      dBias[c]! += g;
      meanDxHat += dxHat[c]!;
      meanDxHatXHat += dxHat[c]! * normed;
    }
    meanDxHat /= width;
    meanDxHatXHat /= width;
    for (let c = 0; c < width; c++) {
      const through = s * (dxHat[c]! - meanDxHat - xHat[c]! * meanDxHatXHat);
      dx[row + c] = residualGradient ? through + residualGradient[row + c]! : through;
    }
  }
  return [dx, Float32Array.from(dGain), Float32Array.from(dBias)];
}

/** The hidden-layer activations the models use. */
export type ActivationKind = "ReLU" | "GELU" | "Tanh";

const GELU_SCALE = Math.sqrt(2 / Math.PI);
const GELU_CUBIC = 0.044715;

/** An activation applied elementwise (GELU in its tanh approximation, as GPT-2). */
export function activationForward(kind: ActivationKind, x: Float32Array): Float32Array {
  const y = new Float32Array(x.length);
  // One loop per kind: a switch inside the loop made the GELU loop 4× slower in V8.
  switch (kind) {
    case "ReLU":
      for (let i = 0; i < x.length; i++) y[i] = Math.max(x[i]!, 0);
      break;
    case "Tanh":
      for (let i = 0; i < x.length; i++) y[i] = Math.tanh(x[i]!);
      break;
    case "GELU":
      for (let i = 0; i < x.length; i++) {
        const v = x[i]!;
        y[i] = 0.5 * v * (1 + Math.tanh(GELU_SCALE * (v + GELU_CUBIC * v * v * v)));
      }
      break;
  }
  return y;
}

/** The activation's gradient with respect to its input `x`, given the output gradient dy. */
export function activationBackward(
  kind: ActivationKind,
  dy: Float32Array,
  x: Float32Array,
): Float32Array {
  const dx = new Float32Array(x.length);
  switch (kind) {
    case "ReLU":
      for (let i = 0; i < x.length; i++) dx[i] = x[i]! > 0 ? dy[i]! : 0;
      break;
    case "Tanh":
      for (let i = 0; i < x.length; i++) {
        const t = Math.tanh(x[i]!);
        dx[i] = dy[i]! * (1 - t * t);
      }
      break;
    case "GELU":
      for (let i = 0; i < x.length; i++) {
        const v = x[i]!;
        const t = Math.tanh(GELU_SCALE * (v + GELU_CUBIC * v * v * v));
        const slope =
          0.5 * (1 + t) + 0.5 * v * (1 - t * t) * GELU_SCALE * (1 + 3 * GELU_CUBIC * v * v);
        dx[i] = dy[i]! * slope;
      }
      break;
  }
  return dx;
}

/** The shape of causal multi-head self-attention over packed [q | k | v] rows. */
export interface AttentionShape {
  windows: number;
  length: number;
  heads: number;
  /** Model width d; each row of qkv holds 3d values. */
  width: number;
}

/**
 * Causal multi-head attention: from qkv rows [q | k | v] (head h in columns h·dₕ…(h+1)·dₕ of each
 * third), softmax(q·kᵀ/√dₕ) over positions ≤ the query's, times v, heads merged back into d
 * columns. Returns the output [rows, d] and the attention probabilities
 * [windows, heads, length, length] (zero above the diagonal), which the backward pass needs.
 */
export function attentionForward(
  qkv: Float32Array,
  shape: AttentionShape,
): [Float32Array, Float32Array] {
  const { windows, length, heads, width } = shape;
  const headWidth = width / heads;
  const scale = 1 / Math.sqrt(headWidth);
  const stride = 3 * width;
  const out = new Float32Array(windows * length * width);
  const probabilities = new Float32Array(windows * heads * length * length);
  const scores = new Float64Array(length);
  const row = new Float64Array(headWidth);
  for (let w = 0; w < windows; w++) {
    for (let h = 0; h < heads; h++) {
      const head = h * headWidth;
      const base = (w * heads + h) * length * length;
      for (let i = 0; i < length; i++) {
        const q = (w * length + i) * stride + head;
        let max = Number.NEGATIVE_INFINITY;
        for (let j = 0; j <= i; j++) {
          const k = (w * length + j) * stride + width + head;
          let dot = 0;
          for (let c = 0; c < headWidth; c++) dot += qkv[q + c]! * qkv[k + c]!;
          scores[j] = dot * scale;
          if (scores[j]! > max) max = scores[j]!;
        }
        let total = 0;
        for (let j = 0; j <= i; j++) {
          scores[j] = Math.exp(scores[j]! - max);
          total += scores[j]!;
        }
        const o = (w * length + i) * width + head;
        row.fill(0);
        for (let j = 0; j <= i; j++) {
          const p = scores[j]! / total;
          probabilities[base + i * length + j] = p;
          const v = (w * length + j) * stride + 2 * width + head;
          for (let c = 0; c < headWidth; c++) row[c]! += p * qkv[v + c]!;
        }
        for (let c = 0; c < headWidth; c++) out[o + c] = row[c]!;
      }
    }
  }
  return [out, probabilities];
}

/** Attention's gradient with respect to the packed qkv rows, given the output gradient dOut. */
export function attentionBackward(
  dOut: Float32Array,
  qkv: Float32Array,
  probabilities: Float32Array,
  shape: AttentionShape,
): Float32Array {
  const { windows, length, heads, width } = shape;
  const headWidth = width / heads;
  const scale = 1 / Math.sqrt(headWidth);
  const stride = 3 * width;
  const dQkv = new Float64Array(qkv.length);
  const dScores = new Float64Array(length);
  for (let w = 0; w < windows; w++) {
    for (let h = 0; h < heads; h++) {
      const head = h * headWidth;
      const base = (w * heads + h) * length * length;
      for (let i = 0; i < length; i++) {
        const o = (w * length + i) * width + head;
        const q = (w * length + i) * stride + head;
        // dP_j = dOut_i · v_j; dV_j += P_ij dOut_i; dS_j = P_ij (dP_j − Σ_k P_ik dP_k).
        let weighted = 0;
        for (let j = 0; j <= i; j++) {
          const p = probabilities[base + i * length + j]!;
          const v = (w * length + j) * stride + 2 * width + head;
          let dp = 0;
          for (let c = 0; c < headWidth; c++) {
            dp += dOut[o + c]! * qkv[v + c]!;
            dQkv[v + c]! += p * dOut[o + c]!;
          }
          dScores[j] = dp;
          weighted += p * dp;
        }
        for (let j = 0; j <= i; j++) {
          const ds = probabilities[base + i * length + j]! * (dScores[j]! - weighted) * scale;
          const k = (w * length + j) * stride + width + head;
          for (let c = 0; c < headWidth; c++) {
            dQkv[q + c]! += ds * qkv[k + c]!;
            dQkv[k + c]! += ds * qkv[q + c]!;
          }
        }
      }
    }
  }
  return Float32Array.from(dQkv);
}

/**
 * Mean softmax cross-entropy of logits [rows, classes] against integer labels, and its gradient
 * with respect to the logits: (softmax − one-hot) / rows.
 */
export function crossEntropy(
  logits: Float32Array,
  labels: Int32Array,
  classes: number,
): [number, Float32Array] {
  const rows = labels.length;
  const dLogits = new Float32Array(logits.length);
  const exps = new Float64Array(classes);
  let total = 0;
  for (let r = 0; r < rows; r++) {
    const row = r * classes;
    let max = Number.NEGATIVE_INFINITY;
    for (let c = 0; c < classes; c++) if (logits[row + c]! > max) max = logits[row + c]!;
    let sum = 0;
    for (let c = 0; c < classes; c++) {
      exps[c] = Math.exp(logits[row + c]! - max);
      sum += exps[c]!;
    }
    const label = labels[r]!;
    if (!(label >= 0 && label < classes)) {
      throw new RangeError(`label ${label} at row ${r} is outside 0..${classes - 1}`);
    }
    total += Math.log(sum) + max - logits[row + label]!;
    for (let c = 0; c < classes; c++) {
      dLogits[row + c] = (exps[c]! / sum - (c === label ? 1 : 0)) / rows;
    }
  }
  return [total / rows, dLogits];
}

/** One AdamW step's constants (the step size already holds the bias corrections). */
export interface AdamWStep {
  beta1: number;
  beta2: number;
  epsilon: number;
  /** lr · √(1 − β₂ᵗ) / (1 − β₁ᵗ). */
  stepSize: number;
  /** lr · weight decay, applied to the parameters whose decay flag is set. */
  decayRate: number;
}

/**
 * AdamW on one parameter block, in place on `next` (a copy of the parameters) and on the block's
 * slices of the moments. Every operation is rounded to float32 in the order the tfjs composition
 * in adamw.ts computes it, so the two agree bit for bit.
 */
export function adamwUpdate(
  next: Float32Array,
  gradient: Float32Array,
  firstMoment: Float32Array,
  secondMoment: Float32Array,
  decay: boolean,
  step: AdamWStep,
): void {
  const f = Math.fround;
  const b1 = f(step.beta1);
  const c1 = f(1 - step.beta1);
  const b2 = f(step.beta2);
  const c2 = f(1 - step.beta2);
  const epsilon = f(step.epsilon);
  const stepSize = f(step.stepSize);
  const decayRate = decay ? f(step.decayRate) : 0;
  for (let i = 0; i < next.length; i++) {
    const g = gradient[i]!;
    const m = f(f(firstMoment[i]! * b1) + f(g * c1));
    const v = f(f(secondMoment[i]! * b2) + f(f(g * g) * c2));
    firstMoment[i] = m;
    secondMoment[i] = v;
    let update = f(f(m / f(f(Math.sqrt(v)) + epsilon)) * stepSize);
    if (step.decayRate > 0) update = f(update + f(next[i]! * decayRate));
    next[i] = f(next[i]! - update);
  }
}
