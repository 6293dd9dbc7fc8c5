// The layout rules of docs/architecture.md, checked against the imports of every TypeScript file:
// which folder may import which. `node dist/scripts/layout.js` prints each broken rule with the
// importing file; scripts/layout.test.ts runs the same check in `npm test`.
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { repoRoot } from "./repository.js";

/** A file (path from the repository root, "/"-separated) and what it imports. */
export interface SourceFile {
  path: string;
  /** Repository paths of imported project files (".ts"), and bare names of packages. */
  imports: string[];
}

/** One broken rule. */
export interface LayoutViolation {
  rule: string;
  file: string;
  imports: string;
}

const product = ["core/", "operator/", "trainer-image/"];
const tools = ["testbed/", "demo/", "bench/", "test/", "plot/", "scripts/"];
const workerRoles = [
  "presence",
  "ledger-follower",
  "receiver",
  "publisher",
  "applier",
  "coordinator",
].map((role) => `core/protocol/worker/${role}.ts`);

const under = (p: string, folders: readonly string[]) => folders.some((f) => p.startsWith(f));
const isPackage = (target: string) => !target.includes("/") || !target.endsWith(".ts");
const isTest = (p: string) => p.endsWith(".test.ts");

/** Rules on a single import: [name, broken?]. */
const importRules: [string, (file: string, target: string) => boolean][] = [
  [
    "core/ imports only core/ and packages",
    (file, target) =>
      file.startsWith("core/") &&
      !isTest(file) &&
      !isPackage(target) &&
      !target.startsWith("core/"),
  ],
  [
    "product code (core, operator, trainer) never imports the developers' tools",
    (file, target) => under(file, product) && !isTest(file) && under(target, tools),
  ],
  [
    "nothing imports bench/ except benchmarks",
    (file, target) => !file.startsWith("bench/") && target.startsWith("bench/"),
  ],
  [
    "the training library never imports the trainer process",
    (file, target) =>
      file.startsWith("trainer-image/training/") && target.startsWith("trainer-image/process/"),
  ],
  [
    "no file under core/protocol/worker/ imports the facade",
    (file, target) =>
      file.startsWith("core/protocol/worker/") &&
      target === "core/protocol/worker/federation-worker.ts",
  ],
  [
    "a protocol worker role imports no other role",
    (file, target) => workerRoles.includes(file) && workerRoles.includes(target) && file !== target,
  ],
];

/** Rules on what a program loads, directly or through the files it imports. */
export const reachRules: { rule: string; entry: string; forbidden: RegExp }[] = [
  {
    rule: "the operator never loads TensorFlow.js",
    entry: "operator/src/main.ts",
    forbidden: /^@tensorflow\//,
  },
  {
    rule: "the trainer never loads the Kubernetes client",
    entry: "trainer-image/process/main.ts",
    forbidden: /^@kubernetes\//,
  },
];

/** Every broken rule among files. */
export function layoutViolations(files: readonly SourceFile[]): LayoutViolation[] {
  const out: LayoutViolation[] = [];
  for (const file of files)
    for (const target of file.imports)
      for (const [rule, broken] of importRules)
        if (broken(file.path, target)) out.push({ rule, file: file.path, imports: target });
  const byPath = new Map(files.map((f) => [f.path, f]));
  const split = (file: string) => {
    const imports = byPath.get(file)?.imports ?? [];
    return { files: imports.filter((t) => !isPackage(t)), packages: imports.filter(isPackage) };
  };
  for (const { rule, entry, forbidden } of reachRules)
    for (const { file, name } of importClosure(entry, split).packages)
      if (forbidden.test(name)) out.push({ rule, file, imports: name });
  return out;
}

const importPattern =
  /(?:^|\s)(?:import|export)\s[^;]*?from\s+"([^"]+)"|import\(\s*"([^"]+)"\s*\)/g;

/** The module specifiers a JavaScript or TypeScript text imports, statically or by import("…"). */
export function importSpecifiers(text: string): string[] {
  return [...text.matchAll(importPattern)].map((match) => match[1] ?? match[2]!);
}

/** The package a bare specifier names (`@scope/name/sub` → `@scope/name`). */
export function packageName(specifier: string): string {
  const parts = specifier.split("/");
  return specifier.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0]!;
}

/** What a file's text imports: project files as repository paths, packages by their name. */
export function importsOf(filePath: string, text: string): string[] {
  const out: string[] = [];
  for (const specifier of importSpecifiers(text))
    if (specifier.startsWith("."))
      out.push(path.posix.join(path.posix.dirname(filePath), specifier).replace(/\.js$/, ".ts"));
    else if (!specifier.startsWith("node:")) out.push(packageName(specifier));
  return out;
}

/**
 * The files reachable from entry through imports (entry first), and every package import among
 * them with the file that makes it. `next` says what one file imports: files and packages.
 */
export function importClosure(
  entry: string,
  next: (file: string) => { files: string[]; packages: string[] },
): { files: string[]; packages: { file: string; name: string }[] } {
  const files: string[] = [];
  const packages: { file: string; name: string }[] = [];
  const seen = new Set<string>();
  const pending = [entry];
  while (pending.length > 0) {
    const file = pending.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    files.push(file);
    const imports = next(file);
    for (const name of imports.packages) packages.push({ file, name });
    pending.push(...imports.files);
  }
  return { files, packages };
}

const skipped = new Set(["node_modules", "dist", "out", ".git", ".testbed", ".cache"]);

/** Reads every TypeScript file of the repository and what it imports. */
export async function readSources(root = repoRoot): Promise<SourceFile[]> {
  const out: SourceFile[] = [];
  async function walk(dir: string): Promise<void> {
    for (const entry of await readdir(path.join(root, dir), { withFileTypes: true })) {
      if (skipped.has(entry.name)) continue;
      const relative = dir ? `${dir}/${entry.name}` : entry.name;
      if (entry.isDirectory()) await walk(relative);
      else if (entry.name.endsWith(".ts") && !entry.name.endsWith(".d.ts"))
        out.push({
          path: relative,
          imports: importsOf(relative, await readFile(path.join(root, relative), "utf8")),
        });
    }
  }
  await walk("");
  return out;
}

async function main(): Promise<void> {
  const violations = layoutViolations(await readSources());
  for (const v of violations) console.log(`${v.file} imports ${v.imports}: breaks "${v.rule}"`);
  console.log(violations.length === 0 ? "layout: every rule holds" : `${violations.length} broken`);
  process.exitCode = violations.length === 0 ? 0 : 1;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1]))
  await main();
