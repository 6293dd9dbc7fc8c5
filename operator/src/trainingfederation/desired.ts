// What a TrainingFederation's children should look like: pure functions of the object, the
// operator's configuration and the member's public key. The reconciler compares and applies.
import { createHash } from "node:crypto";
import type {
  V1ConfigMap,
  V1EnvVar,
  V1Job,
  V1Volume,
  V1VolumeMount,
} from "@kubernetes/client-node";
import {
  apiVersion,
  canonicalFederation,
  canonicalJson,
  federationSpecHash,
  kind,
  type TrainingFederation,
} from "../../../core/api/index.js";
import {
  drillPoisonScaleAnnotation,
  type TrainerConfig,
  type TrainerDrill,
  trainerMetricsPort,
  trainerPaths,
} from "../../../core/api/trainer-config.js";
import type { Backend, OperatorConfig } from "../config.js";

/** Field manager of everything the operator applies. */
export const fieldManager = "fedtrain-operator";
/** The finalizer that lets a member leave the federation before its children go. */
export const finalizer = "fedtrain.dev/leave-federation";
/** Annotation holding the hash of what the operator last applied to a child. */
export const appliedHashAnnotation = "fedtrain.dev/applied-hash";
/** Annotation on the Job holding the hash of its (immutable) pod template. */
export const templateHashAnnotation = "fedtrain.dev/template-hash";
/** Label naming the TrainingFederation a child belongs to. */
export const instanceLabel = "fedtrain.dev/instance";
/** Label selecting every child the operator manages. */
export const managedBySelector = "app.kubernetes.io/managed-by=fedtrain-operator";

/** The user the trainer image runs as (the distroless "nonroot" user). */
const trainerUser = 65532;
// Time for a trainer to checkpoint and announce that it leaves, after SIGTERM.
const trainerGraceSeconds = 60;
// A worker that fails this often on one index fails the Job: it is not a passing fault.
const backoffLimitPerIndex = 6;
// Exit code with which the trainer reports a configuration it cannot run: retrying cannot help.
const configErrorExitCode = 2;
// The leave Job retries a NATS hiccup once (after the Job controller's 10 s back-off): a NATS that
// refuses twice is down, and deleting a member should not wait minutes for it.
const leaveBackoffLimit = 1;
// One leave attempt is a connection and a few requests (the trainer gives up on NATS after 30 s).
const leaveActiveDeadlineSeconds = 150;

/** The operator settings that shape children. */
export type ChildSettings = Pick<
  OperatorConfig,
  | "clusterId"
  | "trainerImage"
  | "defaultBackend"
  | "natsUrls"
  | "natsCredentialsSecret"
  | "natsTlsSecret"
>;

/** The label that puts a Job in a Kueue LocalQueue. */
export const kueueQueueLabel = "kueue.x-k8s.io/queue-name";

/**
 * Whether the trainer Job should not exist: queued through Kueue (which owns the Job's suspend)
 * while this member is suspended or runs no trainers; deleting the Job releases its quota.
 */
export function queuedAndStopped(tf: TrainingFederation): boolean {
  return (
    tf.spec.contribution.queueName !== undefined &&
    (tf.spec.suspend || tf.spec.contribution.replicas === 0)
  );
}

/** Names of a TrainingFederation's children. */
export interface ChildNames {
  configMap: string;
  job: string;
  keySecret: string;
  /** The Job that deregisters the member when the TrainingFederation is deleted. */
  leaveJob: string;
}

/** Child names: the object's name with a suffix, shortened with a hash to fit 63 characters. */
export function childNames(name: string): ChildNames {
  const fit = (suffix: string) => {
    const full = `${name}-${suffix}`;
    if (full.length <= 63) return full;
    const hash = createHash("sha256").update(name).digest("hex").slice(0, 8);
    return `${name.slice(0, 63 - suffix.length - 10)}-${hash}-${suffix}`;
  };
  return {
    configMap: fit("trainer-config"),
    job: fit("trainers"),
    keySecret: fit("member-key"),
    leaveJob: fit("leave"),
  };
}

/** The member id: spec.contribution.memberId, else the operator's cluster id. */
export function memberIdOf(tf: TrainingFederation, settings: ChildSettings): string | undefined {
  return tf.spec.contribution.memberId ?? settings.clusterId;
}

/** NATS URLs: spec.transport's, else the operator's. */
export function natsUrlsOf(tf: TrainingFederation, settings: ChildSettings): string[] {
  return tf.spec.transport?.natsUrls ?? settings.natsUrls;
}

/** The Secret with the trainers' NATS credentials: spec.transport's, else the operator's. */
export function credentialsSecretOf(
  tf: TrainingFederation,
  settings: ChildSettings,
): string | undefined {
  return (
    tf.spec.transport?.credentialsSecretRef?.name || settings.natsCredentialsSecret || undefined
  );
}

/** The Secret with the trainers' NATS TLS files: spec.transport's, else the operator's. */
export function tlsSecretOf(tf: TrainingFederation, settings: ChildSettings): string | undefined {
  return tf.spec.transport?.tlsSecretRef?.name || settings.natsTlsSecret || undefined;
}

/**
 * The trainers' compute backend. Auto is the CRD's default, so it is also what a member that names
 * none has: it takes the operator's default, as an unset image takes the operator's image. A GPU
 * default (CUDA, WebGPU) is not given to workers without GPUs, for which the API server refuses
 * those backends: they stay on Auto, which picks the best that loads.
 */
export function backendOf(tf: TrainingFederation, settings: ChildSettings): Backend {
  const { backend, gpusPerReplica } = tf.spec.contribution;
  if (backend !== "Auto") return backend;
  const { defaultBackend } = settings;
  const needsGpus = defaultBackend === "CUDA" || defaultBackend === "WebGPU";
  return needsGpus && gpusPerReplica === 0 ? "Auto" : defaultBackend;
}

/**
 * What the schema and CEL cannot check, because it depends on this operator's settings or on
 * arithmetic across fields. Each entry says what is wrong and what to do.
 */
export function semanticErrors(tf: TrainingFederation, settings: ChildSettings): string[] {
  const errors: string[] = [];
  const { federation, contribution } = tf.spec;
  if (!memberIdOf(tf, settings)) {
    errors.push(
      "no member id: set spec.contribution.memberId, or start the operator with --cluster-id",
    );
  }
  if (natsUrlsOf(tf, settings).length === 0) {
    errors.push("no NATS URL: set spec.transport.natsUrls, or start the operator with --nats-url");
  }
  if (!contribution.image && !settings.trainerImage) {
    errors.push("no trainer image: set spec.contribution.image, or the operator's --trainer-image");
  }
  const synthetic = federation.data.synthetic;
  // The examples are dealt among every worker of the federation: this member's alone bound each
  // worker's share from above. Workers on the member's own data take no share.
  if (synthetic && contribution.replicas > 0 && !contribution.localData) {
    const perWorker = Math.floor(synthetic.trainExamples / contribution.replicas);
    if (perWorker < federation.training.batchSize) {
      errors.push(
        `each of this member's ${contribution.replicas} workers would get about ${perWorker} training examples, fewer than one batch of ${federation.training.batchSize}: raise data.synthetic.trainExamples or lower training.batchSize or contribution.replicas`,
      );
    }
  }
  const drill = drillOf(tf);
  if (drill.error) errors.push(drill.error);
  const memberId = memberIdOf(tf, settings);
  const { membership } = federation;
  if (memberId && membership.policy === "Allowlist" && tf.status?.publicKey) {
    const entry = membership.members.find((m) => m.id === memberId);
    if (entry && entry.publicKey !== tf.status.publicKey) {
      errors.push(
        `membership.members lists ${memberId} with a different public key than this member's (${tf.status.publicKey}): ask the organiser to correct the allowlist`,
      );
    }
  }
  return errors;
}

/**
 * The drill (fault injection for robustness tests) the TrainingFederation's annotations ask for,
 * or an error saying which annotation is wrong. Annotations, not spec fields: a drill is this
 * member's local test setting and must not change spec.federation or its hash.
 */
export function drillOf(tf: TrainingFederation): { drill?: TrainerDrill; error?: string } {
  const value = tf.metadata?.annotations?.[drillPoisonScaleAnnotation];
  if (value === undefined) return {};
  const scale = value.trim() === "" ? Number.NaN : Number(value);
  if (!Number.isFinite(scale)) {
    return {
      error: `annotation ${drillPoisonScaleAnnotation}: ${JSON.stringify(value)} is not a number: set a factor such as "-10", or remove the annotation to end the drill`,
    };
  }
  return { drill: { poisonScale: scale } };
}

/** A short, stable hash of a value's canonical JSON. */
export function contentHash(value: unknown): string {
  return createHash("sha256").update(canonicalJson(value)).digest("hex").slice(0, 16);
}

function labels(tf: TrainingFederation, memberId: string): Record<string, string> {
  return {
    "app.kubernetes.io/name": "fedtrain-trainer",
    "app.kubernetes.io/managed-by": "fedtrain-operator",
    "app.kubernetes.io/part-of": "fedtrain",
    [instanceLabel]: tf.metadata?.name ?? "",
    "fedtrain.dev/federation": tf.spec.federation.id,
    "fedtrain.dev/member": memberId,
  };
}

function ownerReference(tf: TrainingFederation) {
  return {
    apiVersion,
    kind,
    name: tf.metadata?.name ?? "",
    uid: tf.metadata?.uid ?? "",
    controller: true,
    blockOwnerDeletion: true,
  };
}

/** Adds the applied-hash annotation: the hash of the object without it. */
function stamped<T extends { metadata?: { annotations?: Record<string, string> } }>(object: T): T {
  const hash = contentHash(object);
  const metadata = object.metadata ?? {};
  return {
    ...object,
    metadata: {
      ...metadata,
      annotations: { ...metadata.annotations, [appliedHashAnnotation]: hash },
    },
  };
}

/** The trainer's configuration file. */
export function trainerConfig(
  tf: TrainingFederation,
  settings: ChildSettings,
  publicKey: string,
): TrainerConfig {
  const { drill } = drillOf(tf);
  return {
    apiVersion: "fedtrain.dev/v1alpha1",
    kind: "TrainerConfig",
    federation: canonicalFederation(tf.spec.federation),
    federationSpecHash: federationSpecHash(tf.spec.federation),
    member: {
      id: memberIdOf(tf, settings) ?? "",
      publicKey,
      privateKeyFile: `${trainerPaths.memberKeyDir}/private.pem`,
    },
    transport: {
      natsUrls: natsUrlsOf(tf, settings),
      ...(credentialsSecretOf(tf, settings)
        ? { credentialsFile: `${trainerPaths.natsCredentialsDir}/nats.creds` }
        : {}),
      ...(tlsSecretOf(tf, settings)
        ? {
            tls: {
              caFile: `${trainerPaths.natsTlsDir}/ca.crt`,
              certFile: `${trainerPaths.natsTlsDir}/tls.crt`,
              keyFile: `${trainerPaths.natsTlsDir}/tls.key`,
            },
          }
        : {}),
    },
    backend: backendOf(tf, settings),
    dataDir: trainerPaths.dataDir,
    ...(tf.spec.contribution.localData ? { localData: { ...tf.spec.contribution.localData } } : {}),
    ...(drill ? { drill } : {}),
  };
}

/** The ConfigMap with the rendered trainer configuration. */
export function desiredConfigMap(
  tf: TrainingFederation,
  settings: ChildSettings,
  publicKey: string,
): V1ConfigMap {
  const memberId = memberIdOf(tf, settings) ?? "";
  return stamped<V1ConfigMap>({
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: {
      name: childNames(tf.metadata?.name ?? "").configMap,
      namespace: tf.metadata?.namespace,
      labels: labels(tf, memberId),
      ownerReferences: [ownerReference(tf)],
    },
    data: {
      "trainer.json": `${JSON.stringify(trainerConfig(tf, settings, publicKey), null, 2)}\n`,
    },
  });
}

/** What every pod running the trainer image shares: its files, identity and confinement. */
interface TrainerPodBase {
  volumes: V1Volume[];
  mounts: V1VolumeMount[];
  /** Pod spec fields: service account, scheduling, pod security context. */
  spec: Record<string, unknown>;
  /** The container's security context. */
  securityContext: Record<string, unknown>;
  image: string | undefined;
  imagePullPolicy: string | undefined;
}

/**
 * The config, the member key, scratch space and the NATS credentials and TLS files, mounted
 * where the TrainerConfig names them; the member's service account and scheduling; the
 * non-root, read-only confinement. Trainers and the leave Job run the same way.
 */
function trainerPodBase(tf: TrainingFederation, settings: ChildSettings): TrainerPodBase {
  const names = childNames(tf.metadata?.name ?? "");
  const { contribution } = tf.spec;
  const credentials = credentialsSecretOf(tf, settings);
  const tls = tlsSecretOf(tf, settings);
  const volumes: V1Volume[] = [
    { name: "config", configMap: { name: names.configMap } },
    { name: "member-key", secret: { secretName: names.keySecret, defaultMode: 0o440 } },
    // Bounded: a trainer that writes more is evicted instead of filling the node's disk.
    { name: "scratch", emptyDir: { sizeLimit: contribution.scratchSize ?? "4Gi" } },
  ];
  const mounts: V1VolumeMount[] = [
    { name: "config", mountPath: trainerPaths.configDir, readOnly: true },
    { name: "member-key", mountPath: trainerPaths.memberKeyDir, readOnly: true },
    { name: "scratch", mountPath: trainerPaths.scratchDir },
  ];
  if (credentials) {
    volumes.push({
      name: "nats-credentials",
      secret: { secretName: credentials, defaultMode: 0o440 },
    });
    mounts.push({
      name: "nats-credentials",
      mountPath: trainerPaths.natsCredentialsDir,
      readOnly: true,
    });
  }
  if (tls) {
    volumes.push({ name: "nats-tls", secret: { secretName: tls, defaultMode: 0o440 } });
    mounts.push({ name: "nats-tls", mountPath: trainerPaths.natsTlsDir, readOnly: true });
  }
  return {
    volumes,
    mounts,
    spec: {
      restartPolicy: "Never",
      automountServiceAccountToken: false,
      ...(contribution.serviceAccountName
        ? { serviceAccountName: contribution.serviceAccountName }
        : {}),
      ...(contribution.priorityClassName
        ? { priorityClassName: contribution.priorityClassName }
        : {}),
      ...(contribution.nodeSelector ? { nodeSelector: contribution.nodeSelector } : {}),
      ...(contribution.tolerations ? { tolerations: contribution.tolerations } : {}),
      securityContext: {
        runAsNonRoot: true,
        runAsUser: trainerUser,
        runAsGroup: trainerUser,
        fsGroup: trainerUser,
        seccompProfile: { type: "RuntimeDefault" },
      },
    },
    securityContext: {
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      runAsNonRoot: true,
      capabilities: { drop: ["ALL"] },
    },
    image: contribution.image ?? settings.trainerImage,
    imagePullPolicy: contribution.imagePullPolicy,
  };
}

/** The Indexed Job running this member's trainer workers. */
export function desiredJob(
  tf: TrainingFederation,
  settings: ChildSettings,
  configHash: string,
): V1Job {
  const name = tf.metadata?.name ?? "";
  const names = childNames(name);
  const memberId = memberIdOf(tf, settings) ?? "";
  const { contribution } = tf.spec;
  const base = trainerPodBase(tf, settings);
  const { volumes, mounts } = base;
  if (contribution.dataVolumeClaim) {
    volumes.push({
      name: "data",
      persistentVolumeClaim: { claimName: contribution.dataVolumeClaim, readOnly: true },
    });
    mounts.push({ name: "data", mountPath: trainerPaths.dataDir, readOnly: true });
  }
  const env: V1EnvVar[] = [
    { name: "POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
    { name: "POD_NAMESPACE", valueFrom: { fieldRef: { fieldPath: "metadata.namespace" } } },
    { name: "POD_IP", valueFrom: { fieldRef: { fieldPath: "status.podIP" } } },
    // The pod's own address: pods of one node never compete for a port.
    { name: "FEDTRAIN_METRICS_ADDRESS", value: `$(POD_IP):${trainerMetricsPort}` },
  ];
  const limits: Record<string, string> = { ...stringMap(contribution.resources?.limits) };
  if (contribution.gpusPerReplica > 0)
    limits[contribution.gpuResourceName] = String(contribution.gpusPerReplica);
  const requests = stringMap(contribution.resources?.requests);
  const podLabels = labels(tf, memberId);
  const template = {
    metadata: {
      labels: podLabels,
      // A changed configuration restarts the workers: they read it once, at start.
      annotations: { "fedtrain.dev/config-hash": configHash },
    },
    spec: {
      ...base.spec,
      terminationGracePeriodSeconds: trainerGraceSeconds,
      containers: [
        {
          name: "trainer",
          image: base.image,
          ...(base.imagePullPolicy ? { imagePullPolicy: base.imagePullPolicy } : {}),
          args: [`--config=${trainerPaths.config}`],
          env,
          ports: [{ name: "metrics", containerPort: trainerMetricsPort }],
          // A trainer answers probes between compute steps: on a busy CPU backend one step can
          // hold its event loop for seconds, so the probes wait long before they conclude.
          readinessProbe: {
            httpGet: { path: "/readyz", port: "metrics" },
            periodSeconds: 5,
            timeoutSeconds: 10,
            failureThreshold: 6,
          },
          livenessProbe: {
            httpGet: { path: "/healthz", port: "metrics" },
            periodSeconds: 15,
            timeoutSeconds: 30,
            failureThreshold: 8,
          },
          resources: {
            ...(Object.keys(limits).length ? { limits } : {}),
            ...(Object.keys(requests).length ? { requests } : {}),
          },
          securityContext: base.securityContext,
          volumeMounts: mounts,
        },
      ],
      volumes,
    },
  };
  const replicas = contribution.replicas;
  return stamped<V1Job>({
    apiVersion: "batch/v1",
    kind: "Job",
    metadata: {
      name: names.job,
      namespace: tf.metadata?.namespace,
      labels: contribution.queueName
        ? { ...podLabels, [kueueQueueLabel]: contribution.queueName }
        : podLabels,
      annotations: { [templateHashAnnotation]: contentHash(template) },
      ownerReferences: [ownerReference(tf)],
    },
    spec: {
      completionMode: "Indexed",
      // An elastic Indexed Job: completions and parallelism change together, so scaling adds or
      // removes the highest indexes and leaves the others running. Zero workers is a suspended
      // Job, since a Job of zero completions would complete at once.
      completions: Math.max(1, replicas),
      parallelism: Math.max(1, replicas),
      // Queued through Kueue, the Job's suspend is Kueue's: admitting a workload unsuspends it.
      ...(contribution.queueName ? {} : { suspend: tf.spec.suspend || replicas === 0 }),
      backoffLimitPerIndex,
      podFailurePolicy: {
        rules: [
          {
            action: "FailJob",
            onExitCodes: {
              containerName: "trainer",
              operator: "In",
              values: [configErrorExitCode],
            },
          },
          { action: "Ignore", onPodConditions: [{ type: "DisruptionTarget", status: "True" }] },
        ],
      },
      template,
    },
  } as V1Job);
}

/**
 * The Job that deregisters the member when its TrainingFederation is deleted: the trainer image's
 * `leave` command with the trainers' config, member key and NATS files, so that the operator
 * itself never reads the key Secret. It needs no GPU and no probes; it is owned by the
 * TrainingFederation like every child, so it goes with it.
 */
export function desiredLeaveJob(tf: TrainingFederation, settings: ChildSettings): V1Job {
  const names = childNames(tf.metadata?.name ?? "");
  const base = trainerPodBase(tf, settings);
  const podLabels = {
    ...labels(tf, memberIdOf(tf, settings) ?? ""),
    "app.kubernetes.io/name": "fedtrain-leave",
  };
  return stamped<V1Job>({
    apiVersion: "batch/v1",
    kind: "Job",
    metadata: {
      name: names.leaveJob,
      namespace: tf.metadata?.namespace,
      labels: podLabels,
      ownerReferences: [ownerReference(tf)],
    },
    spec: {
      backoffLimit: leaveBackoffLimit,
      activeDeadlineSeconds: leaveActiveDeadlineSeconds,
      podFailurePolicy: {
        rules: [
          {
            action: "FailJob",
            onExitCodes: { containerName: "leave", operator: "In", values: [configErrorExitCode] },
          },
        ],
      },
      template: {
        metadata: { labels: podLabels },
        spec: {
          ...base.spec,
          containers: [
            {
              name: "leave",
              image: base.image,
              ...(base.imagePullPolicy ? { imagePullPolicy: base.imagePullPolicy } : {}),
              args: ["leave", `--config=${trainerPaths.config}`],
              env: [{ name: "POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } }],
              securityContext: base.securityContext,
              volumeMounts: base.mounts,
            },
          ],
          volumes: base.volumes,
        },
      },
    },
  } as V1Job);
}

function stringMap(
  map: Record<string, string | number | undefined> | undefined,
): Record<string, string> {
  return Object.fromEntries(
    Object.entries(map ?? {})
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => [k, String(v)]),
  );
}
