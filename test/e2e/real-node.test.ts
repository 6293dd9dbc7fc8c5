// fedtrain's images on a real node: the images built from the repository's Dockerfiles (the
// trainer's TFJS_BINDING=none variant) run as pods on a kubelet + containerd node of the test bed,
// as the non-root user with a read-only root file system, as the charts run them; `kubectl logs`
// reads them through the API server and the kubelet; and bringing the test bed down leaves
// nothing behind on the host.
import assert from "node:assert/strict";
import { mkdtemp } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { CoreV1Api, type V1Pod } from "@kubernetes/client-node";
import { canonicalFederation, type FederationSpec } from "../../core/api/index.js";
import { operatorImage, trainerImage } from "../../testbed/container-images.js";
import { waitFor } from "../../testbed/process.js";
import { hostLeftovers } from "../../testbed/real-node.js";
import { Testbed } from "../../testbed/testbed.js";
import { trainerConfigFile } from "../fixtures/trainer-config.js";

const namespace = "default";
// What the charts ask of fedtrain's containers.
const restricted = {
  runAsNonRoot: true,
  readOnlyRootFilesystem: true,
  allowPrivilegeEscalation: false,
  capabilities: { drop: ["ALL"] },
};

/** A short local run: two workers in one trainer process, a small MLP, five rounds. */
function shortRun(): FederationSpec {
  return canonicalFederation({
    id: "real-node",
    model: { preset: "MLP", mlp: { hiddenLayers: [16], activation: "ReLU" } },
    data: {
      synthetic: {
        preset: "GaussianClusters",
        trainExamples: 800,
        evalExamples: 200,
        features: 8,
        classes: 4,
        noise: 1,
      },
    },
    training: { rounds: 5, innerSteps: 20, batchSize: 32 },
    sync: { compression: { method: "Int8" }, quorum: { minMembers: 1 } },
    membership: { policy: "Open" },
  } as FederationSpec);
}

describe("fedtrain's images on a real node (kubelet + containerd)", () => {
  let testbed: Testbed;
  let core: CoreV1Api;
  let dir: string;

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "fedtrain-real-node-"));
    testbed = await Testbed.up({
      dir,
      clusters: 1,
      nodes: 1,
      runtime: "containerd",
      log: process.env.FEDTRAIN_TEST_VERBOSE === "1" ? (l) => console.error(l) : () => {},
    });
    core = testbed.kubeConfig(testbed.clusters[0]!).makeApiClient(CoreV1Api);
  });

  after(async () => {
    await testbed?.down().catch(() => {});
  });

  async function kubectl(...args: string[]): Promise<string> {
    const { execFile } = await import("node:child_process");
    const cluster = testbed.clusters[0]!;
    return new Promise((resolve, reject) =>
      execFile(
        testbed.binaries.kubectl,
        ["--kubeconfig", testbed.kubeconfigPath(cluster), ...args],
        { maxBuffer: 16 << 20 },
        (error, stdout, stderr) =>
          error ? reject(new Error(stderr || String(error))) : resolve(stdout),
      ),
    );
  }

  /** Creates the pod and waits until it has ended; returns it. */
  async function runToEnd(pod: V1Pod, timeoutMs: number): Promise<V1Pod> {
    await core.createNamespacedPod({ namespace, body: pod });
    const name = pod.metadata!.name!;
    return waitFor(
      `pod ${name} to end`,
      async () => {
        const current = await core.readNamespacedPod({ namespace, name });
        const phase = current.status?.phase;
        return phase === "Succeeded" || phase === "Failed" ? current : undefined;
      },
      timeoutMs,
      500,
    );
  }

  test("the trainer image answers --help as a pod, and kubectl logs shows it", async () => {
    const pod = await runToEnd(
      {
        metadata: { name: "trainer-help" },
        spec: {
          restartPolicy: "Never",
          securityContext: { runAsUser: 65532, runAsGroup: 65532 },
          containers: [
            {
              name: "trainer",
              image: trainerImage,
              imagePullPolicy: "IfNotPresent",
              args: ["--help"],
              securityContext: restricted,
            },
          ],
        },
      },
      60_000,
    );
    assert.equal(pod.status?.phase, "Succeeded", JSON.stringify(pod.status?.containerStatuses));
    assert.match(pod.spec?.nodeName ?? "", /-node-1$/);
    assert.match(pod.status?.podIP ?? "", new RegExp(`^10\\.${testbed.net}\\.`));
    const logs = await kubectl("logs", "-n", namespace, "trainer-help");
    assert.match(logs, /fedtrain-trainer \[run\] --config FILE/);
  });

  test("the operator image starts its program (--help) as a pod", async () => {
    const pod = await runToEnd(
      {
        metadata: { name: "operator-help" },
        spec: {
          restartPolicy: "Never",
          containers: [
            {
              name: "operator",
              image: operatorImage,
              imagePullPolicy: "IfNotPresent",
              args: ["--help"],
              securityContext: restricted,
            },
          ],
        },
      },
      60_000,
    );
    assert.equal(pod.status?.phase, "Succeeded", JSON.stringify(pod.status?.containerStatuses));
    assert.match(await kubectl("logs", "-n", namespace, "operator-help"), /--allowed-nats-urls/);
  });

  test("the trainer image trains a short run as a pod (WASM, two workers)", async () => {
    const config = trainerConfigFile(shortRun(), { backend: "CPU", dataDir: "/data" });
    await core.createNamespacedConfigMap({
      namespace,
      body: { metadata: { name: "short-run" }, data: { "trainer.json": JSON.stringify(config) } },
    });
    const pod = await runToEnd(
      {
        metadata: { name: "short-run" },
        spec: {
          restartPolicy: "Never",
          containers: [
            {
              name: "trainer",
              image: trainerImage,
              imagePullPolicy: "IfNotPresent",
              args: [
                "--config",
                "/config/trainer.json",
                "--workers",
                "2",
                "--backend",
                "WASM",
                "--checkpoint-dir",
                "/data/checkpoints",
              ],
              securityContext: restricted,
              volumeMounts: [
                { name: "config", mountPath: "/config", readOnly: true },
                { name: "data", mountPath: "/data" },
              ],
            },
          ],
          volumes: [
            { name: "config", configMap: { name: "short-run" } },
            { name: "data", emptyDir: {} },
          ],
        },
      },
      240_000,
    );
    const logs = await kubectl("logs", "-n", namespace, "short-run");
    assert.equal(pod.status?.phase, "Succeeded", logs.slice(-2000));
    const lines = logs
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map(
        (l) =>
          JSON.parse(l) as {
            msg?: string;
            round?: number;
            evalLoss?: number;
            status?: string;
            rounds?: number;
            backend?: string;
          },
      );
    const rounds = lines.filter((l) => l.msg === "round applied");
    assert.deepEqual(
      rounds.map((l) => l.round),
      [0, 1, 2, 3, 4],
    );
    const first = rounds[0]!.evalLoss!;
    const last = rounds.at(-1)!.evalLoss!;
    // A model that learned nothing scores ln 4 ≈ 1.386 on four balanced classes.
    assert.ok(last < Math.log(4) && last < first, `eval loss ${first} → ${last}`);
    const done = lines.find((l) => l.msg === "training completed");
    assert.equal(done?.status, "completed");
    assert.equal(done?.rounds, 5);
  });

  test("bringing the test bed down leaves nothing behind on the host", async () => {
    // A pod still running at teardown: its container must go with the node.
    await core.createNamespacedPod({
      namespace,
      body: {
        metadata: { name: "still-running" },
        spec: {
          containers: [
            {
              name: "sleeper",
              image: trainerImage,
              imagePullPolicy: "IfNotPresent",
              command: ["sleep", "3600"],
              securityContext: restricted,
            },
          ],
        },
      },
    });
    await waitFor(
      "pod still-running to run",
      async () =>
        (await core.readNamespacedPod({ namespace, name: "still-running" })).status?.phase ===
        "Running"
          ? true
          : undefined,
      60_000,
      500,
    );
    const running = await hostLeftovers(dir, testbed.net);
    assert.ok(
      running.some((l) => l.startsWith("process") && l.includes("sleep 3600")),
      `while up, the probe finds the running container: ${running.join("; ")}`,
    );
    assert.ok(
      running.some((l) => l.startsWith("network namespace")) &&
        running.some((l) => l.startsWith("process")),
      "while up, the probe finds the node's namespace and processes",
    );
    await testbed.down();
    assert.deepEqual(await hostLeftovers(dir, testbed.net), []);
  });
});
