// Top-k sparsification: the k largest magnitudes of a pseudo-gradient (plus its error-feedback
// residual), values as sign + low-bit magnitude levels, indices Elias–Fano coded.
//
// Encoding reads the input once in the common case: a fixed stratified sample of 16384 elements
// gives a magnitude threshold that almost surely admits slightly more than k candidates, and that
// single pass also folds the input into the residual. Should the candidates overflow their buffer,
// the pass raises its threshold to the k-th largest candidate so far and carries on. An exact radix
// select over the candidates then picks exactly k (ties to the lowest index). Only when the sample
// overestimates the cut (fewer than k candidates) or ties defeat the buffer does the encoder fall
// back to an exact radix select over the whole vector; every path selects the same k elements.
import { CodecError, nonFiniteInputError } from "./errors.js";
import { allocateMessage, float32At, type TopKLayout, topKCount, topKLayout } from "./format.js";
import { HISTOGRAM_BUCKETS, selectLargest } from "./select.js";
import type { TopKParams, UpdateHeader } from "./types.js";

export const SAMPLE_SIZE = 16384;
/** Below this size, or above this density, sampling saves nothing: always select exactly. */
const MIN_SAMPLED_ELEMENTS = 4 * SAMPLE_SIZE;
const MAX_SAMPLED_DENSITY = 1 / 8;
/**
 * Candidate buffer room beyond 2k. The sampled threshold admits ~1.2–1.4 k candidates, so the
 * buffer rarely fills; when it does, compacting it to about k frees about half of it.
 */
const CANDIDATE_SLACK = 4096;
const SIGN_CLEAR = 0x7fffffff;
const EXPONENT_ALL_ONES = 0x7f800000;

/** Reusable scratch for encoding top-k updates of one size; allocated once per worker. */
export class TopKEncoder {
  readonly elementCount: number;
  readonly sentCount: number;
  private readonly bits: number;
  private readonly groupSize: number;
  private readonly sampled: boolean;
  private readonly capacity: number;
  /** Candidate indices, then (compacted in place) the selected ones in ascending order. */
  private readonly indices: Int32Array;
  /** Values at `indices`, kept alongside so later steps read them sequentially. */
  private readonly values: Float32Array;
  /** Bit patterns of `values`: the radix select keys. Also holds the sample's keys. */
  private readonly keys: Uint32Array;
  private readonly histogram = new Uint32Array(HISTOGRAM_BUCKETS);
  /** Converts a threshold between its bit pattern and its float32 value (aliased memory). */
  private readonly thresholdValue = new Float32Array(1);
  private readonly thresholdKey = new Uint32Array(this.thresholdValue.buffer);
  /** The collection threshold after the latest raiseThreshold. */
  private raisedThreshold = 0;
  private readonly cursor: CollectCursor = { count: 0, sawNaN: false };

  constructor(params: TopKParams, elementCount: number) {
    this.elementCount = elementCount;
    this.sentCount = topKCount(params.density, elementCount);
    this.bits = params.bits;
    this.groupSize = params.groupSize;
    this.sampled =
      elementCount >= MIN_SAMPLED_ELEMENTS && this.sentCount <= elementCount * MAX_SAMPLED_DENSITY;
    this.capacity = this.sampled
      ? Math.min(elementCount, 2 * this.sentCount + CANDIDATE_SLACK)
      : this.sentCount;
    this.indices = new Int32Array(this.capacity);
    this.values = new Float32Array(
      this.sampled ? Math.max(this.capacity, SAMPLE_SIZE) : this.capacity,
    );
    this.keys = new Uint32Array(this.values.buffer);
  }

  /**
   * Encodes the top k of `pseudoGradient + residual`. With a residual, it is updated in place to
   * exactly what was not sent: (pseudoGradient + old residual) − decoded(sent), in float32.
   */
  encode(pseudoGradient: Float32Array, residual: Float32Array | null): Uint8Array {
    const n = this.elementCount;
    const k = this.sentCount;
    const message = allocateMessage("topk", n, this.groupSize, this.bits, k);
    if (n === 0) return message;

    let candidates = -1;
    const threshold = this.sampled ? this.sampleThreshold(pseudoGradient, residual) : -1;
    if (threshold >= 0) {
      candidates = this.collectCandidates(pseudoGradient, residual, threshold);
    } else if (residual !== null) {
      addInto(residual, pseudoGradient, 0);
    }
    if (candidates >= k) {
      this.refineCandidates(candidates);
    } else {
      this.selectExactly(residual ?? pseudoGradient);
    }

    const layout = topKLayout(n, k, this.bits, this.groupSize);
    quantiseValues(
      message,
      layout,
      this.indices,
      this.values,
      this.keys,
      k,
      this.bits,
      this.groupSize,
      residual,
    );
    writeIndices(message, layout, this.indices, k);
    return message;
  }

  /**
   * A magnitude that slightly more than k elements reach, read from a fixed stratified sample of the input
   * (plus residual); -1 when the sample cannot give a useful threshold.
   */
  private sampleThreshold(pseudoGradient: Float32Array, residual: Float32Array | null): number {
    const n = this.elementCount;
    const values = this.values;
    for (let s = 0; s < SAMPLE_SIZE; s++) {
      const i = sampledIndex(s, n);
      values[s] = residual === null ? pseudoGradient[i]! : pseudoGradient[i]! + residual[i]!;
    }
    // The sample holds Binomial(SAMPLE_SIZE, k/n) elements at or above the true cut, so aiming
    // four standard deviations above its mean leaves fewer than k candidates (and the exact
    // fallback) with probability ~3e-5, while admitting only ~1.2–1.4 k candidates at 1–3 %.
    const expected = (SAMPLE_SIZE * this.sentCount) / n;
    const rank = Math.ceil(expected + 4 * Math.sqrt(expected) + 8);
    if (rank >= SAMPLE_SIZE) return -1;
    const { key } = selectLargest(this.keys, SAMPLE_SIZE, rank, this.histogram);
    // A zero threshold admits everything and a non-finite one nothing useful: select exactly.
    if (key === 0 || key >= EXPONENT_ALL_ONES) return -1;
    this.thresholdKey[0] = key;
    return this.thresholdValue[0]!;
  }

  /**
   * One pass over the input collecting the candidates |v| ≥ threshold (and, with a residual,
   * folding the input into it). Returns the candidate count, or -1 when the exact fallback must
   * run. Throws on NaN.
   */
  private collectCandidates(
    pseudoGradient: Float32Array,
    residual: Float32Array | null,
    initialThreshold: number,
  ): number {
    const { indices, values, capacity, cursor } = this;
    const n = this.elementCount;
    let threshold = initialThreshold;
    cursor.count = 0;
    cursor.sawNaN = false;
    let i = 0;
    for (;;) {
      i =
        residual === null
          ? collectFrom(pseudoGradient, i, threshold, indices, values, capacity, cursor)
          : foldAndCollectFrom(
              pseudoGradient,
              residual,
              i,
              threshold,
              indices,
              values,
              capacity,
              cursor,
            );
      if (cursor.sawNaN) throw nonFiniteInputError();
      if (i === n) return cursor.count;
      // The buffer was full when element i qualified; i is already folded into the residual.
      const count = this.raiseThreshold(cursor.count);
      if (count < 0) {
        // The exact fallback selects from the residual, so finish folding the input in.
        if (residual !== null) addInto(residual, pseudoGradient, i + 1);
        return -1;
      }
      threshold = this.raisedThreshold;
      const v = residual === null ? pseudoGradient[i]! : residual[i]!;
      cursor.count = count;
      if (!(Math.abs(v) < threshold)) {
        indices[count] = i;
        values[count] = v;
        cursor.count = count + 1;
      }
      i++;
    }
  }

  /**
   * The candidate buffer is full, so the sampled threshold was too low (a sharp peak in the
   * magnitudes near it, or an unlucky sample). The k-th largest collected magnitude is a lower
   * bound of the true cut, so everything below it can go: compact the buffer and continue with
   * that as the threshold. Returns the new count, or -1 when ties leave too little room.
   */
  private raiseThreshold(count: number): number {
    const { indices, values, keys } = this;
    const { key: cut, nonFinite } = selectLargest(keys, count, this.sentCount, this.histogram);
    if (nonFinite) return -1;
    let kept = 0;
    for (let j = 0; j < count; j++) {
      if ((keys[j]! & SIGN_CLEAR) >= cut) {
        indices[kept] = indices[j]!;
        values[kept] = values[j]!;
        kept++;
      }
    }
    if (kept > this.capacity - (this.capacity >> 3)) return -1;
    this.thresholdKey[0] = cut;
    this.raisedThreshold = this.thresholdValue[0]!;
    return kept;
  }

  /** Picks exactly k of the candidates, keeping ascending index order. */
  private refineCandidates(candidates: number): void {
    const { indices, values, keys } = this;
    const selection = selectLargest(keys, candidates, this.sentCount, this.histogram);
    if (selection.nonFinite) throw nonFiniteInputError();
    const cut = selection.key;
    let tiesLeft = selection.ties;
    let kept = 0;
    for (let j = 0; j < candidates; j++) {
      const key = keys[j]! & SIGN_CLEAR;
      if (key > cut || (key === cut && tiesLeft-- > 0)) {
        indices[kept] = indices[j]!;
        values[kept] = values[j]!;
        kept++;
      }
    }
  }

  /** Exact selection over the whole vector: two histogram passes and one collecting pass. */
  private selectExactly(source: Float32Array): void {
    const n = this.elementCount;
    const sourceKeys = new Uint32Array(source.buffer, source.byteOffset, n);
    const selection = selectLargest(sourceKeys, n, this.sentCount, this.histogram);
    if (selection.nonFinite) throw nonFiniteInputError();
    const cut = selection.key;
    let tiesLeft = selection.ties;
    const { indices, values } = this;
    let kept = 0;
    for (let i = 0; i < n; i++) {
      const key = sourceKeys[i]! & SIGN_CLEAR;
      if (key > cut || (key === cut && tiesLeft-- > 0)) {
        indices[kept] = i;
        values[kept] = source[i]!;
        kept++;
      }
    }
  }
}

/**
 * Position of the s-th of SAMPLE_SIZE sampled elements: stratified, one from each of SAMPLE_SIZE
 * equal windows, at an offset fixed by a hash of the window number. A plain stride would alias with
 * the power-of-two periods of weight matrices (one column of a layer, say) and misjudge the cut.
 */
export function sampledIndex(s: number, elementCount: number): number {
  const start = Math.floor((s * elementCount) / SAMPLE_SIZE);
  const width = Math.floor(((s + 1) * elementCount) / SAMPLE_SIZE) - start;
  return start + Math.floor(((Math.imul(s + 1, 0x9e3779b1) >>> 0) / 2 ** 32) * width);
}

function addInto(residual: Float32Array, pseudoGradient: Float32Array, from: number): void {
  for (let i = from; i < residual.length; i++) residual[i] = pseudoGradient[i]! + residual[i]!;
}

/** Where a collecting pass left off: candidates held, and whether it met a NaN. */
interface CollectCursor {
  count: number;
  sawNaN: boolean;
}

// The two collecting loops below are the encoder's hot path. They call nothing: a call inside a
// loop, even on a rare branch, makes V8 reload every typed array's base and length on each
// iteration (the callee could detach them), which cost 1.8× here. When the candidate buffer is
// full they return the index of the element that did not fit, and the caller resumes after it.
// The one comparison `!(|v| < threshold)` is true for candidates and NaN alike, so the common
// path has a single, well-predicted branch.

/** Collects indices and values with |v| ≥ threshold from `from` on; returns where it stopped. */
function collectFrom(
  pseudoGradient: Float32Array,
  from: number,
  threshold: number,
  indices: Int32Array,
  values: Float32Array,
  capacity: number,
  cursor: CollectCursor,
): number {
  let count = cursor.count;
  let sawNaN = false;
  let i = from;
  for (; i < pseudoGradient.length; i++) {
    const v = pseudoGradient[i]!;
    if (!(Math.abs(v) < threshold)) {
      if (Number.isNaN(v)) sawNaN = true;
      else if (count === capacity) break;
      else {
        indices[count] = i;
        values[count] = v;
        count++;
      }
    }
  }
  cursor.count = count;
  cursor.sawNaN = sawNaN;
  return i;
}

/** Like collectFrom on pseudoGradient + residual, storing that sum into the residual. */
function foldAndCollectFrom(
  pseudoGradient: Float32Array,
  residual: Float32Array,
  from: number,
  threshold: number,
  indices: Int32Array,
  values: Float32Array,
  capacity: number,
  cursor: CollectCursor,
): number {
  let count = cursor.count;
  let sawNaN = false;
  let i = from;
  for (; i < pseudoGradient.length; i++) {
    const v = Math.fround(pseudoGradient[i]! + residual[i]!);
    residual[i] = v;
    if (!(Math.abs(v) < threshold)) {
      if (Number.isNaN(v)) sawNaN = true;
      else if (count === capacity) break;
      else {
        indices[count] = i;
        values[count] = v;
        count++;
      }
    }
  }
  cursor.count = count;
  cursor.sawNaN = sawNaN;
  return i;
}

/** Largest magnitude level of a `bits`-wide value (one bit is the sign). */
function topLevel(bits: number): number {
  return (1 << (bits - 1)) - 1;
}

/**
 * Writes each group's (offset, step) and the packed sign + level codes, and with a residual
 * subtracts each decoded value from it. A group's magnitudes span [offset, offset + top·step] with
 * offset = the smallest sent magnitude, so every sent value is within step/2 (+ float32 rounding)
 * of its decoded value: |v − v̂| ≤ (max − min)/(2·top). The decoded value is computed exactly as
 * walkUpdate computes it, so the residual loses what receivers add, bit for bit.
 */
function quantiseValues(
  message: Uint8Array,
  layout: TopKLayout,
  indices: Int32Array,
  values: Float32Array,
  keys: Uint32Array,
  k: number,
  bits: number,
  groupSize: number,
  residual: Float32Array | null,
): void {
  const groups = float32At(message, layout.groupsOffset, 2 * Math.ceil(k / groupSize));
  const top = topLevel(bits);
  const signShift = bits - 1;
  const valuesOffset = layout.valuesOffset;
  for (let start = 0, g = 0; start < k; start += groupSize, g++) {
    const end = Math.min(k, start + groupSize);
    let min = Number.POSITIVE_INFINITY;
    let max = 0;
    for (let j = start; j < end; j++) {
      const a = Math.abs(values[j]!);
      if (a < min) min = a;
      if (a > max) max = a;
    }
    const step = safeStep(min, Math.fround((max - min) / top), top);
    groups[2 * g] = min;
    groups[2 * g + 1] = step;
    const inverse = step > 0 ? 1 / step : 0;
    for (let j = start; j < end; j++) {
      const v = values[j]!;
      // Round half up without Math.round's mispredicted branch (see encodeInt8).
      let level = Math.floor((Math.abs(v) - min) * inverse + 0.5) | 0;
      if (level > top) level = top;
      // The sign bit of v itself, so −0 is sent (and decoded) as −0.
      const sign = keys[j]! >>> 31;
      const bit = j * bits;
      const at = valuesOffset + (bit >>> 3);
      message[at] = message[at]! | (((sign << signShift) | level) << (bit & 7));
      if (residual !== null) {
        // residual[i] holds v; writing v − v̂ from the candidate copy avoids reading it back (a
        // cache miss per sent element, as indices are ~1/density apart).
        const magnitude = Math.fround(min + level * step);
        residual[indices[j]!] = v - (sign === 0 ? magnitude : -magnitude);
      }
    }
  }
}

/**
 * A step whose top level stays finite in float32. Only magnitudes near FLT_MAX need it: rounding
 * the step up by half an ulp could push offset + top·step to infinity, which decoders reject.
 */
function safeStep(offset: number, step: number, top: number): number {
  if (Number.isFinite(Math.fround(offset + top * step))) return step;
  const cast = new Float32Array(1);
  const castKey = new Uint32Array(cast.buffer);
  cast[0] = step;
  while (!Number.isFinite(Math.fround(offset + top * cast[0]!))) castKey[0] = castKey[0]! - 1;
  return cast[0]!;
}

/** Writes the Elias–Fano low bits (fixed width, LSB first) and unary high parts of the indices. */
function writeIndices(
  message: Uint8Array,
  layout: TopKLayout,
  indices: Int32Array,
  k: number,
): void {
  const lowBits = layout.lowBits;
  const lowMask = lowBits === 0 ? 0 : (1 << lowBits) - 1;
  const lowOffset = layout.lowOffset;
  const highOffset = layout.highOffset;
  for (let j = 0; j < k; j++) {
    const index = indices[j]!;
    if (lowBits > 0) {
      const bit = j * lowBits;
      const shift = bit & 7;
      let at = lowOffset + (bit >>> 3);
      let rest = index & lowMask;
      // The first byte may be shared with the previous index; later ones are still zero.
      message[at] = message[at]! | ((rest << shift) & 0xff);
      rest >>>= 8 - shift;
      for (let written = 8 - shift; written < lowBits; written += 8) {
        at++;
        message[at] = rest & 0xff;
        rest >>>= 8;
      }
    }
    const position = (index >>> lowBits) + j;
    const at = highOffset + (position >>> 3);
    message[at] = message[at]! | (1 << (position & 7));
  }
}

/**
 * Validates a top-k payload completely (scales, padding, indices in range and strictly
 * increasing), and only then adds weight × its decoded values into `target`, so a malformed
 * update never leaves the target half-updated.
 */
export function accumulateTopK(
  message: Uint8Array,
  header: UpdateHeader,
  target: Float32Array,
  weight: number,
): void {
  const n = header.elementCount;
  const k = header.sentCount;
  if (k === 0) return;
  const bits = header.bits;
  const groupSize = header.chunkSize;
  const layout = topKLayout(n, k, bits, groupSize);
  const groups = float32At(message, layout.groupsOffset, 2 * Math.ceil(k / groupSize));
  const top = topLevel(bits);
  for (let g = 0; g < groups.length; g += 2) {
    const offset = groups[g]!;
    const step = groups[g + 1]!;
    if (!(offset >= 0 && step >= 0 && Number.isFinite(Math.fround(offset + top * step)))) {
      throw new CodecError(
        "bad-scale",
        `topk group ${g / 2} has offset ${offset} and step ${step}; both must be finite, non-negative and keep every level finite`,
      );
    }
  }
  requireZeroPadding(message, layout.lowOffset, k * bits, "value");
  requireZeroPadding(message, layout.highOffset, k * layout.lowBits, "index");
  walkUpdate(message, layout, n, k, bits, groupSize, null, 0);
  walkUpdate(message, layout, n, k, bits, groupSize, target, weight);
}

/** The bits after the last field of a stream ending at byte `end` must be zero. */
function requireZeroPadding(
  message: Uint8Array,
  end: number,
  usedBits: number,
  stream: string,
): void {
  if (usedBits % 8 === 0) return;
  if (message[end - 1]! >>> (usedBits % 8) !== 0) {
    throw new CodecError("non-canonical", `topk ${stream} stream has non-zero padding bits`);
  }
}

/**
 * Walks the sent elements in index order: decodes each index from the Elias–Fano streams and
 * checks it, and when `target` is given adds weight × the decoded value into target[index].
 * Decoded value of element j: ±fround(offset + level·step) of its group. The accumulation is
 * target[i] ← fround(target[i] + weight·v̂), evaluated in float64; for weight ±1 that is exactly a
 * float32 addition (or subtraction), which is how the encoder updates its residual.
 */
function walkUpdate(
  message: Uint8Array,
  layout: TopKLayout,
  n: number,
  k: number,
  bits: number,
  groupSize: number,
  target: Float32Array | null,
  weight: number,
): void {
  const groups = float32At(message, layout.groupsOffset, 2 * Math.ceil(k / groupSize));
  const lowBits = layout.lowBits;
  const lowMask = lowBits === 0 ? 0 : (1 << lowBits) - 1;
  const lowOffset = layout.lowOffset;
  const highOffset = layout.highOffset;
  const highBits = layout.highBits;
  const highBytes = layout.end - highOffset;
  const valuesOffset = layout.valuesOffset;
  const codeMask = (1 << bits) - 1;
  const top = topLevel(bits);
  const signShift = bits - 1;
  let j = 0;
  let previous = -1;
  let group = 0;
  let inGroup = 0;
  let offset = groups[0]!;
  let step = groups[1]!;
  for (let b = 0; b < highBytes; b++) {
    let byte = message[highOffset + b]!;
    while (byte !== 0) {
      const lowest = byte & -byte;
      byte ^= lowest;
      const position = 8 * b + 31 - Math.clz32(lowest);
      if (j >= k || position >= highBits) {
        throw new CodecError("bad-index", `topk index stream holds more than ${k} indices`);
      }
      let low = 0;
      if (lowBits > 0) {
        const bit = j * lowBits;
        let at = lowOffset + (bit >>> 3);
        let got = 8 - (bit & 7);
        low = message[at]! >>> (bit & 7);
        while (got < lowBits) {
          at++;
          low |= message[at]! << got;
          got += 8;
        }
        low &= lowMask;
      }
      // (position − j) < highBits, and highBits · 2^lowBits < 2n ≤ 2^31: no int32 overflow.
      const index = ((position - j) << lowBits) | low;
      if (index >= n || index <= previous) {
        throw new CodecError(
          "bad-index",
          index >= n
            ? `topk index ${index} is out of range for ${n} elements`
            : `topk indices are not strictly increasing at ${index} (after ${previous})`,
        );
      }
      previous = index;
      if (target !== null) {
        const bit = j * bits;
        const code = (message[valuesOffset + (bit >>> 3)]! >>> (bit & 7)) & codeMask;
        const magnitude = Math.fround(offset + (code & top) * step);
        const value = code >>> signShift === 0 ? magnitude : -magnitude;
        target[index] = target[index]! + weight * value;
      }
      j++;
      if (++inGroup === groupSize && j < k) {
        group++;
        inGroup = 0;
        offset = groups[2 * group]!;
        step = groups[2 * group + 1]!;
      }
    }
  }
  if (j !== k) {
    throw new CodecError("bad-index", `topk index stream holds ${j} indices, header says ${k}`);
  }
}
