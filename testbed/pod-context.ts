// What the parts of a pod runner share: the node's context, the pod as last seen, one record per
// container, and reading the ConfigMaps, Secrets and fields the pod refers to.
import type { ChildProcess } from "node:child_process";
import path from "node:path";
import type { CoreV1Api, V1Container, V1Pod } from "@kubernetes/client-node";
import { type ContainerExit, podField } from "./pod-spec.js";

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
export class WaitingError extends Error {
  override name = "WaitingError";
  constructor(
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

/** How a container last ended, with the times the kubelet reports. */
export type LastExit = ContainerExit & {
  reason: string;
  startedAt: Date;
  finishedAt: Date;
  message?: string;
};

/** One container of the pod: its spec and what its process is doing. */
export interface ContainerRun {
  spec: V1Container;
  init: boolean;
  process?: ChildProcess;
  pid?: number;
  startedAt?: Date;
  restartCount: number;
  lastExit?: LastExit;
  /** Why it is not running, when it is not. */
  waiting?: { reason: string; message?: string };
  restartAt?: number;
  ready: boolean;
  livenessFailures: number;
  probeTimers: NodeJS.Timeout[];
}

/** The pod a runner runs: the newest version of its object, where it lives, and its addresses. */
export class PodContext {
  /** The pod's own folder: volumes/ and logs/. */
  readonly dir: string;

  constructor(
    /** The newest version of the pod object seen. */
    public pod: V1Pod,
    readonly podIP: string,
    readonly node: NodeContext,
  ) {
    const meta = pod.metadata ?? {};
    this.dir = path.join(node.podsDir, `${meta.namespace}_${meta.name}_${meta.uid}`);
  }

  /** The pod's uid. */
  get uid(): string {
    return this.pod.metadata?.uid ?? "";
  }

  /** namespace/name, for logs. */
  get key(): string {
    return `${this.pod.metadata?.namespace}/${this.pod.metadata?.name}`;
  }

  get namespace(): string {
    return this.pod.metadata?.namespace ?? "default";
  }

  /** A downward-API field of the pod, with the addresses this node gave it. */
  field(fieldPath: string): string {
    return podField(
      {
        ...this.pod,
        status: {
          ...this.pod.status,
          podIP: this.podIP,
          hostIP: this.node.hostIP,
          podIPs: [{ ip: this.podIP }],
        },
      },
      fieldPath,
    );
  }

  /** A ConfigMap's keys and values; a missing one keeps the pod waiting unless optional. */
  async configMapData(name: string, optional?: boolean): Promise<Record<string, Buffer>> {
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

  /** A Secret's keys and values; a missing one keeps the pod waiting unless optional. */
  async secretData(name: string, optional?: boolean): Promise<Record<string, Buffer>> {
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
}

/** Whether an API call failed with 404 Not Found. */
export function notFound(error: unknown): boolean {
  return (error as { code?: number }).code === 404;
}

/** Whether an API call failed with 409 Conflict. */
export function conflict(error: unknown): boolean {
  return (error as { code?: number }).code === 409;
}
