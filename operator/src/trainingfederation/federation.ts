// The operator's side of the federation protocol: read the federation's view for a member's status,
// and deregister the member when its TrainingFederation is deleted. Registration is the trainers'
// (they hold the member key in their pods); the operator reads the key only to leave.
import { createPrivateKey } from "node:crypto";
import type { CoreV1Api } from "@kubernetes/client-node";
import { JetStreamApiError, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "pino";
import { canonicalFederation, type TrainingFederation } from "../../../core/api/index.js";
import {
  deregisterMember,
  federationNames,
  type ProtocolSpec,
  readFederationView,
} from "../../../core/protocol/index.js";
import { describeError, isForbidden, isNotFound } from "../controller/errors.js";
import type { OperatorMetrics } from "../controller/metrics.js";
import type { NatsConnections } from "../nats/connections.js";
import { type ChildSettings, childNames, natsUrlsOf } from "./desired.js";
import type { FederationObservation } from "./federation-status.js";

/**
 * How often a member's federation view is read again while nothing in Kubernetes changes: the
 * round, heartbeats and loss live in NATS, which sends the operator no events. 10 s shows a round
 * (typically minutes) promptly and costs one view read per member per 10 s.
 */
export const federationPollMs = 10_000;
// A view read is a few dozen JetStream requests; one that takes longer is a NATS problem.
const viewTimeoutMs = 5_000;
// Deregistering may wait this long for NATS (including reconnecting) before the finalizer goes
// anyway: deleting a TrainingFederation must never hang on an unreachable NATS.
const leaveTimeoutMs = 15_000;
// The JetStream error code of "stream not found".
const streamNotFound = 10059;

/** An operation that did not finish within its time. */
export class FederationTimeoutError extends Error {
  override name = "FederationTimeoutError";
}

function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new FederationTimeoutError(`${what} took over ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** The protocol's view of a member's spec.federation. */
export function protocolSpecOf(tf: TrainingFederation): ProtocolSpec {
  const federation = canonicalFederation(tf.spec.federation);
  return {
    id: federation.id,
    sync: {
      quorum: federation.sync.quorum,
      roundDeadlineSeconds: federation.sync.roundDeadlineSeconds,
      checkpointEveryRounds: federation.sync.checkpointEveryRounds,
    },
    membership: federation.membership,
  };
}

/** The protocol's 32-byte spec hash from status.federationSpecHash ("sha256:<hex>"). */
export function specHashBytes(federationSpecHash: string): Uint8Array {
  return new Uint8Array(Buffer.from(federationSpecHash.replace(/^sha256:/, ""), "hex"));
}

/** The raw 32-byte Ed25519 seed of a PKCS #8 PEM private key. */
export function privateKeySeed(pem: string): Uint8Array {
  const der = createPrivateKey(pem).export({ format: "der", type: "pkcs8" });
  return new Uint8Array(der.subarray(-32));
}

/**
 * Whether the federation's resources exist. readFederationView and deregisterMember create
 * nothing either (the view throws FederationNotFoundError); asking first makes a federation no
 * member has created yet an observation ("absent") rather than an error.
 */
async function federationExists(nc: NatsConnection, federationId: string): Promise<boolean> {
  const jsm = await jetstreamManager(nc);
  try {
    await jsm.streams.info(`KV_${federationNames(federationId).membersBucket}`);
    return true;
  } catch (error) {
    if (error instanceof JetStreamApiError && error.code === streamNotFound) return false;
    throw error;
  }
}

/** Reads federations from NATS and lets members leave. */
export class FederationClient {
  constructor(
    private readonly connections: NatsConnections,
    private readonly settings: ChildSettings,
    private readonly core: CoreV1Api,
    private readonly metrics: OperatorMetrics,
  ) {}

  /** Whether a TrainingFederation's federation can be read (it has NATS URLs). */
  configured(tf: TrainingFederation): boolean {
    return natsUrlsOf(tf, this.settings).length > 0;
  }

  /** The federation as NATS shows it now; a NATS problem is an observation, never a throw. */
  async observe(
    tf: TrainingFederation,
    federationSpecHash: string,
    log: Logger,
  ): Promise<FederationObservation> {
    const urls = natsUrlsOf(tf, this.settings);
    const where = `NATS at ${urls.join(", ")}`;
    const nc = await this.connections.connected(urls);
    if (!nc) {
      return {
        kind: "unreachable",
        message: `cannot reach ${where}: check the URLs and that NATS is up; the operator keeps retrying`,
      };
    }
    try {
      const view = await within(
        (async () => {
          if (!(await federationExists(nc, tf.spec.federation.id))) return undefined;
          return readFederationView(nc, protocolSpecOf(tf), specHashBytes(federationSpecHash));
        })(),
        viewTimeoutMs,
        "reading the federation view",
      );
      return view ? { kind: "view", view } : { kind: "absent" };
    } catch (error) {
      log.warn({ error: describeError(error) }, "cannot read the federation from NATS");
      return {
        kind: "unreachable",
        message: `cannot read federation ${tf.spec.federation.id} from ${where} (${error instanceof FederationTimeoutError ? "timed out" : "JetStream refused"}): check that JetStream is enabled and the operator's NATS user may read the federation's streams and buckets`,
      };
    }
  }

  /**
   * Deregisters the member with its own key, read from the member key Secret now. Never throws:
   * when it cannot (no permission, key gone, NATS unreachable), it says why in the log and in
   * fedtrain_operator_deregistrations_total, and the finalizer goes anyway.
   */
  async leave(tf: TrainingFederation, memberId: string, log: Logger): Promise<void> {
    const result = await this.tryLeave(tf, memberId, log).catch((error: unknown) => {
      log.warn(
        { memberId, error: describeError(error) },
        "could not deregister the member from the federation; removing the finalizer anyway (its record stays until an organiser removes it or the member rejoins with the same id)",
      );
      return "failed" as const;
    });
    this.metrics.deregistrations.inc({ result });
  }

  private async tryLeave(
    tf: TrainingFederation,
    memberId: string,
    log: Logger,
  ): Promise<"deregistered" | "skipped"> {
    if (!this.configured(tf)) return "skipped";
    const namespace = tf.metadata?.namespace ?? "";
    const secretName = childNames(tf.metadata?.name ?? "").keySecret;
    let pem: string | undefined;
    try {
      const secret = await this.core.readNamespacedSecret({ name: secretName, namespace });
      const data = secret.data?.["private.pem"];
      pem = data ? Buffer.from(data, "base64").toString("utf8") : undefined;
    } catch (error) {
      if (isNotFound(error)) pem = undefined;
      else if (isForbidden(error))
        throw new Error(
          `the operator may not read the member key Secret ${namespace}/${secretName}: grant it get on Secrets to let deleted members deregister`,
          { cause: error },
        );
      else throw error;
    }
    if (!pem) {
      log.warn(
        { memberId, secret: secretName },
        "the member key Secret is gone: the member cannot be deregistered (its record stays)",
      );
      return "skipped";
    }
    const privateKey = privateKeySeed(pem);
    const urls = natsUrlsOf(tf, this.settings);
    const started = Date.now();
    const nc = await this.connections.connected(urls, leaveTimeoutMs);
    if (!nc) throw new FederationTimeoutError(`NATS at ${urls.join(", ")} unreachable`);
    const federationId = tf.spec.federation.id;
    await within(
      (async () => {
        if (await federationExists(nc, federationId))
          await deregisterMember(nc, { federationId, memberId, privateKey });
      })(),
      Math.max(1_000, leaveTimeoutMs - (Date.now() - started)),
      "deregistering the member",
    );
    log.info({ memberId, federation: federationId }, "deregistered the member from the federation");
    return "deregistered";
  }
}
