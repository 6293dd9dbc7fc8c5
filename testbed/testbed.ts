// The local multi-cluster test bed: N independent Kubernetes clusters on this machine (each with its
// own API server, controller manager, scheduler, CA and nodes: real ones, kubelet + containerd in
// network namespaces of their own (real-node.ts), or the node agent; one etcd shared under a
// prefix per cluster) and one nats-server with JetStream. Every component is a detached process
// recorded in <dir>/state.json, so `testbed up` can return, `status` and `down` can find them
// again, and tests can stop or restart one component to inject a fault.
import { existsSync } from "node:fs";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import https from "node:https";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { CoreV1Api, KubeConfig, PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import { repoRoot } from "../scripts/repository.js";
import {
  buildImages,
  ensureContainerTools,
  pauseImage,
  type TestbedImages,
} from "./container-images.js";
import { writeKubeconfig } from "./kubeconfig.js";
import { answersInfo, natsServerConfig } from "./nats.js";
import { type ClusterPki, ensureClientCertificate, ensureClusterPki } from "./pki.js";
import { freePort, isRunning, startDaemon, stopDaemon, waitFor } from "./process.js";
import { type Binaries, provision } from "./provision.js";
import {
  ctr,
  ensureHostAddress,
  ensureNodeNetwork,
  gpuLabels,
  hostAddress,
  importImages,
  type NodeNetwork,
  type NodeSpec,
  nodeNetwork,
  nodePaths,
  nodeRunning,
  removeHostAddress,
  removeNode,
  startContainerd,
  startKubelet,
  stopNode,
  writeNodeConfig,
} from "./real-node.js";

/** The control-plane processes of each cluster. */
export const controlPlaneComponents = ["apiserver", "controller-manager", "scheduler"] as const;
/**
 * One per-cluster process: a control-plane component, or the node agent of node i (1-based),
 * one process per node so that a test can fail a single node.
 */
export type ClusterComponent = (typeof controlPlaneComponents)[number] | `node-${number}`;
/** A process of the test bed: shared (etcd, nats) or of one cluster. */
export type Component = "etcd" | "nats" | { cluster: string; component: ClusterComponent };

/**
 * What runs a cluster's pods: real nodes (kubelet + containerd + runc, fedtrain's images built
 * from its Dockerfiles) or the test bed's node agent (pods as local processes, images mapped to
 * local programs: see images.ts).
 */
export type NodeRuntime = "containerd" | "node-agent";

/** Options of {@link Testbed.up}. */
export interface UpOptions {
  /** What runs the pods; default "node-agent". Fixed when the test bed is first brought up. */
  runtime?: NodeRuntime;
  /** Folder of the test bed's state, logs and kubeconfigs; default `<repo>/.testbed`. */
  dir?: string;
  /** How many clusters, or their names; default 3. */
  clusters?: number | string[];
  /** Nodes per cluster; default 2. */
  nodes?: number;
  /** `nvidia.com/gpu` capacity of each node; default 2. */
  gpusPerNode?: number;
  /** Progress lines; default standard error. */
  log?: (line: string) => void;
}

interface ClusterState {
  name: string;
  /** Distinguishes the clusters' pod addresses (127.<pod net>.<index × 16 + node>.y). */
  index: number;
  apiserverPort: number;
  controllerManagerPort: number;
  schedulerPort: number;
  nodes: number;
  gpusPerNode: number;
  pids: Partial<Record<ClusterComponent, number>>;
  /** Real nodes' processes, by component (node-1, …). */
  nodePids?: Partial<Record<ClusterComponent, RealNodePids>>;
}

/** The processes of one real node. */
interface RealNodePids {
  containerd?: number;
  kubelet?: number;
  logKeeper?: number;
}

interface State {
  binaries: Binaries;
  runtime?: NodeRuntime;
  /** The images real nodes import (OCI archives). */
  images?: TestbedImages;
  etcd: { clientPort: number; peerPort: number; pid?: number };
  nats: { port: number; pid?: number };
  /** The second octet of this test bed's node and pod addresses (1-254, random per test bed). */
  podNet?: number;
  clusters: ClusterState[];
}

/** How one component is doing, for `testbed status`. */
export interface ComponentStatus {
  component: string;
  running: boolean;
  pid?: number;
  detail?: string;
}

/** The default test-bed folder, git-ignored. */
export const defaultDir = path.join(repoRoot, ".testbed");
const clusterNames = ["alpine", "birch", "cedar", "dogwood", "elm", "fir", "ginkgo", "hazel"];
// Roomy for a cold API server on a busy 2-core machine (it is ready in 5-15 s when warm).
const apiserverReadyTimeoutMs = 120_000;
const nodeAgentEntry = path.join(path.dirname(fileURLToPath(import.meta.url)), "node-agent.js");
const logKeeperEntry = path.join(path.dirname(fileURLToPath(import.meta.url)), "log-keeper.js");

/** A running test bed, as recorded in its state file. */
export class Testbed {
  private constructor(
    readonly dir: string,
    private state: State,
    private readonly log: (line: string) => void,
  ) {}

  /**
   * Brings the test bed up, or completes it: components already running (from an earlier `up`)
   * are kept, missing ones are started. Resolves when every API server is ready and every
   * cluster's nodes are registered and Ready.
   */
  static async up(options: UpOptions = {}): Promise<Testbed> {
    const dir = path.resolve(options.dir ?? defaultDir);
    const log = options.log ?? ((line: string) => console.error(line));
    await mkdir(dir, { recursive: true });
    const existing = await readState(dir);
    const wanted = wantedClusters(options, existing);
    const binaries = await provision({ log });
    const runtime = existing?.runtime ?? options.runtime ?? "node-agent";
    if (runtime === "containerd") await ensureContainerTools(undefined, log);
    const state: State = existing ?? {
      binaries,
      runtime,
      etcd: { clientPort: await freePort(), peerPort: await freePort() },
      nats: { port: await freePort() },
      podNet: 1 + Math.floor(Math.random() * 254),
      clusters: [],
    };
    state.binaries = binaries;
    for (const name of wanted) {
      if (state.clusters.some((c) => c.name === name)) continue;
      state.clusters.push({
        name,
        index: state.clusters.length,
        apiserverPort: await freePort(),
        controllerManagerPort: await freePort(),
        schedulerPort: await freePort(),
        nodes: options.nodes ?? 2,
        gpusPerNode: options.gpusPerNode ?? 2,
        pids: {},
      });
    }
    if (runtime === "containerd") {
      state.images = await buildImages({ binaries, log });
      await ensureHostAddress(state.podNet ?? 1);
    }
    const testbed = new Testbed(dir, state, log);
    await testbed.save();
    try {
      await testbed.start("etcd");
      await testbed.start("nats");
      for (const cluster of state.clusters) {
        for (const component of componentsOf(cluster)) {
          await testbed.start({ cluster: cluster.name, component });
        }
      }
      for (const cluster of state.clusters) {
        await testbed.waitNodesReady(cluster.name, runtime === "containerd" ? 120_000 : undefined);
        if (runtime === "containerd") await testbed.advertiseGpus(cluster.name);
      }
    } catch (error) {
      // A test bed that never came up leaves nothing running on the host (its logs stay).
      if (!existing) await testbed.down({ keepData: true }).catch(() => {});
      throw error;
    }
    return testbed;
  }

  /** The test bed recorded in dir, or undefined when there is none. */
  static async open(dir = defaultDir, log?: (line: string) => void): Promise<Testbed | undefined> {
    const state = await readState(path.resolve(dir));
    return state && new Testbed(path.resolve(dir), state, log ?? ((l) => console.error(l)));
  }

  /** Names of the clusters. */
  get clusters(): string[] {
    return this.state.clusters.map((c) => c.name);
  }

  /** The second octet of this test bed's node and pod addresses. */
  get net(): number {
    return this.state.podNet ?? 1;
  }

  /** What runs the pods. */
  get runtime(): NodeRuntime {
    return this.state.runtime ?? "node-agent";
  }

  /**
   * The address the API servers and NATS serve on: loopback with the node agent; with real nodes,
   * the test bed's address on the host, which pods and kubelets in their namespaces reach too.
   */
  get hostAddress(): string {
    return this.runtime === "containerd" ? hostAddress(this.state.podNet ?? 1) : "127.0.0.1";
  }

  /** The NATS URL every cluster's pods use. */
  get natsUrl(): string {
    return `nats://${this.hostAddress}:${this.state.nats.port}`;
  }

  /** The binaries the test bed runs (kubectl and helm included). */
  get binaries(): Binaries {
    return this.state.binaries;
  }

  /** Path of the cluster-admin kubeconfig of a cluster. */
  kubeconfigPath(cluster: string): string {
    return path.join(this.clusterDir(this.cluster(cluster).name), "kubeconfig");
  }

  /**
   * Path of a kubeconfig of a cluster for `user` in `groups`: RBAC alone decides what it may do,
   * so a test can run a program with exactly the permissions it is meant to have.
   */
  async userKubeconfigPath(cluster: string, user: string, groups: string[] = []): Promise<string> {
    const state = this.cluster(cluster);
    const dir = this.clusterDir(state.name);
    const pkiDir = path.join(dir, "pki");
    const pki = await ensureClusterPki(pkiDir, this.extraIps());
    const stem = `user-${user.replace(/[^a-z0-9-]/gi, "-")}`;
    const client = await ensureClientCertificate(pki, pkiDir, stem, { user, groups });
    const file = path.join(dir, `${stem}.kubeconfig`);
    await writeKubeconfig(file, {
      cluster: state.name,
      server: `https://${this.hostAddress}:${state.apiserverPort}`,
      caCert: pki.ca.cert,
      client,
      user,
    });
    return file;
  }

  /** A client configuration for a cluster, as its administrator. */
  kubeConfig(cluster: string): KubeConfig {
    const config = new KubeConfig();
    config.loadFromFile(this.kubeconfigPath(cluster));
    return config;
  }

  /** The folder where the node agent of a cluster keeps the pods' files and logs. */
  podsDir(cluster: string): string {
    return path.join(this.clusterDir(cluster), "pods");
  }

  /** The folder of a cluster's component logs (apiserver.log, node-1.log, …). */
  logsDir(cluster: string): string {
    return path.join(this.clusterDir(this.cluster(cluster).name), "logs");
  }

  /** Starts one component if it is not running, and waits until it serves. */
  async start(component: Component): Promise<void> {
    if (component === "etcd") return this.startEtcd();
    if (component === "nats") return this.startNats();
    const cluster = this.cluster(component.cluster);
    if (this.runtime === "containerd" && component.component.startsWith("node-")) {
      return this.startRealNode(cluster, component.component);
    }
    const command = this.commandOf(component.component);
    if (await isRunning(cluster.pids[component.component], command)) return;
    const dir = this.clusterDir(cluster.name);
    await mkdir(path.join(dir, "logs"), { recursive: true });
    const args = await this.clusterArgs(cluster, component.component);
    const logFile = path.join(dir, "logs", `${component.component}.log`);
    // A kube-apiserver that exits while it starts (etcd slow to answer on a loaded machine, its
    // port briefly held by a connection) is started again, as the kubelet restarts a static pod.
    for (let attempt = 1; ; attempt++) {
      this.log(`[testbed] ${cluster.name}: starting ${component.component}`);
      cluster.pids[component.component] = startDaemon({ command, args, logFile });
      await this.save();
      if (component.component !== "apiserver") return;
      if ((await this.waitApiserverReady(cluster)) === "ready") return;
      const tail = (await readFile(logFile, "utf8").catch(() => "")).trimEnd().split("\n");
      if (attempt === 3) {
        throw new Error(
          `kube-apiserver of ${cluster.name} exited ${attempt} times while starting; last lines of ${logFile}:\n${tail.slice(-10).join("\n")}`,
        );
      }
      this.log(`[testbed] ${cluster.name}: kube-apiserver exited while starting: ${tail.at(-1)}`);
    }
  }

  /** Stops one component (SIGTERM, then SIGKILL after graceMs). */
  async stop(component: Component, graceMs = 10_000): Promise<void> {
    if (component === "etcd") {
      await stopDaemon(this.state.etcd.pid, this.state.binaries.etcd, graceMs);
      this.state.etcd.pid = undefined;
    } else if (component === "nats") {
      await stopDaemon(this.state.nats.pid, this.state.binaries.natsServer, graceMs);
      this.state.nats.pid = undefined;
    } else if (this.runtime === "containerd" && component.component.startsWith("node-")) {
      const cluster = this.cluster(component.cluster);
      const spec = await this.nodeSpec(cluster, component.component);
      const pids = cluster.nodePids?.[component.component] ?? {};
      await stopNode(spec, pids, graceMs);
      await stopDaemon(pids.logKeeper, process.execPath, 5_000);
      if (cluster.nodePids) cluster.nodePids[component.component] = {};
    } else {
      const cluster = this.cluster(component.cluster);
      const pid = cluster.pids[component.component];
      await stopDaemon(pid, this.commandOf(component.component), graceMs);
      cluster.pids[component.component] = undefined;
    }
    await this.save();
  }

  /** Stops and starts one component again (same ports, same data). */
  async restart(component: Component): Promise<void> {
    await this.stop(component);
    await this.start(component);
  }

  /** What is running, per component. */
  async status(): Promise<ComponentStatus[]> {
    const out: ComponentStatus[] = [
      {
        component: "etcd",
        pid: this.state.etcd.pid,
        running: await isRunning(this.state.etcd.pid, this.state.binaries.etcd),
        detail: `http://127.0.0.1:${this.state.etcd.clientPort}`,
      },
      {
        component: "nats",
        pid: this.state.nats.pid,
        running: await isRunning(this.state.nats.pid, this.state.binaries.natsServer),
        detail: this.natsUrl,
      },
    ];
    for (const cluster of this.state.clusters) {
      for (const component of componentsOf(cluster)) {
        const pid =
          this.runtime === "containerd" && component.startsWith("node-")
            ? cluster.nodePids?.[component]?.kubelet
            : cluster.pids[component];
        out.push({
          component: `${cluster.name}/${component}`,
          pid,
          running: await isRunning(pid, this.commandOf(component)),
          detail:
            component === "apiserver"
              ? `https://${this.hostAddress}:${cluster.apiserverPort}`
              : component.startsWith("node-")
                ? `${cluster.name}-${component}, ${cluster.gpusPerNode} GPUs${this.runtime === "containerd" ? ` (kubelet + containerd, ${this.nodeNetworkOf(cluster, component).nodeIp})` : ""}`
                : undefined,
        });
      }
    }
    return out;
  }

  /**
   * Stops every process (node agents first, so pods get their SIGTERM while the API servers still
   * answer) and removes the state. With keepData the etcd data and the logs stay for inspection.
   */
  async down(options: { keepData?: boolean } = {}): Promise<void> {
    for (const cluster of this.state.clusters) {
      for (const component of componentsOf(cluster).filter((c) => c.startsWith("node-"))) {
        await this.stop({ cluster: cluster.name, component }, 30_000);
      }
    }
    for (const cluster of this.state.clusters) {
      for (const component of ["scheduler", "controller-manager", "apiserver"] as const) {
        await this.stop({ cluster: cluster.name, component });
      }
    }
    await this.stop("nats");
    await this.stop("etcd");
    if (this.runtime === "containerd") {
      for (const cluster of this.state.clusters) {
        for (const component of componentsOf(cluster).filter((c) => c.startsWith("node-"))) {
          await removeNode(await this.nodeSpec(cluster, component), {
            keepFiles: options.keepData,
          });
        }
      }
      await removeHostAddress(this.state.podNet ?? 1);
    }
    if (options.keepData) await rm(path.join(this.dir, "state.json"), { force: true });
    else await rm(this.dir, { recursive: true, force: true });
  }

  private cluster(name: string): ClusterState {
    const cluster = this.state.clusters.find((c) => c.name === name);
    if (!cluster) {
      throw new Error(`no cluster ${name} in the test bed (clusters: ${this.clusters.join(", ")})`);
    }
    return cluster;
  }

  private clusterDir(name: string): string {
    return path.join(this.dir, name);
  }

  private commandOf(component: ClusterComponent): string {
    const b = this.state.binaries;
    switch (component) {
      case "apiserver":
        return b.kubeApiserver;
      case "controller-manager":
        return b.kubeControllerManager;
      case "scheduler":
        return b.kubeScheduler;
      default:
        return this.runtime === "containerd" ? b.kubelet : process.execPath;
    }
  }

  private extraIps(): string[] {
    return this.runtime === "containerd" ? [this.hostAddress] : [];
  }

  private nodeNetworkOf(cluster: ClusterState, component: ClusterComponent): NodeNetwork {
    return nodeNetwork(
      this.state.podNet ?? 1,
      cluster.index,
      Number(component.slice("node-".length)),
    );
  }

  /** What a real node of a cluster is made of (its folders, addresses and credentials). */
  private async nodeSpec(cluster: ClusterState, component: ClusterComponent): Promise<NodeSpec> {
    const dir = this.clusterDir(cluster.name);
    const pkiDir = path.join(dir, "pki");
    await mkdir(pkiDir, { recursive: true });
    const pki = await ensureClusterPki(pkiDir, this.extraIps());
    const name = `${cluster.name}-${component}`;
    const client = await ensureClientCertificate(pki, pkiDir, `kubelet-${component}`, {
      user: `system:node:${name}`,
      // The test bed authorizes with RBAC only (no Node authorizer): the kubelet is an admin.
      groups: ["system:nodes", "system:masters"],
    });
    const kubeconfig = path.join(dir, `kubelet-${component}.kubeconfig`);
    await writeKubeconfig(kubeconfig, {
      cluster: cluster.name,
      server: `https://${this.hostAddress}:${cluster.apiserverPort}`,
      caCert: pki.ca.cert,
      client,
      user: `system:node:${name}`,
    });
    const network = this.nodeNetworkOf(cluster, component);
    return {
      name,
      network,
      net: this.state.podNet ?? 1,
      dir: path.join(dir, component),
      // Sockets have 108 bytes for their path: the run folder is short, under /run.
      runDir: path.join("/run/fedtrain-testbed", network.netns),
      apiserverPort: cluster.apiserverPort,
      kubeconfig,
      clientCaFile: pki.ca.cert,
      kubelet: this.state.binaries.kubelet,
      pauseImage,
      labels: {
        "node.kubernetes.io/instance-type": "fedtrain-testbed",
        "fedtrain.dev/testbed-cluster": cluster.name,
        ...gpuLabels,
        "nvidia.com/gpu.count": String(cluster.gpusPerNode),
      },
    };
  }

  /**
   * The host pid of a running container of a real node (its first process), from the node's
   * containerd; undefined when the container does not run there.
   */
  async realContainerPid(
    name: string,
    node: string,
    containerId: string,
  ): Promise<number | undefined> {
    const cluster = this.cluster(name);
    const component = node.slice(cluster.name.length + 1) as ClusterComponent;
    if (!componentsOf(cluster).includes(component)) return undefined;
    const tasks = await ctr(await this.nodeSpec(cluster, component), ["tasks", "ls"]);
    for (const line of tasks.split("\n").slice(1)) {
      const [id, pid, status] = line.trim().split(/\s+/);
      if (id === containerId && status === "RUNNING") return Number(pid);
    }
    return undefined;
  }

  /** Starts a real node (network, containerd with the images, kubelet, log keeper). */
  private async startRealNode(cluster: ClusterState, component: ClusterComponent): Promise<void> {
    const spec = await this.nodeSpec(cluster, component);
    cluster.nodePids ??= {};
    const pids = cluster.nodePids[component] ?? {};
    cluster.nodePids[component] = pids;
    const running = await nodeRunning(spec, pids);
    if (running.kubelet && running.containerd) return;
    if (running.kubelet || running.containerd) await stopNode(spec, pids);
    this.log(
      `[testbed] ${cluster.name}: starting ${component} (kubelet + containerd, ${spec.network.nodeIp})`,
    );
    await ensureNodeNetwork(spec);
    await writeNodeConfig(spec);
    pids.containerd = await startContainerd(spec);
    await this.save();
    const images = this.state.images;
    if (!images) throw new Error("the test bed's images were not built");
    await importImages(spec, [
      images.pause.archive,
      images.operator.archive,
      images.trainer.archive,
    ]);
    pids.kubelet = startKubelet(spec);
    if (!(await isRunning(pids.logKeeper, process.execPath))) {
      pids.logKeeper = startDaemon({
        command: process.execPath,
        args: [
          logKeeperEntry,
          `--from=${nodePaths(spec).podLogs}`,
          `--to=${this.podsDir(cluster.name)}`,
        ],
        logFile: path.join(spec.dir, "log-keeper.log"),
      });
    }
    await this.save();
  }

  /**
   * Advertises each real node's GPUs: an extended resource in the node's status, as a device
   * plugin would report it (the kubelet keeps extended resources that others set).
   */
  private async advertiseGpus(name: string): Promise<void> {
    const cluster = this.cluster(name);
    const api = this.kubeConfig(name).makeApiClient(CoreV1Api);
    for (const component of componentsOf(cluster).filter((c) => c.startsWith("node-"))) {
      const node = `${cluster.name}-${component}`;
      const gpus = String(cluster.gpusPerNode);
      const current = await api.readNodeStatus({ name: node });
      if (current.status?.capacity?.["nvidia.com/gpu"] === gpus) continue;
      await api.patchNodeStatus(
        {
          name: node,
          body: {
            status: {
              capacity: { "nvidia.com/gpu": gpus },
              allocatable: { "nvidia.com/gpu": gpus },
            },
          },
        },
        setHeaderOptions("Content-Type", PatchStrategy.StrategicMergePatch),
      );
    }
  }

  private async save(): Promise<void> {
    await writeFile(path.join(this.dir, "state.json"), `${JSON.stringify(this.state, null, 2)}\n`);
  }

  private async startEtcd(): Promise<void> {
    const { etcd, binaries } = this.state;
    if (await isRunning(etcd.pid, binaries.etcd)) return;
    const client = `http://127.0.0.1:${etcd.clientPort}`;
    const peer = `http://127.0.0.1:${etcd.peerPort}`;
    this.log("[testbed] starting etcd");
    etcd.pid = startDaemon({
      command: binaries.etcd,
      args: [
        "--name=testbed",
        `--data-dir=${path.join(this.dir, "etcd")}`,
        `--listen-client-urls=${client}`,
        `--advertise-client-urls=${client}`,
        `--listen-peer-urls=${peer}`,
        `--initial-advertise-peer-urls=${peer}`,
        `--initial-cluster=testbed=${peer}`,
        // A test bed's data is disposable; fsync would make every write wait for the disk.
        "--unsafe-no-fsync",
        "--log-level=warn",
        "--quota-backend-bytes=4294967296",
      ],
      logFile: path.join(this.dir, "etcd.log"),
    });
    await this.save();
    await waitFor(
      "etcd",
      async () => ((await fetch(`${client}/health`)).ok ? true : undefined),
      30_000,
    );
  }

  private async startNats(): Promise<void> {
    const { nats, binaries } = this.state;
    if (await isRunning(nats.pid, binaries.natsServer)) return;
    const config = path.join(this.dir, "nats.conf");
    await writeFile(
      config,
      natsServerConfig(nats.port, path.join(this.dir, "jetstream"), undefined, this.hostAddress),
    );
    this.log("[testbed] starting nats-server");
    nats.pid = startDaemon({
      command: binaries.natsServer,
      args: ["-c", config],
      logFile: path.join(this.dir, "nats.log"),
    });
    await this.save();
    await waitFor(
      "nats-server",
      async () => ((await answersInfo(nats.port, this.hostAddress)) ? true : undefined),
      30_000,
    );
  }

  private async clusterArgs(cluster: ClusterState, component: ClusterComponent): Promise<string[]> {
    const dir = this.clusterDir(cluster.name);
    const pkiDir = path.join(dir, "pki");
    await mkdir(pkiDir, { recursive: true });
    const pki = await ensureClusterPki(pkiDir, this.extraIps());
    const server = `https://${this.hostAddress}:${cluster.apiserverPort}`;
    const kubeconfigFor = async (user: string, groups: string[], file: string) => {
      const client = await ensureClientCertificate(pki, pkiDir, file, { user, groups });
      const kubeconfig = path.join(dir, `${file}.kubeconfig`);
      await writeKubeconfig(kubeconfig, {
        cluster: cluster.name,
        server,
        caCert: pki.ca.cert,
        client,
        user,
      });
      return kubeconfig;
    };
    switch (component) {
      case "apiserver": {
        // The administrator's kubeconfig is the one users and tests get.
        const admin = await kubeconfigFor("testbed-admin", ["system:masters"], "admin");
        await writeFile(path.join(dir, "kubeconfig"), await readFile(admin));
        return [
          `--etcd-servers=http://127.0.0.1:${this.state.etcd.clientPort}`,
          `--etcd-prefix=/clusters/${cluster.name}`,
          `--bind-address=${this.hostAddress}`,
          `--advertise-address=${this.hostAddress}`,
          ...(await this.kubeletClientArgs(pki, pkiDir)),
          `--secure-port=${cluster.apiserverPort}`,
          `--cert-dir=${pkiDir}`,
          `--tls-cert-file=${pki.apiserver.cert}`,
          `--tls-private-key-file=${pki.apiserver.key}`,
          `--client-ca-file=${pki.ca.cert}`,
          "--service-cluster-ip-range=10.0.0.0/24",
          "--authorization-mode=RBAC",
          "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
          `--service-account-key-file=${pki.serviceAccountPublicKey}`,
          `--service-account-signing-key-file=${pki.serviceAccountKey}`,
          "--allow-privileged=false",
          "--profiling=false",
        ];
      }
      case "controller-manager":
        return [
          `--kubeconfig=${await kubeconfigFor("system:kube-controller-manager", [], "controller-manager")}`,
          `--service-account-private-key-file=${pki.serviceAccountKey}`,
          `--root-ca-file=${pki.ca.cert}`,
          "--use-service-account-credentials=true",
          `--cluster-name=${cluster.name}`,
          "--leader-elect=false",
          "--bind-address=127.0.0.1",
          `--secure-port=${cluster.controllerManagerPort}`,
        ];
      case "scheduler":
        return [
          `--kubeconfig=${await kubeconfigFor("system:kube-scheduler", [], "scheduler")}`,
          "--leader-elect=false",
          "--bind-address=127.0.0.1",
          `--secure-port=${cluster.schedulerPort}`,
        ];
      default:
        return [
          nodeAgentEntry,
          `--kubeconfig=${await kubeconfigFor("testbed-node-agent", ["system:masters"], "node-agent")}`,
          `--cluster=${cluster.name}`,
          `--cluster-index=${cluster.index}`,
          `--pod-net=${this.state.podNet ?? 1}`,
          `--node-index=${component.slice("node-".length)}`,
          `--gpus-per-node=${cluster.gpusPerNode}`,
          `--pods-dir=${this.podsDir(cluster.name)}`,
          `--apiserver-port=${cluster.apiserverPort}`,
          `--ca-file=${pki.ca.cert}`,
        ];
    }
  }

  /** With real nodes: how the API server reaches kubelets (`kubectl logs`, `exec`). */
  private async kubeletClientArgs(pki: ClusterPki, pkiDir: string): Promise<string[]> {
    if (this.runtime !== "containerd") return [];
    const client = await ensureClientCertificate(pki, pkiDir, "apiserver-kubelet-client", {
      user: "kube-apiserver-kubelet-client",
      groups: ["system:masters"],
    });
    return [
      `--kubelet-client-certificate=${client.cert}`,
      `--kubelet-client-key=${client.key}`,
      "--kubelet-preferred-address-types=InternalIP",
    ];
  }

  /** Waits until the API server answers /readyz, or says that its process exited. */
  private async waitApiserverReady(cluster: ClusterState): Promise<"ready" | "exited"> {
    const pkiDir = path.join(this.clusterDir(cluster.name), "pki");
    const [ca, cert, key] = await Promise.all([
      readFile(path.join(pkiDir, "ca.crt")),
      readFile(path.join(pkiDir, "admin.crt")),
      readFile(path.join(pkiDir, "admin.key")),
    ]);
    const command = this.commandOf("apiserver");
    return waitFor(
      `the API server of ${cluster.name} to be ready`,
      async () => {
        if (!(await isRunning(cluster.pids.apiserver, command))) return "exited" as const;
        const status = await httpsStatus(this.hostAddress, cluster.apiserverPort, "/readyz", {
          ca,
          cert,
          key,
        });
        return status === 200 ? ("ready" as const) : undefined;
      },
      apiserverReadyTimeoutMs,
      250,
    );
  }

  /** Waits until every node of a cluster is registered and Ready. */
  async waitNodesReady(name: string, timeoutMs = 60_000): Promise<void> {
    const cluster = this.cluster(name);
    const api = this.kubeConfig(name).makeApiClient(CoreV1Api);
    await waitFor(
      `${cluster.nodes} Ready nodes in ${name}`,
      async () => {
        const nodes = await api.listNode();
        const ready = nodes.items.filter((n) =>
          n.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True"),
        );
        return ready.length >= cluster.nodes ? true : undefined;
      },
      timeoutMs,
      250,
    );
  }
}

function componentsOf(cluster: ClusterState): ClusterComponent[] {
  const nodes = Array.from({ length: cluster.nodes }, (_, i) => `node-${i + 1}` as const);
  return [...controlPlaneComponents, ...nodes];
}

function wantedClusters(options: UpOptions, existing: State | undefined): string[] {
  if (Array.isArray(options.clusters)) return options.clusters;
  const count = options.clusters ?? (existing ? existing.clusters.length : 3);
  if (!Number.isInteger(count) || count < 1 || count > clusterNames.length) {
    throw new Error(`--clusters must be between 1 and ${clusterNames.length}`);
  }
  return clusterNames.slice(0, count);
}

async function readState(dir: string): Promise<State | undefined> {
  const file = path.join(dir, "state.json");
  if (!existsSync(file)) return undefined;
  return JSON.parse(await readFile(file, "utf8")) as State;
}

function httpsStatus(
  host: string,
  port: number,
  urlPath: string,
  tls: { ca: Buffer; cert: Buffer; key: Buffer },
): Promise<number | undefined> {
  return new Promise((resolve) => {
    const request = https.get({ host, port, path: urlPath, ...tls, timeout: 2_000 }, (response) => {
      response.resume();
      resolve(response.statusCode);
    });
    request.on("error", () => resolve(undefined));
    request.on("timeout", () => request.destroy());
  });
}
