// The operator against a real control plane (API server, controller manager, scheduler, node
// agents): children and status, elastic scaling, suspend, invalid input, deletion, restarts,
// leader election and an API server restart.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import {
  BatchV1Api,
  CoreV1Api,
  CustomObjectsApi,
  PatchStrategy,
  setHeaderOptions,
  type V1Pod,
} from "@kubernetes/client-node";
import { federationSpecHash, group, plural, version } from "../../core/api/index.js";
import { installFederationApi } from "../../testbed/apply.js";
import { OperatorProcess } from "../../testbed/operator-process.js";
import { waitFor } from "../../testbed/process.js";
import type { Testbed } from "../../testbed/testbed.js";
import { condition, FederationObjects } from "./federation-objects.js";
import { startTestbed, testLogFile } from "./support.js";

const namespace = "members";
let testbed: Testbed;
let kubeconfig: string;
let core: CoreV1Api;
let batch: BatchV1Api;
let objects: CustomObjectsApi;
let federations: FederationObjects;
let operator: OperatorProcess;
const logFile = testLogFile("operator-test");

function operatorFlags(): string[] {
  return [
    "--cluster-id=alpine",
    "--nats-url=nats://127.0.0.1:4222",
    "--trainer-image=testbed.local/stand-in-trainer:1",
    `--leader-election-namespace=${namespace}`,
    "--resync-period=2",
  ];
}

function manifest(name: string, contribution: Record<string, unknown> = {}): Record<string, any> {
  return {
    apiVersion: `${group}/${version}`,
    kind: "TrainingFederation",
    metadata: { name, namespace },
    spec: {
      federation: {
        id: "operator-test",
        model: { preset: "MLP" },
        data: { synthetic: { preset: "GaussianClusters" } },
      },
      contribution: { replicas: 2, gpusPerReplica: 1, ...contribution },
    },
  };
}

/** `kubectl describe` of a TrainingFederation: its status and its Events. */
async function kubectlDescribe(name: string): Promise<string> {
  const { stdout } = await promisify(execFile)(testbed.binaries.kubectl, [
    "--kubeconfig",
    kubeconfig,
    "describe",
    "trainingfederation",
    name,
    "-n",
    namespace,
  ]);
  return stdout;
}

/** The Job named `name`, once it exists. */
function waitForJob(name: string) {
  return waitFor(
    `the Job ${name}`,
    async () => {
      try {
        return await batch.readNamespacedJob({ name, namespace });
      } catch {
        return undefined;
      }
    },
    30_000,
    250,
  );
}

async function trainerPods(name: string): Promise<V1Pod[]> {
  const pods = await core.listNamespacedPod({
    namespace,
    labelSelector: `fedtrain.dev/instance=${name}`,
  });
  return pods.items.filter((p) => !p.metadata?.deletionTimestamp);
}

/** uid of the running pod of each completion index. */
async function podsByIndex(name: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const pod of await trainerPods(name)) {
    if (pod.status?.phase !== "Running") continue;
    out.set(
      pod.metadata?.annotations?.["batch.kubernetes.io/job-completion-index"] ?? "",
      pod.metadata?.uid ?? "",
    );
  }
  return out;
}

before(async () => {
  testbed = await startTestbed({ clusters: 1, nodes: 2, gpusPerNode: 2 });
  const cluster = testbed.clusters[0] ?? "";
  kubeconfig = testbed.kubeconfigPath(cluster);
  const kubeConfig = testbed.kubeConfig(cluster);
  core = kubeConfig.makeApiClient(CoreV1Api);
  batch = kubeConfig.makeApiClient(BatchV1Api);
  objects = kubeConfig.makeApiClient(CustomObjectsApi);
  federations = new FederationObjects(objects, namespace);
  await installFederationApi(testbed, cluster, namespace);
  operator = await OperatorProcess.start(kubeconfig, operatorFlags(), logFile);
  await operator.waitUntilLeading(30_000);
});

after(async () => {
  await operator?.stop();
  await testbed?.down();
});

describe("operator", () => {
  test("apply → an Indexed Job with GPU requests, its config and key, and Ready trainers", async () => {
    const body = manifest("alpha");
    await objects.createNamespacedCustomObject({ group, version, namespace, plural, body });
    const tf = await federations.waitStatus(
      "alpha",
      "Ready",
      (s) => condition(s, "Ready")?.status === "True",
    );
    const status = tf.status;
    assert.equal(status.phase, "Training");
    assert.deepEqual(status.trainers, { desired: 2, ready: 2 });
    assert.equal(status.trainersReady, "2/2");
    assert.equal(status.memberId, "alpine");
    assert.match(status.publicKey, /^[A-Za-z0-9+/]{43}=$/);
    assert.equal(status.federationSpecHash, federationSpecHash(tf.spec.federation));
    assert.ok(tf.metadata.finalizers.includes("fedtrain.dev/leave-federation"));

    const job = await batch.readNamespacedJob({ name: "alpha-trainers", namespace });
    assert.equal(job.spec?.completionMode, "Indexed");
    assert.equal(job.spec?.parallelism, 2);
    assert.equal(job.metadata?.ownerReferences?.[0]?.uid, tf.metadata.uid);
    const pod = job.spec?.template.spec;
    const container = pod?.containers[0];
    assert.equal(container?.resources?.limits?.["nvidia.com/gpu"], "1");
    assert.equal(pod?.securityContext?.runAsNonRoot, true);
    assert.equal(pod?.securityContext?.seccompProfile?.type, "RuntimeDefault");
    assert.equal(container?.securityContext?.allowPrivilegeEscalation, false);
    assert.deepEqual(container?.securityContext?.capabilities?.drop, ["ALL"]);
    assert.equal(pod?.automountServiceAccountToken, false);

    const configMap = await core.readNamespacedConfigMap({
      name: "alpha-trainer-config",
      namespace,
    });
    const config = JSON.parse(configMap.data?.["trainer.json"] ?? "{}");
    assert.equal(config.member.id, "alpine");
    assert.equal(config.member.publicKey, status.publicKey);
    assert.equal(config.federationSpecHash, status.federationSpecHash);
    assert.equal(config.federation.training.rounds, 100);
    const secret = await core.readNamespacedSecret({ name: "alpha-member-key", namespace });
    assert.equal(
      Buffer.from(secret.data?.["public.key"] ?? "", "base64").toString(),
      status.publicKey,
    );

    const pods = await trainerPods("alpha");
    assert.equal(pods.length, 2);
    assert.ok(pods.every((p) => p.spec?.nodeName && p.status?.phase === "Running"));
  });

  test("scaling up and down adds and removes workers without restarting the others", async () => {
    const before = await podsByIndex("alpha");
    assert.deepEqual([...before.keys()].sort(), ["0", "1"]);
    await federations.patchSpec("alpha", { contribution: { replicas: 3 } });
    await federations.waitStatus("alpha", "3 trainers ready", (s) => s.trainers?.ready === 3);
    const scaledUp = await podsByIndex("alpha");
    assert.equal(scaledUp.get("0"), before.get("0"));
    assert.equal(scaledUp.get("1"), before.get("1"));
    assert.ok(scaledUp.get("2"));

    await federations.patchSpec("alpha", { contribution: { replicas: 1 } });
    await federations.waitStatus(
      "alpha",
      "1 trainer",
      (s) => s.trainers?.desired === 1 && s.trainers?.ready === 1,
    );
    await waitFor(
      "two pods to go",
      async () => ((await trainerPods("alpha")).length === 1 ? true : undefined),
      60_000,
    );
    const scaledDown = await podsByIndex("alpha");
    assert.deepEqual([...scaledDown.entries()], [["0", before.get("0")]]);
  });

  test("suspend stops the workers and resuming starts them again", async () => {
    await federations.patchSpec("alpha", { suspend: true });
    const suspended = await federations.waitStatus(
      "alpha",
      "Suspended",
      (s) => s.phase === "Suspended",
    );
    assert.equal(condition(suspended.status, "Ready").status, "False");
    assert.equal(condition(suspended.status, "Ready").reason, "Suspended");
    await waitFor(
      "the trainers to stop",
      async () => ((await trainerPods("alpha")).length === 0 ? true : undefined),
      60_000,
    );

    await federations.patchSpec("alpha", { suspend: false });
    await federations.waitStatus(
      "alpha",
      "Ready again",
      (s) => condition(s, "Ready")?.status === "True" && s.trainers?.ready === 1,
    );
    assert.equal((await trainerPods("alpha")).length, 1);
    // Where a Kubernetes user looks first: the Events of `kubectl describe`.
    const described = await waitFor(
      "the Suspended and Resumed Events in kubectl describe",
      async () => {
        const text = await kubectlDescribe("alpha");
        return /Normal\s+Suspended/.test(text) && /Normal\s+Resumed/.test(text) ? text : undefined;
      },
      15_000,
      250,
    );
    assert.match(described, /fedtrain\.dev\/operator/);
  });

  test("a spec this member cannot run gets a Valid=False condition and no children", async () => {
    const body = manifest("too-small", { replicas: 2 });
    body.spec.federation.data.synthetic.trainExamples = 40;
    await objects.createNamespacedCustomObject({ group, version, namespace, plural, body });
    const tf = await federations.waitStatus("too-small", "Invalid", (s) => s.phase === "Invalid");
    const valid = condition(tf.status, "Valid");
    assert.equal(valid.status, "False");
    assert.equal(valid.reason, "InvalidSpec");
    assert.match(valid.message, /fewer than one batch of 32/);
    assert.equal(condition(tf.status, "Ready").status, "False");
    const jobs = await batch.listNamespacedJob({
      namespace,
      labelSelector: "fedtrain.dev/instance=too-small",
    });
    assert.equal(jobs.items.length, 0);
    const configMaps = await core.listNamespacedConfigMap({
      namespace,
      labelSelector: "fedtrain.dev/instance=too-small",
    });
    assert.equal(configMaps.items.length, 0);
  });

  test("the cluster admin's policy: a disallowed image, ServiceAccount or unlabelled claim gets no pod and a condition saying why", async () => {
    // A claim the namespace admin did not label for fedtrain, and one they did.
    for (const [name, labels] of [
      ["private-claim", {}],
      ["shared-corpus", { "fedtrain.dev/use": "true" }],
    ] as const)
      await core.createNamespacedPersistentVolumeClaim({
        namespace,
        body: {
          metadata: { name, namespace, labels },
          spec: { accessModes: ["ReadOnlyMany"], resources: { requests: { storage: "1Gi" } } },
        },
      });
    const cases: [string, Record<string, unknown>, RegExp][] = [
      [
        "own-image",
        { image: "registry.example/miner:1" },
        /spec\.contribution\.image registry\.example\/miner:1 is not allowed here: the cluster admin allows testbed\.local\/stand-in-trainer/,
      ],
      [
        "other-account",
        { serviceAccountName: "cluster-reader" },
        /spec\.contribution\.serviceAccountName cluster-reader is not allowed here/,
      ],
      [
        "private-data",
        { dataVolumeClaim: "private-claim" },
        /dataVolumeClaim private-claim is not labelled fedtrain\.dev\/use=true/,
      ],
      ["no-such-claim", { dataVolumeClaim: "nowhere" }, /dataVolumeClaim nowhere does not exist/],
    ];
    for (const [name, contribution] of cases) {
      const body = manifest(name, contribution);
      await objects.createNamespacedCustomObject({ group, version, namespace, plural, body });
    }
    for (const [name, , message] of cases) {
      const tf = await federations.waitStatus(name, "Invalid", (s) => s.phase === "Invalid");
      const valid = condition(tf.status, "Valid");
      assert.equal(valid.status, "False", name);
      assert.equal(valid.reason, "PolicyRefused", name);
      assert.match(valid.message, message, name);
      assert.equal(condition(tf.status, "TrainersReady").reason, "PolicyRefused", name);
      assert.match(await kubectlDescribe(name), /Warning\s+PolicyRefused/, name);
      assert.deepEqual(await trainerPods(name), [], name);
      const jobs = await batch.listNamespacedJob({
        namespace,
        labelSelector: `fedtrain.dev/instance=${name}`,
      });
      assert.equal(jobs.items.length, 0, name);
    }
    // Allowed: the operator's own trainer image with another tag, and a labelled claim.
    const allowed = manifest("labelled-data", {
      image: "testbed.local/stand-in-trainer:2",
      dataVolumeClaim: "shared-corpus",
    });
    await objects.createNamespacedCustomObject({
      group,
      version,
      namespace,
      plural,
      body: allowed,
    });
    const job = await waitForJob("labelled-data-trainers");
    assert.equal(job.spec?.template.spec?.containers[0]?.image, "testbed.local/stand-in-trainer:2");
    for (const [name] of [...cases, ["labelled-data"]]) await federations.deleteAndWait(name!);
  });

  test("the operator's NATS credentials go only to URLs the admin allowed, and status masks URL credentials", async () => {
    const body = manifest("elsewhere");
    body.spec.transport = { natsUrls: ["nats://mallory:hunter2@nats.attacker.example:4222"] };
    await objects.createNamespacedCustomObject({ group, version, namespace, plural, body });
    const tf = await federations.waitStatus(
      "elsewhere",
      "Joined",
      (s) => condition(s, "Joined")?.reason === "NatsUnreachable",
    );
    const joined = condition(tf.status, "Joined");
    assert.match(
      joined.message,
      /the operator does not connect to NATS at nats:\/\/\*\*\*@nats\.attacker\.example:4222/,
    );
    assert.doesNotMatch(JSON.stringify(tf.status), /hunter2|mallory/);
    // The trainers still run: they connect with the TrainingFederation's own credentials.
    await waitFor(
      "the trainers of a TrainingFederation on other NATS URLs",
      async () => (await trainerPods("elsewhere")).length === 2 || undefined,
      30_000,
      250,
    );
    await federations.deleteAndWait("elsewhere");
  });

  test("a Kueue queue: the Job is labelled for it, Kueue's suspend is never overwritten, and suspending this member deletes the Job", async () => {
    // Kueue's controller is a Go program this test bed does not run: the test plays its part on
    // the real API server (suspend the new Job, later admit it) with Kueue's field manager.
    const body = manifest("queued", { queueName: "gpu-team" });
    await objects.createNamespacedCustomObject({ group, version, namespace, plural, body });
    const readJob = () => waitForJob("queued-trainers");
    const job = await readJob();
    assert.equal(job.metadata?.labels?.["kueue.x-k8s.io/queue-name"], "gpu-team");
    const owned = JSON.stringify(
      job.metadata?.managedFields?.filter((f) => f.manager === "fedtrain-operator"),
    );
    assert.doesNotMatch(owned, /f:suspend/, "the operator does not own spec.suspend");
    const kueue = (suspend: boolean) =>
      batch.patchNamespacedJob(
        { name: "queued-trainers", namespace, body: { spec: { suspend } }, fieldManager: "kueue" },
        setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
      );
    await kueue(true);
    const queued = await federations.waitStatus(
      "queued",
      "Queued",
      (s) => condition(s, "TrainersReady")?.reason === "Queued",
    );
    assert.match(condition(queued.status, "TrainersReady").message, /LocalQueue gpu-team/);
    await sleep(3_000); // more than a resync: the operator leaves Kueue's suspend alone
    assert.equal((await readJob()).spec?.suspend, true);
    await kueue(false); // admitted
    await federations.waitStatus(
      "queued",
      "Ready",
      (s) => condition(s, "TrainersReady")?.status === "True",
    );
    // Suspending the member deletes the Job (its quota is released); resuming queues a new one.
    await federations.patchSpec("queued", { suspend: true });
    await waitFor(
      "the queued Job to be deleted while suspended",
      async () => {
        try {
          await batch.readNamespacedJob({ name: "queued-trainers", namespace });
          return undefined;
        } catch {
          return true;
        }
      },
      30_000,
      250,
    );
    await federations.patchSpec("queued", { suspend: false });
    assert.equal((await readJob()).metadata?.labels?.["kueue.x-k8s.io/queue-name"], "gpu-team");
    await federations.deleteAndWait("queued");
  });

  test("an operator restart recreates, modifies and rewrites nothing", async () => {
    const versions = async () => ({
      alpha: (await federations.read("alpha")).metadata.resourceVersion,
      invalid: (await federations.read("too-small")).metadata.resourceVersion,
      job: (await batch.readNamespacedJob({ name: "alpha-trainers", namespace })).metadata
        ?.resourceVersion,
      configMap: (await core.readNamespacedConfigMap({ name: "alpha-trainer-config", namespace }))
        .metadata?.resourceVersion,
      secret: (await core.readNamespacedSecret({ name: "alpha-member-key", namespace })).metadata
        ?.resourceVersion,
    });
    const before = await versions();
    await operator.stop("SIGTERM");
    await operator.restart();
    await operator.waitUntilLeading(30_000, "the restarted operator to lead");
    // Every object reconciled at least twice (start-up and a 2 s resync) with nothing to do.
    await waitFor(
      "the restarted operator to reconcile everything twice",
      async () =>
        (await operator.metric("controller_runtime_reconcile_total", { result: "success" })) >= 4
          ? true
          : undefined,
      30_000,
    );
    assert.equal(await operator.metric("fedtrain_operator_api_writes_total"), 0);
    assert.deepEqual(await versions(), before);
  });

  test("with two operators only the leader reconciles, and killing it hands over within the lease", async () => {
    const second = await OperatorProcess.start(kubeconfig, operatorFlags(), `${logFile}.second`);
    try {
      await sleep(3_000);
      assert.equal(await operator.metric("leader_election_master_status"), 1);
      assert.equal(await second.metric("leader_election_master_status"), 0);
      await objects.createNamespacedCustomObject({
        group,
        version,
        namespace,
        plural,
        body: manifest("beta", { replicas: 1 }),
      });
      await federations.waitStatus(
        "beta",
        "Ready",
        (s) => condition(s, "Ready")?.status === "True",
      );
      assert.equal(await second.metric("controller_runtime_reconcile_total"), 0);

      const killed = Date.now();
      await operator.stop("SIGKILL");
      await waitFor(
        "the second operator to lead",
        async () =>
          (await second.metric("leader_election_master_status")) === 1 ? true : undefined,
        30_000,
        100,
      );
      const handover = Date.now() - killed;
      // Lease duration 15 s, plus one retry period of 2 s to notice.
      assert.ok(handover <= 17_000, `handover took ${handover} ms`);
      await federations.patchSpec("beta", { contribution: { replicas: 2 } });
      await federations.waitStatus("beta", "2 trainers ready", (s) => s.trainers?.ready === 2);
    } finally {
      await second.stop();
      await operator.restart();
    }
  });

  test("the operator rides out an API server restart without restarting itself", async () => {
    await waitFor(
      "the operator to lead again",
      async () =>
        (await operator.metric("leader_election_master_status")) === 1 ? true : undefined,
      30_000,
    );
    const pid = operator.pid;
    await testbed.restart({ cluster: testbed.clusters[0] ?? "", component: "apiserver" });
    await federations.patchSpec("beta", { contribution: { replicas: 1 } });
    await federations.waitStatus(
      "beta",
      "scaled to 1 after the restart",
      (s) => s.trainers?.desired === 1 && s.trainers?.ready === 1,
      90_000,
    );
    assert.equal(operator.pid, pid);
  });

  test("deleting a TrainingFederation removes its finalizer and its children", async () => {
    // The trainers stop, then the leave Job tries NATS (nothing listens here) twice and fails:
    // the finalizer lets go anyway.
    await federations.deleteAndWait("alpha", 120_000);
    await waitFor(
      "the garbage collector to remove alpha's children",
      async () => {
        const selector = { namespace, labelSelector: "fedtrain.dev/instance=alpha" };
        const [jobs, configMaps, secrets] = await Promise.all([
          batch.listNamespacedJob(selector),
          core.listNamespacedConfigMap(selector),
          core.listNamespacedSecret(selector),
        ]);
        return jobs.items.length + configMaps.items.length + secrets.items.length === 0
          ? true
          : undefined;
      },
      60_000,
    );
  });
});
