// Pure rules of the node agent, the parts of the kubelet's behaviour that need no I/O: variable
// expansion, downward-API field paths, container phases and restart back-off.
import type { V1Pod } from "@kubernetes/client-node";

/**
 * Expands `$(NAME)` references the way the kubelet does in command, args and env values: a
 * defined name is replaced, `$$` escapes a `$`, and an undefined reference stays as written.
 */
export function expandVariables(
  input: string,
  lookup: (name: string) => string | undefined,
): string {
  let out = "";
  for (let i = 0; i < input.length; i++) {
    const c = input[i];
    if (c !== "$" || i + 1 >= input.length) {
      out += c;
      continue;
    }
    const next = input[i + 1];
    if (next === "$") {
      out += "$";
      i += 1;
    } else if (next === "(") {
      const close = input.indexOf(")", i + 2);
      if (close < 0) {
        out += input.slice(i);
        break;
      }
      const name = input.slice(i + 2, close);
      const value = lookup(name);
      out += value ?? `$(${name})`;
      i = close;
    } else {
      out += c;
    }
  }
  return out;
}

/** Resolves a downward-API fieldPath (`metadata.labels['app']`, `status.podIP`, ...) of a pod. */
export function podField(pod: V1Pod, fieldPath: string): string {
  const keyed = /^metadata\.(labels|annotations)\['(.+)'\]$/.exec(fieldPath);
  if (keyed) {
    const map = keyed[1] === "labels" ? pod.metadata?.labels : pod.metadata?.annotations;
    return map?.[keyed[2] ?? ""] ?? "";
  }
  switch (fieldPath) {
    case "metadata.name":
      return pod.metadata?.name ?? "";
    case "metadata.namespace":
      return pod.metadata?.namespace ?? "";
    case "metadata.uid":
      return pod.metadata?.uid ?? "";
    case "metadata.labels":
      return formatMap(pod.metadata?.labels);
    case "metadata.annotations":
      return formatMap(pod.metadata?.annotations);
    case "spec.nodeName":
      return pod.spec?.nodeName ?? "";
    case "spec.serviceAccountName":
      return pod.spec?.serviceAccountName ?? "";
    case "status.hostIP":
      return pod.status?.hostIP ?? "";
    case "status.podIP":
      return pod.status?.podIP ?? "";
    case "status.podIPs":
      return (pod.status?.podIPs ?? []).map((p) => p.ip).join(",");
    default:
      throw new Error(`unsupported downward API field path ${fieldPath}`);
  }
}

// The downward API's file format for a whole label or annotation map.
function formatMap(map: Record<string, string> | undefined): string {
  return Object.keys(map ?? {})
    .sort()
    .map((k) => `${k}=${JSON.stringify(map?.[k])}`)
    .join("\n");
}

/** The observed end of one run of a container. */
export interface ContainerExit {
  exitCode: number;
}

/** What the node agent knows of each app container, for the pod phase. */
export interface ContainerProgress {
  /** Started at least once. */
  started: boolean;
  /** Running now. */
  running: boolean;
  /** The last exit, when it is not running. */
  lastExit?: ContainerExit;
}

/** Whether a container that exited is started again under the pod's restart policy. */
export function restarts(restartPolicy: string | undefined, exit: ContainerExit): boolean {
  const policy = restartPolicy ?? "Always";
  return policy === "Always" || (policy === "OnFailure" && exit.exitCode !== 0);
}

/**
 * The pod phase from its containers, as the kubelet computes it: Pending until every container
 * has started, Running while any runs or will be restarted, Succeeded or Failed once all have
 * exited for good.
 */
export function podPhase(
  restartPolicy: string | undefined,
  initFailed: boolean,
  containers: readonly ContainerProgress[],
): "Pending" | "Running" | "Succeeded" | "Failed" {
  if (initFailed) return "Failed";
  if (containers.some((c) => !c.started)) return "Pending";
  const finished = containers.filter(
    (c) => !c.running && c.lastExit && !restarts(restartPolicy, c.lastExit),
  );
  if (finished.length < containers.length) return "Running";
  return finished.every((c) => c.lastExit?.exitCode === 0) ? "Succeeded" : "Failed";
}

// The kubelet starts at 10 s and caps at 5 min; the test bed is quicker so that tests of
// restarts finish in seconds, with the same doubling.
const backoffBaseMs = 1_000;
const backoffCapMs = 60_000;

/** Delay before restarting a container that has already been restarted `restartCount` times. */
export function restartBackoffMs(restartCount: number): number {
  return Math.min(backoffCapMs, backoffBaseMs * 2 ** Math.min(restartCount, 16));
}
