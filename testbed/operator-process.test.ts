// The operator process of the integration tests and the benchmark runs with the Node.js flags and
// environment the operator has where it is deployed (Helm chart + image) and in `npm run
// operator`, so that what the benchmark measures is what runs.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, test } from "node:test";
import { parse } from "yaml";
import { repoRoot } from "../scripts/repository.js";
import { imageMap } from "./images.js";
import { operatorEnv, operatorNodeOptions } from "./operator-process.js";

const read = (file: string) => readFileSync(path.join(repoRoot, file), "utf8");

/** The flags operator/Dockerfile's exec-form ENTRYPOINT gives node before the program. */
function imageFlags(): string[] {
  const line = /^ENTRYPOINT\s+(\[.*\])\s*$/m.exec(read("operator/Dockerfile"))?.[1];
  assert.ok(line, "operator/Dockerfile has an exec-form ENTRYPOINT");
  const [, ...args] = JSON.parse(line) as string[];
  return args.filter((arg) => arg.startsWith("--"));
}

/** The chart's default NODE_OPTIONS. */
function chartNodeOptions(): string[] {
  const values = parse(read("charts/fedtrain/values.yaml")) as { nodeOptions: string };
  return values.nodeOptions.split(/\s+/).filter(Boolean);
}

describe("the operator process", () => {
  test("has the chart's NODE_OPTIONS and the image's flags, as npm run operator does", () => {
    const deployed = [...chartNodeOptions(), ...imageFlags()];
    assert.deepEqual([...operatorNodeOptions].sort(), [...deployed].sort());
    const testbedImage = imageMap["ghcr.io/fedtrain/operator"]?.entrypoint ?? [];
    assert.deepEqual(
      testbedImage.filter((arg) => arg.startsWith("--")),
      imageFlags(),
    );
    const script = (JSON.parse(read("package.json")) as { scripts: Record<string, string> }).scripts
      .operator;
    for (const flag of operatorNodeOptions) assert.ok(script?.includes(` ${flag}`), flag);
  });

  test("has the environment the chart's Deployment, the image and npm run operator set", () => {
    const deployment = read("charts/fedtrain/templates/deployment.yaml");
    const dockerfile = read("operator/Dockerfile");
    const script = (JSON.parse(read("package.json")) as { scripts: Record<string, string> }).scripts
      .operator;
    assert.ok(Object.keys(operatorEnv).length > 0);
    for (const [name, value] of Object.entries(operatorEnv)) {
      assert.match(deployment, new RegExp(`- name: ${name}\\n\\s+value: "${value}"\\n`), name);
      assert.match(dockerfile, new RegExp(`^ENV ${name}=${value}$`, "m"), name);
      assert.ok(script?.includes(`${name}=${value} node `), name);
    }
  });
});
