// Applying manifests to a test-bed cluster the way `kubectl apply --server-side` does, and the
// waits tests need around it.
import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { ApiextensionsV1Api, CoreV1Api, type KubernetesObject } from "@kubernetes/client-node";
import { parseAllDocuments } from "yaml";
import { repoRoot } from "../scripts/repository.js";
import { waitFor } from "./process.js";
import type { Testbed } from "./testbed.js";

/** The TrainingFederation CRD, as this repository defines it. */
export const federationCrdFile = path.join(
  repoRoot,
  "crds",
  "trainingfederations.fedtrain.dev.yaml",
);

/** Field manager of objects the test bed applies. */
export const testbedFieldManager = "fedtrain-testbed";

/** Parses every object of a (multi-document) YAML text. */
export function parseManifests(text: string): KubernetesObject[] {
  return parseAllDocuments(text)
    .map((d) => d.toJS() as KubernetesObject | null)
    .filter((o): o is KubernetesObject => o !== null);
}

/**
 * Server-side applies manifests with the real kubectl (forcing conflicts: a test fixture owns what
 * it applies). kubectl rather than the client's generic object API, which serialises through its
 * typed models and drops fields it knows under other names, like x-kubernetes-validations.
 */
export async function applyManifests(
  kubectl: string,
  kubeconfig: string,
  yamlText: string,
): Promise<void> {
  const args = ["--kubeconfig", kubeconfig, "apply", "--server-side", "--force-conflicts"];
  await new Promise<void>((resolve, reject) => {
    const child = execFile(
      kubectl,
      [...args, `--field-manager=${testbedFieldManager}`, "-f", "-"],
      (error, _stdout, stderr) =>
        error
          ? reject(new Error(`kubectl apply failed: ${stderr.trim()}`, { cause: error }))
          : resolve(),
    );
    child.stdin?.end(yamlText);
  });
}

/** Applies the CRDs in a YAML file and waits until they are Established. */
export async function installCrds(testbed: Testbed, cluster: string, file: string): Promise<void> {
  const text = await readFile(file, "utf8");
  await applyManifests(testbed.binaries.kubectl, testbed.kubeconfigPath(cluster), text);
  const objects = parseManifests(text);
  const api = testbed.kubeConfig(cluster).makeApiClient(ApiextensionsV1Api);
  for (const crd of objects) {
    const name = crd.metadata?.name ?? "";
    await waitFor(
      `CRD ${name} to be established`,
      async () => {
        const current = await api.readCustomResourceDefinition({ name });
        const established = current.status?.conditions?.some(
          (c) => c.type === "Established" && c.status === "True",
        );
        return established ? true : undefined;
      },
      30_000,
      100,
    );
  }
}

/**
 * Readies a cluster for TrainingFederations: the CRD installed and Established, and `namespace`
 * created for the objects (and for an operator's Lease).
 */
export async function installFederationApi(
  testbed: Testbed,
  cluster: string,
  namespace: string,
): Promise<void> {
  await installCrds(testbed, cluster, federationCrdFile);
  await testbed
    .kubeConfig(cluster)
    .makeApiClient(CoreV1Api)
    .createNamespace({ body: { metadata: { name: namespace } } });
}
