// The test bed's stand-in for the kubelet, one process per node: registers its node with GPU
// capacity and labels, keeps it Ready with node Lease heartbeats, and runs every pod the scheduler
// binds to it as local processes (see pod-runner.ts). Started by testbed.ts; SIGTERM stops every
// pod (with its grace period) and then the agent.
import { parseArgs } from "node:util";
import {
  CoordinationV1Api,
  CoreV1Api,
  KubeConfig,
  makeInformer,
  PatchStrategy,
  setHeaderOptions,
  type V1Node,
  type V1Pod,
} from "@kubernetes/client-node";
import { apiTimeMicro } from "../core/api/time.js";
import { type NodeContext, PodRunner } from "./pod-runner.js";
import { gpuLabels } from "./real-node.js";
import versions from "./versions.json" with { type: "json" };

// The node lifecycle controller marks a node unhealthy after 40-50 s without a Lease renewal;
// the kubelet renews every 10 s.
const leaseDurationSeconds = 40;
const leaseRenewMs = 10_000;
// The kubelet reports node status at least every 5 minutes when nothing changes; once a minute
// keeps `kubectl get nodes` honest without load.
const statusReportMs = 60_000;
// Watches can go silent: every pod is looked at again this often.
const podResyncMs = 10_000;

function log(message: string, fields: Record<string, unknown> = {}): void {
  process.stdout.write(
    `${JSON.stringify({ time: new Date().toISOString(), msg: message, ...fields })}\n`,
  );
}

const { values } = parseArgs({
  options: {
    kubeconfig: { type: "string" },
    cluster: { type: "string" },
    "cluster-index": { type: "string", default: "0" },
    "pod-net": { type: "string", default: "1" },
    "node-index": { type: "string", default: "1" },
    "gpus-per-node": { type: "string", default: "2" },
    "pods-dir": { type: "string" },
    "apiserver-port": { type: "string" },
    "ca-file": { type: "string" },
  },
});
if (!values.kubeconfig || !values.cluster || !values["pods-dir"] || !values["apiserver-port"]) {
  console.error(
    "usage: node-agent --kubeconfig F --cluster NAME --pods-dir D --apiserver-port P [--node-index I] [--gpus-per-node G]",
  );
  process.exit(2);
}
const clusterName = values.cluster;
const clusterIndex = Number(values["cluster-index"]);
// The second octet of every address of this test bed, chosen at random when it came up, so that
// test beds running side by side (parallel test files, two checkouts) never share a pod address.
const podNet = Number(values["pod-net"]);
const nodeIndex = Number(values["node-index"]);
const gpusPerNode = Number(values["gpus-per-node"]);
const podsDir = values["pods-dir"];
const apiserverPort = Number(values["apiserver-port"]);

const kubeConfig = new KubeConfig();
kubeConfig.loadFromFile(values.kubeconfig);
const core = kubeConfig.makeApiClient(CoreV1Api);
const coordination = kubeConfig.makeApiClient(CoordinationV1Api);

interface TestbedNode {
  name: string;
  /** 127.<pod net>.<cluster × 16 + node>.1; its pods get .2-254 of that /24. */
  ip: string;
  nextPodHost: number;
  uid?: string;
}

// One node per agent process, so that stopping the process fails exactly one node.
const nodes: TestbedNode[] = [
  {
    name: `${clusterName}-node-${nodeIndex}`,
    ip: `127.${podNet}.${(clusterIndex * 16 + nodeIndex) % 256}.1`,
    nextPodHost: 2,
  },
];
const runners = new Map<string, PodRunner>();
let stopping = false;

function nodeObject(node: TestbedNode): V1Node {
  const now = new Date();
  const resources = {
    cpu: "16",
    memory: "64Gi",
    pods: "110",
    "ephemeral-storage": "100Gi",
    "nvidia.com/gpu": String(gpusPerNode),
  };
  const condition = (type: string, status: string, reason: string, message: string) => ({
    type,
    status,
    reason,
    message,
    lastHeartbeatTime: now,
    lastTransitionTime: now,
  });
  return {
    apiVersion: "v1",
    kind: "Node",
    metadata: {
      name: node.name,
      labels: {
        "kubernetes.io/hostname": node.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "node.kubernetes.io/instance-type": "fedtrain-testbed",
        "fedtrain.dev/testbed-cluster": clusterName,
        ...gpuLabels,
        "nvidia.com/gpu.count": String(gpusPerNode),
      },
    },
    spec: {},
    status: {
      capacity: resources,
      allocatable: resources,
      addresses: [
        { type: "InternalIP", address: node.ip },
        { type: "Hostname", address: node.name },
      ],
      conditions: [
        condition(
          "MemoryPressure",
          "False",
          "KubeletHasSufficientMemory",
          "node agent has sufficient memory",
        ),
        condition(
          "DiskPressure",
          "False",
          "KubeletHasNoDiskPressure",
          "node agent has no disk pressure",
        ),
        condition(
          "PIDPressure",
          "False",
          "KubeletHasSufficientPID",
          "node agent has sufficient PID",
        ),
        condition(
          "Ready",
          "True",
          "KubeletReady",
          "fedtrain test-bed node agent is posting ready status",
        ),
      ],
      nodeInfo: {
        architecture: "amd64",
        bootID: "",
        containerRuntimeVersion: "fedtrain-testbed://1",
        kernelVersion: "",
        kubeProxyVersion: "",
        kubeletVersion: versions.kubernetes,
        machineID: node.name,
        operatingSystem: "linux",
        osImage: "fedtrain test bed",
        systemUUID: node.name,
      },
    },
  };
}

async function registerNode(node: TestbedNode): Promise<void> {
  const desired = nodeObject(node);
  try {
    // Nodes accept their status on create, as the kubelet's registration relies on.
    const created = await core.createNode({ body: desired });
    node.uid = created.metadata?.uid;
    log("node registered", { node: node.name });
  } catch (error) {
    if ((error as { code?: number }).code !== 409) throw error;
    const existing = await core.readNode({ name: node.name });
    node.uid = existing.metadata?.uid;
    await reportNodeStatus(node);
    log("node re-registered", { node: node.name });
  }
}

async function reportNodeStatus(node: TestbedNode): Promise<void> {
  const { status, metadata } = nodeObject(node);
  await core.patchNode(
    { name: node.name, body: { metadata: { labels: metadata?.labels } } },
    setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
  );
  await core.patchNodeStatus(
    { name: node.name, body: { status } },
    setHeaderOptions("Content-Type", PatchStrategy.StrategicMergePatch),
  );
}

async function renewLease(node: TestbedNode): Promise<void> {
  const body = {
    apiVersion: "coordination.k8s.io/v1",
    kind: "Lease",
    metadata: {
      name: node.name,
      namespace: "kube-node-lease",
      ownerReferences: node.uid
        ? [{ apiVersion: "v1", kind: "Node", name: node.name, uid: node.uid }]
        : [],
    },
    spec: { holderIdentity: node.name, leaseDurationSeconds, renewTime: apiTimeMicro(new Date()) },
  };
  try {
    await coordination.patchNamespacedLease(
      { name: node.name, namespace: "kube-node-lease", body },
      setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
    );
  } catch (error) {
    if ((error as { code?: number }).code !== 404) throw error;
    await coordination.createNamespacedLease({ namespace: "kube-node-lease", body: body as never });
  }
}

function every(ms: number, what: string, action: () => Promise<void>): void {
  const tick = async () => {
    try {
      await action();
    } catch (error) {
      log(`${what} failed`, { error: String(error) });
    }
    if (!stopping) setTimeout(tick, ms).unref();
  };
  setTimeout(tick, ms).unref();
}

function podIP(node: TestbedNode): string {
  const ip = `${node.ip.slice(0, node.ip.lastIndexOf("."))}.${node.nextPodHost}`;
  node.nextPodHost = node.nextPodHost >= 254 ? 2 : node.nextPodHost + 1;
  return ip;
}

function onPod(pod: V1Pod): void {
  if (stopping) return;
  const node = nodes.find((n) => n.name === pod.spec?.nodeName);
  const uid = pod.metadata?.uid;
  if (!node || !uid) return;
  let runner = runners.get(uid);
  if (!runner) {
    if (
      ["Succeeded", "Failed"].includes(pod.status?.phase ?? "") &&
      !pod.metadata?.deletionTimestamp
    )
      return;
    const context: NodeContext = { core, podsDir, hostIP: node.ip, apiserverPort, log };
    // A pod this node ran before (an earlier agent) keeps its address.
    runner = new PodRunner(pod, pod.status?.podIP ?? podIP(node), context);
    runners.set(uid, runner);
  }
  runner.update(pod);
}

function onPodDeleted(pod: V1Pod): void {
  const uid = pod.metadata?.uid;
  const runner = uid ? runners.get(uid) : undefined;
  if (!runner || !uid) return;
  runners.delete(uid);
  void runner.vanish();
}

async function main(): Promise<void> {
  for (const node of nodes) await registerNode(node);
  for (const node of nodes) await renewLease(node);
  every(leaseRenewMs, "lease renewal", async () => {
    for (const node of nodes) await renewLease(node);
  });
  every(statusReportMs, "node status report", async () => {
    for (const node of nodes) await reportNodeStatus(node);
  });

  const informer = makeInformer<V1Pod>(kubeConfig, "/api/v1/pods", () =>
    core.listPodForAllNamespaces(),
  );
  informer.on("add", onPod);
  informer.on("update", onPod);
  informer.on("delete", onPodDeleted);
  // client-node's informer stops on errors other than 410 Gone: start it again after a pause.
  informer.on("error", (error) => {
    log("pod watch failed; restarting", { error: String(error) });
    setTimeout(() => {
      if (!stopping)
        informer.start().catch((e) => log("pod watch restart failed", { error: String(e) }));
    }, 1_000);
  });
  await informer.start();
  every(podResyncMs, "pod resync", async () => {
    const current = new Set<string>();
    for (const pod of informer.list()) {
      if (pod.metadata?.uid) current.add(pod.metadata.uid);
      onPod(pod);
    }
    for (const [uid, runner] of runners) {
      if (runner.done && !current.has(uid)) runners.delete(uid);
    }
  });
  log("node agent ready", { cluster: clusterName, nodes: nodes.map((n) => n.name), gpusPerNode });

  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log("stopping pods", { signal, pods: runners.size });
    await Promise.all([...runners.values()].map((r) => r.shutdown(10_000)));
    informer.stop();
    process.exit(0);
  };
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  process.on("SIGINT", () => void shutdown("SIGINT"));
}

main().catch((error) => {
  log("node agent failed", { error: String(error), stack: (error as Error).stack });
  process.exit(1);
});
