// The safetensors file format (huggingface/safetensors), written and read by hand: an 8-byte
// little-endian header length N, N bytes of JSON header, then the tensors' bytes. The header maps
// each tensor name to {dtype, shape, data_offsets: [begin, end]} (offsets relative to the end of
// the header) and may hold "__metadata__", a map of strings. The header is padded with spaces to
// a multiple of 8 bytes so that every F32 tensor starts aligned.

/** Element types this writer supports (all the trainer needs). */
export type SafetensorsDtype = "F32" | "U8";

/** One tensor to write: its name, shape and values in row-major order. */
export interface SafetensorsTensor {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  data: Float32Array | Uint8Array;
}

/** One tensor's entry in the header. */
export interface SafetensorsEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

/** A parsed safetensors file: its entries in file order, metadata and the tensors' bytes. */
export interface SafetensorsFile {
  entries: Map<string, SafetensorsEntry>;
  metadata: Record<string, string>;
  /** The byte buffer after the header (data_offsets index into it). */
  data: Uint8Array;
}

/** A file that is not valid safetensors. */
export class SafetensorsError extends Error {
  override name = "SafetensorsError";
}

const METADATA_KEY = "__metadata__";
const BYTES_PER_ELEMENT: Record<SafetensorsDtype, number> = { F32: 4, U8: 1 };

/** Serialises tensors (in the given order) and string metadata into one safetensors file. */
export function writeSafetensors(
  tensors: readonly SafetensorsTensor[],
  metadata: Record<string, string> = {},
): Uint8Array {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header[METADATA_KEY] = metadata;
  let offset = 0;
  for (const tensor of tensors) {
    if (tensor.name === METADATA_KEY || tensor.name in header) {
      throw new SafetensorsError(`duplicate or reserved tensor name ${tensor.name}`);
    }
    const elements = tensor.shape.reduce((a, b) => a * b, 1);
    if (elements !== tensor.data.length) {
      throw new SafetensorsError(
        `tensor ${tensor.name}: shape [${tensor.shape}] holds ${elements} elements, data has ${tensor.data.length}`,
      );
    }
    const bytes = elements * BYTES_PER_ELEMENT[tensor.dtype];
    header[tensor.name] = {
      dtype: tensor.dtype,
      shape: tensor.shape,
      data_offsets: [offset, offset + bytes],
    };
    offset += bytes;
  }
  let json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded !== json.length) {
    const spaced = new Uint8Array(padded).fill(0x20);
    spaced.set(json);
    json = spaced;
  }
  const out = new Uint8Array(8 + json.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  let position = 8 + json.length;
  for (const tensor of tensors) {
    // Typed arrays hold host byte order; safetensors is little-endian, as is every host Node.js
    // supports for this project (x64, arm64).
    const bytes = new Uint8Array(
      tensor.data.buffer,
      tensor.data.byteOffset,
      tensor.data.byteLength,
    );
    out.set(bytes, position);
    position += bytes.length;
  }
  return out;
}

/** Parses a safetensors file, checking that the offsets tile the data exactly. */
export function parseSafetensors(file: Uint8Array): SafetensorsFile {
  if (file.length < 8) throw new SafetensorsError("file is shorter than the 8-byte header length");
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const headerLength = Number(view.getBigUint64(0, true));
  if (8 + headerLength > file.length) {
    throw new SafetensorsError(`header length ${headerLength} runs past the end of the file`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder().decode(file.subarray(8, 8 + headerLength)));
  } catch (error) {
    throw new SafetensorsError("header is not JSON", { cause: error });
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    throw new SafetensorsError("header is not a JSON object");
  }
  const data = file.subarray(8 + headerLength);
  const entries = new Map<string, SafetensorsEntry>();
  let metadata: Record<string, string> = {};
  const spans: [number, number, string][] = [];
  for (const [name, value] of Object.entries(parsed as Record<string, unknown>)) {
    if (name === METADATA_KEY) {
      metadata = value as Record<string, string>;
      continue;
    }
    const entry = value as SafetensorsEntry;
    const [begin, end] = entry.data_offsets ?? [];
    const size = BYTES_PER_ELEMENT[entry.dtype as SafetensorsDtype];
    if (begin === undefined || end === undefined || size === undefined) {
      throw new SafetensorsError(`tensor ${name}: unsupported dtype or missing data_offsets`);
    }
    const elements = entry.shape.reduce((a, b) => a * b, 1);
    if (end - begin !== elements * size) {
      throw new SafetensorsError(`tensor ${name}: offsets [${begin}, ${end}] do not fit its shape`);
    }
    entries.set(name, entry);
    spans.push([begin, end, name]);
  }
  spans.sort((a, b) => a[0] - b[0]);
  let expected = 0;
  for (const [begin, end, name] of spans) {
    if (begin !== expected)
      throw new SafetensorsError(`tensor ${name} does not start at ${expected}`);
    expected = end;
  }
  if (expected !== data.length) {
    throw new SafetensorsError(`tensors cover ${expected} bytes, the file holds ${data.length}`);
  }
  return { entries, metadata, data };
}

/** A copy of one F32 tensor's values. */
export function readF32(file: SafetensorsFile, name: string): Float32Array {
  const entry = file.entries.get(name);
  if (entry?.dtype !== "F32") throw new SafetensorsError(`no F32 tensor ${name}`);
  const [begin, end] = entry.data_offsets;
  const bytes = file.data.slice(begin, end);
  return new Float32Array(bytes.buffer, 0, (end - begin) / 4);
}

/** A copy of one U8 tensor's bytes. */
export function readU8(file: SafetensorsFile, name: string): Uint8Array {
  const entry = file.entries.get(name);
  if (entry?.dtype !== "U8") throw new SafetensorsError(`no U8 tensor ${name}`);
  return file.data.slice(entry.data_offsets[0], entry.data_offsets[1]);
}
