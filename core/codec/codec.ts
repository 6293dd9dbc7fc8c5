// Encode and decode entry points: dispatch by method, argument checks, exact sizes.
import { accumulateInt8, accumulateNone, encodeInt8, encodeNone } from "./dense.js";
import type { ErrorFeedback } from "./feedback.js";
import { encodedByteLength, readUpdateHeader, validateParams } from "./format.js";
import { accumulateTopK, TopKEncoder } from "./topk.js";
import type { CodecParams, UpdateHeader } from "./types.js";

/**
 * Encodes a worker's pseudo-gradients of one size with fixed parameters, round after round,
 * reusing its scratch memory. Not safe to share between concurrent encodes.
 */
export class UpdateEncoder {
  readonly params: CodecParams;
  readonly elementCount: number;
  /** Exact length of every message this encoder produces. */
  readonly byteLength: number;
  private readonly topK: TopKEncoder | null;

  constructor(params: CodecParams, elementCount: number) {
    validateParams(params, elementCount);
    this.params = { ...params };
    this.elementCount = elementCount;
    this.byteLength = encodedByteLength(params, elementCount);
    this.topK = params.method === "topk" ? new TopKEncoder(params, elementCount) : null;
  }

  /**
   * Encodes `pseudoGradient` (+ the feedback residual when given, which is then updated to what
   * was not sent). Throws CodecError("non-finite-input") on NaN or infinity; the residual is then
   * unspecified and should be reset.
   */
  encode(pseudoGradient: Float32Array, feedback?: ErrorFeedback): Uint8Array {
    if (pseudoGradient.length !== this.elementCount) {
      throw new RangeError(
        `pseudo-gradient has ${pseudoGradient.length} elements, the encoder expects ${this.elementCount}`,
      );
    }
    const residual = feedback?.residual ?? null;
    if (residual !== null && residual.length !== this.elementCount) {
      throw new RangeError(
        `error-feedback residual has ${residual.length} elements, the encoder expects ${this.elementCount}`,
      );
    }
    if (residual !== null && overlaps(residual, pseudoGradient)) {
      throw new RangeError("the residual must not share memory with the pseudo-gradient");
    }
    const params = this.params;
    switch (params.method) {
      case "none":
        return encodeNone(pseudoGradient, residual);
      case "int8":
        return encodeInt8(pseudoGradient, params.chunkSize, residual);
      case "topk":
        return (this.topK as TopKEncoder).encode(pseudoGradient, residual);
    }
  }
}

/** One-off encode; a worker encoding every round should keep an UpdateEncoder instead. */
export function encodeUpdate(
  pseudoGradient: Float32Array,
  params: CodecParams,
  feedback?: ErrorFeedback,
): Uint8Array {
  return new UpdateEncoder(params, pseudoGradient.length).encode(pseudoGradient, feedback);
}

/**
 * Validates `message` as an update for `target.length` elements and adds weight × its decoded
 * values into `target`, so a round's aggregate can be built one update at a time. The message is
 * validated completely before `target` is touched; a malformed one throws CodecError and leaves
 * `target` unchanged. Per element: target[i] ← fround(target[i] + weight · v̂[i]), v̂ the decoded
 * float32 value, evaluated in float64.
 */
export function accumulateUpdate(
  message: Uint8Array,
  target: Float32Array,
  weight = 1,
): UpdateHeader {
  if (!Number.isFinite(weight)) throw new RangeError(`weight ${weight} must be finite`);
  const header = readUpdateHeader(message, target.length);
  switch (header.method) {
    case "none":
      accumulateNone(message, header, target, weight);
      break;
    case "int8":
      accumulateInt8(message, header, target, weight);
      break;
    case "topk":
      accumulateTopK(message, header, target, weight);
      break;
  }
  return header;
}

/** Decodes an update of exactly `expectedElementCount` elements into a new array. */
export function decodeUpdate(message: Uint8Array, expectedElementCount: number): Float32Array {
  // The header is checked before allocating, so the allocation is bounded by what the caller
  // agreed to accept, never by what the message claims.
  readUpdateHeader(message, expectedElementCount);
  const update = new Float32Array(expectedElementCount);
  accumulateUpdate(message, update);
  return update;
}

function overlaps(a: Float32Array, b: Float32Array): boolean {
  return (
    a.buffer === b.buffer &&
    a.byteOffset < b.byteOffset + b.byteLength &&
    b.byteOffset < a.byteOffset + a.byteLength
  );
}
