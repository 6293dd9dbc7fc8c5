// The status a kubelet would report for a pod: phase, conditions and one status per container,
// computed from what the runner's containers are doing.
import type { V1ContainerStatus, V1PodStatus } from "@kubernetes/client-node";
import { apiTime } from "../core/api/time.js";
import type { ContainerRun, LastExit, PodContext } from "./pod-context.js";
import { podPhase } from "./pod-spec.js";

/** What the runner knows about the pod as a whole. */
export interface PodRunState {
  /** Volumes materialised and environments resolved. */
  prepared: boolean;
  /** An init container failed under restartPolicy Never. */
  initFailed: boolean;
  /** Why the pod failed as a whole, when no container could run. */
  failure?: { reason: string; message: string };
}

/** The pod's status now; conditions keep their transition time while their status holds. */
export function podStatus(
  pod: PodContext,
  runs: ContainerRun[],
  state: PodRunState,
): { phase: string; status: V1PodStatus & Record<string, unknown> } {
  const apps = runs.filter((r) => !r.init);
  const phase = podPhase(
    pod.pod.spec?.restartPolicy,
    state.initFailed || state.failure !== undefined,
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
    const before = pod.pod.status?.conditions?.find((c) => c.type === type);
    const since = before?.status === status ? before.lastTransitionTime : undefined;
    return { type, status, lastTransitionTime: since ? apiTime(new Date(since)) : now };
  };
  const status = {
    phase,
    ...state.failure,
    hostIP: pod.node.hostIP,
    hostIPs: [{ ip: pod.node.hostIP }],
    podIP: pod.podIP,
    podIPs: [{ ip: pod.podIP }],
    startTime: apiTime(new Date(pod.pod.status?.startTime ?? Date.now())),
    conditions: [
      condition("PodReadyToStartContainers", state.prepared),
      condition("Initialized", initialized),
      condition("ContainersReady", containersReady && phase === "Running"),
      condition("Ready", containersReady && phase === "Running"),
    ],
    initContainerStatuses: runs.filter((r) => r.init).map(containerStatus),
    containerStatuses: apps.map(containerStatus),
  };
  return { phase, status: status as unknown as V1PodStatus & Record<string, unknown> };
}

/** The status without its timestamps: equal fingerprints need no new patch. */
export function statusFingerprint(status: object): string {
  return JSON.stringify(status, (k, v) =>
    k === "lastTransitionTime" || k === "startTime" ? undefined : v,
  );
}

function containerStatus(run: ContainerRun): V1ContainerStatus & Record<string, unknown> {
  const last = run.lastExit;
  const terminated = (exit: LastExit) => ({
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
