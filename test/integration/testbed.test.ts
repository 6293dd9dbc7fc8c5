// The test bed's own guarantees, on a real control plane: GPU capacity and scheduling, pods run as
// processes that see their volumes and environment, RBAC enforced on what a pod does, and the real
// Job controller retrying a failing pod.
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { BatchV1Api, CoreV1Api, RbacAuthorizationV1Api, type V1Pod } from "@kubernetes/client-node";
import { waitFor } from "../../testbed/process.js";
import type { Testbed } from "../../testbed/testbed.js";
import { startTestbed } from "./support.js";

let testbed: Testbed;
let cluster: string;
let core: CoreV1Api;
const namespace = "default";

function shellPod(name: string, script: string, extra: Partial<V1Pod["spec"]> = {}): V1Pod {
  return {
    metadata: { name },
    spec: {
      restartPolicy: "Never",
      terminationGracePeriodSeconds: 2,
      containers: [{ name: "main", image: "testbed.local/shell", command: ["sh", "-c", script] }],
      ...extra,
    },
  };
}

async function podPhase(name: string): Promise<string | undefined> {
  return (await core.readNamespacedPod({ name, namespace })).status?.phase;
}

async function waitPhase(name: string, phases: string[], timeoutMs = 30_000): Promise<string> {
  return waitFor(
    `pod ${name} to reach ${phases.join(" or ")}`,
    async () => {
      const phase = await podPhase(name);
      return phase && phases.includes(phase) ? phase : undefined;
    },
    timeoutMs,
  );
}

async function podLog(name: string): Promise<string> {
  const pod = await core.readNamespacedPod({ name, namespace });
  const dir = `${namespace}_${name}_${pod.metadata?.uid}`;
  return readFile(path.join(testbed.podsDir(cluster), dir, "logs", "main.log"), "utf8");
}

before(async () => {
  // One node with two GPUs, so that the third one-GPU pod cannot fit.
  testbed = await startTestbed({ clusters: 1, nodes: 1, gpusPerNode: 2 });
  cluster = testbed.clusters[0] ?? "";
  core = testbed.kubeConfig(cluster).makeApiClient(CoreV1Api);
  await waitFor(
    "the default ServiceAccount",
    async () =>
      (await core.listNamespacedServiceAccount({ namespace })).items.length ? true : undefined,
    30_000,
  );
});

after(async () => {
  await testbed?.down();
});

describe("test bed", () => {
  test("nodes carry GPU capacity and GPU labels", async () => {
    const nodes = await core.listNode();
    assert.equal(nodes.items.length, 1);
    const [node] = nodes.items;
    assert.equal(node?.status?.capacity?.["nvidia.com/gpu"], "2");
    assert.equal(node?.status?.allocatable?.["nvidia.com/gpu"], "2");
    assert.equal(node?.metadata?.labels?.["nvidia.com/gpu.product"], "NVIDIA-H100-80GB-HBM3");
    assert.ok(node?.metadata?.labels?.["nvidia.com/gpu.memory"]);
  });

  test("with two GPUs free, two of three one-GPU pods run and the third waits for a GPU", async () => {
    const gpu = { limits: { "nvidia.com/gpu": "1" } };
    const names = ["gpu-a", "gpu-b", "gpu-c"];
    for (const name of names) {
      const pod = shellPod(name, "sleep 600");
      pod.spec!.containers[0]!.resources = gpu;
      await core.createNamespacedPod({ namespace, body: pod });
      // Created one after another, so the scheduler places them in this order.
      if (name !== "gpu-c") await waitPhase(name, ["Running"]);
    }
    const unschedulable = await waitFor(
      "gpu-c to be reported unschedulable",
      async () => {
        const pod = await core.readNamespacedPod({ name: "gpu-c", namespace });
        const scheduled = pod.status?.conditions?.find((c) => c.type === "PodScheduled");
        return scheduled?.status === "False" ? scheduled : undefined;
      },
      30_000,
    );
    assert.equal(unschedulable.reason, "Unschedulable");
    assert.match(unschedulable.message ?? "", /nvidia\.com\/gpu/);
    assert.equal(await podPhase("gpu-c"), "Pending");

    await core.deleteNamespacedPod({ name: "gpu-a", namespace });
    assert.equal(await waitPhase("gpu-c", ["Running"], 60_000), "Running");
    for (const name of ["gpu-b", "gpu-c"]) {
      await core.deleteNamespacedPod({ name, namespace, gracePeriodSeconds: 1 });
    }
  });

  test("a pod's process sees its ConfigMap at the mountPath and its env from a Secret", async () => {
    await core.createNamespacedConfigMap({
      namespace,
      body: { metadata: { name: "greeting" }, data: { "message.txt": "hello from a ConfigMap" } },
    });
    await core.createNamespacedSecret({
      namespace,
      body: { metadata: { name: "password" }, stringData: { value: "s3cret-value" } },
    });
    const pod = shellPod(
      "reader",
      'cat /etc/greeting/message.txt; echo; echo "secret=$PASSWORD pod=$(POD_NAME)"',
    );
    const container = pod.spec!.containers[0]!;
    container.env = [
      { name: "PASSWORD", valueFrom: { secretKeyRef: { name: "password", key: "value" } } },
      { name: "POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
    ];
    container.volumeMounts = [{ name: "greeting", mountPath: "/etc/greeting", readOnly: true }];
    pod.spec!.volumes = [{ name: "greeting", configMap: { name: "greeting" } }];
    await core.createNamespacedPod({ namespace, body: pod });
    assert.equal(await waitPhase("reader", ["Succeeded", "Failed"]), "Succeeded");
    const log = await podLog("reader");
    assert.match(log, /hello from a ConfigMap/);
    assert.match(log, /secret=s3cret-value pod=reader/);
  });

  test("a pod lists pods with its ServiceAccount when a RoleBinding allows it, and gets 403 without", async () => {
    const rbac = testbed.kubeConfig(cluster).makeApiClient(RbacAuthorizationV1Api);
    await core.createNamespacedServiceAccount({
      namespace,
      body: { metadata: { name: "lister" } },
    });
    await rbac.createNamespacedRole({
      namespace,
      body: {
        metadata: { name: "pod-lister" },
        rules: [{ apiGroups: [""], resources: ["pods"], verbs: ["list"] }],
      },
    });
    const listerPod = (name: string): V1Pod => ({
      metadata: { name },
      spec: {
        restartPolicy: "Never",
        serviceAccountName: "lister",
        containers: [
          {
            name: "main",
            image: "testbed.local/node",
            args: ["dist/test/integration/programs/list-pods.js"],
          },
        ],
      },
    });
    await core.createNamespacedPod({ namespace, body: listerPod("lister-denied") });
    assert.equal(await waitPhase("lister-denied", ["Succeeded", "Failed"]), "Failed");
    const denied = await core.readNamespacedPod({ name: "lister-denied", namespace });
    assert.equal(denied.status?.containerStatuses?.[0]?.state?.terminated?.exitCode, 3);
    assert.match(await podLog("lister-denied"), /failed with 403/);

    await rbac.createNamespacedRoleBinding({
      namespace,
      body: {
        metadata: { name: "lister-can-list" },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "pod-lister" },
        subjects: [{ kind: "ServiceAccount", name: "lister", namespace }],
      },
    });
    await core.createNamespacedPod({ namespace, body: listerPod("lister-allowed") });
    assert.equal(await waitPhase("lister-allowed", ["Succeeded", "Failed"]), "Succeeded");
    assert.match(await podLog("lister-allowed"), /listed \d+ pods in default/);
  });

  test("the Job controller retries a pod that exits non-zero, then marks the Job failed", async () => {
    const batch = testbed.kubeConfig(cluster).makeApiClient(BatchV1Api);
    await batch.createNamespacedJob({
      namespace,
      body: {
        metadata: { name: "always-fails" },
        spec: {
          backoffLimit: 1,
          template: { spec: shellPod("always-fails", "echo failing; exit 7").spec },
        },
      },
    });
    const failed = await waitFor(
      "the Job to fail",
      async () => {
        const job = await batch.readNamespacedJob({ name: "always-fails", namespace });
        return job.status?.conditions?.find((c) => c.type === "Failed" && c.status === "True");
      },
      90_000,
      500,
    );
    assert.equal(failed.reason, "BackoffLimitExceeded");
    const pods = await core.listNamespacedPod({
      namespace,
      labelSelector: "job-name=always-fails",
    });
    assert.equal(pods.items.length, 2, "one run and one retry");
    for (const pod of pods.items) {
      assert.equal(pod.status?.phase, "Failed");
      assert.equal(pod.status?.containerStatuses?.[0]?.state?.terminated?.exitCode, 7);
    }
  });

  test("a pod with an image the test bed does not know fails with a clear reason", async () => {
    const pod = shellPod("unknown-image", "true");
    pod.spec!.containers[0]!.image = "registry.example/unknown:1.0";
    await core.createNamespacedPod({ namespace, body: pod });
    assert.equal(await waitPhase("unknown-image", ["Failed"]), "Failed");
    const failed = await core.readNamespacedPod({ name: "unknown-image", namespace });
    assert.equal(failed.status?.reason, "UnknownImage");
    const waiting = await waitFor(
      "the pod to report the unknown image",
      async () => {
        const current = await core.readNamespacedPod({ name: "unknown-image", namespace });
        return current.status?.containerStatuses?.[0]?.state?.waiting;
      },
      30_000,
    );
    assert.equal(waiting.reason, "UnknownImage");
    assert.match(waiting.message ?? "", /not in the test bed's image map/);
  });
});
