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
import { drawAxes, drawLegendEntry, Raster, type Rgb } from "./lib/raster.js";

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
  const area = { left, top, width: plotW, height: plotH };
  const xTicks: [number, string][] = [];
  for (let e = xMin; e <= xMax; e++) xTicks.push([px(e), `1E${e}`]);
  drawAxes(image, area, {
    xTicks,
    yMin,
    yMax,
    py,
    title: "DILOCO: EVAL LOSS VS BYTES SENT PER WORKER (LOG X)",
    xName: "BYTES SENT PER WORKER",
    yName: "EVAL LOSS",
  });
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
    drawLegendEntry(image, area, i, r.method.replace("data-parallel", "DP"), color);
  });
  return image.png();
}
