// Runs one pod bound to a test-bed node as local processes, the way a kubelet would: volumes
// materialised in the pod's folder and bind-mounted at their mountPaths in a private mount
// namespace per container, environment resolved (ConfigMaps, Secrets, downward API), init
// containers in order, restart policy with back-off, readiness and liveness probes, status written
// back, and SIGTERM → grace period → SIGKILL on deletion.
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, openSync, writeSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import http from "node:http";
import https from "node:https";
import net from "node:net";
import path from "node:path";
import {
  type CoreV1Api,
  PatchStrategy,
  setHeaderOptions,
  type V1Container,
  type V1ContainerStatus,
  type V1EnvVar,
  type V1KeyToPath,
  type V1Pod,
  type V1Probe,
  type V1Volume,
} from "@kubernetes/client-node";
import { containerArgv, localImage, repoRoot } from "./images.js";
import {
  apiTime,
  type ContainerExit,
  expandVariables,
  podField,
  podPhase,
  restartBackoffMs,
  restarts,
} from "./pod-spec.js";

/** What a pod runner needs from its node agent. */
export interface NodeContext {
  core: CoreV1Api;
  /** Where pods' folders go. */
  podsDir: string;
  /** The node's address (status.hostIP). */
  hostIP: string;
  /** Address of this cluster's API server for in-cluster clients. */
  apiserverPort: number;
  log: (message: string, fields?: Record<string, unknown>) => void;
}

/** A condition that keeps a container waiting (a missing ConfigMap, say); retried. */
class WaitingError extends Error {
  override name = "WaitingError";
  constructor(
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

interface ContainerRun {
  spec: V1Container;
  init: boolean;
  process?: ChildProcess;
  pid?: number;
  startedAt?: Date;
  restartCount: number;
  lastExit?: ContainerExit & {
    reason: string;
    startedAt: Date;
    finishedAt: Date;
    message?: string;
  };
  /** Why it is not running, when it is not. */
  waiting?: { reason: string; message?: string };
  restartAt?: number;
  ready: boolean;
  livenessFailures: number;
  probeTimers: NodeJS.Timeout[];
}

// Token lifetime asked of the TokenRequest API when the pod does not say (the kubelet's default).
const defaultTokenSeconds = 3600;
// Where a container's mount namespace keeps the pod folder and the repository while it mounts
// volumes; the same folder serves every pod, since each sees only its own mounts there.
const stagingDir = "/run/fedtrain-testbed-staging";
// How often failed preparation (a missing ConfigMap, say) is retried.
const waitingRetryMs = 1_000;

/** Runs one pod; feed it every version of the pod object it sees. */
export class PodRunner {
  private pod: V1Pod;
  private readonly dir: string;
  private readonly containers = new Map<string, ContainerRun>();
  private volumes = new Map<string, string>();
  private env = new Map<string, Record<string, string>>();
  private prepared = false;
  private initFailed = false;
  /** Why the pod failed as a whole, when no container could run. */
  private failure?: { reason: string; message: string };
  private terminating = false;
  private finished = false;
  private lastStatus = "";
  private chain: Promise<void> = Promise.resolve();
  private timer?: NodeJS.Timeout;
  private tokenTimers: NodeJS.Timeout[] = [];
  private readonly podIP: string;

  constructor(
    pod: V1Pod,
    podIP: string,
    private readonly node: NodeContext,
  ) {
    this.pod = pod;
    this.podIP = podIP;
    const meta = pod.metadata ?? {};
    this.dir = path.join(node.podsDir, `${meta.namespace}_${meta.name}_${meta.uid}`);
    const previous = new Map((pod.status?.containerStatuses ?? []).map((s) => [s.name, s]));
    for (const [init, list] of [
      [true, pod.spec?.initContainers ?? []],
      [false, pod.spec?.containers ?? []],
    ] as const) {
      for (const spec of list) {
        const before = previous.get(spec.name);
        this.containers.set(spec.name, {
          spec,
          init,
          restartCount: before?.restartCount ?? 0,
          ready: false,
          livenessFailures: 0,
          probeTimers: [],
        });
      }
    }
    this.adoptEarlierRun(pod);
  }

  /** The pod's uid. */
  get uid(): string {
    return this.pod.metadata?.uid ?? "";
  }

  /** Whether the runner is done with its pod (terminal, or deleted). */
  get done(): boolean {
    return this.finished;
  }

  /** Takes a newer version of the pod and acts on it. */
  update(pod: V1Pod): void {
    this.pod = pod;
    this.schedule();
  }

  /** The pod object is gone from the API: stop everything at once. */
  async vanish(): Promise<void> {
    this.terminating = true;
    await this.killAll(0);
    this.cleanupTimers();
    this.finished = true;
  }

  /** Stops every container with the given grace (node shutdown). */
  async shutdown(graceMs: number): Promise<void> {
    this.terminating = true;
    await this.killAll(graceMs);
    this.cleanupTimers();
  }

  private schedule(delayMs = 0): void {
    if (delayMs > 0) {
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.schedule(), delayMs);
      return;
    }
    this.chain = this.chain
      .then(() => this.sync())
      .catch((error) => this.node.log("pod sync failed", { pod: this.key, error: String(error) }));
  }

  private get key(): string {
    return `${this.pod.metadata?.namespace}/${this.pod.metadata?.name}`;
  }

  /**
   * A pod that already has container statuses was run by an earlier node agent on this node,
   * whose processes died with it (node agent stop = node failure): each running container counts
   * as exited with 137, like a container killed by a node reboot.
   */
  private adoptEarlierRun(pod: V1Pod): void {
    for (const status of pod.status?.containerStatuses ?? []) {
      const run = this.containers.get(status.name);
      if (!run || !(status.state?.running || status.state?.terminated)) continue;
      const terminated = status.state.terminated;
      const startedAt = new Date(
        status.state.running?.startedAt ?? terminated?.startedAt ?? Date.now(),
      );
      run.lastExit = {
        exitCode: terminated?.exitCode ?? 137,
        reason: terminated?.reason ?? "NodeRestarted",
        startedAt,
        finishedAt: new Date(terminated?.finishedAt ?? Date.now()),
      };
    }
  }

  private async sync(): Promise<void> {
    if (this.finished) return;
    if (this.pod.metadata?.deletionTimestamp) return this.terminate();
    if (["Succeeded", "Failed"].includes(this.pod.status?.phase ?? "") && !this.anyRunning()) {
      this.finished = true;
      return;
    }
    if (!this.prepared) {
      try {
        await this.prepare();
        this.prepared = true;
      } catch (error) {
        if (!(error instanceof WaitingError)) throw error;
        for (const run of this.containers.values()) {
          run.waiting = { reason: error.reason, message: error.message };
        }
        // An image the node cannot run never becomes runnable: the pod fails for good.
        if (error.reason === "UnknownImage")
          this.failure = { reason: error.reason, message: error.message };
        else this.schedule(waitingRetryMs);
        await this.writeStatus();
        return;
      }
    }
    this.advance();
    await this.writeStatus();
  }

  private anyRunning(): boolean {
    return [...this.containers.values()].some((r) => r.process);
  }

  /** Starts or restarts what should run now, given the pod's state. */
  private advance(): void {
    if (this.initFailed || this.terminating) return;
    const policy = this.pod.spec?.restartPolicy;
    const runs = [...this.containers.values()];
    for (const run of runs.filter((r) => r.init)) {
      if (run.lastExit?.exitCode === 0 && !run.process) continue;
      if (run.process) return;
      if (run.lastExit) {
        // Init containers are retried unless the pod never restarts anything.
        if (policy === "Never") {
          this.initFailed = true;
          return;
        }
        if (!this.backoffElapsed(run)) return;
      }
      this.startContainer(run);
      return;
    }
    for (const run of runs.filter((r) => !r.init)) {
      if (run.process) continue;
      if (run.lastExit) {
        if (!restarts(policy, run.lastExit) || !this.backoffElapsed(run)) continue;
      }
      this.startContainer(run);
    }
  }

  private backoffElapsed(run: ContainerRun): boolean {
    run.restartAt ??= Date.now() + restartBackoffMs(run.restartCount);
    const wait = run.restartAt - Date.now();
    if (wait <= 0) return true;
    run.waiting = {
      reason: "CrashLoopBackOff",
      message: `back-off ${Math.ceil(wait / 1000)}s restarting failed container`,
    };
    this.schedule(wait);
    return false;
  }

  /** Materialises volumes and resolves every container's environment. */
  private async prepare(): Promise<void> {
    for (const run of this.containers.values()) {
      if (!localImage(run.spec.image ?? "")) {
        throw new WaitingError(
          "UnknownImage",
          `image ${run.spec.image} is not in the test bed's image map (testbed/images.ts): the node agent runs containers as local processes and cannot pull images`,
        );
      }
    }
    await mkdir(path.join(this.dir, "volumes"), { recursive: true, mode: 0o755 });
    await mkdir(path.join(this.dir, "logs"), { recursive: true });
    const volumes = new Map<string, string>();
    for (const volume of this.pod.spec?.volumes ?? []) {
      volumes.set(volume.name, await this.materialise(volume));
    }
    const env = new Map<string, Record<string, string>>();
    for (const run of this.containers.values())
      env.set(run.spec.name, await this.resolveEnv(run.spec));
    this.volumes = volumes;
    this.env = env;
  }

  private async materialise(volume: V1Volume): Promise<string> {
    const dir = path.join(this.dir, "volumes", volume.name);
    if (volume.hostPath) {
      await mkdir(volume.hostPath.path, { recursive: true });
      return volume.hostPath.path;
    }
    await mkdir(dir, { recursive: true, mode: 0o755 });
    if (volume.emptyDir) return dir;
    if (volume.configMap) {
      const data = await this.configMapData(volume.configMap.name ?? "", volume.configMap.optional);
      await writeItems(dir, data, volume.configMap.items, volume.configMap.defaultMode);
      return dir;
    }
    if (volume.secret) {
      const data = await this.secretData(volume.secret.secretName ?? "", volume.secret.optional);
      await writeItems(dir, data, volume.secret.items, volume.secret.defaultMode);
      return dir;
    }
    if (volume.downwardAPI) {
      for (const item of volume.downwardAPI.items ?? []) {
        if (!item.fieldRef) continue;
        await writeFileIn(dir, item.path, this.field(item.fieldRef.fieldPath), item.mode);
      }
      return dir;
    }
    if (volume.projected) {
      for (const source of volume.projected.sources ?? []) {
        if (source.serviceAccountToken) {
          await this.writeToken(dir, source.serviceAccountToken);
        } else if (source.configMap) {
          const data = await this.configMapData(
            source.configMap.name ?? "",
            source.configMap.optional,
          );
          await writeItems(dir, data, source.configMap.items, volume.projected.defaultMode);
        } else if (source.secret) {
          const data = await this.secretData(source.secret.name ?? "", source.secret.optional);
          await writeItems(dir, data, source.secret.items, volume.projected.defaultMode);
        } else if (source.downwardAPI) {
          for (const item of source.downwardAPI.items ?? []) {
            if (item.fieldRef)
              await writeFileIn(dir, item.path, this.field(item.fieldRef.fieldPath), item.mode);
          }
        }
      }
      return dir;
    }
    throw new WaitingError(
      "UnsupportedVolume",
      `volume ${volume.name}: the test bed supports emptyDir, hostPath, configMap, secret, downwardAPI and projected volumes`,
    );
  }

  private async writeToken(
    dir: string,
    source: { audience?: string; expirationSeconds?: number; path: string },
  ): Promise<void> {
    const seconds = source.expirationSeconds ?? defaultTokenSeconds;
    const request = await this.node.core.createNamespacedServiceAccountToken({
      name: this.pod.spec?.serviceAccountName ?? "default",
      namespace: this.pod.metadata?.namespace ?? "default",
      body: {
        spec: {
          audiences: source.audience ? [source.audience] : [],
          expirationSeconds: seconds,
          boundObjectRef: {
            apiVersion: "v1",
            kind: "Pod",
            name: this.pod.metadata?.name,
            uid: this.uid,
          },
        },
      },
    });
    await writeFileIn(dir, source.path, request.status?.token ?? "", 0o644);
    // Like the kubelet, renew at 80 % of the lifetime so a long-running pod never holds a stale token.
    const renew = setTimeout(() => {
      this.writeToken(dir, source).catch((error) =>
        this.node.log("token renewal failed", { pod: this.key, error: String(error) }),
      );
    }, seconds * 800);
    renew.unref();
    this.tokenTimers.push(renew);
  }

  private async configMapData(name: string, optional?: boolean): Promise<Record<string, Buffer>> {
    try {
      const cm = await this.node.core.readNamespacedConfigMap({ name, namespace: this.namespace });
      const out: Record<string, Buffer> = {};
      for (const [k, v] of Object.entries(cm.data ?? {})) out[k] = Buffer.from(v);
      for (const [k, v] of Object.entries(cm.binaryData ?? {})) out[k] = Buffer.from(v, "base64");
      return out;
    } catch (error) {
      if (notFound(error) && optional) return {};
      if (notFound(error))
        throw new WaitingError("CreateContainerConfigError", `configmap "${name}" not found`);
      throw error;
    }
  }

  private async secretData(name: string, optional?: boolean): Promise<Record<string, Buffer>> {
    try {
      const secret = await this.node.core.readNamespacedSecret({ name, namespace: this.namespace });
      const out: Record<string, Buffer> = {};
      for (const [k, v] of Object.entries(secret.data ?? {})) out[k] = Buffer.from(v, "base64");
      for (const [k, v] of Object.entries(secret.stringData ?? {})) out[k] = Buffer.from(v);
      return out;
    } catch (error) {
      if (notFound(error) && optional) return {};
      if (notFound(error))
        throw new WaitingError("CreateContainerConfigError", `secret "${name}" not found`);
      throw error;
    }
  }

  private get namespace(): string {
    return this.pod.metadata?.namespace ?? "default";
  }

  private field(fieldPath: string): string {
    return podField(this.podWithAddresses(), fieldPath);
  }

  private podWithAddresses(): V1Pod {
    return {
      ...this.pod,
      status: {
        ...this.pod.status,
        podIP: this.podIP,
        hostIP: this.node.hostIP,
        podIPs: [{ ip: this.podIP }],
      },
    };
  }

  /** The environment of a container: envFrom, then env in order, then the service variables. */
  private async resolveEnv(container: V1Container): Promise<Record<string, string>> {
    const env: Record<string, string> = {
      KUBERNETES_SERVICE_HOST: "127.0.0.1",
      KUBERNETES_SERVICE_PORT: String(this.node.apiserverPort),
      KUBERNETES_SERVICE_PORT_HTTPS: String(this.node.apiserverPort),
    };
    for (const source of container.envFrom ?? []) {
      const data = source.configMapRef
        ? await this.configMapData(source.configMapRef.name ?? "", source.configMapRef.optional)
        : source.secretRef
          ? await this.secretData(source.secretRef.name ?? "", source.secretRef.optional)
          : {};
      for (const [k, v] of Object.entries(data))
        env[`${source.prefix ?? ""}${k}`] = v.toString("utf8");
    }
    for (const variable of container.env ?? []) {
      const value = await this.envValue(variable, container, env);
      if (value !== undefined) env[variable.name] = value;
    }
    return env;
  }

  private async envValue(
    variable: V1EnvVar,
    container: V1Container,
    defined: Record<string, string>,
  ): Promise<string | undefined> {
    if (variable.value !== undefined) return expandVariables(variable.value, (n) => defined[n]);
    const from = variable.valueFrom;
    if (!from) return "";
    if (from.fieldRef) return this.field(from.fieldRef.fieldPath);
    if (from.configMapKeyRef) {
      const { name, key, optional } = from.configMapKeyRef;
      const data = await this.configMapData(name ?? "", optional);
      if (data[key] === undefined && !optional) {
        throw new WaitingError(
          "CreateContainerConfigError",
          `couldn't find key ${key} in ConfigMap ${this.namespace}/${name}`,
        );
      }
      return data[key]?.toString("utf8");
    }
    if (from.secretKeyRef) {
      const { name, key, optional } = from.secretKeyRef;
      const data = await this.secretData(name ?? "", optional);
      if (data[key] === undefined && !optional) {
        throw new WaitingError(
          "CreateContainerConfigError",
          `couldn't find key ${key} in Secret ${this.namespace}/${name}`,
        );
      }
      return data[key]?.toString("utf8");
    }
    if (from.resourceFieldRef) {
      const [kind, resource] = from.resourceFieldRef.resource.split(".") as [
        "limits" | "requests",
        string,
      ];
      return String(container.resources?.[kind]?.[resource] ?? "");
    }
    return "";
  }

  private startContainer(run: ContainerRun): void {
    const image = localImage(run.spec.image ?? "");
    if (!image) return;
    const env = this.env.get(run.spec.name) ?? {};
    const lookup = (name: string) => env[name];
    const argv = containerArgv(image, run.spec.command, run.spec.args).map((a) =>
      expandVariables(a, lookup),
    );
    if (argv.length === 0) {
      run.waiting = {
        reason: "CreateContainerError",
        message: `image ${run.spec.image} needs a command`,
      };
      return;
    }
    // A mount can hide what later steps need (an emptyDir at /tmp hides a repository or a pod
    // folder under /tmp): the pod's folder and the repository are first bound to a staging
    // folder, volumes are mounted from there, and the repository is bound back at the end.
    const stagedPod = `${stagingDir}/pod`;
    const stagedRepo = `${stagingDir}/repo`;
    const mounts: string[] = [
      `mkdir -p ${stagedPod} ${stagedRepo}`,
      `mount --bind ${shellQuote(this.dir)} ${stagedPod}`,
      `mount --bind ${shellQuote(repoRoot)} ${stagedRepo}`,
    ];
    for (const mount of run.spec.volumeMounts ?? []) {
      const source = this.volumes.get(mount.name);
      if (!source) {
        run.waiting = {
          reason: "CreateContainerConfigError",
          message: `volume ${mount.name} is not defined`,
        };
        return;
      }
      const staged = source.startsWith(`${this.dir}/`)
        ? `${stagedPod}/${path.relative(this.dir, source)}`
        : source;
      mounts.push(
        mountScript(
          mount.subPath ? path.join(staged, mount.subPath) : staged,
          mount.mountPath,
          mount.readOnly ?? false,
        ),
      );
    }
    mounts.push(mountScript(stagedRepo, repoRoot, false));
    const workingDir = run.spec.workingDir ?? image.workingDir;
    const script = ["set -e", ...mounts, `cd ${shellQuote(workingDir)}`, 'exec "$@"'].join("\n");
    const logFile = path.join(this.dir, "logs", `${run.spec.name}.log`);
    const log = openSync(logFile, "a");
    writeSync(
      log,
      `--- ${new Date().toISOString()} start ${run.spec.name} (restart ${run.restartCount}): ${argv.join(" ")}\n`,
    );
    // --pdeathsig: a node agent killed without warning takes its pods' processes with it, as a
    // failed node would. unshare: a private mount namespace, so each pod sees its own volumes.
    const child = spawn(
      "setpriv",
      [
        "--pdeathsig",
        "KILL",
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        script,
        "sh",
        ...argv,
      ],
      {
        detached: true,
        stdio: ["ignore", log, log],
        env: {
          PATH: `${path.dirname(process.execPath)}:${process.env.PATH ?? "/usr/bin:/bin"}`,
          HOME: process.env.HOME ?? "/root",
          HOSTNAME: this.pod.metadata?.name ?? "",
          ...env,
        },
      },
    );
    closeSync(log);
    if (run.lastExit) run.restartCount += 1;
    run.process = child;
    run.pid = child.pid;
    run.startedAt = new Date();
    run.waiting = undefined;
    run.restartAt = undefined;
    run.ready = false;
    run.livenessFailures = 0;
    this.node.log("container started", { pod: this.key, container: run.spec.name, pid: child.pid });
    child.once("exit", (code, signal) => {
      const exitCode = code ?? 128 + signalNumber(signal);
      run.process = undefined;
      run.ready = false;
      for (const timer of run.probeTimers) clearTimeout(timer);
      run.probeTimers = [];
      run.lastExit = {
        exitCode,
        reason: exitCode === 0 ? "Completed" : "Error",
        startedAt: run.startedAt ?? new Date(),
        finishedAt: new Date(),
      };
      this.node.log("container exited", { pod: this.key, container: run.spec.name, exitCode });
      this.schedule();
    });
    child.once("error", (error) => {
      this.node.log("container failed to start", {
        pod: this.key,
        container: run.spec.name,
        error: String(error),
      });
    });
    if (!run.init) this.startProbes(run);
  }

  private startProbes(run: ContainerRun): void {
    const readiness = run.spec.readinessProbe;
    if (!readiness) run.ready = true;
    else
      this.probeLoop(run, readiness, (ok) => {
        if (run.ready !== ok) {
          run.ready = ok;
          this.schedule();
        }
      });
    const liveness = run.spec.livenessProbe;
    if (liveness) {
      this.probeLoop(run, liveness, (ok) => {
        run.livenessFailures = ok ? 0 : run.livenessFailures + 1;
        if (run.livenessFailures >= (liveness.failureThreshold ?? 3) && run.process) {
          this.node.log("liveness probe failed: restarting", {
            pod: this.key,
            container: run.spec.name,
          });
          run.livenessFailures = 0;
          void this.killContainer(run, (this.pod.spec?.terminationGracePeriodSeconds ?? 30) * 1000);
        }
      });
    }
  }

  private probeLoop(run: ContainerRun, probe: V1Probe, onResult: (ok: boolean) => void): void {
    const period = (probe.periodSeconds ?? 10) * 1000;
    const tick = async () => {
      if (!run.process) return;
      onResult(await this.probe(run, probe));
      if (run.process) run.probeTimers.push(setTimeout(tick, period));
    };
    run.probeTimers.push(setTimeout(tick, (probe.initialDelaySeconds ?? 0) * 1000));
  }

  private async probe(run: ContainerRun, probe: V1Probe): Promise<boolean> {
    const timeoutMs = (probe.timeoutSeconds ?? 1) * 1000;
    const port = (p: number | string | undefined) =>
      typeof p === "number"
        ? p
        : Number(run.spec.ports?.find((cp) => cp.name === p)?.containerPort ?? p);
    if (probe.httpGet) {
      const get = probe.httpGet;
      return httpProbe(
        get.scheme === "HTTPS" ? "https" : "http",
        get.host ?? this.podIP,
        port(get.port),
        get.path ?? "/",
        timeoutMs,
      );
    }
    if (probe.tcpSocket)
      return tcpProbe(probe.tcpSocket.host ?? this.podIP, port(probe.tcpSocket.port), timeoutMs);
    if (probe.exec?.command && run.pid) {
      return execProbe(
        ["nsenter", "-t", String(run.pid), "-m", "--", ...probe.exec.command],
        timeoutMs,
      );
    }
    return false;
  }

  private async terminate(): Promise<void> {
    if (!this.terminating) {
      this.terminating = true;
      const grace =
        this.pod.metadata?.deletionGracePeriodSeconds ??
        this.pod.spec?.terminationGracePeriodSeconds ??
        30;
      this.node.log("terminating pod", { pod: this.key, graceSeconds: grace });
      await this.killAll(grace * 1000);
      this.cleanupTimers();
      try {
        await this.node.core.deleteNamespacedPod({
          name: this.pod.metadata?.name ?? "",
          namespace: this.namespace,
          gracePeriodSeconds: 0,
          body: { gracePeriodSeconds: 0, preconditions: { uid: this.uid } },
        });
      } catch (error) {
        if (!notFound(error) && !conflict(error)) throw error;
      }
      this.finished = true;
    }
  }

  private cleanupTimers(): void {
    clearTimeout(this.timer);
    for (const timer of this.tokenTimers) clearTimeout(timer);
    for (const run of this.containers.values()) for (const t of run.probeTimers) clearTimeout(t);
  }

  private async killAll(graceMs: number): Promise<void> {
    await Promise.all([...this.containers.values()].map((run) => this.killContainer(run, graceMs)));
  }

  private async killContainer(run: ContainerRun, graceMs: number): Promise<void> {
    const child = run.process;
    if (!child?.pid) return;
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    signal(child.pid, "SIGTERM");
    const timer = setTimeout(() => signal(child.pid ?? 0, "SIGKILL"), graceMs);
    await exited;
    clearTimeout(timer);
  }

  private async writeStatus(): Promise<void> {
    const runs = [...this.containers.values()];
    const apps = runs.filter((r) => !r.init);
    const phase = podPhase(
      this.pod.spec?.restartPolicy,
      this.initFailed || this.failure !== undefined,
      apps.map((r) => ({
        started: r.startedAt !== undefined || r.lastExit !== undefined,
        running: !!r.process,
        lastExit: r.lastExit,
      })),
    );
    const initialized = runs
      .filter((r) => r.init)
      .every((r) => r.lastExit?.exitCode === 0 && !r.process);
    const containersReady = apps.every((r) => r.ready && r.process);
    const now = apiTime(new Date());
    const condition = (type: string, ok: boolean) => {
      const status = ok ? "True" : "False";
      const before = this.pod.status?.conditions?.find((c) => c.type === type);
      const since = before?.status === status ? before.lastTransitionTime : undefined;
      return { type, status, lastTransitionTime: since ? apiTime(new Date(since)) : now };
    };
    const status = {
      phase,
      ...this.failure,
      hostIP: this.node.hostIP,
      hostIPs: [{ ip: this.node.hostIP }],
      podIP: this.podIP,
      podIPs: [{ ip: this.podIP }],
      startTime: apiTime(new Date(this.pod.status?.startTime ?? Date.now())),
      conditions: [
        condition("PodReadyToStartContainers", this.prepared),
        condition("Initialized", initialized),
        condition("ContainersReady", containersReady && phase === "Running"),
        condition("Ready", containersReady && phase === "Running"),
      ],
      initContainerStatuses: runs.filter((r) => r.init).map((r) => this.containerStatus(r)),
      containerStatuses: apps.map((r) => this.containerStatus(r)),
    };
    const serialised = JSON.stringify(status, (k, v) =>
      k === "lastTransitionTime" || k === "startTime" ? undefined : v,
    );
    if (serialised === this.lastStatus) return;
    try {
      await this.node.core.patchNamespacedPodStatus(
        { name: this.pod.metadata?.name ?? "", namespace: this.namespace, body: { status } },
        setHeaderOptions("Content-Type", PatchStrategy.StrategicMergePatch),
      );
      this.lastStatus = serialised;
    } catch (error) {
      if (notFound(error)) return this.vanish();
      throw error;
    }
    if (phase === "Succeeded" || phase === "Failed") this.finished = !this.anyRunning();
  }

  private containerStatus(run: ContainerRun): V1ContainerStatus & Record<string, unknown> {
    const last = run.lastExit;
    const terminated = (exit: NonNullable<ContainerRun["lastExit"]>) => ({
      terminated: {
        exitCode: exit.exitCode,
        reason: exit.reason,
        startedAt: apiTime(exit.startedAt),
        finishedAt: apiTime(exit.finishedAt),
      },
    });
    let state: Record<string, unknown>;
    let lastState: Record<string, unknown> = {};
    if (run.process && run.startedAt) {
      state = { running: { startedAt: apiTime(run.startedAt) } };
      if (last) lastState = terminated(last);
    } else if (run.waiting) {
      state = { waiting: run.waiting };
      if (last) lastState = terminated(last);
    } else if (last) {
      state = terminated(last);
    } else {
      state = { waiting: { reason: "ContainerCreating" } };
    }
    return {
      name: run.spec.name,
      image: run.spec.image ?? "",
      imageID: `testbed.local/${run.spec.image ?? ""}`,
      containerID: run.pid ? `testbed://${run.pid}` : undefined,
      ready: run.ready && !!run.process,
      started: !!run.process,
      restartCount: run.restartCount,
      state,
      lastState,
    } as unknown as V1ContainerStatus & Record<string, unknown>;
  }
}

function mountScript(source: string, target: string, readOnly: boolean): string {
  const s = shellQuote(source);
  const t = shellQuote(target);
  const prepare = `if [ -d ${s} ]; then mkdir -p ${t}; else mkdir -p "$(dirname ${t})"; [ -e ${t} ] || touch ${t}; fi`;
  const bind = `mount --bind ${s} ${t}`;
  return readOnly ? `${prepare}; ${bind}; mount -o remount,bind,ro ${t}` : `${prepare}; ${bind}`;
}

function shellQuote(value: string): string {
  return `'${value.replaceAll("'", "'\\''")}'`;
}

async function writeItems(
  dir: string,
  data: Record<string, Buffer>,
  items: V1KeyToPath[] | undefined,
  defaultMode: number | undefined,
): Promise<void> {
  const entries = items?.length
    ? items
        .filter((i) => data[i.key] !== undefined)
        .map((i) => [i.path, data[i.key] as Buffer, i.mode] as const)
    : Object.entries(data).map(([k, v]) => [k, v, undefined] as const);
  for (const [file, content, mode] of entries)
    await writeFileIn(dir, file, content, mode ?? defaultMode);
}

async function writeFileIn(
  dir: string,
  file: string,
  content: string | Buffer,
  mode?: number,
): Promise<void> {
  const target = path.join(dir, file);
  if (!target.startsWith(`${dir}${path.sep}`))
    throw new Error(`volume item path ${file} leaves its volume`);
  await mkdir(path.dirname(target), { recursive: true });
  await writeFile(target, content, { mode: mode ?? 0o644 });
}

function notFound(error: unknown): boolean {
  return (error as { code?: number }).code === 404;
}

function conflict(error: unknown): boolean {
  return (error as { code?: number }).code === 409;
}

function signal(pid: number, name: NodeJS.Signals): void {
  for (const target of [-pid, pid]) {
    try {
      process.kill(target, name);
    } catch {
      // Already gone.
    }
  }
}

function signalNumber(signal: NodeJS.Signals | null): number {
  const numbers: Partial<Record<NodeJS.Signals, number>> = {
    SIGKILL: 9,
    SIGTERM: 15,
    SIGINT: 2,
    SIGABRT: 6,
    SIGSEGV: 11,
  };
  return (signal && numbers[signal]) || 0;
}

function httpProbe(
  scheme: "http" | "https",
  host: string,
  port: number,
  urlPath: string,
  timeoutMs: number,
): Promise<boolean> {
  return new Promise((resolve) => {
    const client = scheme === "https" ? https : http;
    const request = client.get(
      { host, port, path: urlPath, timeout: timeoutMs, rejectUnauthorized: false },
      (response) => {
        response.resume();
        const code = response.statusCode ?? 0;
        resolve(code >= 200 && code < 400);
      },
    );
    request.on("error", () => resolve(false));
    request.on("timeout", () => request.destroy());
  });
}

function tcpProbe(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, host);
    socket.setTimeout(timeoutMs, () => {
      socket.destroy();
      resolve(false);
    });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

function execProbe(argv: string[], timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const [command, ...args] = argv;
    const child = spawn(command ?? "false", args, { stdio: "ignore", timeout: timeoutMs });
    child.once("exit", (code) => resolve(code === 0));
    child.once("error", () => resolve(false));
  });
}
