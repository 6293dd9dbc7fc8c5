// `npm run bench -- operator [--objects N]`: the operator's own cost on a test-bed cluster.
// 1. apply → pods: one federation on an idle cluster, time from create until its trainer pods
//    exist (repeated; p50 reported);
// 2. scale: N TrainingFederations with 0 replicas (a suspended Job each, so no trainer process
//    starts), time until every one has its children and Ready status, reconciles per second;
// 3. restart: one pass of reconciles over cached objects (the operator's own throughput);
// 4. idle: one live federation (a peer on the test bed's NATS heartbeating, no rounds), the
//    operator with its default resync: reconciles per object per 10 minutes, the messages its
//    NATS connections publish per second, and API writes per minute;
// and the operator's peak RSS. The baseline measured in the same run is the time the benchmark's
// own client needs just to create the N objects.
import { readFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { CoreV1Api, CustomObjectsApi } from "@kubernetes/client-node";
import type { NatsConnection } from "@nats-io/transport-node";
import {
  federationSpecHash,
  group,
  plural,
  specHashBytes,
  type TrainingFederation,
  version,
} from "../core/api/index.js";
import {
  connectNats,
  FederationWorker,
  generateKeyPair,
  type ReplicaModel,
  registerMember,
  sha256,
} from "../core/protocol/index.js";
import { protocolSpecOf } from "../operator/src/trainingfederation/federation.js";
import { installFederationApi } from "../testbed/apply.js";
import { OperatorProcess } from "../testbed/operator-process.js";
import { waitFor } from "../testbed/process.js";
import { Testbed } from "../testbed/testbed.js";

const namespace = "bench";
// The idle window: long enough for every heartbeat expiry and watch to show its cost.
const steadyStateSeconds = 180;
const applyToPodsRuns = 11;
// Objects the benchmark's client creates at once (like a GitOps tool applying a folder).
const createConcurrency = 16;

function manifest(name: string, replicas: number) {
  return {
    apiVersion: `${group}/${version}`,
    kind: "TrainingFederation",
    metadata: { name, namespace },
    spec: {
      federation: {
        id: "bench",
        model: { preset: "MLP" },
        data: { synthetic: { preset: "GaussianClusters" } },
      },
      contribution: { replicas, gpusPerReplica: 1 },
    },
  };
}

/** A replica that never changes: the peer only heartbeats. */
function stillModel(): ReplicaModel {
  const state = new Uint8Array(16);
  return {
    apply() {},
    hash: () => sha256(state),
    snapshot: () => state.slice(),
    restore() {},
  };
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length - 1) * p))] ?? Number.NaN;
}

async function peakRssMB(pid: number | undefined): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const kb = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? Number.NaN);
  return Math.round(kb / 1024);
}

async function inBatches<T>(
  items: T[],
  size: number,
  action: (item: T) => Promise<void>,
): Promise<void> {
  for (let i = 0; i < items.length; i += size)
    await Promise.all(items.slice(i, i + size).map(action));
}

/** Runs the benchmark. */
export async function run(args: string[]): Promise<unknown> {
  const objectsFlag = args.indexOf("--objects");
  const count = objectsFlag >= 0 ? Number(args[objectsFlag + 1]) : 1000;
  const dir = path.join(os.tmpdir(), `fedtrain-bench-operator-${process.pid}`);
  const log = (line: string) => console.log(line);
  log(`[operator] test bed in ${dir}`);
  const testbed = await Testbed.up({ dir, clusters: 1, nodes: 1, gpusPerNode: 8, log });
  const cluster = testbed.clusters[0] ?? "";
  const kubeConfig = testbed.kubeConfig(cluster);
  const core = kubeConfig.makeApiClient(CoreV1Api);
  const objects = kubeConfig.makeApiClient(CustomObjectsApi);
  let operator: OperatorProcess | undefined;
  let peer: FederationWorker | undefined;
  let peerConnection: NatsConnection | undefined;
  try {
    await installFederationApi(testbed, cluster, namespace);
    operator = await OperatorProcess.start(
      testbed.kubeconfigPath(cluster),
      [
        "--cluster-id=bench",
        // The test bed's own NATS: the operator reads each federation's view from it.
        `--nats-url=${testbed.natsUrl}`,
        "--trainer-image=testbed.local/stand-in-trainer:1",
        `--leader-election-namespace=${namespace}`,
        // The default resync (10 h): the federation watches queue what changes.
      ],
      path.join(dir, "operator.log"),
    );
    const metric = (name: string) => operator?.metric(name) ?? Promise.resolve(0);
    await operator.waitUntilLeading(60_000);

    // 1. apply → pods on an idle cluster.
    const applyToPods: number[] = [];
    for (let i = 0; i < applyToPodsRuns; i++) {
      const name = `latency-${i}`;
      const started = performance.now();
      await objects.createNamespacedCustomObject({
        group,
        version,
        namespace,
        plural,
        body: manifest(name, 2),
      });
      await waitFor(
        `${name}'s pods`,
        async () => {
          const pods = await core.listNamespacedPod({
            namespace,
            labelSelector: `fedtrain.dev/instance=${name}`,
          });
          return pods.items.length >= 2 ? true : undefined;
        },
        60_000,
        10,
      );
      applyToPods.push((performance.now() - started) / 1000);
      await objects.deleteNamespacedCustomObject({ group, version, namespace, plural, name });
      await waitFor(
        `${name} to be gone`,
        async () => {
          const pods = await core.listNamespacedPod({
            namespace,
            labelSelector: `fedtrain.dev/instance=${name}`,
          });
          return pods.items.length === 0 ? true : undefined;
        },
        60_000,
      );
    }
    log(
      `[operator] apply → pods created: p50 ${percentile(applyToPods, 0.5).toFixed(3)} s over ${applyToPods.length} runs`,
    );

    // A live federation: a peer of another member registered on the test bed's NATS, heartbeating
    // (and never training), whose spec is the objects' own.
    const first = (await objects.createNamespacedCustomObject({
      group,
      version,
      namespace,
      plural,
      body: manifest("member-spec", 0),
    })) as TrainingFederation;
    const nc = await connectNats(testbed.natsUrl, "bench-peer");
    const peerKeys = generateKeyPair();
    const specHash = specHashBytes(federationSpecHash(first.spec.federation));
    await registerMember(nc, {
      federationId: "bench",
      memberId: "peer",
      specHash,
      privateKey: peerKeys.privateKey,
    });
    peer = await FederationWorker.start({
      nc,
      spec: protocolSpecOf(first),
      specHash,
      memberId: "peer",
      workerId: "w0",
      privateKey: peerKeys.privateKey,
      model: stillModel(),
      role: "contributor",
    });
    peerConnection = nc;
    log("[operator] a live federation: member peer heartbeating on NATS");

    // 2. N objects at once.
    const reconcilesBefore = await metric("controller_runtime_reconcile_total");
    const names = Array.from({ length: count }, (_, i) => `member-${String(i).padStart(4, "0")}`);
    const started = performance.now();
    await inBatches(names, createConcurrency, async (name) => {
      await objects.createNamespacedCustomObject({
        group,
        version,
        namespace,
        plural,
        body: manifest(name, 0),
      });
    });
    const createSeconds = (performance.now() - started) / 1000;
    log(
      `[operator] created ${count} TrainingFederations in ${createSeconds.toFixed(1)} s (baseline)`,
    );
    let lastReport = 0;
    await waitFor(
      `all ${count} TrainingFederations to be Ready`,
      async () => {
        const list = (await objects.listNamespacedCustomObject({
          group,
          version,
          namespace,
          plural,
        })) as {
          items: { status?: { conditions?: { type: string; status: string }[] } }[];
        };
        const ready = list.items.filter((tf) =>
          tf.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True"),
        ).length;
        if (performance.now() - lastReport > 5_000) {
          lastReport = performance.now();
          log(
            `[operator] ${ready}/${count} Ready after ${((performance.now() - started) / 1000).toFixed(1)} s`,
          );
        }
        return ready >= count ? true : undefined;
      },
      30 * 60_000,
      500,
    );
    const secondsUntilAllReady = (performance.now() - started) / 1000;
    const reconciles = (await metric("controller_runtime_reconcile_total")) - reconcilesBefore;
    const creationReconcilesPerSecond = reconciles / secondsUntilAllReady;
    const creationPeakRssMB = await peakRssMB(operator.pid);
    log(
      `[operator] all Ready in ${secondsUntilAllReady.toFixed(1)} s: ${reconciles} reconciles, ${creationReconcilesPerSecond.toFixed(0)}/s, peak RSS ${creationPeakRssMB} MB`,
    );

    // The operator's own reconcile throughput: a restarted operator reconciles every object once
    // from its caches, and none needs a write.
    await operator.stop();
    const restarted = performance.now();
    await operator.restart();
    await waitFor(
      "the restarted operator to reconcile every object",
      async () =>
        (await metric("controller_runtime_reconcile_total")) >= count ? true : undefined,
      10 * 60_000,
      50,
    );
    const reconcilesPerSecond = count / ((performance.now() - restarted) / 1000);
    log(`[operator] restarted: ${count} reconciles at ${reconcilesPerSecond.toFixed(0)}/s`);

    // 3. idle: a live federation where nothing changes (the peer heartbeats).
    await sleep(15_000); // the restarted operator's watches settle
    const writesBefore = await metric("fedtrain_operator_api_writes_total");
    const reconcilesBeforeSteady = await metric("controller_runtime_reconcile_total");
    const natsBefore = await metric("fedtrain_operator_nats_messages_sent");
    log(`[operator] idle for ${steadyStateSeconds} s (default resync)`);
    await sleep(steadyStateSeconds * 1000);
    const steadyWrites = (await metric("fedtrain_operator_api_writes_total")) - writesBefore;
    const steadyReconciles =
      (await metric("controller_runtime_reconcile_total")) - reconcilesBeforeSteady;
    const natsSent = (await metric("fedtrain_operator_nats_messages_sent")) - natsBefore;
    const result = {
      objects: count,
      secondsUntilAllReady: Number(secondsUntilAllReady.toFixed(2)),
      // A full pass over every object (after a restart): what the operator itself costs.
      reconcilesPerSecond: Number(reconcilesPerSecond.toFixed(1)),
      // While objects are being created: bounded by the API server's writes on this machine.
      creationReconcilesPerSecond: Number(creationReconcilesPerSecond.toFixed(1)),
      steadyStateWritesPerMinute: Number(((steadyWrites / steadyStateSeconds) * 60).toFixed(2)),
      steadyStateReconcilesPerMinute: Number(
        ((steadyReconciles / steadyStateSeconds) * 60).toFixed(0),
      ),
      idleReconcilesPerObjectPer10Min: Number(
        ((steadyReconciles / (count + 1)) * (600 / steadyStateSeconds)).toFixed(3),
      ),
      // Every message its NATS connections publish: requests, acknowledgements, flow control.
      idleJetStreamRequestsPerSecond: Number((natsSent / steadyStateSeconds).toFixed(3)),
      applyToPodsP50Seconds: Number(percentile(applyToPods, 0.5).toFixed(3)),
      applyToPodsP90Seconds: Number(percentile(applyToPods, 0.9).toFixed(3)),
      // The larger peak of the two operator processes: through creation, and restarted with every
      // object cached through the steady state.
      peakRssMB: Math.max(creationPeakRssMB, await peakRssMB(operator.pid)),
      heapUsedMB: Math.round((await metric("nodejs_heap_size_used_bytes")) / 2 ** 20),
      baseline: {
        name: "the benchmark client creating the objects",
        createSeconds: Number(createSeconds.toFixed(2)),
        readyToCreateRatio: Number((secondsUntilAllReady / createSeconds).toFixed(2)),
      },
      machine: { cpus: os.cpus().length, cpu: os.cpus()[0]?.model, node: process.version },
    };
    console.table(result);
    return result;
  } finally {
    await peer?.stop().catch(() => {});
    await peerConnection?.close().catch(() => {});
    await operator?.stop();
    await testbed.down();
  }
}
