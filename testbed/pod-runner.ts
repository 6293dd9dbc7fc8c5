// Runs one pod bound to a test-bed node as local processes, the way a kubelet would: volumes
// materialised in the pod's folder and bind-mounted at their mountPaths in a private mount
// namespace per container, environment resolved (ConfigMaps, Secrets, downward API), init
// containers in order, restart policy with back-off, readiness and liveness probes, status written
// back, and SIGTERM → grace period → SIGKILL on deletion. Each of those lives in its own module;
// this class holds the pod's state and decides what runs when.
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { PatchStrategy, setHeaderOptions, type V1Pod } from "@kubernetes/client-node";
import { killContainer, startContainer } from "./container-process.js";
import { localImage } from "./images.js";
import {
  type ContainerRun,
  conflict,
  type NodeContext,
  notFound,
  PodContext,
  WaitingError,
} from "./pod-context.js";
import { resolveEnv } from "./pod-env.js";
import { startProbes } from "./pod-probes.js";
import { restartBackoffMs, restarts } from "./pod-spec.js";
import { podStatus, statusFingerprint } from "./pod-status.js";
import { materialiseVolumes } from "./pod-volumes.js";

export type { NodeContext } from "./pod-context.js";

// How often failed preparation (a missing ConfigMap, say) is retried.
const waitingRetryMs = 1_000;

/** Runs one pod; feed it every version of the pod object it sees. */
export class PodRunner {
  private readonly pod: PodContext;
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

  constructor(
    pod: V1Pod,
    podIP: string,
    private readonly node: NodeContext,
  ) {
    this.pod = new PodContext(pod, podIP, node);
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
    return this.pod.uid;
  }

  /** Whether the runner is done with its pod (terminal, or deleted). */
  get done(): boolean {
    return this.finished;
  }

  /** Takes a newer version of the pod and acts on it. */
  update(pod: V1Pod): void {
    this.pod.pod = pod;
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
      .catch((error) =>
        this.node.log("pod sync failed", { pod: this.pod.key, error: String(error) }),
      );
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
    const pod = this.pod.pod;
    if (pod.metadata?.deletionTimestamp) return this.terminate();
    if (["Succeeded", "Failed"].includes(pod.status?.phase ?? "") && !this.anyRunning()) {
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
    const policy = this.pod.pod.spec?.restartPolicy;
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
    await mkdir(path.join(this.pod.dir, "volumes"), { recursive: true, mode: 0o755 });
    await mkdir(path.join(this.pod.dir, "logs"), { recursive: true });
    const volumes = await materialiseVolumes(this.pod, this.tokenTimers);
    const env = new Map<string, Record<string, string>>();
    for (const run of this.containers.values())
      env.set(run.spec.name, await resolveEnv(this.pod, run.spec));
    this.volumes = volumes;
    this.env = env;
  }

  private startContainer(run: ContainerRun): void {
    const env = this.env.get(run.spec.name) ?? {};
    const started = startContainer(this.pod, run, this.volumes, env, () => this.schedule());
    if (started && !run.init) {
      startProbes(this.pod, run, {
        readinessChanged: () => this.schedule(),
        livenessFailed: () =>
          void killContainer(run, (this.pod.pod.spec?.terminationGracePeriodSeconds ?? 30) * 1000),
      });
    }
  }

  private async terminate(): Promise<void> {
    if (!this.terminating) {
      this.terminating = true;
      const pod = this.pod.pod;
      const grace =
        pod.metadata?.deletionGracePeriodSeconds ?? pod.spec?.terminationGracePeriodSeconds ?? 30;
      this.node.log("terminating pod", { pod: this.pod.key, graceSeconds: grace });
      await this.killAll(grace * 1000);
      this.cleanupTimers();
      try {
        await this.node.core.deleteNamespacedPod({
          name: this.pod.pod.metadata?.name ?? "",
          namespace: this.pod.namespace,
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
    await Promise.all([...this.containers.values()].map((run) => killContainer(run, graceMs)));
  }

  /** Patches the pod's status when it changed (timestamps aside). */
  private async writeStatus(): Promise<void> {
    const { phase, status } = podStatus(this.pod, [...this.containers.values()], {
      prepared: this.prepared,
      initFailed: this.initFailed,
      failure: this.failure,
    });
    const serialised = statusFingerprint(status);
    if (serialised === this.lastStatus) return;
    try {
      await this.node.core.patchNamespacedPodStatus(
        {
          name: this.pod.pod.metadata?.name ?? "",
          namespace: this.pod.namespace,
          body: { status },
        },
        setHeaderOptions("Content-Type", PatchStrategy.StrategicMergePatch),
      );
      this.lastStatus = serialised;
    } catch (error) {
      if (notFound(error)) return this.vanish();
      throw error;
    }
    if (phase === "Succeeded" || phase === "Failed") this.finished = !this.anyRunning();
  }
}
