// `npm run bench -- codec [--elements=N] [--repetitions=N]`: encode and decode(+accumulate)
// throughput of every update compression method on one core, against a plain copy of the same
// buffer measured in the same run. Throughput is GB of fp32 input per second (4·n bytes / s).
import os from "node:os";
import {
  accumulateUpdate,
  type CodecParams,
  ErrorFeedback,
  UpdateEncoder,
} from "../core/codec/index.js";
import { SeededRandom } from "../core/codec/seeded-random.js";

interface MethodCase {
  name: string;
  params: CodecParams;
  /** Whether encoding carries an error-feedback residual, as the trainer does for lossy methods. */
  errorFeedback: boolean;
}

const CASES: readonly MethodCase[] = [
  { name: "none", params: { method: "none" }, errorFeedback: false },
  { name: "int8-c4096", params: { method: "int8", chunkSize: 4096 }, errorFeedback: true },
  {
    name: "topk-1%-2bit",
    params: { method: "topk", density: 0.01, bits: 2, groupSize: 256 },
    errorFeedback: true,
  },
  {
    name: "topk-1%-4bit",
    params: { method: "topk", density: 0.01, bits: 4, groupSize: 256 },
    errorFeedback: true,
  },
  {
    name: "topk-1%-8bit",
    params: { method: "topk", density: 0.01, bits: 8, groupSize: 256 },
    errorFeedback: true,
  },
  {
    name: "topk-3%-4bit",
    params: { method: "topk", density: 0.03, bits: 4, groupSize: 256 },
    errorFeedback: true,
  },
];

const WARMUP = 2;

function medianOf(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

function option(args: string[], name: string, fallback: number): number {
  const prefix = `--${name}=`;
  const arg = args.find((a) => a.startsWith(prefix));
  if (arg === undefined) return fallback;
  const value = Number(arg.slice(prefix.length));
  if (!Number.isInteger(value) || value <= 0) {
    throw new RangeError(`--${name} must be a positive integer, got ${arg.slice(prefix.length)}`);
  }
  return value;
}

/** Seconds of one call, median over `repetitions` after WARMUP unmeasured calls. */
function timeMedian(repetitions: number, body: () => void): number {
  for (let r = 0; r < WARMUP; r++) body();
  const seconds: number[] = [];
  for (let r = 0; r < repetitions; r++) {
    const start = performance.now();
    body();
    seconds.push((performance.now() - start) / 1000);
  }
  return medianOf(seconds);
}

const round2 = (x: number): number => Math.round(x * 100) / 100;

export async function run(args: string[]): Promise<unknown> {
  const elements = option(args, "elements", 16 * 1024 * 1024);
  const repetitions = option(args, "repetitions", 7);
  const inputBytes = 4 * elements;
  const gb = inputBytes / 1e9;
  // Normal with σ = 1e-3: the scale of a DiLoCo pseudo-gradient after a few hundred inner steps.
  const pseudoGradient = new SeededRandom(20240611).normalArray(elements, 1e-3);
  const copy = new Float32Array(elements);
  const target = new Float32Array(elements);

  const cpus = os.cpus();
  const machine = {
    cpu: cpus[0]?.model ?? "unknown",
    logicalCores: cpus.length,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    platform: `${os.platform()}-${os.arch()}`,
    node: process.version,
    v8: process.versions.v8,
    threads: 1,
  };
  console.log(`codec benchmark: ${elements} elements (${(inputBytes / 2 ** 20).toFixed(0)} MiB)`);
  console.log(`  ${machine.cpu}, node ${machine.node}, median of ${repetitions} after ${WARMUP}`);
  console.log(
    `${"method".padEnd(14)}${"encode GB/s".padStart(13)}${"decode GB/s".padStart(13)}${"memcpy GB/s".padStart(13)}${"bytes".padStart(12)}${"ratio".padStart(9)}`,
  );

  const methods: Record<string, unknown> = {};
  for (const { name, params, errorFeedback } of CASES) {
    const encoder = new UpdateEncoder(params, elements);
    const feedback = errorFeedback ? new ErrorFeedback(elements) : undefined;
    let message = encoder.encode(pseudoGradient, feedback);
    const encodeSeconds = timeMedian(repetitions, () => {
      message = encoder.encode(pseudoGradient, feedback);
    });
    // A weight other than 1 exercises the general path a streaming weighted mean uses.
    const decodeSeconds = timeMedian(repetitions, () => {
      accumulateUpdate(message, target, 0.25);
    });
    const memcpySeconds = timeMedian(repetitions, () => {
      copy.set(pseudoGradient);
    });
    const result = {
      encodeGBps: round2(gb / encodeSeconds),
      decodeGBps: round2(gb / decodeSeconds),
      memcpyGBps: round2(gb / memcpySeconds),
      bytes: message.length,
      compressionRatio: round2(inputBytes / message.length),
      errorFeedback,
      params,
    };
    methods[name] = result;
    console.log(
      `${name.padEnd(14)}${result.encodeGBps.toFixed(2).padStart(13)}${result.decodeGBps.toFixed(2).padStart(13)}${result.memcpyGBps.toFixed(2).padStart(13)}${String(result.bytes).padStart(12)}${result.compressionRatio.toFixed(1).padStart(9)}`,
    );
  }
  return { machine, elements, repetitions, warmup: WARMUP, methods };
}
