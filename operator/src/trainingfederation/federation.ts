// The operator's side of the federation protocol: read the federation's view for a member's status.
// Registration is the trainers' and deregistration the leave Job's (they hold the member key in
// their pods); the operator never reads the key.
import { createPrivateKey } from "node:crypto";
import type { Logger } from "pino";
import {
  canonicalFederation,
  specHashBytes,
  type TrainingFederation,
} from "../../../core/api/index.js";
import {
  federationExists,
  type ProtocolSpec,
  readFederationView,
} from "../../../core/protocol/index.js";
import { displayUrls } from "../../../core/protocol/resources.js";
import type { OperatorConfig } from "../config.js";
import { describeError } from "../controller/errors.js";
import { NatsConnections } from "../nats/connections.js";
import { type ChildSettings, natsUrlsOf } from "./desired.js";
import type { FederationObservation } from "./federation-status.js";
import type { FederationWatches } from "./federation-watch.js";

/**
 * How often a federation that cannot be watched yet is looked at again: one no member has
 * created (its buckets do not exist), or NATS that does not answer. A watched federation is
 * never polled: its watcher queues the objects on a change (federation-watch.ts).
 */
export const federationPollMs = 10_000;
// A view read is a few dozen JetStream requests; one that takes longer is a NATS problem.
const viewTimeoutMs = 5_000;

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

/** The raw 32-byte Ed25519 seed of a PKCS #8 PEM private key. */
export function privateKeySeed(pem: string): Uint8Array {
  const der = createPrivateKey(pem).export({ format: "der", type: "pkcs8" });
  return new Uint8Array(der.subarray(-32));
}

/**
 * Whether the operator's own connection may use these URLs: each is one the cluster admin
 * configured or allowed, as a URL or by its host:port (credentials in a URL do not count).
 */
export function natsUrlsAllowed(urls: readonly string[], allowed: readonly string[]): boolean {
  const hostPort = (url: string) => {
    const match = /^[a-z]+:\/\/(?:[^@/]*@)?([^/?#]+)/i.exec(url);
    return (match?.[1] ?? url).toLowerCase();
  };
  const hosts = new Set(allowed.map(hostPort));
  return urls.length > 0 && urls.every((url) => hosts.has(hostPort(url)));
}

/** Reads federations from NATS. */
export class FederationClient {
  constructor(
    private readonly connections: NatsConnections,
    private readonly settings: ChildSettings & Partial<Pick<OperatorConfig, "allowedNatsUrls">>,
    private readonly watches?: FederationWatches,
  ) {}

  /** Stops following tf's federation (it was deleted). */
  forget(key: string): void {
    this.watches?.forget(key);
  }

  /** See natsUrlsAllowed. */
  allowed(urls: readonly string[]): boolean {
    return natsUrlsAllowed(urls, [
      ...this.settings.natsUrls,
      ...(this.settings.allowedNatsUrls ?? []),
    ]);
  }

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
    const where = `NATS at ${displayUrls(urls).replaceAll(",", ", ")}`;
    if (!this.allowed(urls))
      return {
        kind: "unreachable",
        message: `the operator does not connect to ${where}: the cluster admin allows its NATS credentials only for the chart's nats.urls and nats.operatorAllowedUrls; the trainers still use these URLs with the TrainingFederation's own credentials`,
      };
    const nc = await this.connections.connected(urls);
    if (!nc) {
      return {
        kind: "unreachable",
        message: `cannot reach ${where}: check the URLs and that NATS is up; the operator keeps retrying`,
      };
    }
    try {
      const read = () =>
        within(
          (async () => {
            if (!(await federationExists(nc, tf.spec.federation.id))) return undefined;
            return readFederationView(nc, protocolSpecOf(tf), specHashBytes(federationSpecHash));
          })(),
          viewTimeoutMs,
          "reading the federation view",
        );
      const view = this.watches
        ? await this.watches.view(
            nc,
            NatsConnections.key(urls),
            tf.spec.federation.id,
            `${tf.metadata?.namespace}/${tf.metadata?.name}`,
            federationSpecHash,
            read,
          )
        : await read();
      return view ? { kind: "view", view } : { kind: "absent" };
    } catch (error) {
      log.warn({ error: describeError(error) }, "cannot read the federation from NATS");
      return {
        kind: "unreachable",
        message: `cannot read federation ${tf.spec.federation.id} from ${where} (${error instanceof FederationTimeoutError ? "timed out" : "JetStream refused"}): check that JetStream is enabled and the operator's NATS user may read the federation's streams and buckets`,
      };
    }
  }
}
