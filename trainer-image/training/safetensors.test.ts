import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  parseSafetensors,
  readF32,
  readU8,
  SafetensorsError,
  writeSafetensors,
} from "./safetensors.js";

/** Bit patterns that a lossy writer would change: -0, NaN payloads, subnormals, infinities. */
function awkwardFloats(): Float32Array {
  const bits = new Uint32Array([
    0x80000000, 0x7fc00001, 0x00000001, 0x7f800000, 0xff800000, 0x3f800000,
  ]);
  return new Float32Array(bits.buffer);
}

describe("safetensors", () => {
  it("writes the documented layout: u64 LE header length, JSON header, aligned data", () => {
    const a = awkwardFloats();
    const b = new Float32Array([1.5, -2.25, 3, 4, 5, 6]);
    const state = new Uint8Array([1, 2, 3]);
    const file = writeSafetensors(
      [
        { name: "dense0/kernel", dtype: "F32", shape: [2, 3], data: a },
        { name: "dense0/bias", dtype: "F32", shape: [6], data: b },
        { name: "outer/state", dtype: "U8", shape: [3], data: state },
      ],
      { format: "test" },
    );
    const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
    const headerLength = Number(view.getBigUint64(0, true));
    assert.equal(headerLength % 8, 0, "header padded to 8 bytes");
    const header = JSON.parse(new TextDecoder().decode(file.subarray(8, 8 + headerLength)));
    assert.deepEqual(header.__metadata__, { format: "test" });
    assert.deepEqual(header["dense0/kernel"], {
      dtype: "F32",
      shape: [2, 3],
      data_offsets: [0, 24],
    });
    assert.deepEqual(header["dense0/bias"].data_offsets, [24, 48]);
    assert.deepEqual(header["outer/state"], { dtype: "U8", shape: [3], data_offsets: [48, 51] });
    assert.equal(file.length, 8 + headerLength + 51);
    // The data bytes are the values' little-endian IEEE 754 bits, unchanged.
    const data = file.subarray(8 + headerLength);
    assert.deepEqual(data.subarray(0, 24), new Uint8Array(a.buffer));
    assert.deepEqual(data.subarray(24, 48), new Uint8Array(b.buffer));

    const parsed = parseSafetensors(file);
    assert.deepEqual([...parsed.entries.keys()], ["dense0/kernel", "dense0/bias", "outer/state"]);
    assert.deepEqual(
      new Uint32Array(readF32(parsed, "dense0/kernel").buffer),
      new Uint32Array(a.buffer),
    );
    assert.deepEqual(readF32(parsed, "dense0/bias"), b);
    assert.deepEqual(readU8(parsed, "outer/state"), state);
  });

  it("writes views of larger buffers from their offset", () => {
    const big = new Float32Array([9, 8, 7, 6, 5]);
    const file = parseSafetensors(
      writeSafetensors([{ name: "w", dtype: "F32", shape: [2], data: big.subarray(2, 4) }]),
    );
    assert.deepEqual(readF32(file, "w"), new Float32Array([7, 6]));
    assert.deepEqual(file.metadata, {});
  });

  const malformed: [string, () => Uint8Array, RegExp][] = [
    ["too short", () => new Uint8Array(4), /shorter than/],
    [
      "header past the end",
      () => {
        const bytes = new Uint8Array(16);
        new DataView(bytes.buffer).setBigUint64(0, 100n, true);
        return bytes;
      },
      /runs past the end/,
    ],
    [
      "offsets that do not tile the data",
      () => {
        const file = writeSafetensors([
          { name: "w", dtype: "F32", shape: [2], data: new Float32Array(2) },
        ]);
        const extra = new Uint8Array(file.length + 4);
        extra.set(file);
        return extra;
      },
      /cover 8 bytes, the file holds 12/,
    ],
  ];
  for (const [name, bytes, message] of malformed) {
    it(`rejects a file with ${name}`, () => {
      assert.throws(
        () => parseSafetensors(bytes()),
        (error: unknown) => {
          assert.ok(error instanceof SafetensorsError);
          assert.match(error.message, message);
          return true;
        },
      );
    });
  }

  it("refuses a shape that does not match the data", () => {
    assert.throws(
      () => writeSafetensors([{ name: "w", dtype: "F32", shape: [3], data: new Float32Array(2) }]),
      /shape \[3\] holds 3 elements, data has 2/,
    );
  });
});
