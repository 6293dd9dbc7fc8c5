// The operator's federation side against a real control plane and a real nats-server: the status
// shows the federation as NATS sees it (the member registered with the key the operator created,
// a worker contributing rounds), a steady federation causes no status writes, a NATS outage
// blocks nothing, and deleting the TrainingFederation deregisters the member. The operator runs
// as a user with exactly the chart's ClusterRole (scope cluster), which reads no Secret: the member leaves
// through the leave Job, which has the member key mounted.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import crypto from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import {
  AuthorizationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  PatchStrategy,
  RbacAuthorizationV1Api,
  setHeaderOptions,
  type V1PolicyRule,
} from "@kubernetes/client-node";
import { jetstream } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { parseAllDocuments } from "yaml";
import {
  group,
  plural,
  specHashBytes,
  type TrainingFederation,
  version,
} from "../../core/api/index.js";
import {
  connectNats,
  FederationWorker,
  federationNames,
  type ReplicaModel,
  registerMember,
} from "../../core/protocol/index.js";
import {
  privateKeySeed,
  protocolSpecOf,
} from "../../operator/src/trainingfederation/federation.js";
import { repoRoot } from "../../scripts/repository.js";
import { installFederationApi } from "../../testbed/apply.js";
import { type NatsServer, startNatsServer } from "../../testbed/nats.js";
import { OperatorProcess } from "../../testbed/operator-process.js";
import type { Testbed } from "../../testbed/testbed.js";
import { condition, FederationObjects } from "./federation-objects.js";
import { startTestbed, testLogFile } from "./support.js";

const namespace = "members";
const federationId = "operator-federation";
const memberId = "alpine";
const operatorUser = "fedtrain-operator";
let testbed: Testbed;
let nats: NatsServer;
let nc: NatsConnection;
let core: CoreV1Api;
let objects: CustomObjectsApi;
let federations: FederationObjects;
let operator: OperatorProcess;
let worker: FederationWorker | undefined;
const logFile = testLogFile("operator-federation-test");

/** A replica that never changes: enough for rounds to commit and hashes to agree. */
class StillModel implements ReplicaModel {
  private readonly state = new Uint8Array(16);
  apply() {}
  hash() {
    return new Uint8Array(crypto.createHash("sha256").update(this.state).digest());
  }
  snapshot() {
    return this.state.slice();
  }
  restore() {}
}

/** The rules of the chart's ClusterRole (scope cluster), as `helm template` renders them. */
async function chartClusterRoleRules(): Promise<V1PolicyRule[]> {
  const home = await mkdtemp(path.join(os.tmpdir(), "fedtrain-helm-"));
  const env = {
    ...process.env,
    HELM_CACHE_HOME: path.join(home, "cache"),
    HELM_CONFIG_HOME: path.join(home, "config"),
    HELM_DATA_HOME: path.join(home, "data"),
  };
  const chart = path.join(repoRoot, "charts", "fedtrain");
  const { stdout } = await promisify(execFile)(
    testbed.binaries.helm,
    ["template", "ft", chart, "--set", "scope=cluster"],
    { env, maxBuffer: 16 << 20 },
  ).finally(() => rm(home, { recursive: true, force: true }));
  const role = parseAllDocuments(stdout)
    .map((d) => d.toJS() as { kind?: string; rules?: V1PolicyRule[] } | null)
    .find((m) => m?.kind === "ClusterRole" && m.rules?.some((r) => r.resources?.includes("jobs")));
  assert.ok(role?.rules, "the chart renders the operator's ClusterRole");
  return role.rules;
}

/** A kubeconfig for a user bound to the chart's default ClusterRole, and nothing else. */
async function operatorKubeconfig(cluster: string): Promise<string> {
  const rbac = testbed.kubeConfig(cluster).makeApiClient(RbacAuthorizationV1Api);
  await rbac.createClusterRole({
    body: { metadata: { name: operatorUser }, rules: await chartClusterRoleRules() },
  });
  await rbac.createClusterRoleBinding({
    body: {
      metadata: { name: operatorUser },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: operatorUser },
      subjects: [{ apiGroup: "rbac.authorization.k8s.io", kind: "User", name: operatorUser }],
    },
  });
  return testbed.userKubeconfigPath(cluster, operatorUser);
}

before(async () => {
  [testbed, nats] = await Promise.all([
    startTestbed({ clusters: 1, nodes: 1, gpusPerNode: 1 }),
    startNatsServer(),
  ]);
  const cluster = testbed.clusters[0] ?? "";
  const kubeConfig = testbed.kubeConfig(cluster);
  core = kubeConfig.makeApiClient(CoreV1Api);
  objects = kubeConfig.makeApiClient(CustomObjectsApi);
  federations = new FederationObjects(objects, namespace);
  await installFederationApi(testbed, cluster, namespace);
  operator = await OperatorProcess.start(
    await operatorKubeconfig(cluster),
    [
      `--cluster-id=${memberId}`,
      `--nats-url=${nats.url}`,
      "--trainer-image=testbed.local/stand-in-trainer:1",
      "--leader-elect=false",
    ],
    logFile,
  );
  nc = await connectNats(nats.url, "operator-federation-test");
});

after(async () => {
  await worker?.stop({ graceful: false });
  await nc?.close().catch(() => {});
  await operator?.stop();
  await Promise.all([testbed?.down(), nats?.stop()]);
});

describe("operator and the federation on NATS", () => {
  test("before any member registered: Joined=False NotRegistered, Ready=False, round 0", async () => {
    await objects.createNamespacedCustomObject({
      group,
      version,
      namespace,
      plural,
      body: {
        apiVersion: `${group}/${version}`,
        kind: "TrainingFederation",
        metadata: { name: "alpha", namespace },
        spec: {
          federation: {
            id: federationId,
            model: { preset: "MLP" },
            data: { synthetic: { preset: "GaussianClusters" } },
          },
          contribution: { replicas: 1, gpusPerReplica: 1 },
        },
      },
    });
    const tf = await federations.waitStatus(
      "alpha",
      "Joined=False",
      (s) => condition(s, "Joined")?.status === "False" && s.trainers?.ready === 1,
    );
    assert.equal(condition(tf.status, "Joined").reason, "NotRegistered");
    assert.match(condition(tf.status, "Joined").message, /alpine is not registered/);
    assert.equal(condition(tf.status, "Ready").status, "False");
    assert.equal(condition(tf.status, "Ready").reason, "NotRegistered");
    assert.equal(tf.status?.progress, "0/100");
    assert.deepEqual(tf.status?.members, []);
  });

  test("registered with the key from the operator's Secret and contributing: Active, Joined, rounds advance", async () => {
    const tf = await federations.read("alpha");
    const secret = await core.readNamespacedSecret({ name: "alpha-member-key", namespace });
    const privateKey = privateKeySeed(
      Buffer.from(secret.data?.["private.pem"] ?? "", "base64").toString("utf8"),
    );
    const specHash = specHashBytes(tf.status?.federationSpecHash ?? "");
    await registerMember(nc, { federationId, memberId, specHash, privateKey });
    worker = await FederationWorker.start({
      nc,
      spec: protocolSpecOf(tf as TrainingFederation),
      specHash,
      memberId,
      workerId: "w0",
      privateKey,
      model: new StillModel(),
    });
    for (let round = 1; round <= 2; round++)
      await worker.contribute(new Uint8Array(64).fill(round), { loss: 0.25 });

    const joined = await federations.waitStatus(
      "alpha",
      "Joined=True at round 2",
      (s) => condition(s, "Joined")?.status === "True" && s.round === 2,
    );
    const status = joined.status ?? {};
    assert.equal(condition(status, "Ready").status, "True");
    assert.equal(condition(status, "Synced").status, "True");
    assert.equal(condition(status, "Degraded").status, "False");
    assert.equal(status.progress, "2/100");
    assert.equal(status.activeMembers, 1);
    assert.equal(status.loss, 0.25);
    assert.equal(status.members?.length, 1);
    const [member] = status.members ?? [];
    assert.equal(member?.id, memberId);
    assert.equal(member?.state, "Active");
    assert.equal(member?.trainers, 1);
    assert.equal(member?.roundsContributed, 2);
    // The API server keeps the counts (a field missing from the CRD schema would be pruned).
    assert.equal(member?.updatesClipped, 0);
    assert.equal(member?.updatesDropped, 0);
    assert.ok(member?.lastHeartbeat);

    // The worker keeps heartbeating; nothing new in the federation, nothing written.
    const before = (await federations.read("alpha")).metadata?.resourceVersion;
    await sleep(12_000);
    assert.equal((await federations.read("alpha")).metadata?.resourceVersion, before);

    // A round committed in NATS reaches status without any Kubernetes change (the operator
    // resyncs every 10 hours by default): its federation watch queues the object.
    await worker.contribute(new Uint8Array(64).fill(3), { loss: 0.125 });
    const committed = Date.now();
    await federations.waitStatus("alpha", "round 3 in status", (s) => s.round === 3, 2_000);
    const seconds = (Date.now() - committed) / 1000;
    assert.ok(seconds <= 2, `round 3 reached status after ${seconds} s`);
  });

  test("a NATS outage: Joined=Unknown, the last view stays, and the Kubernetes side still reconciles", async () => {
    await worker?.stop();
    worker = undefined;
    await nats.kill();
    await objects.patchNamespacedCustomObject(
      { group, version, namespace, plural, name: "alpha", body: { spec: { suspend: true } } },
      setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
    );
    const away = await federations.waitStatus(
      "alpha",
      "Suspended with NATS unreachable",
      (s) => s.phase === "Suspended" && condition(s, "Joined")?.reason === "NatsUnreachable",
    );
    assert.equal(condition(away.status, "Joined").status, "Unknown");
    assert.match(condition(away.status, "Joined").message, /cannot reach NATS at nats:\/\//);
    assert.equal(away.status.round, 3, "the last view stays");

    await nats.restart();
    await federations.waitStatus(
      "alpha",
      "Joined again",
      (s) => condition(s, "Joined")?.status === "True",
    );
  });

  test("deleting the TrainingFederation deregisters the member, without the operator reading a Secret", async () => {
    const review = await testbed
      .kubeConfig(testbed.clusters[0] ?? "")
      .makeApiClient(AuthorizationV1Api)
      .createSubjectAccessReview({
        body: {
          spec: {
            user: operatorUser,
            resourceAttributes: { verb: "get", resource: "secrets", namespace },
          },
        },
      });
    assert.equal(review.status?.allowed, false, "the operator may not read Secrets");
    const members = await new Kvm(jetstream(nc)).open(federationNames(federationId).membersBucket);
    assert.equal((await members.get(memberId))?.operation, "PUT");
    // The trainers stop, then the leave Job runs: its pod is a process the node agent starts.
    await federations.deleteAndWait("alpha", 120_000);
    const entry = await members.get(memberId);
    assert.ok(entry?.operation !== "PUT", "the member record is deleted");
    assert.equal(
      await operator.metric("fedtrain_operator_deregistrations_total", { result: "deregistered" }),
      1,
    );
  });
});
