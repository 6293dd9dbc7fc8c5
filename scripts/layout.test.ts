import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { importsOf, layoutViolations, reachRules, readSources, type SourceFile } from "./layout.js";

const file = (path: string, ...imports: string[]): SourceFile => ({ path, imports });

describe("layout rules", () => {
  test("hold in this repository (run `node dist/scripts/layout.js` for the list)", async () => {
    const sources = await readSources();
    for (const { entry } of reachRules)
      assert.ok(
        sources.some((s) => s.path === entry),
        `${entry} exists`,
      );
    assert.deepEqual(layoutViolations(sources), []);
  });

  const broken: { name: string; files: SourceFile[]; rule: RegExp }[] = [
    {
      name: "core importing the operator",
      files: [file("core/api/a.ts", "operator/src/time.ts")],
      rule: /core\/ imports only core\//,
    },
    {
      name: "the operator importing the test bed",
      files: [file("operator/src/main.ts", "testbed/testbed.ts")],
      rule: /developers' tools/,
    },
    {
      name: "a test importing a benchmark",
      files: [file("test/e2e/x.test.ts", "bench/lib/diloco-runs.ts")],
      rule: /bench\//,
    },
    {
      name: "the training library importing the process",
      files: [file("trainer-image/training/data.ts", "trainer-image/process/main.ts")],
      rule: /training library/,
    },
    {
      name: "a worker role importing the facade",
      files: [file("core/protocol/worker/follow.ts", "core/protocol/worker/federation-worker.ts")],
      rule: /imports the facade/,
    },
    {
      name: "a worker role importing another role",
      files: [file("core/protocol/worker/applier.ts", "core/protocol/worker/receiver.ts")],
      rule: /no other role/,
    },
    {
      name: "the operator reaching TensorFlow.js through another file",
      files: [
        file("operator/src/main.ts", "core/codec/index.ts"),
        file("core/codec/index.ts", "@tensorflow/tfjs"),
      ],
      rule: /never loads TensorFlow/,
    },
  ];
  for (const { name, files, rule } of broken)
    test(`catch ${name}`, () => {
      const violations = layoutViolations(files);
      assert.equal(violations.length, 1, JSON.stringify(violations));
      assert.match(violations[0]!.rule, rule);
    });

  test("a benchmark importing plot/ and a test importing the test bed are fine", () => {
    assert.deepEqual(
      layoutViolations([
        file("bench/diloco.ts", "plot/index.ts", "bench/lib/diloco-runs.ts"),
        file("test/e2e/support.ts", "testbed/testbed.ts"),
        file("core/protocol/worker/coordinator.ts", "core/protocol/worker/decide.ts"),
      ]),
      [],
    );
  });
});

test("importsOf resolves relative imports to repository paths and packages to their names", () => {
  const text = [
    'import { a } from "./a.js";',
    'import type { B } from "../b/index.js";',
    'export { c } from "./c.js";',
    'import * as tf from "@tensorflow/tfjs-core/dist/x";',
    'import { readFile } from "node:fs/promises";',
    'const yaml = await import("yaml");',
  ].join("\n");
  assert.deepEqual(importsOf("core/protocol/x.ts", text), [
    "core/protocol/a.ts",
    "core/b/index.ts",
    "core/protocol/c.ts",
    "@tensorflow/tfjs-core",
    "yaml",
  ]);
});
