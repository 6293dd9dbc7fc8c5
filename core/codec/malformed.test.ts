import assert from "node:assert/strict";
import { test } from "node:test";
import {
  accumulateUpdate,
  type CodecErrorCode,
  type CodecParams,
  decodeUpdate,
  encodeUpdate,
} from "./index.js";
import { SeededRandom } from "./seeded-random.js";

/** A copy of `message` with `edit` applied. */
function edited(
  message: Uint8Array,
  edit: (bytes: Uint8Array, view: DataView) => void,
): Uint8Array {
  const bytes = Uint8Array.from(message);
  edit(bytes, new DataView(bytes.buffer));
  return bytes;
}

const none3 = encodeUpdate(Float32Array.of(1, 2, 3), { method: "none" });
const int8x3 = encodeUpdate(Float32Array.of(1, -2, 3), { method: "int8", chunkSize: 2 });
// n = 7, k = 2 (indices 1 and 6), 4-bit values, Elias–Fano l = 1. Layout (FORMAT.md): group at
// 20..27, values at 28, low bits at 29 (index 1 → 1, index 6 → 0: 0b01), high bits at 30
// (positions 0 and 4: 0b10001), 31 bytes in all.
const topk7 = encodeUpdate(Float32Array.of(0, 5, 0, 0, 0, 0, -4), {
  method: "topk",
  density: 0.3,
  bits: 4,
  groupSize: 8,
});

test("the hand-laid top-k message used below has the documented layout", () => {
  assert.equal(topk7.length, 31);
  assert.equal(topk7[29], 0b01);
  assert.equal(topk7[30], 0b10001);
  assert.deepEqual([...decodeUpdate(topk7, 7)], [0, 5, 0, 0, 0, 0, -4]);
});

test("malformed updates are rejected with the CodecError code that names the problem", () => {
  const cases: { name: string; message: Uint8Array; n: number; code: CodecErrorCode }[] = [
    { name: "empty", message: new Uint8Array(0), n: 3, code: "truncated" },
    { name: "header cut short", message: none3.subarray(0, 19), n: 3, code: "truncated" },
    {
      name: "payload cut short",
      message: none3.subarray(0, none3.length - 1),
      n: 3,
      code: "truncated",
    },
    { name: "trailing byte", message: Uint8Array.of(...none3, 0), n: 3, code: "trailing-bytes" },
    {
      name: "wrong magic",
      message: edited(none3, (b) => {
        b[0] = 0x47;
      }),
      n: 3,
      code: "bad-magic",
    },
    {
      name: "future version",
      message: edited(none3, (b) => {
        b[4] = 2;
      }),
      n: 3,
      code: "unsupported-version",
    },
    {
      name: "version zero",
      message: edited(none3, (b) => {
        b[4] = 0;
      }),
      n: 3,
      code: "unsupported-version",
    },
    {
      name: "unknown method",
      message: edited(none3, (b) => {
        b[5] = 3;
      }),
      n: 3,
      code: "unknown-method",
    },
    {
      name: "reserved byte set",
      message: edited(none3, (b) => {
        b[7] = 1;
      }),
      n: 3,
      code: "bad-header",
    },
    {
      name: "none with a chunk size",
      message: edited(none3, (_, v) => v.setUint32(12, 4, true)),
      n: 3,
      code: "bad-header",
    },
    { name: "fewer elements than expected", message: none3, n: 4, code: "element-count-mismatch" },
    {
      name: "huge declared count",
      message: edited(none3, (_, v) => v.setUint32(8, 0xffffffff, true)),
      n: 3,
      code: "element-count-mismatch",
    },
    {
      name: "none NaN value",
      message: edited(none3, (_, v) => v.setFloat32(24, Number.NaN, true)),
      n: 3,
      code: "bad-value",
    },
    {
      name: "none infinite value",
      message: edited(none3, (_, v) => v.setFloat32(20, -Infinity, true)),
      n: 3,
      code: "bad-value",
    },
    {
      name: "int8 chunk size 0",
      message: edited(int8x3, (_, v) => v.setUint32(12, 0, true)),
      n: 3,
      code: "bad-header",
    },
    {
      name: "int8 NaN scale",
      message: edited(int8x3, (_, v) => v.setFloat32(20, Number.NaN, true)),
      n: 3,
      code: "bad-scale",
    },
    {
      name: "int8 negative scale",
      message: edited(int8x3, (_, v) => v.setFloat32(24, -1, true)),
      n: 3,
      code: "bad-scale",
    },
    {
      name: "int8 scale overflowing at level 127",
      message: edited(int8x3, (_, v) => v.setFloat32(20, 3e38, true)),
      n: 3,
      code: "bad-scale",
    },
    {
      name: "int8 level -128",
      message: edited(int8x3, (b) => {
        b[29] = 0x80;
      }),
      n: 3,
      code: "bad-value",
    },
    {
      name: "topk 3-bit values",
      message: edited(topk7, (b) => {
        b[6] = 3;
      }),
      n: 7,
      code: "bad-header",
    },
    {
      name: "topk more sent than elements",
      message: edited(topk7, (_, v) => v.setUint32(16, 8, true)),
      n: 7,
      code: "bad-header",
    },
    {
      name: "topk nothing sent",
      message: edited(topk7, (_, v) => v.setUint32(16, 0, true)),
      n: 7,
      code: "bad-header",
    },
    {
      name: "topk group size 0",
      message: edited(topk7, (_, v) => v.setUint32(12, 0, true)),
      n: 7,
      code: "bad-header",
    },
    {
      name: "topk negative step",
      message: edited(topk7, (_, v) => v.setFloat32(24, -0.5, true)),
      n: 7,
      code: "bad-scale",
    },
    {
      name: "topk infinite offset",
      message: edited(topk7, (_, v) => v.setFloat32(20, Infinity, true)),
      n: 7,
      code: "bad-scale",
    },
    // Index 6 with low bit 1 is index 7, one past the end.
    {
      name: "topk index out of range",
      message: edited(topk7, (b) => {
        b[29] = 0b11;
      }),
      n: 7,
      code: "bad-index",
    },
    // High positions 0 and 1 with low bits 1 and 1: indices 1 and 1.
    {
      name: "topk repeated index",
      message: edited(topk7, (b) => {
        b[29] = 0b11;
        b[30] = 0b11;
      }),
      n: 7,
      code: "bad-index",
    },
    {
      name: "topk index missing",
      message: edited(topk7, (b) => {
        b[30] = 0b1;
      }),
      n: 7,
      code: "bad-index",
    },
    {
      name: "topk extra index",
      message: edited(topk7, (b) => {
        b[30] = 0b10011;
      }),
      n: 7,
      code: "bad-index",
    },
    {
      name: "topk high padding bit set",
      message: edited(topk7, (b) => {
        b[30] = 0b10100001;
      }),
      n: 7,
      code: "bad-index",
    },
    {
      name: "topk low padding bit set",
      message: edited(topk7, (b) => {
        b[29] = 0b101;
      }),
      n: 7,
      code: "non-canonical",
    },
  ];
  for (const { name, message, n, code } of cases) {
    assert.throws(() => decodeUpdate(message, n), { name: "CodecError", code }, name);
  }
});

test("a malformed update leaves the accumulation target untouched", () => {
  const target = Float32Array.of(1, 1, 1, 1, 1, 1, 1);
  const bad = edited(topk7, (b) => {
    b[29] = 0b11;
  });
  assert.throws(() => accumulateUpdate(bad, target), { name: "CodecError" });
  assert.deepEqual([...target], [1, 1, 1, 1, 1, 1, 1]);
});

test("fuzz: 10,000 mutated updates either decode to finite values or throw CodecError", () => {
  const random = new SeededRandom(20_240_611);
  const paramsList: CodecParams[] = [
    { method: "none" },
    { method: "int8", chunkSize: 16 },
    { method: "topk", density: 0.1, bits: 2, groupSize: 8 },
    { method: "topk", density: 0.1, bits: 4, groupSize: 8 },
    { method: "topk", density: 0.3, bits: 8, groupSize: 3 },
    { method: "topk", density: 1, bits: 8, groupSize: 1 },
  ];
  const bases: { message: Uint8Array; n: number }[] = [];
  for (const n of [0, 1, 7, 64, 300]) {
    for (const params of paramsList) {
      bases.push({ message: encodeUpdate(random.normalArray(n), params), n });
    }
  }
  const edgeWords = [0, 1, 2, 7, 8, 64, 300, 0x7fffffff, 0x80000000, 0xffffffff];
  let decoded = 0;
  let rejected = 0;
  for (let trial = 0; trial < 10_000; trial++) {
    const { message, n } = bases[random.integer(bases.length)]!;
    let mutant: Uint8Array;
    const kind = random.integer(4);
    if (kind === 0) {
      mutant = Uint8Array.from(message);
      const flips = 1 + random.integer(4);
      for (let f = 0; f < flips && mutant.length > 0; f++) {
        // Half the flips hit the header, where a single bit changes the meaning of everything.
        const at =
          random.next() < 0.5
            ? random.integer(Math.min(20, mutant.length))
            : random.integer(mutant.length);
        mutant[at] = mutant[at]! ^ (1 << random.integer(8));
      }
    } else if (kind === 1) {
      mutant = message.slice(0, random.integer(message.length));
    } else if (kind === 2) {
      const extra = Uint8Array.from({ length: 1 + random.integer(8) }, () => random.integer(256));
      mutant = Uint8Array.of(...message, ...extra);
    } else {
      mutant = Uint8Array.from(message);
      if (mutant.length >= 4) {
        const at = random.integer(mutant.length - 3);
        new DataView(mutant.buffer).setUint32(
          at,
          edgeWords[random.integer(edgeWords.length)]!,
          true,
        );
      }
    }
    try {
      const update = decodeUpdate(mutant, n);
      assert.equal(update.length, n);
      for (const v of update) assert.ok(Number.isFinite(v), `trial ${trial} decoded ${v}`);
      decoded++;
    } catch (error) {
      if (!(error instanceof Error && error.name === "CodecError")) {
        assert.fail(`trial ${trial} threw ${String(error)} instead of CodecError`);
      }
      rejected++;
    }
  }
  // Both outcomes must occur, or the mutations are not reaching the decoder's checks.
  console.log(`fuzz: decoded ${decoded}, rejected ${rejected}`);
  assert.ok(decoded > 100 && rejected > 5000, `decoded ${decoded}, rejected ${rejected}`);
});
