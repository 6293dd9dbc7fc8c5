import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { describe, test } from "node:test";
import { parseAllDocuments } from "yaml";
import { repoPath } from "../../scripts/repository.js";
import { validateTrainingFederation } from "./validation.js";

const examplesDir = repoPath("examples");

type Manifest = Record<string, unknown>;

function readManifests(file: string): Manifest[] {
  return parseAllDocuments(readFileSync(file, "utf8")).map((d) => d.toJS() as Manifest);
}

/** RFC 7386 JSON merge patch: what kustomize does with a patch of a custom resource. */
function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== "object" || Array.isArray(patch)) return patch;
  const out: Manifest =
    target && typeof target === "object" && !Array.isArray(target)
      ? { ...(target as Manifest) }
      : {};
  for (const [key, value] of Object.entries(patch as Manifest)) {
    if (value === null) delete out[key];
    else out[key] = mergePatch(out[key], value);
  }
  return out;
}

/**
 * Builds a kustomization the way `kubectl kustomize` does for the features the examples use
 * (resources, patches by path, namespace); anything else fails the test so this cannot silently
 * diverge. The integration tests build the same overlays with the real kubectl.
 */
function kustomize(dir: string): Manifest[] {
  const k = readManifests(path.join(dir, "kustomization.yaml"))[0] as Manifest;
  const unsupported = Object.keys(k).filter(
    (key) => !["apiVersion", "kind", "resources", "patches", "namespace"].includes(key),
  );
  assert.deepEqual(unsupported, [], `${dir}: kustomization uses fields this test cannot build`);
  let objects: Manifest[] = [];
  for (const resource of (k.resources as string[]) ?? []) {
    const target = path.join(dir, resource);
    objects.push(...(statSync(target).isDirectory() ? kustomize(target) : readManifests(target)));
  }
  for (const { path: patchPath } of (k.patches as { path: string }[]) ?? []) {
    for (const patch of readManifests(path.join(dir, patchPath))) {
      const name = (patch.metadata as Manifest).name;
      const index = objects.findIndex(
        (o) => o.kind === patch.kind && (o.metadata as Manifest).name === name,
      );
      assert.ok(index >= 0, `${dir}: patch ${patchPath} matches no resource`);
      objects[index] = mergePatch(objects[index], patch) as Manifest;
    }
  }
  if (k.namespace) {
    objects = objects.map(
      (o) => mergePatch(o, { metadata: { namespace: k.namespace } }) as Manifest,
    );
  }
  return objects;
}

function assertValid(objects: Manifest[], where: string): void {
  assert.ok(objects.length > 0, `${where}: no objects`);
  for (const object of objects) {
    const result = validateTrainingFederation(object);
    assert.ok(result.valid, `${where}: ${JSON.stringify(!result.valid && result.errors)}`);
  }
}

const overlaysDir = path.join(examplesDir, "federation", "overlays");
const overlays = readdirSync(overlaysDir);

describe("examples", () => {
  test("the single-file example is valid", () => {
    assertValid(readManifests(path.join(examplesDir, "minimal.yaml")), "minimal.yaml");
  });

  test("the federation base is valid on its own", () => {
    assertValid(kustomize(path.join(examplesDir, "federation", "base")), "base");
  });

  test("every member overlay builds to a valid manifest", () => {
    assert.ok(overlays.length >= 2);
    for (const member of overlays) assertValid(kustomize(path.join(overlaysDir, member)), member);
  });

  test("overlays change only the local parts: spec.federation is identical in every member", () => {
    const base = kustomize(path.join(examplesDir, "federation", "base"))[0] as Manifest;
    const baseFederation = (base.spec as Manifest).federation;
    const memberIds = new Set<unknown>();
    for (const member of overlays) {
      const [object] = kustomize(path.join(overlaysDir, member));
      const spec = object?.spec as Manifest;
      assert.deepEqual(spec.federation, baseFederation, member);
      memberIds.add((spec.contribution as Manifest).memberId);
    }
    assert.equal(memberIds.size, overlays.length, "member ids must differ");
  });
});
