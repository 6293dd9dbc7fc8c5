// A federation on the test bed, as a cluster owner would run it: fedtrain installed into every
// cluster with the Helm chart (the operator runs as a pod under the chart's RBAC), one
// TrainingFederation per member applied with kubectl-equivalent server-side apply, trainers as
// pods. Shared by `npm run demo` and the end-to-end scenarios in test/e2e.
import { execFile } from "node:child_process";
import { readdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { CoreV1Api, CustomObjectsApi } from "@kubernetes/client-node";
import { group, plural, version } from "../core/api/resource.js";
import type { TrainingFederation, TrainingFederationStatus } from "../core/api/types.generated.js";
import { repoRoot } from "../scripts/repository.js";
import { applyManifests } from "./apply.js";
import { signalGroup, waitFor } from "./process.js";
import { type NodeRuntime, Testbed, type UpOptions } from "./testbed.js";
import { readTrainerLog, readTrainerMessages, type TrainerLog } from "./trainer-logs.js";

const run = promisify(execFile);
const chart = path.join(repoRoot, "charts", "fedtrain");

/** The namespace the chart is installed into in every cluster. */
export const releaseNamespace = "fedtrain-system";

/** One member's TrainingFederation as its cluster shows it, and what its trainers logged. */
export interface MemberView {
  member: string;
  status: TrainingFederationStatus | undefined;
  log: TrainerLog;
}

export interface FederationBedOptions {
  /** The test bed's folder. */
  dir: string;
  /** One cluster per member, named after it. */
  members: string[];
  /** Nodes per cluster and GPUs per node; default 1 node × 2 GPUs. */
  nodes?: number;
  gpusPerNode?: number;
  /** Operator replicas per cluster (the chart's default is 2); default 1. */
  operatorReplicas?: number;
  /**
   * Namespaces that opt in to the operator (created and labelled fedtrain.dev/enabled=true before
   * the chart is installed, as a cluster admin would); default ["fedtrain"].
   */
  namespaces?: string[];
  /**
   * What runs the pods; default real nodes (kubelet + containerd, fedtrain's images built from
   * its Dockerfiles).
   */
  runtime?: NodeRuntime;
  /** Extra `--set key=value` pairs for every helm install. */
  helmValues?: string[];
  log?: (line: string) => void;
}

/** Whether a process with this pid exists (signal 0 only checks). */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Runs a command and turns a failure into an error that carries its standard error. */
async function runTool(file: string, args: string[], env?: NodeJS.ProcessEnv): Promise<string> {
  try {
    const { stdout } = await run(file, args, { env, maxBuffer: 32 << 20 });
    return stdout;
  } catch (error) {
    const { stderr } = error as { stderr?: string };
    const command = `${path.basename(file)} ${args.slice(0, 2).join(" ")}`;
    throw new Error(`${command} failed: ${stderr?.trim() || String(error)}`, { cause: error });
  }
}

export class FederationBed {
  private constructor(
    readonly testbed: Testbed,
    private readonly options: FederationBedOptions,
  ) {}

  /** Brings up one cluster per member and NATS, and installs fedtrain into every cluster. */
  static async up(options: FederationBedOptions): Promise<FederationBed> {
    const log = options.log ?? (() => {});
    const upOptions: UpOptions = {
      dir: options.dir,
      clusters: options.members,
      nodes: options.nodes ?? 1,
      gpusPerNode: options.gpusPerNode ?? 2,
      runtime: options.runtime ?? "containerd",
      log: (line) => {
        if (!line.startsWith("[provision]")) log(line);
      },
    };
    const testbed = await Testbed.up(upOptions);
    const bed = new FederationBed(testbed, options);
    try {
      await Promise.all(options.members.map((member) => bed.installFedtrain(member)));
    } catch (error) {
      await testbed.down().catch(() => {});
      throw error;
    }
    return bed;
  }

  get natsUrl(): string {
    return this.testbed.natsUrl;
  }

  get members(): string[] {
    return this.options.members;
  }

  /** `helm install fedtrain` into a member's cluster, waiting until the operator is Ready. */
  async installFedtrain(member: string): Promise<void> {
    const helmHome = path.join(this.options.dir, "helm");
    const env = {
      ...process.env,
      HELM_CACHE_HOME: path.join(helmHome, "cache"),
      HELM_CONFIG_HOME: path.join(helmHome, "config"),
      HELM_DATA_HOME: path.join(helmHome, "data"),
    };
    // The chart's default scope serves only namespaces that opted in when it is installed.
    for (const namespace of this.options.namespaces ?? ["fedtrain"]) {
      await this.ensureNamespace(member, namespace);
      await this.kubectl(
        member,
        "label",
        "--overwrite",
        "namespace",
        namespace,
        "fedtrain.dev/enabled=true",
      );
    }
    const values = [
      "image.repository=ghcr.io/fedtrain/operator",
      `clusterId=${member}`,
      `nats.urls={${this.natsUrl}}`,
      `replicas=${this.options.operatorReplicas ?? 1}`,
      ...(this.options.helmValues ?? []),
    ];
    await runTool(
      this.testbed.binaries.helm,
      [
        "install",
        "fedtrain",
        chart,
        "--kubeconfig",
        this.testbed.kubeconfigPath(member),
        "--namespace",
        releaseNamespace,
        "--create-namespace",
        ...values.flatMap((v) => ["--set", v]),
        "--wait",
        "--timeout",
        "300s",
      ],
      env,
    );
    this.options.log?.(`${member}: helm install fedtrain --wait: operator Ready`);
  }

  private async ensureNamespace(member: string, namespace: string): Promise<void> {
    const namespaces = await this.kubectl(member, "get", "namespaces", "-o", "name");
    if (!namespaces.split("\n").includes(`namespace/${namespace}`))
      await this.kubectl(member, "create", "namespace", namespace);
  }

  /** kubectl against a member's cluster; returns standard output. */
  kubectl(member: string, ...args: string[]): Promise<string> {
    return runTool(this.testbed.binaries.kubectl, [
      "--kubeconfig",
      this.testbed.kubeconfigPath(member),
      ...args,
    ]);
  }

  /** Creates the namespace if needed and applies the member's TrainingFederation. */
  async apply(member: string, tf: TrainingFederation): Promise<void> {
    const namespace = tf.metadata?.namespace ?? "default";
    await this.ensureNamespace(member, namespace);
    await applyManifests(
      this.testbed.binaries.kubectl,
      this.testbed.kubeconfigPath(member),
      JSON.stringify(tf),
    );
  }

  /** Deletes a member's TrainingFederation and waits until it is gone (its finalizer ran). */
  async delete(member: string, namespace: string, name: string, timeoutMs = 120_000) {
    await this.kubectl(
      member,
      "delete",
      "trainingfederation",
      name,
      "-n",
      namespace,
      "--wait=true",
      `--timeout=${Math.round(timeoutMs / 1000)}s`,
    );
  }

  /** The member's TrainingFederation (undefined when it does not exist or cannot be read). */
  async object(
    member: string,
    namespace: string,
    name: string,
  ): Promise<TrainingFederation | undefined> {
    const objects = this.testbed.kubeConfig(member).makeApiClient(CustomObjectsApi);
    try {
      return (await objects.getNamespacedCustomObject({
        group,
        version,
        namespace,
        plural,
        name,
      })) as TrainingFederation;
    } catch {
      return undefined;
    }
  }

  /** A member's status and trainer logs (`<name>-trainers-*` pods). */
  async view(member: string, namespace: string, name: string): Promise<MemberView> {
    const [object, log] = await Promise.all([
      this.object(member, namespace, name),
      readTrainerLog(this.testbed.podsDir(member), namespace, `${name}-trainers`),
    ]);
    return { member, status: object?.status, log };
  }

  /** Every message the trainers of a member's `<name>-trainers-*` pods logged, pod by pod. */
  trainerMessages(member: string, namespace: string, name: string): Promise<string[]> {
    return readTrainerMessages(this.testbed.podsDir(member), namespace, `${name}-trainers`);
  }

  /** Every member's view. */
  views(namespace: string, name: string): Promise<MemberView[]> {
    return Promise.all(this.members.map((m) => this.view(m, namespace, name)));
  }

  /** The names of a member's running pods whose name starts with `prefix`. */
  async runningPods(member: string, namespace: string, prefix: string): Promise<string[]> {
    const core = this.testbed.kubeConfig(member).makeApiClient(CoreV1Api);
    const pods = await core.listNamespacedPod({ namespace });
    return pods.items
      .filter((p) => p.metadata?.name?.startsWith(prefix) && p.status?.phase === "Running")
      .map((p) => p.metadata?.name ?? "");
  }

  /**
   * The Prometheus metrics text of each running pod whose name starts with `prefix`, read from
   * its container port named "metrics" (test-bed pods listen on their own loopback address).
   */
  async scrapeMetrics(member: string, namespace: string, prefix: string): Promise<string[]> {
    const core = this.testbed.kubeConfig(member).makeApiClient(CoreV1Api);
    const pods = await core.listNamespacedPod({ namespace });
    const texts: string[] = [];
    for (const pod of pods.items) {
      if (!pod.metadata?.name?.startsWith(prefix) || pod.status?.phase !== "Running") continue;
      const port = pod.spec?.containers
        .flatMap((c) => c.ports ?? [])
        .find((p) => p.name === "metrics")?.containerPort;
      if (!port || !pod.status.podIP) continue;
      try {
        const response = await fetch(`http://${pod.status.podIP}:${port}/metrics`, {
          signal: AbortSignal.timeout(10_000),
        });
        if (response.ok) texts.push(await response.text());
      } catch {
        // A pod between probes or exiting has no metrics to give.
      }
    }
    return texts;
  }

  /**
   * The host pid of a pod's running container: on real nodes from the node's containerd, with the
   * node agent as the agents last started it ("container started" in their logs); undefined when
   * it does not run.
   */
  async containerPid(
    member: string,
    namespace: string,
    pod: string,
    container: string,
  ): Promise<number | undefined> {
    if (this.testbed.runtime === "containerd") {
      const api = this.testbed.kubeConfig(member).makeApiClient(CoreV1Api);
      const current = await api.readNamespacedPod({ namespace, name: pod }).catch(() => undefined);
      const status = current?.status?.containerStatuses?.find((c) => c.name === container);
      const id = status?.state?.running
        ? status.containerID?.replace(/^containerd:\/\//, "")
        : undefined;
      const node = current?.spec?.nodeName;
      return id && node ? this.testbed.realContainerPid(member, node, id) : undefined;
    }
    const logsDir = this.testbed.logsDir(member);
    const files = (await readdir(logsDir)).filter((f) => /^node-\d+\.log$/.test(f));
    let latest: { time: string; pid: number } | undefined;
    for (const file of files) {
      for (const line of (await readFile(path.join(logsDir, file), "utf8")).split("\n")) {
        if (!line.includes('"container started"')) continue;
        let record: Record<string, unknown>;
        try {
          record = JSON.parse(line) as Record<string, unknown>;
        } catch {
          continue; // a line the agent is still writing
        }
        if (record.pod !== `${namespace}/${pod}` || record.container !== container) continue;
        const time = String(record.time);
        if (!latest || time >= latest.time) latest = { time, pid: Number(record.pid) };
      }
    }
    return latest?.pid;
  }

  /**
   * kill -9 of a running container: SIGKILL to its process group (the container's process leads
   * one), as a crash or the kernel's OOM killer would. Returns the pid it killed.
   */
  async killContainer(
    member: string,
    namespace: string,
    pod: string,
    container: string,
  ): Promise<number> {
    const pid = await this.containerPid(member, namespace, pod, container);
    if (!pid || !isAlive(pid))
      throw new Error(`${member}: container ${container} of ${namespace}/${pod} is not running`);
    signalGroup(pid, "SIGKILL");
    return pid;
  }

  /** Polls `check` until it returns a value; the error names `what`. */
  waitFor<T>(what: string, check: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
    return waitFor(what, check, timeoutMs, 1_000);
  }

  /**
   * `fedtrain ledger verify` with the repository's CLI; returns its exit status and output. With
   * a member's manifest (`--spec`), the recorded update scores are recomputed too.
   */
  async verifyLedger(
    federationId: string,
    manifest?: TrainingFederation,
  ): Promise<{ code: number; output: string }> {
    const cli = path.join(repoRoot, "dist", "core", "protocol", "cli.js");
    const spec: string[] = [];
    if (manifest) {
      const file = path.join(this.testbed.dir, `${federationId}.manifest.json`);
      await writeFile(file, JSON.stringify(manifest));
      spec.push("--spec", file);
    }
    try {
      const { stdout } = await run(process.execPath, [
        cli,
        "ledger",
        "verify",
        "--nats",
        this.natsUrl,
        "--federation",
        federationId,
        ...spec,
      ]);
      return { code: 0, output: stdout };
    } catch (error) {
      const { code, stdout, stderr } = error as { code?: number; stdout?: string; stderr?: string };
      return {
        code: typeof code === "number" ? code : -1,
        output: `${stdout ?? ""}${stderr ?? ""}`,
      };
    }
  }

  /** Stops every process of the test bed and removes its folder. */
  down(): Promise<void> {
    return this.testbed.down();
  }
}
