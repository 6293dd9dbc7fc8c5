// The wire format's fixed parts: header layout, method ids and the exact size of every message.
// FORMAT.md is the normative description; this file and it must agree.
import { CodecError } from "./errors.js";
import type { CodecMethod, CodecParams, TopKBits, UpdateHeader } from "./types.js";

/** "FTPG": fedtrain pseudo-gradient. */
export const UPDATE_MAGIC = Uint8Array.of(0x46, 0x54, 0x50, 0x47);
export const FORMAT_VERSION = 1;
export const HEADER_BYTES = 20;
/**
 * Largest element count the format accepts (4 GiB of fp32). Keeping indices below 2^31 lets every
 * index computation use 32-bit integer arithmetic.
 */
export const MAX_ELEMENTS = 2 ** 30;

const METHOD_IDS: Record<CodecMethod, number> = { none: 0, int8: 1, topk: 2 };
const METHODS_BY_ID: readonly CodecMethod[] = ["none", "int8", "topk"];

// The codec reinterprets Float32Array memory as little-endian bytes; every platform Node.js ships
// for today except s390x is little-endian, and there a silent byte swap would corrupt models.
if (new Uint8Array(Uint16Array.of(1).buffer)[0] !== 1) {
  throw new Error("the fedtrain update codec needs a little-endian host");
}

/** Number of elements a top-k update sends: round(density * n), at least 1, at most n. */
export function topKCount(density: number, elementCount: number): number {
  if (elementCount === 0) return 0;
  return Math.min(elementCount, Math.max(1, Math.round(density * elementCount)));
}

/**
 * Elias–Fano split for `k` sorted indices below `n`: each index keeps its `l` low bits verbatim and
 * sends its high part in unary, with l = floor(log2(n / k)) (about 2 + log2(n/k) bits per index).
 */
export function eliasFanoLowBits(sentCount: number, elementCount: number): number {
  let l = 0;
  while (sentCount * 2 ** (l + 1) <= elementCount) l++;
  return l;
}

/** Length in bits of the unary high-part stream. */
export function eliasFanoHighBits(sentCount: number, elementCount: number): number {
  if (sentCount === 0) return 0;
  return sentCount + ((elementCount - 1) >>> eliasFanoLowBits(sentCount, elementCount));
}

/** Byte offsets of the sections of a top-k payload. */
export interface TopKLayout {
  groupsOffset: number;
  valuesOffset: number;
  lowOffset: number;
  highOffset: number;
  end: number;
  lowBits: number;
  highBits: number;
}

export function topKLayout(
  elementCount: number,
  sentCount: number,
  bits: number,
  groupSize: number,
): TopKLayout {
  const lowBits = sentCount === 0 ? 0 : eliasFanoLowBits(sentCount, elementCount);
  const highBits = eliasFanoHighBits(sentCount, elementCount);
  const groupsOffset = HEADER_BYTES;
  const valuesOffset = groupsOffset + 8 * Math.ceil(sentCount / groupSize);
  const lowOffset = valuesOffset + Math.ceil((sentCount * bits) / 8);
  const highOffset = lowOffset + Math.ceil((sentCount * lowBits) / 8);
  const end = highOffset + Math.ceil(highBits / 8);
  return { groupsOffset, valuesOffset, lowOffset, highOffset, end, lowBits, highBits };
}

function byteLengthOf(
  method: CodecMethod,
  elementCount: number,
  chunkSize: number,
  bits: number,
  sentCount: number,
): number {
  switch (method) {
    case "none":
      return HEADER_BYTES + 4 * elementCount;
    case "int8":
      return HEADER_BYTES + 4 * Math.ceil(elementCount / chunkSize) + elementCount;
    case "topk":
      return topKLayout(elementCount, sentCount, bits, chunkSize).end;
  }
}

/** Checks codec parameters from a federation spec; throws RangeError naming the bad field. */
export function validateParams(params: CodecParams, elementCount: number): void {
  if (!Number.isInteger(elementCount) || elementCount < 0 || elementCount > MAX_ELEMENTS) {
    throw new RangeError(
      `element count ${elementCount} must be an integer in [0, ${MAX_ELEMENTS}] to be encodable`,
    );
  }
  switch (params.method) {
    case "none":
      return;
    case "int8":
      if (!Number.isInteger(params.chunkSize) || params.chunkSize < 1) {
        throw new RangeError(`int8 chunkSize ${params.chunkSize} must be a positive integer`);
      }
      if (params.chunkSize > MAX_ELEMENTS) {
        throw new RangeError(`int8 chunkSize ${params.chunkSize} must be at most ${MAX_ELEMENTS}`);
      }
      return;
    case "topk":
      if (!(params.density > 0 && params.density <= 1)) {
        throw new RangeError(`topk density ${params.density} must be in (0, 1]`);
      }
      if (params.bits !== 2 && params.bits !== 4 && params.bits !== 8) {
        throw new RangeError(`topk bits ${String(params.bits)} must be 2, 4 or 8`);
      }
      if (
        !Number.isInteger(params.groupSize) ||
        params.groupSize < 1 ||
        params.groupSize > MAX_ELEMENTS
      ) {
        throw new RangeError(`topk groupSize ${params.groupSize} must be a positive integer`);
      }
      return;
    default:
      throw new RangeError(
        `unknown compression method ${JSON.stringify((params as { method: unknown }).method)}; use none, int8 or topk`,
      );
  }
}

/** Exact length in bytes of an update of `elementCount` elements encoded with `params`. */
export function encodedByteLength(params: CodecParams, elementCount: number): number {
  validateParams(params, elementCount);
  switch (params.method) {
    case "none":
      return byteLengthOf("none", elementCount, 0, 0, 0);
    case "int8":
      return byteLengthOf("int8", elementCount, params.chunkSize, 0, 0);
    case "topk":
      return byteLengthOf(
        "topk",
        elementCount,
        params.groupSize,
        params.bits,
        topKCount(params.density, elementCount),
      );
  }
}

/** Allocates a message of the exact length and writes its header. */
export function allocateMessage(
  method: CodecMethod,
  elementCount: number,
  chunkSize: number,
  bits: number,
  sentCount: number,
): Uint8Array {
  const message = new Uint8Array(byteLengthOf(method, elementCount, chunkSize, bits, sentCount));
  message.set(UPDATE_MAGIC, 0);
  const view = new DataView(message.buffer);
  view.setUint8(4, FORMAT_VERSION);
  view.setUint8(5, METHOD_IDS[method]);
  view.setUint8(6, bits);
  view.setUint8(7, 0);
  view.setUint32(8, elementCount, true);
  view.setUint32(12, chunkSize, true);
  view.setUint32(16, sentCount, true);
  return message;
}

/**
 * The element count an update's header declares (the length of the model it was made for),
 * checked no further than its magic and version: for a reader that must learn the model's size
 * from an update a replica accepted.
 */
export function declaredElementCount(message: Uint8Array): number {
  if (message.length < HEADER_BYTES)
    throw new CodecError("truncated", `update is ${message.length} bytes, shorter than its header`);
  for (let i = 0; i < UPDATE_MAGIC.length; i++)
    if (message[i] !== UPDATE_MAGIC[i])
      throw new CodecError("bad-magic", "not a fedtrain update: magic bytes are not FTPG");
  const view = new DataView(message.buffer, message.byteOffset, message.byteLength);
  if (view.getUint8(4) !== FORMAT_VERSION)
    throw new CodecError("unsupported-version", `update format version ${view.getUint8(4)}`);
  return Math.min(view.getUint32(8, true), MAX_ELEMENTS);
}

/**
 * Reads and validates a header against the element count the caller is prepared to accept, and
 * checks that the message has exactly the length its header implies. Never trusts a declared
 * length: nothing is sized from the message before it matched `expectedElementCount`.
 */
export function readUpdateHeader(message: Uint8Array, expectedElementCount: number): UpdateHeader {
  if (
    !Number.isInteger(expectedElementCount) ||
    expectedElementCount < 0 ||
    expectedElementCount > MAX_ELEMENTS
  ) {
    throw new RangeError(
      `expected element count ${expectedElementCount} must be an integer in [0, ${MAX_ELEMENTS}]`,
    );
  }
  if (message.length < HEADER_BYTES) {
    throw new CodecError(
      "truncated",
      `update is ${message.length} bytes, shorter than the ${HEADER_BYTES}-byte header`,
    );
  }
  for (let i = 0; i < UPDATE_MAGIC.length; i++) {
    if (message[i] !== UPDATE_MAGIC[i]) {
      throw new CodecError("bad-magic", "not a fedtrain update: magic bytes are not FTPG");
    }
  }
  const view = new DataView(message.buffer, message.byteOffset, message.byteLength);
  const version = view.getUint8(4);
  if (version !== FORMAT_VERSION) {
    throw new CodecError(
      "unsupported-version",
      `update format version ${version} is not supported (this build reads version ${FORMAT_VERSION}); upgrade the trainer`,
    );
  }
  const method = METHODS_BY_ID[view.getUint8(5)];
  if (method === undefined) {
    throw new CodecError("unknown-method", `unknown compression method id ${view.getUint8(5)}`);
  }
  const bits = view.getUint8(6);
  const reserved = view.getUint8(7);
  const elementCount = view.getUint32(8, true);
  const chunkSize = view.getUint32(12, true);
  const sentCount = view.getUint32(16, true);
  if (elementCount !== expectedElementCount) {
    throw new CodecError(
      "element-count-mismatch",
      `update declares ${elementCount} elements but the model has ${expectedElementCount}`,
    );
  }
  if (reserved !== 0) throw new CodecError("bad-header", "reserved header byte 7 is not zero");
  switch (method) {
    case "none":
      if (bits !== 0 || chunkSize !== 0 || sentCount !== 0) {
        throw new CodecError("bad-header", "none update must have zero bits, chunk and count");
      }
      break;
    case "int8":
      if (bits !== 0 || sentCount !== 0) {
        throw new CodecError("bad-header", "int8 update must have zero bits and count");
      }
      if (chunkSize < 1 || chunkSize > MAX_ELEMENTS) {
        throw new CodecError("bad-header", `int8 chunk size ${chunkSize} is out of range`);
      }
      break;
    case "topk":
      if (!isTopKBits(bits)) {
        throw new CodecError("bad-header", `topk value width ${bits} is not 2, 4 or 8`);
      }
      if (chunkSize < 1 || chunkSize > MAX_ELEMENTS) {
        throw new CodecError("bad-header", `topk group size ${chunkSize} is out of range`);
      }
      if (sentCount > elementCount || (sentCount === 0 && elementCount > 0)) {
        throw new CodecError(
          "bad-header",
          `topk sends ${sentCount} of ${elementCount} elements; must be 1..${elementCount}`,
        );
      }
      break;
  }
  const byteLength = byteLengthOf(method, elementCount, chunkSize, bits, sentCount);
  if (message.length < byteLength) {
    throw new CodecError(
      "truncated",
      `update is ${message.length} bytes but its header implies ${byteLength}`,
    );
  }
  if (message.length > byteLength) {
    throw new CodecError(
      "trailing-bytes",
      `update is ${message.length} bytes but its header implies ${byteLength}`,
    );
  }
  return { version, method, elementCount, chunkSize, bits, sentCount, byteLength };
}

function isTopKBits(bits: number): bits is TopKBits {
  return bits === 2 || bits === 4 || bits === 8;
}

/**
 * A Float32Array over `count` floats at `offset` in `bytes`: a view when the memory is 4-byte
 * aligned (the usual case for a message in its own buffer), otherwise an aligned copy.
 */
export function float32At(bytes: Uint8Array, offset: number, count: number): Float32Array {
  const start = bytes.byteOffset + offset;
  if (start % 4 === 0) return new Float32Array(bytes.buffer, start, count);
  return new Float32Array(bytes.slice(offset, offset + 4 * count).buffer);
}
