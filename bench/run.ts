// Entry point of `npm run bench -- NAME [...args]`: runs one benchmark module and writes its result
// as JSON under bench/results/NAME.json.
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** What every benchmark module exports. */
export interface Benchmark {
  /** Runs the benchmark, printing progress, and returns the JSON-serialisable result. */
  run(args: string[]): Promise<unknown>;
}

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const known = ["codec"] as const;

async function main(): Promise<void> {
  const [name, ...args] = process.argv.slice(2);
  if (!name || !(known as readonly string[]).includes(name)) {
    console.error(`usage: npm run bench -- NAME [args]\n  NAME is one of: ${known.join(", ")}`);
    process.exit(2);
  }
  const module = (await import(`./${name}.js`)) as Benchmark;
  const result = await module.run(args);
  const dir = path.join(repoRoot, "bench", "results");
  await mkdir(dir, { recursive: true });
  const file = path.join(dir, `${name}.json`);
  await writeFile(file, `${JSON.stringify(result, null, 2)}\n`);
  console.log(`wrote ${path.relative(repoRoot, file)}`);
}

await main();
