// The TrainingFederation CRD on a real API server: it installs, the examples are accepted, and
// invalid manifests are refused with the field at fault, CEL rules included.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readdirSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { CoreV1Api, CustomObjectsApi, type KubeConfig } from "@kubernetes/client-node";
import { group, plural, version } from "../../core/api/resource.js";
import { repoRoot } from "../../scripts/repository.js";
import { installCrds, parseManifests } from "../../testbed/apply.js";
import type { Testbed } from "../../testbed/testbed.js";
import {
  acceptedThenBroken,
  celInvalid,
  immutableChanges,
  member,
  schemaInvalid,
} from "../fixtures/manifests.js";
import { startTestbed } from "./support.js";

const run = promisify(execFile);
let testbed: Testbed;
let kubeConfig: KubeConfig;
let objects: CustomObjectsApi;
const namespace = "fedtrain";

/** Creates a TrainingFederation (dry run unless told) and returns the API server's error, if any. */
async function create(
  body: unknown,
  dryRun = true,
): Promise<{ code: number; fields: string[]; message: string } | undefined> {
  const object = body as { metadata?: Record<string, unknown> };
  object.metadata = { ...object.metadata, namespace };
  try {
    await objects.createNamespacedCustomObject({
      group,
      version,
      namespace,
      plural,
      body: object,
      dryRun: dryRun ? "All" : undefined,
      fieldValidation: "Strict",
    });
    return undefined;
  } catch (error) {
    return apiError(error);
  }
}

function apiError(error: unknown): { code: number; fields: string[]; message: string } {
  const { code, body } = error as { code?: number; body?: string };
  if (!code) throw error;
  const status = JSON.parse(body ?? "{}") as {
    message?: string;
    details?: { causes?: { field?: string }[] };
  };
  return {
    code,
    fields: (status.details?.causes ?? []).map((c) => c.field ?? ""),
    message: status.message ?? "",
  };
}

before(async () => {
  testbed = await startTestbed({ nodes: 1 });
  const cluster = testbed.clusters[0] ?? "";
  kubeConfig = testbed.kubeConfig(cluster);
  await installCrds(
    testbed,
    cluster,
    path.join(repoRoot, "crds", "trainingfederations.fedtrain.dev.yaml"),
  );
  await kubeConfig
    .makeApiClient(CoreV1Api)
    .createNamespace({ body: { metadata: { name: namespace } } });
  objects = kubeConfig.makeApiClient(CustomObjectsApi);
});

after(async () => {
  await testbed?.down();
});

describe("TrainingFederation on a real API server", () => {
  test("the single-file example is accepted", async () => {
    const [manifest] = parseManifests(
      await readFile(path.join(repoRoot, "examples", "minimal.yaml"), "utf8"),
    );
    assert.equal(await create(manifest), undefined);
  });

  test("every member overlay, built by kubectl kustomize, is accepted", async () => {
    const overlays = path.join(repoRoot, "examples", "federation", "overlays");
    for (const overlay of readdirSync(overlays)) {
      const { stdout } = await run(testbed.binaries.kubectl, [
        "kustomize",
        path.join(overlays, overlay),
      ]);
      const manifests = parseManifests(stdout);
      assert.equal(manifests.length, 1, overlay);
      assert.equal(await create(manifests[0]), undefined, overlay);
    }
  });

  test("the API server fills in the schema's defaults", async () => {
    const body = member();
    body.metadata.name = "defaults";
    assert.equal(await create(body, false), undefined);
    const stored = (await objects.getNamespacedCustomObject({
      group,
      version,
      namespace,
      plural,
      name: "defaults",
    })) as { spec: Record<string, any> };
    assert.equal(stored.spec.suspend, false);
    assert.equal(stored.spec.contribution.gpuResourceName, "nvidia.com/gpu");
    assert.equal(stored.spec.federation.training.outerOptimizer.learningRate, 0.7);
    assert.equal(stored.spec.federation.sync.compression.topK.valueBits, 4);
  });

  const cases = [...schemaInvalid, ...celInvalid, ...acceptedThenBroken];
  test(`${cases.length} invalid manifests are refused, each naming its field`, async () => {
    assert.ok(cases.length >= 20);
    const failures: string[] = [];
    for (const [name, mutate, field] of cases) {
      const body = member();
      mutate(body);
      const error = await create(body);
      if (!error) {
        failures.push(`${name}: accepted`);
      } else if (!(error.fields.includes(field) || error.message.includes(`"${field}"`))) {
        failures.push(
          `${name}: expected ${field}, got ${error.code} ${error.fields} ${error.message}`,
        );
      }
    }
    assert.deepEqual(failures, []);
  });

  test("transition rules keep the federation id, the model and the member id immutable", async () => {
    const base = member();
    base.metadata.name = "immutable";
    assert.equal(await create(base, false), undefined);
    const stored = await objects.getNamespacedCustomObject({
      group,
      version,
      namespace,
      plural,
      name: "immutable",
    });
    for (const [name, mutate, field] of immutableChanges) {
      const changed = structuredClone(stored) as Record<string, any>;
      mutate(changed);
      try {
        await objects.replaceNamespacedCustomObject({
          group,
          version,
          namespace,
          plural,
          name: "immutable",
          body: changed,
          dryRun: "All",
        });
        assert.fail(`${name}: accepted`);
      } catch (error) {
        if (error instanceof assert.AssertionError) throw error;
        const { fields, message } = apiError(error);
        assert.ok(fields.includes(field), `${name}: expected ${field}, got ${fields} ${message}`);
        assert.match(message, /immutable/, name);
      }
    }
  });
});
