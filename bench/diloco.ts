// `npm run bench -- diloco [--quick] [--backend WASM|JS|CPU|WebGPU|CUDA|Auto]`: eval loss against
// bytes sent for the CharTransformer LM on Arithmetic text with 4 in-process workers, the same
// number of training samples for every method: per-step synchronous fp32 gradient averaging (the
// data-parallel baseline), DiLoCo with H ∈ {10, 50, 100} in fp32, DiLoCo + int8, and DiLoCo +
// top-k with 4- and 2-bit values and error feedback. Writes bench/results/diloco.json (through
// run.ts) and a plot, bench/results/diloco.png. Sized to run in a few minutes on 2 CPU cores with
// WASM: the model is the preset's architecture, scaled down.
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { deflateSync } from "node:zlib";
import type { CodecParams, OuterOptimizerConfig } from "../core/codec/index.js";
import type { AdamWConfig } from "../trainer-image/src/adamw.js";
import { type BackendChoice, initBackend } from "../trainer-image/src/backend.js";
import { arithmetic, BatchSampler, evaluationBatches } from "../trainer-image/src/data.js";
import type { TransformerDefinition } from "../trainer-image/src/model.js";
import {
  type CurvePoint,
  type SimulationResult,
  simulateDataParallel,
  simulateDiLoCo,
} from "../trainer-image/src/simulate.js";

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");

/** One method of the comparison. */
interface Method {
  name: string;
  /** Inner steps per round; 1 with `dataParallel`. */
  innerSteps: number;
  codec: CodecParams;
  outer: OuterOptimizerConfig;
  dataParallel?: boolean;
}

/** One row of bench/results/diloco.json. */
interface RunResult {
  method: string;
  innerSteps: number;
  codec: CodecParams;
  outer: OuterOptimizerConfig;
  bytesPerWorker: number;
  /** Baseline bytes ÷ these bytes. */
  bytesReduction: number;
  finalEvalLoss: number;
  /** (loss − baseline loss) ÷ baseline loss, in percent. */
  evalLossVsBaselinePercent: number;
  seconds: number;
  curve: CurvePoint[];
}

const NESTEROV: OuterOptimizerConfig = { learningRate: 0.7, momentum: 0.9, nesterov: true };
/**
 * Sparse updates carry only a few percent of the coordinates each round; momentum on top of error
 * feedback overshoots them, so the compressed runs use plain averaging of what was sent (outer SGD
 * with lr 1 and no momentum, as in SparseLoCo).
 */
const PLAIN_AVERAGE: OuterOptimizerConfig = { learningRate: 1, momentum: 0, nesterov: false };

export async function run(args: string[]): Promise<unknown> {
  const quick = args.includes("--quick");
  const backendIndex = args.indexOf("--backend");
  const backendChoice = (backendIndex >= 0 ? args[backendIndex + 1] : "WASM") as BackendChoice;
  const backend = await initBackend(backendChoice);

  const workers = 4;
  const seed = 7;
  const totalSteps = quick ? 40 : 600;
  const batchSize = 16;
  const definition: TransformerDefinition = {
    kind: "transformer",
    vocabularySize: 14,
    layers: 1,
    modelWidth: 32,
    heads: 4,
    contextLength: 16,
    feedForwardMultiplier: 4,
  };
  const inner: AdamWConfig = {
    learningRate: 3e-3,
    weightDecay: 0.01,
    warmupSteps: 20,
    beta1: 0.9,
    beta2: 0.95,
  };
  const dataSpec = { trainExamples: 20000, evalExamples: 400, maxOperand: 99 };
  const shards = Array.from({ length: workers }, (_, workerIndex) =>
    arithmetic(seed, dataSpec, {
      workerIndex,
      workerCount: workers,
      strategy: "IID",
      concentration: 1,
    }),
  );
  const evalBatches = evaluationBatches(shards[0]!.eval, 64, definition.contextLength, 128);
  const samplers = () =>
    shards.map(
      (shard, w) => new BatchSampler(shard.train, batchSize, seed, w, definition.contextLength),
    );

  const h = (steps: number) => (quick ? Math.max(1, Math.round(steps / 10)) : steps);
  const topk = (density: number, bits: 2 | 4): CodecParams => ({
    method: "topk",
    density,
    bits,
    groupSize: 256,
  });
  const methods: Method[] = [
    {
      name: "data-parallel fp32, every step",
      innerSteps: 1,
      codec: { method: "none" },
      outer: NESTEROV,
      dataParallel: true,
    },
    { name: "DiLoCo H=10 fp32", innerSteps: h(10), codec: { method: "none" }, outer: NESTEROV },
    { name: "DiLoCo H=50 fp32", innerSteps: h(50), codec: { method: "none" }, outer: NESTEROV },
    { name: "DiLoCo H=100 fp32", innerSteps: h(100), codec: { method: "none" }, outer: NESTEROV },
    {
      name: "DiLoCo H=50 int8",
      innerSteps: h(50),
      codec: { method: "int8", chunkSize: 256 },
      outer: NESTEROV,
    },
    {
      name: "DiLoCo H=25 top-k 3% 4-bit EF",
      innerSteps: h(25),
      codec: topk(0.03, 4),
      outer: PLAIN_AVERAGE,
    },
    {
      name: "DiLoCo H=25 top-k 3% 2-bit EF",
      innerSteps: h(25),
      codec: topk(0.03, 2),
      outer: PLAIN_AVERAGE,
    },
    {
      name: "DiLoCo H=25 top-k 1% 4-bit EF",
      innerSteps: h(25),
      codec: topk(0.01, 4),
      outer: PLAIN_AVERAGE,
    },
    {
      name: "DiLoCo H=50 top-k 1% 2-bit EF",
      innerSteps: h(50),
      codec: topk(0.01, 2),
      outer: PLAIN_AVERAGE,
    },
  ];

  const started = performance.now();
  const results: RunResult[] = [];
  let baseline: SimulationResult | null = null;
  for (const method of methods) {
    console.log(`\n${method.name}`);
    const evalEvery = Math.max(1, Math.round(totalSteps / 12 / method.innerSteps));
    const onPoint = (point: CurvePoint) =>
      console.log(
        `  step ${String(point.steps).padStart(4)}  bytes ${formatBytes(point.bytesPerWorker).padStart(9)}  eval ${point.evalLoss.toFixed(4)}`,
      );
    const result = method.dataParallel
      ? await simulateDataParallel({
          definition,
          seed,
          samplers: samplers(),
          steps: totalSteps,
          inner,
          evalBatches,
          evalEvery: Math.max(1, Math.round(totalSteps / 12)),
          onPoint,
        })
      : await simulateDiLoCo({
          definition,
          seed,
          samplers: samplers(),
          config: {
            rounds: Math.round(totalSteps / method.innerSteps),
            innerSteps: method.innerSteps,
            inner,
            outer: method.outer,
            codec: method.codec,
            errorFeedback: true,
            aggregation: { kind: "mean" },
            overlap: false,
          },
          evalBatches,
          evalEvery,
          onPoint,
        });
    baseline ??= result;
    results.push({
      method: method.name,
      innerSteps: method.innerSteps,
      codec: method.codec,
      outer: method.outer,
      bytesPerWorker: result.bytesPerWorker,
      bytesReduction: baseline.bytesPerWorker / result.bytesPerWorker,
      finalEvalLoss: result.finalEvalLoss,
      evalLossVsBaselinePercent:
        (100 * (result.finalEvalLoss - baseline.finalEvalLoss)) / baseline.finalEvalLoss,
      seconds: result.seconds,
      curve: result.curve,
    });
  }

  printTable(results);
  const accepted = results.filter(
    (r) => r.bytesReduction >= 1000 && r.evalLossVsBaselinePercent <= 2,
  );
  console.log(
    accepted.length > 0
      ? `\nacceptance met: ${accepted.map((r) => r.method).join("; ")} (≥ 1000× fewer bytes, ≤ 2 % worse eval loss)`
      : "\nacceptance NOT met: no method reaches ≥ 1000× fewer bytes at ≤ 2 % worse eval loss",
  );
  const plotFile = path.join(
    repoRoot,
    "bench",
    "results",
    quick ? "diloco-quick.png" : "diloco.png",
  );
  await writeFile(plotFile, plotPng(results));
  console.log(`wrote ${path.relative(repoRoot, plotFile)}`);
  return {
    baseline: methods[0]!.name,
    acceptance: {
      rule: "bytesReduction >= 1000 and evalLossVsBaselinePercent <= 2",
      met: accepted.length > 0,
      methods: accepted.map((r) => r.method),
    },
    setup: {
      backend: backend.backend,
      device: backend.device,
      quick,
      workers,
      stepsPerWorker: totalSteps,
      batchSizePerWorker: batchSize,
      samplesPerMethod: totalSteps * batchSize * workers,
      model: definition,
      data: { preset: "Arithmetic", ...dataSpec, sharding: "IID" },
      innerOptimizer: inner,
      evalCharacters: evalBatches.reduce((n, b) => n + b.size, 0) * definition.contextLength,
      bytesDefinition:
        "bytes each worker sends: the encoded update per round (DiLoCo), its fp32 gradient per step (data-parallel)",
      seconds: (performance.now() - started) / 1000,
    },
    runs: results,
  };
}

function formatBytes(bytes: number): string {
  if (bytes >= 1e9) return `${(bytes / 1e9).toFixed(2)} GB`;
  if (bytes >= 1e6) return `${(bytes / 1e6).toFixed(2)} MB`;
  if (bytes >= 1e3) return `${(bytes / 1e3).toFixed(1)} kB`;
  return `${bytes} B`;
}

function printTable(results: RunResult[]): void {
  const rows = results.map((r) => [
    r.method,
    formatBytes(r.bytesPerWorker),
    `${r.bytesReduction.toFixed(r.bytesReduction < 10 ? 1 : 0)}×`,
    r.finalEvalLoss.toFixed(4),
    `${r.evalLossVsBaselinePercent >= 0 ? "+" : ""}${r.evalLossVsBaselinePercent.toFixed(2)} %`,
    `${r.seconds.toFixed(0)} s`,
  ]);
  const header = ["method", "bytes/worker", "fewer bytes", "eval loss", "vs baseline", "time"];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) =>
    `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(" | ")} |`;
  console.log(`\n${line(header)}`);
  console.log(
    `|${widths.map((w, i) => (i === 0 ? "-".repeat(w + 2) : `${"-".repeat(w + 1)}:`)).join("|")}|`,
  );
  for (const row of rows) console.log(line(row));
}

// ---- A tiny rasteriser and PNG writer, so the plot needs no native or downloaded packages. ----

type Rgb = readonly [number, number, number];

/** An RGB image with the few drawing operations the plot needs. */
class Raster {
  readonly pixels: Uint8Array;
  constructor(
    readonly width: number,
    readonly height: number,
  ) {
    this.pixels = new Uint8Array(width * height * 3).fill(255);
  }

  set(x: number, y: number, color: Rgb): void {
    const px = Math.round(x);
    const py = Math.round(y);
    if (px < 0 || py < 0 || px >= this.width || py >= this.height) return;
    this.pixels.set(color, (py * this.width + px) * 3);
  }

  rect(x: number, y: number, w: number, h: number, color: Rgb): void {
    for (let j = 0; j < h; j++) for (let i = 0; i < w; i++) this.set(x + i, y + j, color);
  }

  line(x0: number, y0: number, x1: number, y1: number, color: Rgb, thickness = 1): void {
    const steps = Math.max(1, Math.ceil(Math.hypot(x1 - x0, y1 - y0)));
    const r = (thickness - 1) / 2;
    for (let s = 0; s <= steps; s++) {
      const x = x0 + ((x1 - x0) * s) / steps;
      const y = y0 + ((y1 - y0) * s) / steps;
      for (let dy = -r; dy <= r; dy++)
        for (let dx = -r; dx <= r; dx++) this.set(x + dx, y + dy, color);
    }
  }

  disc(cx: number, cy: number, radius: number, color: Rgb): void {
    for (let dy = -radius; dy <= radius; dy++) {
      for (let dx = -radius; dx <= radius; dx++) {
        if (dx * dx + dy * dy <= radius * radius) this.set(cx + dx, cy + dy, color);
      }
    }
  }

  /** Draws text in a 5×7 pixel font (upper case, digits, a little punctuation), `scale`× size. */
  text(x: number, y: number, text: string, color: Rgb, scale = 2): void {
    let cursor = x;
    for (const char of text.toUpperCase()) {
      const columns = FONT[char] ?? FONT["?"]!;
      columns.forEach((bits, column) => {
        for (let row = 0; row < 7; row++) {
          if ((bits >> row) & 1)
            this.rect(cursor + column * scale, y + row * scale, scale, scale, color);
        }
      });
      cursor += 6 * scale;
    }
  }

  /** Width in pixels of `text` drawn at `scale`. */
  static textWidth(text: string, scale = 2): number {
    return text.length * 6 * scale;
  }

  png(): Uint8Array {
    const raw = new Uint8Array((this.width * 3 + 1) * this.height);
    for (let y = 0; y < this.height; y++) {
      raw[y * (this.width * 3 + 1)] = 0;
      raw.set(
        this.pixels.subarray(y * this.width * 3, (y + 1) * this.width * 3),
        y * (this.width * 3 + 1) + 1,
      );
    }
    const header = new Uint8Array(13);
    const view = new DataView(header.buffer);
    view.setUint32(0, this.width);
    view.setUint32(4, this.height);
    header.set([8, 2, 0, 0, 0], 8);
    return concat([
      Uint8Array.of(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a),
      chunk("IHDR", header),
      chunk("IDAT", deflateSync(raw)),
      chunk("IEND", new Uint8Array(0)),
    ]);
  }
}

const CRC_TABLE = Uint32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const byte of bytes) c = CRC_TABLE[(c ^ byte) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** 5×7 glyphs, one byte per column, bit 0 at the top (the classic HD44780-style font). */
const FONT: Record<string, readonly number[]> = {
  " ": [0, 0, 0, 0, 0],
  A: [0x7c, 0x12, 0x11, 0x12, 0x7c],
  B: [0x7f, 0x49, 0x49, 0x49, 0x36],
  C: [0x3e, 0x41, 0x41, 0x41, 0x22],
  D: [0x7f, 0x41, 0x41, 0x22, 0x1c],
  E: [0x7f, 0x49, 0x49, 0x49, 0x41],
  F: [0x7f, 0x09, 0x09, 0x09, 0x01],
  G: [0x3e, 0x41, 0x49, 0x49, 0x7a],
  H: [0x7f, 0x08, 0x08, 0x08, 0x7f],
  I: [0x00, 0x41, 0x7f, 0x41, 0x00],
  J: [0x20, 0x40, 0x41, 0x3f, 0x01],
  K: [0x7f, 0x08, 0x14, 0x22, 0x41],
  L: [0x7f, 0x40, 0x40, 0x40, 0x40],
  M: [0x7f, 0x02, 0x0c, 0x02, 0x7f],
  N: [0x7f, 0x04, 0x08, 0x10, 0x7f],
  O: [0x3e, 0x41, 0x41, 0x41, 0x3e],
  P: [0x7f, 0x09, 0x09, 0x09, 0x06],
  Q: [0x3e, 0x41, 0x51, 0x21, 0x5e],
  R: [0x7f, 0x09, 0x19, 0x29, 0x46],
  S: [0x46, 0x49, 0x49, 0x49, 0x31],
  T: [0x01, 0x01, 0x7f, 0x01, 0x01],
  U: [0x3f, 0x40, 0x40, 0x40, 0x3f],
  V: [0x1f, 0x20, 0x40, 0x20, 0x1f],
  W: [0x3f, 0x40, 0x38, 0x40, 0x3f],
  X: [0x63, 0x14, 0x08, 0x14, 0x63],
  Y: [0x07, 0x08, 0x70, 0x08, 0x07],
  Z: [0x61, 0x51, 0x49, 0x45, 0x43],
  "0": [0x3e, 0x51, 0x49, 0x45, 0x3e],
  "1": [0x00, 0x42, 0x7f, 0x40, 0x00],
  "2": [0x42, 0x61, 0x51, 0x49, 0x46],
  "3": [0x21, 0x41, 0x45, 0x4b, 0x31],
  "4": [0x18, 0x14, 0x12, 0x7f, 0x10],
  "5": [0x27, 0x45, 0x45, 0x45, 0x39],
  "6": [0x3c, 0x4a, 0x49, 0x49, 0x30],
  "7": [0x01, 0x71, 0x09, 0x05, 0x03],
  "8": [0x36, 0x49, 0x49, 0x49, 0x36],
  "9": [0x06, 0x49, 0x49, 0x29, 0x1e],
  ".": [0x00, 0x60, 0x60, 0x00, 0x00],
  ",": [0x00, 0x50, 0x30, 0x00, 0x00],
  ":": [0x00, 0x36, 0x36, 0x00, 0x00],
  "=": [0x14, 0x14, 0x14, 0x14, 0x14],
  "%": [0x23, 0x13, 0x08, 0x64, 0x62],
  "-": [0x08, 0x08, 0x08, 0x08, 0x08],
  "+": [0x08, 0x08, 0x3e, 0x08, 0x08],
  "(": [0x00, 0x1c, 0x22, 0x41, 0x00],
  ")": [0x00, 0x41, 0x22, 0x1c, 0x00],
  "/": [0x20, 0x10, 0x08, 0x04, 0x02],
  "?": [0x02, 0x01, 0x51, 0x09, 0x06],
};

const PALETTE: Rgb[] = [
  [0, 0, 0],
  [31, 119, 180],
  [255, 127, 14],
  [44, 160, 44],
  [214, 39, 40],
  [148, 103, 189],
  [140, 86, 75],
  [227, 119, 194],
  [127, 127, 127],
  [188, 189, 34],
];

/** Eval loss (y) against bytes sent per worker (x, log scale): one curve per method. */
function plotPng(results: RunResult[]): Uint8Array {
  const width = 1200;
  const height = 760;
  const left = 110;
  const right = 420;
  const top = 60;
  const bottom = 90;
  const image = new Raster(width, height);
  const points = results.flatMap((r) => r.curve.filter((p) => p.bytesPerWorker > 0));
  const xs = points.map((p) => Math.log10(p.bytesPerWorker));
  const ys = points.map((p) => p.evalLoss).filter(Number.isFinite);
  const xMin = Math.floor(Math.min(...xs));
  const xMax = Math.ceil(Math.max(...xs));
  const finals = results.map((r) => r.finalEvalLoss).filter(Number.isFinite);
  // Show the region where the runs end, not the early steep descent.
  const yMin = Math.min(...ys) - 0.02;
  const yMax = Math.min(
    Math.max(...ys),
    Math.max(...finals) + 0.4 * (Math.max(...finals) - yMin) + 0.1,
  );
  const plotW = width - left - right;
  const plotH = height - top - bottom;
  const px = (logBytes: number) => left + ((logBytes - xMin) / (xMax - xMin)) * plotW;
  const py = (loss: number) => top + ((yMax - Math.min(loss, yMax)) / (yMax - yMin)) * plotH;
  const grey: Rgb = [220, 220, 220];
  const black: Rgb = [0, 0, 0];
  for (let e = xMin; e <= xMax; e++) {
    image.line(px(e), top, px(e), top + plotH, grey);
    const label = `1E${e}`;
    image.text(px(e) - Raster.textWidth(label) / 2, top + plotH + 10, label, black);
  }
  const yStep = niceStep((yMax - yMin) / 6);
  for (let y = Math.ceil(yMin / yStep) * yStep; y <= yMax; y += yStep) {
    image.line(left, py(y), left + plotW, py(y), grey);
    const label = y.toFixed(yStep < 0.1 ? 2 : 1);
    image.text(left - 10 - Raster.textWidth(label), py(y) - 7, label, black);
  }
  image.line(left, top, left, top + plotH, black, 2);
  image.line(left, top + plotH, left + plotW, top + plotH, black, 2);
  image.text(left, 8, "DILOCO: EVAL LOSS VS BYTES SENT PER WORKER (LOG X)", black, 2);
  image.text(
    left + plotW / 2 - Raster.textWidth("BYTES SENT PER WORKER") / 2,
    height - 40,
    "BYTES SENT PER WORKER",
    black,
  );
  image.text(10, top - 26, "EVAL LOSS", black);
  results.forEach((r, i) => {
    const color = PALETTE[i % PALETTE.length]!;
    const curve = r.curve.filter((p) => p.bytesPerWorker > 0);
    for (let k = 1; k < curve.length; k++) {
      const a = curve[k - 1]!;
      const b = curve[k]!;
      if (a.evalLoss > yMax && b.evalLoss > yMax) continue;
      image.line(
        px(Math.log10(a.bytesPerWorker)),
        py(a.evalLoss),
        px(Math.log10(b.bytesPerWorker)),
        py(b.evalLoss),
        color,
        2,
      );
    }
    const last = curve[curve.length - 1];
    if (last) image.disc(px(Math.log10(last.bytesPerWorker)), py(last.evalLoss), 6, color);
    const ly = top + 10 + i * 28;
    image.disc(width - right + 30, ly + 6, 6, color);
    image.text(width - right + 45, ly, r.method.replace("data-parallel", "DP"), black, 2);
  });
  return image.png();
}

function niceStep(raw: number): number {
  const power = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (m * power >= raw) return m * power;
  return 10 * power;
}
