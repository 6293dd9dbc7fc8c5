import assert from "node:assert/strict";
import { test } from "node:test";
import { crc32, inflateSync } from "node:zlib";
import { encodePng } from "./png.js";
import { Raster } from "./raster.js";

/** The chunks of a PNG file, each checked against its CRC. */
function chunks(png: Uint8Array): { type: string; data: Uint8Array }[] {
  const view = new DataView(png.buffer, png.byteOffset, png.byteLength);
  const out: { type: string; data: Uint8Array }[] = [];
  for (let at = 8; at < png.length; ) {
    const length = view.getUint32(at);
    const typeAndData = png.subarray(at + 4, at + 8 + length);
    assert.equal(view.getUint32(at + 8 + length), crc32(typeAndData), "chunk CRC");
    out.push({
      type: String.fromCharCode(...typeAndData.subarray(0, 4)),
      data: typeAndData.subarray(4),
    });
    at += 12 + length;
  }
  return out;
}

test("a PNG holds the signature, an RGB header and the pixels row by row", () => {
  const pixels = Uint8Array.from({ length: 3 * 2 * 3 }, (_, i) => i * 7);
  const png = encodePng(3, 2, pixels);
  assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  const [ihdr, idat, iend, ...rest] = chunks(png);
  assert.deepEqual([ihdr?.type, idat?.type, iend?.type, rest.length], ["IHDR", "IDAT", "IEND", 0]);
  const header = new DataView(ihdr!.data.buffer, ihdr!.data.byteOffset, 13);
  assert.deepEqual(
    [header.getUint32(0), header.getUint32(4), ...ihdr!.data.subarray(8)],
    [3, 2, 8, 2, 0, 0, 0],
  );
  const raw = inflateSync(idat!.data);
  assert.deepEqual([...raw], [0, ...pixels.subarray(0, 9), 0, ...pixels.subarray(9)]);
});

test("encodePng refuses pixels that do not fit the size", () => {
  assert.throws(() => encodePng(2, 2, new Uint8Array(11)), /11 bytes for a 2×2 RGB image/);
});

test("a Raster starts white and encodes what was drawn", () => {
  const image = new Raster(4, 3);
  image.set(1, 2, [10, 20, 30]);
  const raw = inflateSync(chunks(image.png())[1]!.data);
  const row = 1 + 4 * 3;
  assert.deepEqual([...raw.subarray(2 * row + 1 + 3, 2 * row + 1 + 6)], [10, 20, 30]);
  assert.equal(raw.filter((b) => b === 255).length, 4 * 3 * 3 - 3);
});
