import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { describe, test } from "node:test";
import { parse } from "yaml";
import { crdPath } from "../../scripts/repository.js";
import { crdDefault, type DefaultedPath } from "./defaults.js";

/** The default at a dotted path, read straight from the CRD's YAML. */
async function yamlDefault(path: string): Promise<unknown> {
  const crd = parse(await readFile(crdPath, "utf8"));
  let node = crd.spec.versions[0].schema.openAPIV3Schema;
  for (const segment of path.split(".")) node = node.properties[segment];
  return node.default;
}

describe("crdDefault", () => {
  const paths: DefaultedPath[] = [
    "spec.federation.model.mlp.hiddenLayers",
    "spec.federation.model.charTransformer.contextLength",
    "spec.federation.training.innerOptimizer.schedule",
    "spec.federation.sync.compression.topK.density",
    "spec.federation.sync.compression.topK.errorFeedback",
    "spec.federation.sync.quorum",
    "spec.contribution.backend",
  ];
  for (const path of paths)
    test(`reads ${path} as the CRD writes it`, async () => {
      assert.deepEqual(crdDefault(path), await yamlDefault(path));
    });

  test("returns a copy, not the schema's own value", () => {
    const layers = crdDefault("spec.federation.model.mlp.hiddenLayers");
    layers.push(1);
    assert.notDeepEqual(crdDefault("spec.federation.model.mlp.hiddenLayers"), layers);
  });

  test("says which field has no default", () => {
    assert.throws(() => crdDefault("spec.federation.id" as DefaultedPath), {
      message: "the TrainingFederation field spec.federation.id has no default",
    });
    assert.throws(() => crdDefault("spec.federation.nope" as DefaultedPath), {
      message: "the TrainingFederation schema has no field spec.federation.nope",
    });
  });
});
