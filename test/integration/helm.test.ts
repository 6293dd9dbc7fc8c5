// The Helm chart (charts/fedtrain) with the real helm and kubectl the test bed provisions: it lints,
// its schema refuses bad values, its manifests are accepted by a real API server, and installed
// into a test-bed cluster its two operator replicas become Ready, one leads, and a
// TrainingFederation becomes a Job under nothing but the chart's RBAC.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { BatchV1Api, CoreV1Api, CustomObjectsApi } from "@kubernetes/client-node";
import { group, plural, version } from "../../core/api/resource.js";
import { parseConfig } from "../../operator/src/config.js";
import { repoRoot } from "../../scripts/repository.js";
import { applyManifests, installCrds, parseManifests } from "../../testbed/apply.js";
import { waitFor } from "../../testbed/process.js";
import type { Testbed } from "../../testbed/testbed.js";
import { startTestbed } from "./support.js";

const run = promisify(execFile);
const chart = path.join(repoRoot, "charts", "fedtrain");
const allOnValues = path.join(chart, "ci", "all-on-values.yaml");
const crdFile = path.join(repoRoot, "crds", "trainingfederations.fedtrain.dev.yaml");
const releaseNamespace = "fedtrain-system";
/** Namespaces that ci/all-on-values.yaml watches. */
const watchedNamespaces = ["members", "research"];

// The smallest ServiceMonitor CRD that lets the API server take the chart's ServiceMonitor; the
// Prometheus Operator's real one is large and not what this test is about.
const serviceMonitorCrd = `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: servicemonitors.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: { kind: ServiceMonitor, listKind: ServiceMonitorList, plural: servicemonitors, singular: servicemonitor }
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema: { type: object, x-kubernetes-preserve-unknown-fields: true }
`;

let testbed: Testbed;
let kubeconfig: string;
let helmHome: string;

type Manifest = {
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [key: string]: any;
};

/** Runs helm with a private home (no cache or config of the user's is read or written). */
async function helm(...args: string[]): Promise<string> {
  const env = {
    ...process.env,
    HELM_CACHE_HOME: path.join(helmHome, "cache"),
    HELM_CONFIG_HOME: path.join(helmHome, "config"),
    HELM_DATA_HOME: path.join(helmHome, "data"),
  };
  try {
    const { stdout } = await run(testbed.binaries.helm, args, { env, maxBuffer: 16 << 20 });
    return stdout;
  } catch (error) {
    const { stderr } = error as { stderr?: string };
    throw new Error(`helm ${args[0]} failed: ${stderr?.trim()}`, { cause: error });
  }
}

async function kubectl(...args: string[]): Promise<string> {
  const { stdout } = await run(testbed.binaries.kubectl, ["--kubeconfig", kubeconfig, ...args]);
  return stdout;
}

/** `kubectl apply --dry-run=server` of a YAML text: what a real install would send. */
async function dryRunApply(yamlText: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      testbed.binaries.kubectl,
      ["--kubeconfig", kubeconfig, "apply", "--dry-run=server", "-f", "-"],
      (error, stdout, stderr) =>
        error ? reject(new Error(`dry-run apply refused: ${stderr.trim()}`)) : resolve(stdout),
    );
    child.stdin?.end(yamlText);
  });
}

async function template(...args: string[]): Promise<Manifest[]> {
  const text = await helm("template", "ft", chart, "--namespace", releaseNamespace, ...args);
  return parseManifests(text) as Manifest[];
}

const find = (manifests: Manifest[], kind: string, namespace?: string) =>
  manifests.filter((m) => m.kind === kind && (!namespace || m.metadata.namespace === namespace));

before(async () => {
  helmHome = await mkdtemp(path.join(os.tmpdir(), "fedtrain-helm-"));
  testbed = await startTestbed({ clusters: 1, nodes: 1 });
  const cluster = testbed.clusters[0] ?? "";
  kubeconfig = testbed.kubeconfigPath(cluster);
  await installCrds(testbed, cluster, crdFile);
  await applyManifests(testbed.binaries.kubectl, kubeconfig, serviceMonitorCrd);
  for (const namespace of [releaseNamespace, ...watchedNamespaces]) {
    await kubectl("create", "namespace", namespace);
    // The restricted Pod Security Standard, enforced by the API server: the operator's and the
    // trainers' pods must pass it.
    await kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted");
  }
});

after(async () => {
  await testbed?.down();
  if (helmHome) await rm(helmHome, { recursive: true, force: true });
});

describe("Helm chart", () => {
  test("helm lint passes with the defaults and with every optional part on", async () => {
    await helm("lint", "--strict", chart);
    await helm("lint", "--strict", chart, "--values", allOnValues);
  });

  test("the chart and its package carry the repository's CRD unchanged", async () => {
    const source = await readFile(crdFile, "utf8");
    // helm show ends the file with one more newline; the content is compared.
    assert.equal((await helm("show", "crds", chart)).trimEnd(), source.trimEnd());
    const packaged = await helm("package", chart, "--destination", helmHome);
    const archive = packaged.trim().split(/\s+/).at(-1) ?? "";
    assert.equal((await helm("show", "crds", archive)).trimEnd(), source.trimEnd());
  });

  test("values.schema.json refuses a value of the wrong type or outside its enum", async () => {
    await assert.rejects(
      template("--set", "replicas=two"),
      /\/replicas': got string, want integer/,
    );
    await assert.rejects(
      template("--set", "logLevel=verbose"),
      /\/logLevel': value must be one of 'debug', 'info', 'warn', 'error'/,
    );
    await assert.rejects(template("--set", "clusterId=Not_A_Label"), /\/clusterId'/);
    await assert.rejects(template("--set", "replica=2"), /additional properties 'replica'/);
  });

  test("defaults: nothing cluster-wide, a Role in the release namespace that never reads Secrets, a Role for the Lease, a hardened Deployment", async () => {
    const manifests = await template("--set", "clusterId=alpine");
    assert.equal(find(manifests, "ClusterRole").length, 0);
    assert.equal(find(manifests, "ClusterRoleBinding").length, 0);
    const roles = find(manifests, "Role", releaseNamespace);
    assert.deepEqual(
      roles.map((r) => r.metadata.name),
      ["ft-fedtrain", "ft-fedtrain-leader-election"],
    );
    const rules: { apiGroups: string[]; resources: string[]; verbs: string[] }[] =
      roles[0]?.rules ?? [];
    const secrets = rules.filter((r) => r.resources.includes("secrets"));
    assert.deepEqual(
      secrets.map((r) => r.verbs),
      [["create"]],
    );
    assert.ok(!rules.some((r) => r.resources.includes("leases")));
    const leaseRole = roles[1];
    assert.deepEqual(
      leaseRole?.rules.flatMap((r: { verbs: string[] }) => r.verbs),
      ["create", "get", "update"],
    );

    const [deployment] = find(manifests, "Deployment");
    const pod = deployment?.spec.template.spec;
    const container = pod.containers[0];
    assert.equal(deployment?.spec.replicas, 2);
    assert.ok(container.args.includes(`--leader-election-namespace=${releaseNamespace}`));
    assert.ok(container.args.includes(`--namespaces=${releaseNamespace}`));
    assert.ok(container.args.includes("--metrics-bind-address=$(POD_IP):8080"));
    assert.ok(container.args.includes("--health-probe-bind-address=$(POD_IP):8081"));
    assert.equal(pod.securityContext.runAsUser, 65532);
    assert.deepEqual(container.securityContext, {
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      runAsNonRoot: true,
      runAsUser: 65532,
      capabilities: { drop: ["ALL"] },
      seccompProfile: { type: "RuntimeDefault" },
    });
    assert.deepEqual(
      container.env.map((e: { name: string }) => e.name),
      ["POD_NAME", "POD_NAMESPACE", "POD_IP", "NODE_OPTIONS", "MALLOC_ARENA_MAX"],
    );
    assert.equal(find(manifests, "PodDisruptionBudget")[0]?.spec.minAvailable, 1);
    assert.equal(find(manifests, "ServiceMonitor").length, 0);
    assert.equal(find(manifests, "NetworkPolicy").length, 0);
  });

  test("watchNamespaces: a Role per namespace and nothing cluster-wide", async () => {
    const manifests = await template("--values", allOnValues);
    assert.equal(find(manifests, "ClusterRole").length, 0);
    assert.equal(find(manifests, "ClusterRoleBinding").length, 0);
    for (const namespace of watchedNamespaces) {
      const roles = find(manifests, "Role", namespace);
      assert.equal(roles.length, 1, namespace);
      assert.equal(find(manifests, "RoleBinding", namespace).length, 1, namespace);
      // The member key is created, never read: a deleted member leaves through a Job mounting it.
      const secretVerbs = roles[0]?.rules
        .filter((r: { resources: string[] }) => r.resources.includes("secrets"))
        .map((r: { verbs: string[] }) => r.verbs);
      assert.deepEqual(secretVerbs, [["create"]], namespace);
    }
    const container = find(manifests, "Deployment")[0]?.spec.template.spec.containers[0];
    assert.ok(container.args.includes(`--namespaces=${releaseNamespace},members,research`));
    const dashboard = find(manifests, "ConfigMap")[0];
    assert.equal(dashboard?.metadata.labels?.grafana_dashboard, "1");
    const panels = JSON.parse(dashboard?.data["fedtrain.json"]).panels as { title: string }[];
    assert.ok(panels.length >= 10);
  });

  test("scope cluster: one ClusterRole for every namespace, and no --namespaces", async () => {
    const manifests = await template("--set", "scope=cluster", "--values", allOnValues);
    assert.equal(find(manifests, "ClusterRole").length, 1);
    assert.equal(find(manifests, "ClusterRoleBinding").length, 1);
    for (const namespace of watchedNamespaces)
      assert.equal(find(manifests, "Role", namespace).length, 0, namespace);
    const container = find(manifests, "Deployment")[0]?.spec.template.spec.containers[0];
    assert.ok(!container.args.some((a: string) => a.startsWith("--namespaces")));
  });

  test("every trainer and NATS value reaches the operator as a flag it reads", async () => {
    const manifests = await template("--values", allOnValues);
    const pod = find(manifests, "Deployment")[0]?.spec.template.spec;
    const args: string[] = pod.containers[0].args;
    for (const flag of [
      "--trainer-image=ghcr.io/fedtrain/trainer:0.1.0",
      "--default-backend=CUDA",
      "--nats-url=nats://nats-1.example:4222,tls://nats-2.example:4222",
      "--nats-credentials-secret=nats-creds",
      "--nats-tls-secret=nats-tls",
      "--nats-credentials-file=/etc/fedtrain/nats/nats.creds",
      "--nats-tls-dir=/etc/fedtrain/nats-tls",
      "--allowed-nats-urls=nats://nats-3.example:4222",
      "--allowed-images=ghcr.io/fedtrain/,registry.example/lab/trainer",
      "--allowed-service-accounts=trainer",
      "--volume-claim-label=example.com/fedtrain=allowed",
    ]) {
      assert.ok(args.includes(flag), flag);
    }
    // Every flag must parse (strictly): a flag the operator does not know would be a dead value.
    const config = parseConfig(
      args.map((arg) => arg.replaceAll("$(POD_IP)", "127.0.0.1")),
      {},
    );
    assert.equal(config.defaultBackend, "CUDA");
    assert.equal(config.natsTlsSecret, "nats-tls");
    assert.equal(config.natsTlsDir, "/etc/fedtrain/nats-tls");
    assert.deepEqual(config.allowedServiceAccounts, ["trainer"]);
    assert.deepEqual(
      pod.containers[0].env.map((e: { name: string }) => e.name),
      ["POD_NAME", "POD_NAMESPACE", "POD_IP", "NODE_OPTIONS", "MALLOC_ARENA_MAX"],
    );
    assert.deepEqual(pod.volumes, [
      {
        name: "nats-credentials",
        secret: { secretName: "fedtrain-operator-nats", defaultMode: 0o440 },
      },
      {
        name: "nats-tls",
        secret: { secretName: "fedtrain-operator-nats-tls", defaultMode: 0o440 },
      },
    ]);
    assert.deepEqual(pod.containers[0].volumeMounts, [
      { name: "nats-credentials", mountPath: "/etc/fedtrain/nats", readOnly: true },
      { name: "nats-tls", mountPath: "/etc/fedtrain/nats-tls", readOnly: true },
    ]);
  });

  test("the API server accepts every rendered manifest (dry run), defaults and all-on", async () => {
    for (const args of [[], ["--values", allOnValues]]) {
      const text = await helm("template", "ft", chart, "--namespace", releaseNamespace, ...args);
      const applied = await dryRunApply(text);
      assert.match(applied, /deployment\.apps\/ft-fedtrain created \(server dry run\)/);
    }
  });

  test("helm install with defaults: rights only where a namespace opted in; two Ready replicas, one Lease holder, and a TrainingFederation becomes a Job", async () => {
    // "members" opts in by its label; "research" does not (yet).
    await kubectl("label", "namespace", "members", "fedtrain.dev/enabled=true");
    await helm(
      "install",
      "ft",
      chart,
      "--kubeconfig",
      kubeconfig,
      "--namespace",
      releaseNamespace,
      "--set",
      "image.repository=ghcr.io/fedtrain/operator",
      "--set",
      "clusterId=alpine",
      "--set",
      "trainer.image=testbed.local/stand-in-trainer:1",
      "--set",
      "resyncSeconds=5",
      "--wait",
      "--timeout",
      "90s",
    );
    const core = testbed.kubeConfig(testbed.clusters[0] ?? "").makeApiClient(CoreV1Api);
    const pods = (
      await core.listNamespacedPod({
        namespace: releaseNamespace,
        labelSelector: "app.kubernetes.io/instance=ft",
      })
    ).items;
    assert.equal(pods.length, 2);
    for (const pod of pods) {
      const ready = pod.status?.conditions?.find((c) => c.type === "Ready");
      assert.equal(ready?.status, "True", pod.metadata?.name);
    }
    const names = pods.map((p) => p.metadata?.name ?? "");
    const holder = await waitFor(
      "a replica to hold the Lease",
      async () => {
        const lease = JSON.parse(
          await kubectl("get", "lease", "fedtrain-operator", "-n", releaseNamespace, "-o", "json"),
        );
        return (lease.spec?.holderIdentity as string | undefined) || undefined;
      },
      30_000,
      250,
    );
    assert.equal(names.filter((name) => holder.startsWith(`${name}_`)).length, 1, holder);

    // What the operator's ServiceAccount may do, as the API server's authoriser answers.
    const serviceAccount = `system:serviceaccount:${releaseNamespace}:ft-fedtrain`;
    const may = async (verb: string, resource: string, namespace: string) => {
      try {
        await kubectl("auth", "can-i", verb, resource, "-n", namespace, "--as", serviceAccount);
        return "yes";
      } catch {
        return "no"; // kubectl auth can-i exits 1 with "no"
      }
    };
    const asked: string[] = [];
    for (const namespace of ["kube-system", "research", "default"])
      for (const [verb, resource] of [
        ["create", "jobs"],
        ["create", "secrets"],
        ["get", "secrets"],
        ["list", "secrets"],
        ["create", "pods"],
      ] as const)
        asked.push(`${verb} ${resource} in ${namespace}: ${await may(verb, resource, namespace)}`);
    assert.deepEqual(
      asked.filter((line) => line.endsWith("yes")),
      [],
      "no right where no namespace opted in",
    );
    assert.equal(await may("create", "jobs", "members"), "yes");
    assert.equal(await may("get", "secrets", "members"), "no", "never reads a Secret");

    // No confused deputy: a namespace user may have trainers mount only Secrets they may read.
    await applyManifests(
      testbed.binaries.kubectl,
      kubeconfig,
      `
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: { name: researcher, namespace: members }
rules:
  - apiGroups: [fedtrain.dev]
    resources: [trainingfederations]
    verbs: [get, list, create, update, patch]
  - apiGroups: [""]
    resources: [secrets]
    resourceNames: [dev-nats]
    verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: { name: researcher, namespace: members }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: Role, name: researcher }
subjects: [{ kind: User, name: dev, apiGroup: rbac.authorization.k8s.io }]
`,
    );
    const [example] = parseManifests(
      await readFile(path.join(repoRoot, "examples", "minimal.yaml"), "utf8"),
    ) as Manifest[];
    const asDev = async (secret: string) => {
      const body = structuredClone(example!);
      body.metadata.namespace = "members";
      body.spec.transport = { natsUrls: [testbed.natsUrl], credentialsSecretRef: { name: secret } };
      return new Promise<string>((resolve) => {
        const child = execFile(
          testbed.binaries.kubectl,
          ["--kubeconfig", kubeconfig, "--as", "dev", "create", "--dry-run=server", "-f", "-"],
          (error, stdout, stderr) => resolve(error ? `refused: ${stderr.trim()}` : stdout.trim()),
        );
        child.stdin?.end(JSON.stringify(body));
      });
    };
    assert.match(
      await asDev("ops-nats"),
      /refused: .*spec\.transport\.credentialsSecretRef: you may not read Secret ops-nats/,
    );
    assert.match(await asDev("dev-nats"), /created \(server dry run\)/);

    await joinAndExpectJob("members");
  });

  test("helm upgrade adding a namespace to watchNamespaces: its Role alone is enough", async () => {
    await helm(
      "upgrade",
      "ft",
      chart,
      "--kubeconfig",
      kubeconfig,
      "--namespace",
      releaseNamespace,
      "--reuse-values",
      "--set",
      "watchNamespaces={research}",
      "--wait",
      "--timeout",
      "90s",
    );
    const clusterRoles = await kubectl("get", "clusterroles", "-o", "name");
    assert.doesNotMatch(clusterRoles, /clusterrole\.rbac\.authorization\.k8s\.io\/ft-fedtrain$/m);
    await joinAndExpectJob("research");
  });
});

/**
 * Applies examples/minimal.yaml (with the test bed's NATS URL) in a namespace and waits for what
 * the operator can only create under the chart's RBAC: the trainers' Job, and the member key whose
 * public half status shows.
 */
async function joinAndExpectJob(namespace: string): Promise<void> {
  const [example] = parseManifests(
    await readFile(path.join(repoRoot, "examples", "minimal.yaml"), "utf8"),
  ) as Manifest[];
  assert.ok(example);
  example.metadata.namespace = namespace;
  example.spec.transport.natsUrls = [testbed.natsUrl];
  const kubeConfig = testbed.kubeConfig(testbed.clusters[0] ?? "");
  const objects = kubeConfig.makeApiClient(CustomObjectsApi);
  await objects.createNamespacedCustomObject({ group, version, namespace, plural, body: example });
  const batch = kubeConfig.makeApiClient(BatchV1Api);
  const job = await waitFor(
    `the operator to create the trainers' Job in ${namespace}`,
    async () =>
      (await batch.listNamespacedJob({ namespace })).items.find(
        (j) => j.metadata?.name === `${example.metadata.name}-trainers`,
      ),
    60_000,
    250,
  );
  assert.equal(job.spec?.template.spec?.containers[0]?.image, "testbed.local/stand-in-trainer:1");
  // The Job controller could create its pods under the restricted Pod Security Standard.
  const core = kubeConfig.makeApiClient(CoreV1Api);
  await waitFor(
    `a trainer pod admitted under pod-security restricted in ${namespace}`,
    async () =>
      (
        await core.listNamespacedPod({
          namespace,
          labelSelector: `fedtrain.dev/instance=${example.metadata.name}`,
        })
      ).items.length > 0 || undefined,
    60_000,
    250,
  );
  const tf = await waitFor(
    `the member's public key in status in ${namespace}`,
    async () => {
      const object = (await objects.getNamespacedCustomObject({
        group,
        version,
        namespace,
        plural,
        name: example.metadata.name,
      })) as Manifest;
      return object.status?.publicKey ? object : undefined;
    },
    30_000,
    250,
  );
  assert.equal(Buffer.from(tf.status.publicKey, "base64").length, 32);
}
