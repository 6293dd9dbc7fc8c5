// Entry point of `npm run bench -- NAME [...args]`: runs the benchmark module bench/NAME.ts and
// writes its result as JSON to bench/results/NAME.json (with --quick, to out/bench/NAME-quick.json).
import { readdirSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { repoRoot } from "../scripts/repository.js";
import { resultFile } from "./lib/output.js";

/** What every benchmark module exports. */
export interface Benchmark {
  /** Runs the benchmark, printing progress, and returns the JSON-serialisable result. */
  run(args: string[]): Promise<unknown>;
}

const here = path.dirname(fileURLToPath(import.meta.url));

/** The benchmarks: every module next to this one. */
function benchmarks(): string[] {
  return readdirSync(here)
    .filter((f) => f.endsWith(".js") && f !== "run.js" && !f.endsWith(".test.js"))
    .map((f) => f.slice(0, -".js".length))
    .sort();
}

async function main(): Promise<void> {
  const [name, ...args] = process.argv.slice(2);
  const known = benchmarks();
  if (!name || !known.includes(name)) {
    console.error(`usage: npm run bench -- NAME [args]\n  NAME is one of: ${known.join(", ")}`);
    process.exit(2);
  }
  const module = (await import(`./${name}.js`)) as Benchmark;
  const result = await module.run(args);
  // A --quick run is a smoke test of the benchmark: it never replaces the real result.
  const file = resultFile(name, "json", args.includes("--quick"));
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, `${JSON.stringify(result, null, 2)}\n`);
  console.log(`wrote ${path.relative(repoRoot, file)}`);
}

await main();
