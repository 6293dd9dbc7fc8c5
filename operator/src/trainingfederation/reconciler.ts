// Reconciles one TrainingFederation: observe (from the informers' caches) → compute the desired
// children and status (desired.ts, status.ts) → server-side apply what differs → write the status
// if it changed. Nothing is written when nothing changed, so resyncs and restarts cost no writes.
import { generateKeyPairSync } from "node:crypto";
import {
  BatchV1Api,
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  type KubernetesObject,
  PatchStrategy,
  setHeaderOptions,
  type V1ConfigMap,
  type V1Job,
} from "@kubernetes/client-node";
import type { Logger } from "pino";
import {
  federationSpecHash,
  group,
  plural,
  type TrainingFederation,
  version,
} from "../../../core/api/index.js";
import type { TrainerConfig } from "../../../core/api/trainer-config.js";
import { isConflict, isForbidden, isNotFound, type ReconcileResult } from "../controller/errors.js";
import type { EventRecorder } from "../controller/events.js";
import type { Informer } from "../controller/informer.js";
import type { OperatorMetrics } from "../controller/metrics.js";
import {
  appliedHashAnnotation,
  type ChildSettings,
  childNames,
  contentHash,
  desiredConfigMap,
  desiredJob,
  desiredLeaveJob,
  fieldManager,
  finalizer,
  instanceLabel,
  memberIdOf,
  queuedAndStopped,
  semanticErrors,
  templateHashAnnotation,
} from "./desired.js";
import { statusEvents } from "./events.js";
import { federationPollMs } from "./federation.js";
import type { FederationObservation } from "./federation-status.js";
import { leaveStep } from "./leave.js";
import { type ChildPolicy, defaultPolicy, policyProblems } from "./policy.js";
import { nextStatus, statusChanged, statusPatch } from "./status.js";

/** The member's federation on NATS, read for status (leaving is the leave Job's). */
export interface FederationMembership {
  /** Whether the federation can be read at all (NATS URLs are known). */
  configured(tf: TrainingFederation): boolean;
  /** The federation as seen now; NATS problems are observations, not errors. */
  observe(
    tf: TrainingFederation,
    federationSpecHash: string,
    log: Logger,
  ): Promise<FederationObservation>;
  /** Stops following the federation for an object that is gone. */
  forget?(key: string): void;
}

/** A TrainingFederation as the Kubernetes client sees it. */
export type TrainingFederationObject = TrainingFederation & KubernetesObject;

/** The caches a reconcile reads. */
export interface Caches {
  federations: Informer<TrainingFederationObject>;
  jobs: Informer<V1Job>;
  configMaps: Informer<V1ConfigMap>;
}

// After deleting a Job whose pod template changed, look again this soon to create the new one.
const recreateJobAfterMs = 1_000;

const json = (strategy: string) => setHeaderOptions("Content-Type", strategy);

/** The TrainingFederation reconciler. */
export class TrainingFederationReconciler {
  private readonly core: CoreV1Api;
  private readonly batch: BatchV1Api;
  private readonly objects: CustomObjectsApi;

  constructor(
    kubeConfig: KubeConfig,
    private readonly caches: Caches,
    private readonly settings: ChildSettings & Partial<ChildPolicy>,
    private readonly membership: FederationMembership,
    private readonly metrics: OperatorMetrics,
    private readonly events?: EventRecorder,
  ) {
    this.core = kubeConfig.makeApiClient(CoreV1Api);
    this.batch = kubeConfig.makeApiClient(BatchV1Api);
    this.objects = kubeConfig.makeApiClient(CustomObjectsApi);
  }

  /** The key of the TrainingFederation a child belongs to, if it is one of ours. */
  static ownerKey(child: {
    metadata?: { namespace?: string; labels?: Record<string, string> };
  }): string | undefined {
    const name = child.metadata?.labels?.[instanceLabel];
    return name ? `${child.metadata?.namespace}/${name}` : undefined;
  }

  async reconcile(key: string, log: Logger): Promise<ReconcileResult | undefined> {
    const [namespace = "", name = ""] = key.split("/");
    let tf = this.caches.federations.get(namespace, name);
    if (!tf) {
      // Deleted; its children are garbage-collected by owner reference.
      this.membership.forget?.(key);
      return undefined;
    }
    if (tf.metadata?.deletionTimestamp) return this.finalize(tf, log);
    if (!tf.metadata?.finalizers?.includes(finalizer)) {
      // Carry on with the object as patched, rather than wait for its watch event.
      tf = await this.patchFinalizers(tf, [...(tf.metadata?.finalizers ?? []), finalizer]);
      log.debug("added finalizer");
    }

    const names = childNames(name);
    const invalid = semanticErrors(tf, this.settings);
    const refused =
      invalid.length === 0
        ? policyProblems(
            tf,
            { ...defaultPolicy, ...definedOnly(this.settings) },
            this.settings.trainerImage,
            await this.volumeClaimLabels(tf),
          )
        : [];
    const specHash = federationSpecHash(tf.spec.federation);
    const observedConfigMap = this.caches.configMaps.get(namespace, names.configMap);
    let observedJob = this.caches.jobs.get(namespace, names.job);
    let publicKey = publicKeyOf(observedConfigMap) ?? tf.status?.publicKey;
    let keyProblem: string | undefined;
    if (invalid.length === 0 && refused.length === 0 && !publicKey) {
      ({ publicKey, keyProblem } = await this.ensureMemberKey(tf, names.keySecret, log));
    }

    const runnable =
      invalid.length === 0 && refused.length === 0 && !keyProblem && publicKey !== undefined;
    if (!runnable || !publicKey) {
      // No children for a spec this member cannot run; the key Secret stays (never rotated).
      if (observedJob) await this.deleteJob(observedJob, log);
      if (observedConfigMap) await this.deleteConfigMap(observedConfigMap, log);
      observedJob = undefined;
    } else {
      const configMap = desiredConfigMap(tf, this.settings, publicKey);
      const job = desiredJob(tf, this.settings, contentHash(configMap.data));
      if (queuedAndStopped(tf)) {
        // Kueue owns the Job's suspend: stopping this member deletes the Job (and frees quota).
        if (!sameApplied(observedConfigMap, configMap)) await this.applyConfigMap(configMap, log);
        if (observedJob) await this.deleteJob(observedJob, log);
        observedJob = undefined;
      } else {
        const observedTemplate = observedJob?.metadata?.annotations?.[templateHashAnnotation];
        if (
          observedJob &&
          observedTemplate !== job.metadata?.annotations?.[templateHashAnnotation]
        ) {
          // A Job's pod template is immutable: replace the Job (its pods go with it).
          await this.deleteJob(observedJob, log);
          return { requeueAfterMs: recreateJobAfterMs };
        }
        // Independent writes go together: a pod that starts before its ConfigMap waits for it.
        const [, appliedJob] = await Promise.all([
          sameApplied(observedConfigMap, configMap)
            ? undefined
            : this.applyConfigMap(configMap, log),
          sameApplied(observedJob, job) ? observedJob : this.applyJob(job, log),
        ]);
        observedJob = appliedJob;
      }
    }

    // After the children: the Kubernetes side never waits on NATS.
    const polled = runnable && this.membership.configured(tf);
    const federation = polled ? await this.membership.observe(tf, specHash, log) : undefined;
    const status = nextStatus(
      tf,
      {
        invalid,
        refused,
        publicKey,
        memberId: memberIdOf(tf, this.settings),
        federationSpecHash: specHash,
        job: observedJob,
        keyProblem,
        federation,
      },
      new Date(),
    );
    if (statusChanged(tf.status, status)) {
      await this.objects.patchNamespacedCustomObjectStatus(
        {
          group,
          version,
          namespace,
          plural,
          name,
          body: { status: statusPatch(tf.status, status) },
        },
        json(PatchStrategy.MergePatch),
      );
      this.metrics.apiWrites.inc({ verb: "patch", resource: "trainingfederations/status" });
      log.debug({ phase: status.phase }, "status updated");
      // What changed is worth an Event where `kubectl describe` shows it (only on a change: a
      // restarted operator, finding status as it left it, records nothing again).
      for (const event of statusEvents(tf.status, status, memberIdOf(tf, this.settings))) {
        await this.events?.record(tf, event.type, event.reason, event.action, event.note);
        if (this.events) this.metrics.apiWrites.inc({ verb: "create", resource: "events" });
      }
    }
    // A watched federation queues this object when it changes; one not watchable yet (absent,
    // or NATS not answering) is looked at again.
    return polled && federation?.kind !== "view" ? { requeueAfterMs: federationPollMs } : undefined;
  }

  /**
   * One step of letting a deleted member leave (leave.ts): stop its trainers, run the leave Job,
   * then remove the finalizer (children go by garbage collection, the leave Job with them).
   */
  private async finalize(
    tf: TrainingFederationObject,
    log: Logger,
  ): Promise<ReconcileResult | undefined> {
    const finalizers = tf.metadata?.finalizers ?? [];
    if (!finalizers.includes(finalizer)) return undefined;
    const namespace = tf.metadata?.namespace ?? "";
    const names = childNames(tf.metadata?.name ?? "");
    const memberId = memberIdOf(tf, this.settings);
    const configMap = this.caches.configMaps.get(namespace, names.configMap);
    const publicKey = publicKeyOf(configMap) ?? tf.status?.publicKey;
    const step = leaveStep({
      memberId,
      natsConfigured: this.membership.configured(tf),
      publicKey,
      trainerJob: this.caches.jobs.get(namespace, names.job),
      leaveJob: ownedBy(tf, this.caches.jobs.get(namespace, names.leaveJob)),
      deletionRequestedAt: new Date(tf.metadata?.deletionTimestamp ?? Date.now()),
      now: new Date(),
    });
    switch (step.action) {
      case "stop-trainers": {
        const job = this.caches.jobs.get(namespace, names.job);
        // Foreground: the Job stays until its pods are gone, so its disappearance says the
        // trainers have stopped.
        if (job) await this.deleteJob(job, log, "Foreground");
        return { requeueAfterMs: 1_000 };
      }
      case "start-leave-job": {
        // The leave Job reads the trainers' config; it is back if it had gone (an invalid spec).
        if (publicKey) {
          const desired = desiredConfigMap(tf, this.settings, publicKey);
          if (!sameApplied(configMap, desired)) await this.applyConfigMap(desired, log);
        }
        await this.createLeaveJob(desiredLeaveJob(tf, this.settings), log);
        return { requeueAfterMs: 1_000 };
      }
      case "wait":
        log.debug({ memberId }, step.reason);
        return { requeueAfterMs: step.requeueAfterMs };
      case "remove-finalizer":
        await this.patchFinalizers(
          tf,
          finalizers.filter((f) => f !== finalizer),
        );
        this.metrics.deregistrations.inc({ result: step.result });
        if (step.result === "failed")
          log.warn(
            { memberId, reason: step.reason },
            "could not deregister the member from the federation; removed the finalizer anyway (its record stays until an organiser removes it or the member rejoins with the same key)",
          );
        else
          log.info(
            { memberId, reason: step.reason },
            "member left the federation; finalizer removed",
          );
        return undefined;
    }
  }

  private async createLeaveJob(job: V1Job, log: Logger): Promise<void> {
    const { name = "", namespace = "" } = job.metadata ?? {};
    try {
      await this.batch.createNamespacedJob({ namespace, body: job });
      this.metrics.apiWrites.inc({ verb: "create", resource: "jobs" });
      log.info({ job: name }, "created the leave Job: the member leaves the federation");
    } catch (error) {
      // Created already (the cache had not caught up): the next step sees it.
      if (!isConflict(error)) throw error;
    }
  }

  /**
   * Sets the finalizers with a JSON patch that first tests the resourceVersion, so a concurrent
   * change (someone else's finalizer) is never overwritten: the patch fails and is retried.
   */
  private async patchFinalizers(
    tf: TrainingFederationObject,
    finalizers: string[],
  ): Promise<TrainingFederationObject> {
    const { namespace = "", name = "", resourceVersion } = tf.metadata ?? {};
    const patched = await this.objects.patchNamespacedCustomObject(
      {
        group,
        version,
        namespace,
        plural,
        name,
        body: [
          { op: "test", path: "/metadata/resourceVersion", value: resourceVersion },
          { op: "add", path: "/metadata/finalizers", value: finalizers },
        ],
      },
      json(PatchStrategy.JsonPatch),
    );
    this.metrics.apiWrites.inc({ verb: "patch", resource: "trainingfederations" });
    return patched as TrainingFederationObject;
  }

  /**
   * The labels of the claim spec.contribution.dataVolumeClaim names: undefined when none is
   * named, null when it does not exist (or the operator may not read claims here).
   */
  private async volumeClaimLabels(
    tf: TrainingFederation,
  ): Promise<Record<string, string> | null | undefined> {
    const name = tf.spec.contribution.dataVolumeClaim;
    if (!name) return undefined;
    try {
      const claim = await this.core.readNamespacedPersistentVolumeClaim({
        name,
        namespace: tf.metadata?.namespace ?? "",
      });
      return claim.metadata?.labels ?? {};
    } catch (error) {
      if (isNotFound(error) || isForbidden(error)) return null;
      throw error;
    }
  }

  /**
   * Creates the member's Ed25519 key pair in a Secret the first time. An existing Secret is never
   * replaced: its public key is read back if the operator may read it, else the problem is
   * reported (the operator needs no read access to Secrets in normal operation).
   */
  private async ensureMemberKey(
    tf: TrainingFederation,
    secretName: string,
    log: Logger,
  ): Promise<{ publicKey?: string; keyProblem?: string }> {
    const namespace = tf.metadata?.namespace ?? "";
    const { publicKey, privateKey } = generateKeyPairSync("ed25519");
    const publicBase64 = Buffer.from(
      publicKey.export({ format: "jwk" }).x ?? "",
      "base64url",
    ).toString("base64");
    try {
      await this.core.createNamespacedSecret({
        namespace,
        body: {
          metadata: {
            name: secretName,
            namespace,
            labels: {
              "app.kubernetes.io/managed-by": "fedtrain-operator",
              [instanceLabel]: tf.metadata?.name ?? "",
            },
            ownerReferences: [
              {
                apiVersion: `${group}/${version}`,
                kind: "TrainingFederation",
                name: tf.metadata?.name ?? "",
                uid: tf.metadata?.uid ?? "",
                controller: true,
                blockOwnerDeletion: true,
              },
            ],
          },
          type: "Opaque",
          stringData: {
            "private.pem": privateKey.export({ format: "pem", type: "pkcs8" }).toString(),
            "public.key": publicBase64,
          },
        },
      });
      this.metrics.apiWrites.inc({ verb: "create", resource: "secrets" });
      log.info({ secret: secretName }, "created the member key");
      return { publicKey: publicBase64 };
    } catch (error) {
      if (!isConflict(error)) throw error;
    }
    try {
      const existing = await this.core.readNamespacedSecret({ name: secretName, namespace });
      const stored = existing.data?.["public.key"];
      if (stored) return { publicKey: Buffer.from(stored, "base64").toString("utf8") };
      return {
        keyProblem: `Secret ${secretName} exists but has no public.key: delete it to generate a new member key (a new identity)`,
      };
    } catch (error) {
      if (!isForbidden(error)) throw error;
      return {
        keyProblem: `the member key Secret ${secretName} exists but its public key is not recorded and the operator may not read Secrets here: grant it get on this Secret, or delete the Secret to generate a new key (a new identity)`,
      };
    }
  }

  private async applyConfigMap(configMap: V1ConfigMap, log: Logger): Promise<void> {
    const { name = "", namespace = "" } = configMap.metadata ?? {};
    await this.core.patchNamespacedConfigMap(
      { name, namespace, body: configMap, fieldManager, force: true },
      json(PatchStrategy.ServerSideApply),
    );
    this.metrics.apiWrites.inc({ verb: "apply", resource: "configmaps" });
    log.debug({ configMap: name }, "applied trainer configuration");
  }

  private async applyJob(job: V1Job, log: Logger): Promise<V1Job> {
    const { name = "", namespace = "" } = job.metadata ?? {};
    const applied = await this.batch.patchNamespacedJob(
      { name, namespace, body: job, fieldManager, force: true },
      json(PatchStrategy.ServerSideApply),
    );
    this.metrics.apiWrites.inc({ verb: "apply", resource: "jobs" });
    log.info(
      { job: name, parallelism: job.spec?.parallelism, suspend: job.spec?.suspend },
      "applied trainer Job",
    );
    return applied;
  }

  private async deleteJob(
    job: V1Job,
    log: Logger,
    propagationPolicy: "Background" | "Foreground" = "Background",
  ): Promise<void> {
    const { name = "", namespace = "", uid } = job.metadata ?? {};
    try {
      await this.batch.deleteNamespacedJob({
        name,
        namespace,
        propagationPolicy,
        body: { preconditions: { uid }, propagationPolicy },
      });
      this.metrics.apiWrites.inc({ verb: "delete", resource: "jobs" });
      log.info({ job: name }, "deleted trainer Job");
    } catch (error) {
      if (!isNotFound(error) && !isConflict(error)) throw error;
    }
  }

  private async deleteConfigMap(configMap: V1ConfigMap, log: Logger): Promise<void> {
    const { name = "", namespace = "" } = configMap.metadata ?? {};
    try {
      await this.core.deleteNamespacedConfigMap({ name, namespace });
      this.metrics.apiWrites.inc({ verb: "delete", resource: "configmaps" });
      log.info({ configMap: name }, "deleted trainer configuration");
    } catch (error) {
      if (!isNotFound(error)) throw error;
    }
  }
}

/** Whether a child was last applied from exactly this desired object. */
function sameApplied(
  observed: { metadata?: { annotations?: Record<string, string> } } | undefined,
  desired: { metadata?: { annotations?: Record<string, string> } },
): boolean {
  const want = desired.metadata?.annotations?.[appliedHashAnnotation];
  return observed?.metadata?.annotations?.[appliedHashAnnotation] === want;
}

/**
 * The child if it belongs to this very object: a leave Job of an earlier object of the same name
 * (not yet garbage-collected) says nothing about this one.
 */
function ownedBy<T extends KubernetesObject>(
  tf: TrainingFederationObject,
  child: T | undefined,
): T | undefined {
  const uid = tf.metadata?.uid;
  return child?.metadata?.ownerReferences?.some((r) => r.uid === uid) ? child : undefined;
}

function publicKeyOf(configMap: V1ConfigMap | undefined): string | undefined {
  const text = configMap?.data?.["trainer.json"];
  if (!text) return undefined;
  try {
    return (JSON.parse(text) as TrainerConfig).member.publicKey || undefined;
  } catch {
    return undefined;
  }
}

/** The policy fields that are set (a flag left empty keeps the default). */
function definedOnly(settings: Partial<ChildPolicy>): Partial<ChildPolicy> {
  return Object.fromEntries(
    Object.entries({
      allowedImages: settings.allowedImages,
      allowedServiceAccounts: settings.allowedServiceAccounts,
      volumeClaimLabel: settings.volumeClaimLabel,
    }).filter(([, v]) => v !== undefined),
  );
}
