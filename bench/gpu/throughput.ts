// Training throughput of the trainer's model presets on one tfjs backend: samples per second of
// AdamW steps after warm-up, with the device or adapter name. Run by bench/gpu/run.sh on a GPU
// machine (WebGPU); runs anywhere on WASM/JS for a check:
//   node dist/bench/gpu/throughput.js --backend WebGPU --out results.json [--quick] [--only NAME]
//     [--allow-software-adapter]
// Exits with status 3 and a clear message when the backend cannot load (for WebGPU: no adapter).
import { writeFile } from "node:fs/promises";
import * as tf from "@tensorflow/tfjs";
import { AdamW } from "../../trainer-image/training/adamw.js";
import {
  type BackendChoice,
  BackendUnavailableError,
  initBackend,
} from "../../trainer-image/training/backend.js";
import { arithmetic, BatchSampler, gaussianClusters } from "../../trainer-image/training/data.js";
import {
  initialParameters,
  Model,
  type ModelDefinition,
} from "../../trainer-image/training/model.js";

/** One measured configuration. */
interface Workload {
  name: string;
  definition: ModelDefinition;
  batchSize: number;
}

/** The presets at their CRD defaults, and a wide MLP comparable with ENVIRONMENT.md's table. */
export const WORKLOADS: Workload[] = [
  {
    name: "MLP preset (32-128-128-10, ReLU)",
    definition: {
      kind: "mlp",
      inputs: 32,
      classes: 10,
      hiddenLayers: [128, 128],
      activation: "ReLU",
    },
    batchSize: 512,
  },
  {
    name: "MLP wide (1024-1024-1024-10, ReLU)",
    definition: {
      kind: "mlp",
      inputs: 1024,
      classes: 10,
      hiddenLayers: [1024, 1024],
      activation: "ReLU",
    },
    batchSize: 4096,
  },
  {
    name: "CharTransformer preset (2 layers, width 128, 4 heads, context 64)",
    definition: {
      kind: "transformer",
      vocabularySize: 14,
      layers: 2,
      modelWidth: 128,
      heads: 4,
      contextLength: 64,
      feedForwardMultiplier: 4,
    },
    batchSize: 64,
  },
];

/** What is measured per workload. */
interface Measurement {
  name: string;
  definition: ModelDefinition;
  parameters: number;
  batchSize: number;
  warmupSteps: number;
  steps: number;
  seconds: number;
  samplesPerSecond: number;
  /** Characters per second for the LM (samples × context length). */
  tokensPerSecond?: number;
  finalLoss: number;
}

async function measure(workload: Workload, quick: boolean): Promise<Measurement> {
  const seed = 1;
  const { definition, batchSize } = workload;
  const shard = { workerIndex: 0, workerCount: 1, strategy: "IID" as const, concentration: 1 };
  const data =
    definition.kind === "mlp"
      ? gaussianClusters(
          seed,
          {
            trainExamples: 4 * batchSize,
            evalExamples: 1,
            features: definition.inputs,
            classes: definition.classes,
            noise: 1,
          },
          shard,
        ).train
      : arithmetic(seed, { trainExamples: 4000, evalExamples: 1, maxOperand: 99 }, shard).train;
  const sampler = new BatchSampler(
    data,
    batchSize,
    seed,
    0,
    definition.kind === "transformer" ? definition.contextLength : 0,
  );
  // Batches are prepared beforehand so the timing is the device's, not the sampler's.
  const batches = Array.from({ length: 8 }, () => sampler.next());
  const model = new Model(definition, initialParameters(definition, seed));
  const optimizer = new AdamW(model, {
    learningRate: 1e-3,
    weightDecay: 0.01,
    warmupSteps: 0,
    beta1: 0.9,
    beta2: 0.999,
  });
  const warmupSteps = quick ? 2 : 10;
  for (let i = 0; i < warmupSteps; i++)
    await optimizer.step(batches[i % batches.length]!, i === warmupSteps - 1);
  // Time a fixed number of steps chosen from one probe, ending with a read-back that waits for
  // the queue to drain.
  const probeStart = performance.now();
  await optimizer.step(batches[0]!, true);
  const probe = (performance.now() - probeStart) / 1000;
  const budget = quick ? 1 : 8;
  const steps = Math.max(3, Math.min(2000, Math.round(budget / Math.max(probe, 1e-4))));
  const start = performance.now();
  let loss = Number.NaN;
  for (let i = 0; i < steps; i++) {
    const value = await optimizer.step(batches[i % batches.length]!, i === steps - 1);
    if (value !== null) loss = value;
  }
  const seconds = (performance.now() - start) / 1000;
  optimizer.dispose();
  const parameters = model.size;
  model.dispose();
  const samplesPerSecond = (steps * batchSize) / seconds;
  return {
    name: workload.name,
    definition,
    parameters,
    batchSize,
    warmupSteps,
    steps,
    seconds,
    samplesPerSecond,
    ...(definition.kind === "transformer"
      ? { tokensPerSecond: samplesPerSecond * definition.contextLength }
      : {}),
    finalLoss: loss,
  };
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const option = (name: string) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const choice = (option("--backend") ?? "WebGPU") as BackendChoice;
  const out = option("--out");
  const quick = args.includes("--quick");
  const only = option("--only");
  let backend: Awaited<ReturnType<typeof initBackend>>;
  try {
    backend = await initBackend(choice, {
      log: (line) => console.log(line),
      // For a check of the WebGPU path on a machine without a GPU (Mesa's lavapipe, SwiftShader).
      allowSoftwareAdapter: args.includes("--allow-software-adapter"),
    });
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    console.error(`throughput: ${message}`);
    if (out) {
      await writeFile(out, `${JSON.stringify({ backend: choice, error: message }, null, 2)}\n`);
    }
    process.exit(error instanceof BackendUnavailableError ? 3 : 1);
  }
  const results: Measurement[] = [];
  for (const workload of WORKLOADS) {
    if (only && !workload.name.toLowerCase().includes(only.toLowerCase())) continue;
    const result = await measure(workload, quick);
    console.log(
      `${workload.name}: ${result.samplesPerSecond.toFixed(0)} samples/s (${result.steps} steps of ${result.batchSize} in ${result.seconds.toFixed(2)} s, ${result.parameters} parameters)`,
    );
    results.push(result);
  }
  const report = {
    framework: `tfjs ${tf.version.tfjs}`,
    backend: backend.backend,
    tfjsBackend: backend.tfjsBackend,
    device: backend.device,
    node: process.version,
    precision: "fp32",
    results,
  };
  if (out) await writeFile(out, `${JSON.stringify(report, null, 2)}\n`);
  console.log(JSON.stringify({ backend: report.backend, device: report.device }));
}

await main();
