// Dense methods: `none` (fp32 as is) and `int8` (symmetric, one fp32 scale per chunk).
import { CodecError, nonFiniteInputError } from "./errors.js";
import { allocateMessage, float32At, HEADER_BYTES } from "./format.js";
import type { UpdateHeader } from "./types.js";

const INT8_LEVELS = 127;

/**
 * Whether every float in `values` is finite. Branch-free: an exponent of all ones (infinity, NaN)
 * plus one exponent step carries into bit 31, and OR-ing keeps that bit.
 */
function allFinite(values: Float32Array): boolean {
  const keys = new Uint32Array(values.buffer, values.byteOffset, values.length);
  let carry = 0;
  for (let i = 0; i < keys.length; i++) carry |= (keys[i]! & 0x7f800000) + 0x00800000;
  return carry >= 0;
}

/** `none`: the fp32 values of pseudoGradient + residual; the residual becomes zero. */
export function encodeNone(
  pseudoGradient: Float32Array,
  residual: Float32Array | null,
): Uint8Array {
  const n = pseudoGradient.length;
  const message = allocateMessage("none", n, 0, 0, 0);
  const payload = new Float32Array(message.buffer, HEADER_BYTES, n);
  if (residual === null) {
    payload.set(pseudoGradient);
  } else {
    for (let i = 0; i < n; i++) payload[i] = pseudoGradient[i]! + residual[i]!;
  }
  if (!allFinite(payload)) throw nonFiniteInputError();
  residual?.fill(0);
  return message;
}

/** Validates a `none` payload (every value finite), then target[i] ← fround(target[i] + w·v[i]). */
export function accumulateNone(
  message: Uint8Array,
  header: UpdateHeader,
  target: Float32Array,
  weight: number,
): void {
  const values = float32At(message, HEADER_BYTES, header.elementCount);
  if (!allFinite(values)) {
    throw new CodecError("bad-value", "none update holds NaN or infinity");
  }
  const n = values.length;
  if (weight === 1) {
    for (let i = 0; i < n; i++) target[i] = target[i]! + values[i]!;
  } else {
    for (let i = 0; i < n; i++) target[i] = target[i]! + weight * values[i]!;
  }
}

/**
 * `int8`: per chunk, scale = fround(maxabs / 127) and q = round(v / scale) in [−127, 127] (half up), so the
 * decoded v̂ = fround(q · scale) satisfies |v − v̂| ≤ scale/2 (+ half an ulp of v̂ from storing it
 * as float32). With a residual, v = pseudoGradient + residual and the residual becomes v − v̂.
 */
export function encodeInt8(
  pseudoGradient: Float32Array,
  chunkSize: number,
  residual: Float32Array | null,
): Uint8Array {
  const n = pseudoGradient.length;
  const chunks = Math.ceil(n / chunkSize);
  const message = allocateMessage("int8", n, chunkSize, 0, 0);
  const scales = new Float32Array(message.buffer, HEADER_BYTES, chunks);
  const levels = new Int8Array(message.buffer, HEADER_BYTES + 4 * chunks, n);
  const values = residual ?? pseudoGradient;
  for (let c = 0; c < chunks; c++) {
    const start = c * chunkSize;
    const end = Math.min(n, start + chunkSize);
    let max = 0;
    let finite = true;
    if (residual === null) {
      for (let i = start; i < end; i++) {
        const a = Math.abs(pseudoGradient[i]!);
        // True for a new maximum and for NaN or infinity alike; the rare branch tells them apart.
        if (!(a <= max)) {
          if (!(a <= 3.4028234663852886e38)) finite = false;
          max = a;
        }
      }
    } else {
      for (let i = start; i < end; i++) {
        const v = Math.fround(pseudoGradient[i]! + residual[i]!);
        residual[i] = v;
        const a = Math.abs(v);
        if (!(a <= max)) {
          if (!(a <= 3.4028234663852886e38)) finite = false;
          max = a;
        }
      }
    }
    if (!finite) throw nonFiniteInputError();
    const scale = int8Scale(max);
    scales[c] = scale;
    const inverse = scale > 0 ? 1 / scale : 0;
    for (let i = start; i < end; i++) {
      const v = values[i]!;
      // Round half up. Math.round compiles to a data-dependent branch that mispredicts on real
      // gradients (7× slower here); floor(y + 0.5) is one instruction, and just as deterministic.
      let q = Math.floor(v * inverse + 0.5) | 0;
      if (q > INT8_LEVELS) q = INT8_LEVELS;
      else if (q < -INT8_LEVELS) q = -INT8_LEVELS;
      levels[i] = q;
      if (residual !== null) residual[i] = v - Math.fround(q * scale);
    }
  }
  return message;
}

/**
 * fround(maxabs / 127), nudged down by an ulp in the one case (maxabs near FLT_MAX) where
 * 127 · scale would round to infinity, which decoders reject.
 */
function int8Scale(maxAbs: number): number {
  const scale = Math.fround(maxAbs / INT8_LEVELS);
  if (Number.isFinite(Math.fround(INT8_LEVELS * scale))) return scale;
  const cast = new Float32Array([scale]);
  const castKey = new Uint32Array(cast.buffer);
  castKey[0] = castKey[0]! - 1;
  return cast[0]!;
}

/**
 * Validates an `int8` payload (scales finite and non-negative with a finite top level, no −128
 * level), then target[i] ← fround(target[i] + w · fround(q[i] · scale)).
 */
export function accumulateInt8(
  message: Uint8Array,
  header: UpdateHeader,
  target: Float32Array,
  weight: number,
): void {
  const n = header.elementCount;
  const chunkSize = header.chunkSize;
  const chunks = Math.ceil(n / chunkSize);
  const scales = float32At(message, HEADER_BYTES, chunks);
  for (let c = 0; c < chunks; c++) {
    const scale = scales[c]!;
    if (!(scale >= 0 && Number.isFinite(Math.fround(INT8_LEVELS * scale)))) {
      throw new CodecError(
        "bad-scale",
        `int8 chunk ${c} has scale ${scale}; it must be finite and non-negative`,
      );
    }
  }
  const levels = new Int8Array(message.buffer, message.byteOffset + HEADER_BYTES + 4 * chunks, n);
  for (let i = 0; i < n; i++) {
    if (levels[i] === -128) {
      throw new CodecError("bad-value", `int8 level −128 at element ${i}; levels are ±127`);
    }
  }
  for (let c = 0; c < chunks; c++) {
    const scale = scales[c]!;
    const start = c * chunkSize;
    const end = Math.min(n, start + chunkSize);
    if (weight === 1) {
      for (let i = start; i < end; i++) target[i] = target[i]! + Math.fround(levels[i]! * scale);
    } else {
      for (let i = start; i < end; i++) {
        target[i] = target[i]! + weight * Math.fround(levels[i]! * scale);
      }
    }
  }
}
