// `npm run bench -- diloco [--quick] [--only arithmetic|brown] [--backend WASM|JS|CPU|WebGPU|CUDA|Auto]`:
// eval loss against bytes sent and against samples for a CharTransformer trained by 4 in-process
// workers, every method on the same samples: per-step synchronous fp32 gradient averaging (the
// data-parallel baseline), DiLoCo in fp32 at two values of H, DiLoCo + int8, and DiLoCo + top-k
// with 2- and 4-bit values and error feedback. Arithmetic is sized so that the baseline learns
// (it closes more than a third of the gap between the best loss from the last 3 characters and
// the best loss from the whole window); a smaller BrownCorpus run shows the same on real text.
// Writes bench/results/diloco.json (through run.ts) and bench/results/diloco.png; with --quick,
// out/bench/diloco-quick.json and .png. About 100 minutes on 2 CPU cores with WASM (80 of them
// Arithmetic); the sweep behind the choices is `npm run bench -- diloco-sweep`; docs/training.md
// reads both.
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import type { CodecParams, OuterOptimizerConfig } from "../core/codec/index.js";
import { drawAxes, drawLegendEntry, Raster, type Rgb } from "../plot/index.js";
import { repoRoot } from "../scripts/repository.js";
import type { AdamWConfig } from "../trainer-image/training/adamw.js";
import { type BackendChoice, initBackend } from "../trainer-image/training/backend.js";
import { natsToBits } from "../trainer-image/training/levels.js";
import {
  buildTask,
  formatBytes,
  formatTable,
  type Method,
  type RunResult,
  runMethod,
  type Task,
  type TaskSpec,
} from "./lib/diloco-runs.js";
import { resultFile } from "./lib/output.js";

/** DiLoCo's outer optimiser (Douillard et al., 2023). */
export const NESTEROV: OuterOptimizerConfig = { learningRate: 0.7, momentum: 0.9, nesterov: true };
/**
 * Plain averaging of the workers' progress (outer SGD, lr 1, no momentum). At this scale it
 * beats outer Nesterov at every point the sweep tried (H of 5-25, outer lr 0.4 and 0.7, a slower
 * inner lr; diloco-sweep.json): lr 0.7 with momentum 0.9 moves the model about seven times a
 * steady round's progress, and after a few well-tuned inner steps that overshoots.
 */
export const AVERAGE: OuterOptimizerConfig = { learningRate: 1, momentum: 0, nesterov: false };

/**
 * The inner optimiser of every method. Its learning rate is DiLoCo's best in the sweep; the
 * baseline's own best is 5e-3 (diloco-sweep.json), and docs/training.md reports both gaps.
 */
export const INNER: Omit<AdamWConfig, "totalSteps"> = {
  learningRate: 1e-2,
  weightDecay: 0.01,
  warmupSteps: 50,
  beta1: 0.9,
  beta2: 0.95,
  schedule: "cosine",
  finalLearningRateRatio: 0.1,
};

/** The Arithmetic task: a 2-layer CharTransformer of width 32 on sums and products below 100. */
export function arithmeticTask(quick: boolean): TaskSpec {
  return {
    name: "Arithmetic",
    data: {
      preset: "Arithmetic",
      spec: { trainExamples: 20000, evalExamples: 2000, maxOperand: 99 },
    },
    dataSeed: 7,
    definition: {
      kind: "transformer",
      layers: 2,
      modelWidth: 32,
      heads: 4,
      contextLength: 16,
      feedForwardMultiplier: 4,
    },
    workers: 4,
    batchSize: 16,
    steps: quick ? 100 : 2400,
    // 16,384 characters: a gap of 2 % between two models is then far above the evaluation's noise.
    evalWindows: 1024,
  };
}

/** The BrownCorpus task: character level, a CPU-sized model and budget. */
export function brownTask(quick: boolean): TaskSpec {
  return {
    name: "BrownCorpus",
    data: { preset: "BrownCorpus" },
    dataSeed: 7,
    definition: {
      kind: "transformer",
      layers: 2,
      modelWidth: 48,
      heads: 4,
      contextLength: 32,
      feedForwardMultiplier: 4,
    },
    workers: 4,
    batchSize: 16,
    steps: quick ? 50 : 1200,
    evalWindows: 256,
  };
}

const topk = (density: number, bits: 2 | 4): CodecParams => ({
  method: "topk",
  density,
  bits,
  groupSize: 256,
});

/** A method and the seeds it runs with. */
interface Planned {
  method: Method;
  seeds: number[];
}

const SEEDS = [7, 8];

function arithmeticMethods(quick: boolean): Planned[] {
  const h = (steps: number) => (quick ? Math.max(1, steps / 5) : steps);
  // Named by the H it runs with (--quick divides H by 5).
  const diloco = (name: string, innerSteps: number, codec: CodecParams, outer = AVERAGE) => ({
    name: name.replace(`H=${innerSteps}`, `H=${h(innerSteps)}`),
    innerSteps: h(innerSteps),
    codec,
    outer,
    inner: INNER,
  });
  const none: CodecParams = { method: "none" };
  return [
    {
      method: {
        name: "data-parallel fp32, every step",
        dataParallel: true,
        innerSteps: 1,
        codec: none,
        outer: AVERAGE,
        inner: INNER,
      },
      seeds: SEEDS,
    },
    { method: diloco("DiLoCo H=4 fp32", 4, none), seeds: [7] },
    { method: diloco("DiLoCo H=10 fp32", 10, none), seeds: [7] },
    { method: diloco("DiLoCo H=10 fp32, outer Nesterov", 10, none, NESTEROV), seeds: [7] },
    { method: diloco("DiLoCo H=10 int8", 10, { method: "int8", chunkSize: 256 }), seeds: [7] },
    { method: diloco("DiLoCo H=4 top-k 1% 2-bit EF", 4, topk(0.01, 2)), seeds: SEEDS },
    { method: diloco("DiLoCo H=10 top-k 3% 2-bit EF", 10, topk(0.03, 2)), seeds: [7] },
    { method: diloco("DiLoCo H=10 top-k 3% 4-bit EF", 10, topk(0.03, 4)), seeds: [7] },
    {
      method: {
        ...diloco(
          "DiLoCo H=4 top-k 1% 2-bit EF, rounds start from the global model",
          4,
          topk(0.01, 2),
        ),
        startWithPendingShare: false,
      },
      seeds: [7],
    },
  ];
}

function brownMethods(quick: boolean): Planned[] {
  const h = quick ? 2 : 4;
  return [
    {
      method: {
        name: "data-parallel fp32, every step",
        dataParallel: true,
        innerSteps: 1,
        codec: { method: "none" },
        outer: AVERAGE,
        inner: INNER,
      },
      seeds: [7],
    },
    {
      method: {
        name: `DiLoCo H=${h} top-k 1% 2-bit EF`,
        innerSteps: h,
        codec: topk(0.01, 2),
        outer: AVERAGE,
        inner: INNER,
      },
      seeds: [7],
    },
  ];
}

/** A run beside its same-seed baseline. */
interface ComparedRun extends RunResult {
  /** The same seed's baseline bytes ÷ these bytes. */
  bytesReduction: number;
  /** (loss − same-seed baseline loss) ÷ baseline loss, in percent. */
  evalLossVsBaselinePercent: number;
}

/** The runs of one task, compared with its baseline (the first method) seed by seed. */
async function runTask(task: Task, planned: Planned[]): Promise<ComparedRun[]> {
  const baselines = new Map<number, RunResult>();
  const runs: ComparedRun[] = [];
  for (const { method, seeds } of planned) {
    for (const seed of seeds) {
      console.log(`\n${task.spec.name}: ${method.name}, seed ${seed}`);
      const result = await runMethod(task, method, seed, (point) =>
        console.log(
          `  samples ${String(point.samples).padStart(7)}  bytes ${formatBytes(point.bytesPerWorker).padStart(9)}  eval ${point.evalLoss.toFixed(4)}`,
        ),
      );
      if (!baselines.has(seed)) baselines.set(seed, result);
      const baseline = baselines.get(seed)!;
      runs.push({
        ...result,
        bytesReduction: baseline.bytesPerWorker / result.bytesPerWorker,
        evalLossVsBaselinePercent:
          (100 * (result.finalEvalLoss - baseline.finalEvalLoss)) / baseline.finalEvalLoss,
      });
    }
  }
  return runs;
}

function printRuns(task: Task, runs: ComparedRun[]): void {
  const { levels } = task;
  console.log(
    `\n${task.spec.name}: uniform ${levels.uniformLoss.toFixed(4)}, unigram ${levels.unigramLoss.toFixed(4)}, ` +
      `best from 3 characters ${levels.bestLossFrom3Chars.toFixed(4)}` +
      (levels.bestLoss === undefined ? " (estimate)" : `, best ${levels.bestLoss.toFixed(4)}`) +
      " nats per character",
  );
  console.log(
    formatTable(
      ["method", "seed", "bytes/worker", "fewer bytes", "eval loss", "bits/char", "vs baseline"],
      runs.map((r) => [
        r.method,
        String(r.seed),
        formatBytes(r.bytesPerWorker),
        `${r.bytesReduction.toFixed(r.bytesReduction < 10 ? 1 : 0)}×`,
        r.finalEvalLoss.toFixed(4),
        r.finalEvalBits.toFixed(3),
        `${r.evalLossVsBaselinePercent >= 0 ? "+" : ""}${r.evalLossVsBaselinePercent.toFixed(2)} %`,
      ]),
    ),
  );
}

/**
 * The eval loss below which a model "learned": a third of the way from the best loss from the
 * last 3 characters to the best loss from the whole window (Arithmetic, where both are exact).
 */
function learnedBelow(task: Task): number {
  const { bestLossFrom3Chars, bestLoss } = task.levels;
  return bestLossFrom3Chars - (bestLossFrom3Chars - (bestLoss ?? bestLossFrom3Chars)) / 3;
}

/** What Arithmetic's acceptance rule needs: a baseline that learned, and a method within 2 %. */
function acceptance(task: Task, runs: ComparedRun[]) {
  const threshold = learnedBelow(task);
  const baselines = runs.filter((r) => r.dataParallel);
  const baselineLearned = baselines.every((r) => r.finalEvalLoss < threshold);
  const byMethod = new Map<string, ComparedRun[]>();
  for (const run of runs.filter((r) => !r.dataParallel)) {
    byMethod.set(run.method, [...(byMethod.get(run.method) ?? []), run]);
  }
  const seeds = baselines.map((r) => r.seed);
  const methods = [...byMethod.entries()]
    .filter(
      ([, rs]) =>
        seeds.every((seed) => rs.some((r) => r.seed === seed)) &&
        rs.every((r) => r.bytesReduction >= 1000 && r.evalLossVsBaselinePercent <= 2),
    )
    .map(([name]) => name);
  return {
    rule: "every baseline's finalEvalLoss < learnedBelow, and a method with bytesReduction >= 1000 and evalLossVsBaselinePercent <= 2 on every baseline seed",
    learnedBelow: threshold,
    baselineLearned,
    methods,
    met: baselineLearned && methods.length > 0,
  };
}

export async function run(args: string[]): Promise<unknown> {
  const quick = args.includes("--quick");
  const onlyIndex = args.indexOf("--only");
  const only = onlyIndex >= 0 ? args[onlyIndex + 1] : undefined;
  if (only !== undefined && only !== "arithmetic" && only !== "brown") {
    throw new RangeError(`--only ${only}: expected arithmetic or brown`);
  }
  const backendIndex = args.indexOf("--backend");
  const backendChoice = (backendIndex >= 0 ? args[backendIndex + 1] : "WASM") as BackendChoice;
  const backend = await initBackend(backendChoice);
  const started = performance.now();

  const arithmetic = await buildTask(arithmeticTask(quick));
  const arithmeticRuns =
    only === "brown" ? [] : await runTask(arithmetic, arithmeticMethods(quick));
  if (arithmeticRuns.length > 0) printRuns(arithmetic, arithmeticRuns);
  const arithmeticSeconds = (performance.now() - started) / 1000;
  const brown = only === "arithmetic" ? null : await buildTask(brownTask(quick));
  const brownRuns = brown ? await runTask(brown, brownMethods(quick)) : [];
  if (brown) printRuns(brown, brownRuns);

  const verdict = acceptance(arithmetic, arithmeticRuns);
  console.log(
    `\nbaseline learned (eval loss below ${verdict.learnedBelow.toFixed(4)} on every seed): ${verdict.baselineLearned ? "yes" : "NO"}`,
  );
  console.log(
    verdict.methods.length > 0
      ? `within 2 % of the baseline at ≥ 1000× fewer bytes on every seed: ${verdict.methods.join("; ")}`
      : "no method is within 2 % of the baseline at ≥ 1000× fewer bytes on every seed",
  );
  const plotFile = resultFile("diloco", "png", quick);
  if (arithmeticRuns.length > 0) {
    await mkdir(path.dirname(plotFile), { recursive: true });
    await writeFile(plotFile, plotPng(arithmetic, arithmeticRuns));
    console.log(`wrote ${path.relative(repoRoot, plotFile)}`);
  }
  const { levels } = arithmetic;
  return {
    baseline: arithmeticMethods(quick)[0]!.method.name,
    lossUnit: "nats per character; the *Bits fields are bits per character",
    uniformLoss: levels.uniformLoss,
    unigramLoss: levels.unigramLoss,
    bestLossFrom3Chars: levels.bestLossFrom3Chars,
    bestLoss: levels.bestLoss,
    acceptance: verdict,
    setup: {
      backend: backend.backend,
      device: backend.device,
      quick,
      task: arithmetic.spec,
      model: arithmetic.definition,
      evalCharacters: arithmetic.evalCharacters,
      trainCharacters: arithmetic.trainCharacters,
      samplesPerMethod: arithmetic.spec.steps * arithmetic.spec.workers * arithmetic.spec.batchSize,
      levelsDefinition:
        "on the evaluation windows: uniform = ln V; unigram = training-text character frequencies; bestLossFrom3Chars = the exact best predictor from the last 3 characters of the window; bestLoss = the exact Bayes predictor from everything visible in the window (both from Arithmetic's generator)",
      bytesDefinition:
        "bytes each worker sends: its encoded update per round (DiLoCo), its fp32 gradient per step (data-parallel)",
      seconds: arithmeticSeconds,
    },
    runs: arithmeticRuns,
    brown: brown
      ? {
          setup: {
            task: brown.spec,
            model: brown.definition,
            evalCharacters: brown.evalCharacters,
            trainCharacters: brown.trainCharacters,
            samplesPerMethod: brown.spec.steps * brown.spec.workers * brown.spec.batchSize,
            levelsDefinition:
              "bestLossFrom3Chars is an estimate here: a smoothed 3-character model counted on the training text",
          },
          uniformLoss: brown.levels.uniformLoss,
          unigramLoss: brown.levels.unigramLoss,
          bestLossFrom3Chars: brown.levels.bestLossFrom3Chars,
          uniformBits: natsToBits(brown.levels.uniformLoss),
          unigramBits: natsToBits(brown.levels.unigramLoss),
          bestFrom3CharsBits: natsToBits(brown.levels.bestLossFrom3Chars),
          runs: brownRuns,
        }
      : null,
    seconds: (performance.now() - started) / 1000,
  };
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
const LEVEL_GREY: Rgb = [150, 150, 150];

/**
 * Two panels: eval loss against bytes sent per worker (log x) and against samples, one curve per
 * method (its first seed), with the 3-character level and the "learned" line as grey rules.
 */
function plotPng(task: Task, runs: ComparedRun[]): Uint8Array {
  const shown = runs.filter((r, i) => runs.findIndex((o) => o.method === r.method) === i);
  const panelWidth = 620;
  const legendWidth = 700;
  const width = 2 * panelWidth + legendWidth;
  const height = 760;
  const top = 70;
  const bottom = 90;
  const plotW = panelWidth - 150;
  const plotH = height - top - bottom;
  const image = new Raster(width, height);
  const best3 = task.levels.bestLossFrom3Chars;
  const learned = learnedBelow(task);
  const finals = shown.map((r) => r.finalEvalLoss).filter(Number.isFinite);
  const yMin = Math.min(...finals, learned) - 0.05;
  const yMax = Math.max(best3, ...finals) + 0.25;
  const py = (loss: number) => top + ((yMax - Math.min(loss, yMax)) / (yMax - yMin)) * plotH;

  const panel = (
    left: number,
    title: string,
    xName: string,
    x: (p: ComparedRun["curve"][number]) => number,
    xTicks: (px: (v: number) => number) => [number, string][],
    xMin: number,
    xMax: number,
  ) => {
    const px = (v: number) => left + ((v - xMin) / (xMax - xMin)) * plotW;
    const area = { left, top, width: plotW, height: plotH };
    drawAxes(image, area, { xTicks: xTicks(px), yMin, yMax, py, title, xName, yName: "EVAL LOSS" });
    for (const level of [best3, learned]) {
      for (let dx = 0; dx < plotW; dx += 12) {
        image.line(left + dx, py(level), left + Math.min(plotW, dx + 6), py(level), LEVEL_GREY, 2);
      }
    }
    shown.forEach((r, i) => {
      const color = PALETTE[i % PALETTE.length]!;
      const curve = r.curve.filter((p) => Number.isFinite(x(p)));
      for (let k = 1; k < curve.length; k++) {
        const a = curve[k - 1]!;
        const b = curve[k]!;
        if (a.evalLoss > yMax && b.evalLoss > yMax) continue;
        image.line(px(x(a)), py(a.evalLoss), px(x(b)), py(b.evalLoss), color, 2);
      }
      const last = curve[curve.length - 1];
      if (last) image.disc(px(x(last)), py(last.evalLoss), 6, color);
    });
  };

  const logBytes = shown.flatMap((r) => r.curve.map((p) => Math.log10(p.bytesPerWorker)));
  const bMin = Math.floor(Math.min(...logBytes));
  const bMax = Math.ceil(Math.max(...logBytes));
  panel(
    110,
    "EVAL LOSS VS BYTES SENT (LOG)",
    "BYTES SENT PER WORKER",
    (p) => Math.log10(p.bytesPerWorker),
    (px) => {
      const ticks: [number, string][] = [];
      for (let e = bMin; e <= bMax; e++) ticks.push([px(e), `1E${e}`]);
      return ticks;
    },
    bMin,
    bMax,
  );
  const samples = task.spec.steps * task.spec.workers * task.spec.batchSize;
  panel(
    panelWidth + 110,
    "EVAL LOSS VS SAMPLES",
    "TRAINING SAMPLES",
    (p) => p.samples,
    (px) => [0, 0.25, 0.5, 0.75, 1].map((f) => [px(f * samples), String(Math.round(f * samples))]),
    0,
    samples,
  );
  const legend = { left: 2 * panelWidth - 20, top, width: 0, height: plotH };
  shown.forEach((r, i) => {
    drawLegendEntry(
      image,
      legend,
      i,
      r.method
        .replace("data-parallel", "DP")
        .replace("rounds start from the global model", "from global"),
      PALETTE[i % PALETTE.length]!,
    );
  });
  drawLegendEntry(image, legend, shown.length + 1, "DASHED: BEST FROM 3 CHARS,", LEVEL_GREY);
  drawLegendEntry(image, legend, shown.length + 2, "AND 1/3 OF THE GAP TO BEST", LEVEL_GREY);
  return image.png();
}
