import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { test } from "node:test";
import {
  accumulateUpdate,
  type CodecParams,
  decodeUpdate,
  ErrorFeedback,
  encodedByteLength,
  encodeUpdate,
  readUpdateHeader,
  topKCount,
  UpdateEncoder,
} from "./index.js";
import { SeededRandom } from "./seeded-random.js";
import { SAMPLE_SIZE, sampledIndex } from "./topk.js";

const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString("hex");
const digest = (data: Uint8Array | Float32Array): string =>
  createHash("sha256")
    .update(new Uint8Array(data.buffer, data.byteOffset, data.byteLength))
    .digest("hex");
const bitsOf = (a: Float32Array): string =>
  hex(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));

test("golden bytes: each method's layout matches FORMAT.md's worked examples", () => {
  const cases: {
    name: string;
    input: number[];
    params: CodecParams;
    bytes: string;
    decoded: number[];
  }[] = [
    {
      name: "none [1, -2]",
      input: [1, -2],
      params: { method: "none" },
      // header | 1.0f | -2.0f
      bytes: "4654504701000000" + "02000000" + "00000000" + "00000000" + "0000803f" + "000000c0",
      decoded: [1, -2],
    },
    {
      name: "int8 chunk 2 [127, -63.5, -254]",
      input: [127, -63.5, -254],
      params: { method: "int8", chunkSize: 2 },
      // header | scales 1.0f, 2.0f | levels 127, -63 (round half up), -127
      bytes:
        "4654504701010000" + "03000000" + "02000000" + "00000000" + "0000803f00000040" + "7fc181",
      decoded: [127, -63, -254],
    },
    {
      name: "topk k=2 of 8, 2-bit",
      input: [0, 3, 0, 0, -1, 0, 0, 0.5],
      params: { method: "topk", density: 0.25, bits: 2, groupSize: 256 },
      // header | group (offset 1.0f, step 2.0f) | codes 01,10 | low bits 01,00 | high bits 101
      bytes:
        "4654504701020200" +
        "08000000" +
        "00010000" +
        "02000000" +
        "0000803f00000040" +
        "09" +
        "01" +
        "05",
      decoded: [0, 3, 0, 0, -1, 0, 0, 0],
    },
  ];
  for (const c of cases) {
    const message = encodeUpdate(Float32Array.from(c.input), c.params);
    assert.equal(hex(message), c.bytes, c.name);
    assert.deepEqual([...decodeUpdate(message, c.input.length)], c.decoded, c.name);
  }
});

test("encodedByteLength equals the encoded length for every method and awkward sizes", () => {
  const random = new SeededRandom(1);
  const paramsList: CodecParams[] = [
    { method: "none" },
    { method: "int8", chunkSize: 1 },
    { method: "int8", chunkSize: 256 },
    { method: "int8", chunkSize: 4096 },
    { method: "topk", density: 1, bits: 8, groupSize: 1 },
    { method: "topk", density: 0.5, bits: 2, groupSize: 3 },
    { method: "topk", density: 0.03, bits: 4, groupSize: 256 },
    { method: "topk", density: 0.01, bits: 2, groupSize: 256 },
    { method: "topk", density: 0.001, bits: 8, groupSize: 64 },
  ];
  for (const n of [0, 1, 2, 7, 8, 255, 256, 257, 1000, 4097, 70_001]) {
    const pseudoGradient = random.normalArray(n);
    for (const params of paramsList) {
      const message = encodeUpdate(pseudoGradient, params);
      assert.equal(
        message.length,
        encodedByteLength(params, n),
        `${JSON.stringify(params)} n=${n}`,
      );
      assert.equal(readUpdateHeader(message, n).byteLength, message.length);
    }
  }
});

test("topKCount rounds density × n, keeps at least one element and never more than n", () => {
  const cases: [number, number, number][] = [
    [0.01, 0, 0],
    [0.01, 1, 1],
    [0.01, 49, 1],
    [0.01, 250, 3],
    [0.03, 100, 3],
    [0.01, 16_777_216, 167_772],
    [1, 5, 5],
  ];
  for (const [density, n, k] of cases) assert.equal(topKCount(density, n), k, `${density} × ${n}`);
});

test("none round-trips bit for bit, except that −0 decodes as +0", () => {
  const x = new SeededRandom(2).normalArray(1001);
  x[3] = -0;
  x[4] = 1e-45;
  const decoded = decodeUpdate(encodeUpdate(x, { method: "none" }), x.length);
  // Decoding accumulates into zeros, and +0 + −0 = +0.
  const expected = Float32Array.from(x, (v) => v + 0);
  assert.ok(bitsOf(decoded) === bitsOf(expected), "decoded bits differ from the input");
});

test("int8 decodes within scale/2 of the input, scale = maxabs/127 per chunk", () => {
  const random = new SeededRandom(3);
  for (const chunkSize of [1, 7, 256, 4096]) {
    const x = random.normalArray(10_000, 0.01);
    // Chunks with very different scales, and an all-zero chunk.
    for (let i = 0; i < 500; i++) x[i] = x[i]! * 1000;
    x.fill(0, 9000, 9000 + Math.min(chunkSize, 1000));
    const decoded = decodeUpdate(encodeUpdate(x, { method: "int8", chunkSize }), x.length);
    for (let start = 0; start < x.length; start += chunkSize) {
      const end = Math.min(x.length, start + chunkSize);
      let maxAbs = 0;
      for (let i = start; i < end; i++) maxAbs = Math.max(maxAbs, Math.abs(x[i]!));
      const scale = Math.fround(maxAbs / 127);
      for (let i = start; i < end; i++) {
        // scale/2 from rounding to a level, plus half an ulp from storing q·scale as float32.
        const bound = scale / 2 + 2 ** -24 * Math.abs(decoded[i]!) + 2 ** -40 * scale;
        assert.ok(Math.abs(x[i]! - decoded[i]!) <= bound, `chunk ${chunkSize} element ${i}`);
      }
    }
  }
});

/** Positions of the non-zero entries; top-k sends magnitudes ≥ its smallest sent one, never 0 here. */
function nonZeroIndices(a: Float32Array): number[] {
  const out: number[] = [];
  for (let i = 0; i < a.length; i++) if (a[i] !== 0) out.push(i);
  return out;
}

/** Reference top-k by full sort: magnitude descending, lower index first on ties. */
function referenceTopK(x: Float32Array, k: number): number[] {
  const order = Array.from(x.keys()).sort((a, b) => Math.abs(x[b]!) - Math.abs(x[a]!) || a - b);
  return order.slice(0, k).sort((a, b) => a - b);
}

test("topk sends exactly the k largest magnitudes, ties to the lowest index", () => {
  const random = new SeededRandom(4);
  const generators: { name: string; make: (n: number) => Float32Array }[] = [
    { name: "normal", make: (n) => random.normalArray(n) },
    {
      // Few distinct magnitudes: the k-th largest is tied with thousands of others.
      name: "heavy ties",
      make: (n) => Float32Array.from({ length: n }, () => (random.integer(9) - 4) * 0.5 || 0.25),
    },
    {
      // Large values exactly where the encoder samples: the sampled cut is far too high, too few
      // candidates pass, and the exact fallback must take over.
      name: "spikes where the sample looks",
      make: (n) => {
        const x = Float32Array.from({ length: n }, () => random.next());
        if (n >= SAMPLE_SIZE)
          for (let s = 0; s < SAMPLE_SIZE; s++) x[sampledIndex(s, n)] = 10 + random.next();
        return x;
      },
    },
    {
      // Large values on a third of the elements, none of them sampled: the sampled cut is far too
      // low, the candidate buffer fills again and again, and the pass must keep raising its cut.
      name: "spikes where the sample never looks",
      make: (n) => {
        const sampled = new Set<number>();
        if (n >= SAMPLE_SIZE) for (let s = 0; s < SAMPLE_SIZE; s++) sampled.add(sampledIndex(s, n));
        return Float32Array.from({ length: n }, (_, i) =>
          i % 3 === 1 && !sampled.has(i) ? 10 + random.next() : random.next(),
        );
      },
    },
    {
      name: "sorted ramp",
      make: (n) => Float32Array.from({ length: n }, (_, i) => (i % 2 === 0 ? 1 : -1) * (i + 1)),
    },
  ];
  for (const n of [1, 100, 5000, 65_536, 300_000]) {
    for (const { name, make } of generators) {
      const x = make(n);
      for (const density of [0.01, 0.03, 0.2]) {
        const k = topKCount(density, n);
        const params: CodecParams = { method: "topk", density, bits: 4, groupSize: 256 };
        const expected = referenceTopK(x, k);
        const message = encodeUpdate(x, params);
        assert.deepEqual(
          nonZeroIndices(decodeUpdate(message, n)),
          expected,
          `${name} n=${n} ${density}`,
        );
        if (n >= SAMPLE_SIZE) {
          // With a zero residual the same elements must be chosen, through the feedback passes.
          const withFeedback = encodeUpdate(x, params, new ErrorFeedback(n));
          assert.ok(
            Buffer.from(withFeedback).equals(Buffer.from(message)),
            `${name} n=${n} ${density} with feedback`,
          );
        }
      }
    }
  }
});

test("topk values decode within step/2 of the sent value per group", () => {
  const random = new SeededRandom(5);
  for (const bits of [2, 4, 8] as const) {
    const x = random.normalArray(100_000);
    const params: CodecParams = { method: "topk", density: 0.05, bits, groupSize: 100 };
    const decoded = decodeUpdate(encodeUpdate(x, params), x.length);
    const sent = nonZeroIndices(decoded);
    const top = 2 ** (bits - 1) - 1;
    for (let start = 0; start < sent.length; start += 100) {
      const group = sent.slice(start, start + 100);
      const magnitudes = group.map((i) => Math.abs(x[i]!));
      const step = Math.fround((Math.max(...magnitudes) - Math.min(...magnitudes)) / top);
      for (const i of group) {
        assert.equal(Math.sign(decoded[i]!), Math.sign(x[i]!), `sign of ${i}`);
        const bound = step / 2 + 2 ** -23 * Math.abs(decoded[i]!);
        assert.ok(Math.abs(x[i]! - decoded[i]!) <= bound, `bits=${bits} element ${i}`);
      }
    }
  }
});

test("error feedback keeps exactly what was not sent", () => {
  const random = new SeededRandom(6);
  const n = 80_000;
  const paramsList: CodecParams[] = [
    { method: "none" },
    { method: "int8", chunkSize: 256 },
    { method: "topk", density: 0.01, bits: 2, groupSize: 256 },
    { method: "topk", density: 0.03, bits: 4, groupSize: 256 },
    { method: "topk", density: 0.2, bits: 8, groupSize: 17 },
  ];
  for (const params of paramsList) {
    const encoder = new UpdateEncoder(params, n);
    const feedback = new ErrorFeedback(n);
    for (let round = 0; round < 3; round++) {
      const x = random.normalArray(n);
      const before = Float32Array.from(feedback.residual);
      const decoded = decodeUpdate(encoder.encode(x, feedback), n);
      const after = feedback.residual;
      for (let i = 0; i < n; i++) {
        // Definition, bit for bit: new residual = fround(fround(x + old) − decoded).
        const sum = Math.fround(x[i]! + before[i]!);
        assert.equal(
          after[i],
          Math.fround(sum - decoded[i]!),
          `${params.method} round ${round} [${i}]`,
        );
        // Hence decoded + residual = x + old residual up to the two float32 roundings (of the sum
        // and of the difference), each at most half an ulp: 2^-24 relative.
        const exact = x[i]! + before[i]!;
        const bound = 2 ** -24 * (Math.abs(sum) + Math.abs(after[i]!));
        assert.ok(Math.abs(decoded[i]! + after[i]! - exact) <= bound, `${params.method} [${i}]`);
      }
    }
  }
});

test("error feedback delays but never loses: Σ decoded + residual = Σ input, residual bounded", () => {
  const n = 10_000;
  const density = 0.05;
  const x = new SeededRandom(7).normalArray(n);
  const maxInput = x.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  const encoder = new UpdateEncoder({ method: "topk", density, bits: 2, groupSize: 256 }, n);
  const feedback = new ErrorFeedback(n);
  const received = new Float32Array(n);
  const maxResidual = (): number => feedback.residual.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  let residualAt40 = 0;
  const rounds = 100;
  for (let round = 1; round <= rounds; round++) {
    accumulateUpdate(encoder.encode(x, feedback), received);
    if (round === 40) residualAt40 = maxResidual();
  }
  // Telescoping the per-round identity: received + residual = rounds · x, up to one float32
  // rounding per round in `received` and in the residual, each ≤ 2^-24 of the running magnitude.
  const tolerance = rounds * 2 * 2 ** -24 * (rounds * maxInput + maxResidual());
  for (let i = 0; i < n; i++) {
    const drift = Math.abs(received[i]! + feedback.residual[i]! - rounds * x[i]!);
    assert.ok(drift <= tolerance, `element ${i} drifts by ${drift} > ${tolerance}`);
  }
  // Every element is sent once its residual reaches the top k, so the residual levels off (about
  // 16 here, within maxInput / density = 92) instead of growing by x each round.
  assert.ok(maxResidual() <= maxInput / density, `residual ${maxResidual()}`);
  assert.ok(
    maxResidual() <= 1.1 * residualAt40,
    `residual grew from ${residualAt40} to ${maxResidual()}`,
  );
});

test("accumulateUpdate adds weight × update and decodes messages at any byte offset", () => {
  const random = new SeededRandom(8);
  const n = 3001;
  const x = random.normalArray(n);
  for (const params of [
    { method: "none" },
    { method: "int8", chunkSize: 64 },
    { method: "topk", density: 0.1, bits: 8, groupSize: 32 },
  ] satisfies CodecParams[]) {
    const message = encodeUpdate(x, params);
    const decoded = decodeUpdate(message, n);
    // The same message copied to an odd offset in a larger buffer (as a network frame would be).
    const framed = new Uint8Array(message.length + 3);
    framed.set(message, 1);
    const unaligned = framed.subarray(1, 1 + message.length);
    assert.equal(bitsOf(decodeUpdate(unaligned, n)), bitsOf(decoded), params.method);

    const target = Float32Array.from({ length: n }, (_, i) => i);
    accumulateUpdate(unaligned, target, 0.5);
    for (let i = 0; i < n; i++) {
      assert.equal(target[i], Math.fround(i + 0.5 * decoded[i]!), `${params.method} [${i}]`);
    }
  }
});

test("encoding is deterministic: same inputs and residual give identical bytes", () => {
  const n = 100_000;
  for (const params of [
    { method: "int8", chunkSize: 256 },
    { method: "topk", density: 0.01, bits: 4, groupSize: 256 },
  ] satisfies CodecParams[]) {
    const runs = [0, 1].map(() => {
      const random = new SeededRandom(9);
      const encoder = new UpdateEncoder(params, n);
      const feedback = new ErrorFeedback(n);
      const messages = [0, 1, 2].map(() => digest(encoder.encode(random.normalArray(n), feedback)));
      return { messages, residual: digest(feedback.residual) };
    });
    assert.deepEqual(runs[0], runs[1], params.method);
  }
});

test("magnitudes up to FLT_MAX still give decodable updates (the top level stays finite)", () => {
  const flt = 3.4028234663852886e38;
  const x = Float32Array.of(flt, -flt, 1, -1e30, 0, 2, flt / 3, 5);
  for (const params of [
    { method: "int8", chunkSize: 8 },
    { method: "topk", density: 0.5, bits: 8, groupSize: 4 },
  ] satisfies CodecParams[]) {
    // Without the nudge, 127 · fround(FLT_MAX / 127) rounds to infinity and decoding rejects it.
    const decoded = decodeUpdate(encodeUpdate(x, params), x.length);
    assert.ok(decoded.every(Number.isFinite), params.method);
    assert.ok(Math.abs(decoded[0]! - flt) <= flt / 127, params.method);
  }
});

test("NaN or infinity in a pseudo-gradient is refused with CodecError non-finite-input", () => {
  for (const bad of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) {
    for (const n of [10, 100_000]) {
      for (const params of [
        { method: "none" },
        { method: "int8", chunkSize: 256 },
        { method: "topk", density: 0.01, bits: 4, groupSize: 256 },
      ] satisfies CodecParams[]) {
        for (const withFeedback of [false, true]) {
          const x = new SeededRandom(10).normalArray(n);
          x[n - 3] = bad;
          assert.throws(
            () => encodeUpdate(x, params, withFeedback ? new ErrorFeedback(n) : undefined),
            { name: "CodecError", code: "non-finite-input" },
            `${params.method} ${bad} n=${n}`,
          );
        }
      }
    }
  }
});

test("invalid parameters are refused with a RangeError naming the field", () => {
  const cases: [CodecParams, RegExp][] = [
    [{ method: "int8", chunkSize: 0 }, /chunkSize/],
    [{ method: "topk", density: 0, bits: 4, groupSize: 256 }, /density/],
    [{ method: "topk", density: 1.5, bits: 4, groupSize: 256 }, /density/],
    [{ method: "topk", density: 0.1, bits: 3 as 4, groupSize: 256 }, /bits/],
    [{ method: "topk", density: 0.1, bits: 4, groupSize: 0 }, /groupSize/],
    [{ method: "zstd" } as unknown as CodecParams, /unknown compression method/],
  ];
  for (const [params, message] of cases) {
    assert.throws(() => new UpdateEncoder(params, 10), { name: "RangeError", message });
  }
  assert.throws(
    () => new UpdateEncoder({ method: "none" }, 10).encode(new Float32Array(9)),
    RangeError,
  );
});
