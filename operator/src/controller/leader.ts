// Leader election on a coordination.k8s.io Lease, with client-go's timing and rules: the holder
// renews every retry period; others take over once they have seen the same record unchanged for a
// whole lease duration (measured on their own clock, so clocks need not agree); a holder that
// cannot renew within the renew deadline stops leading at once; a holder shutting down releases
// the Lease so that the next replica takes over without waiting. A replica that stopped leading
// keeps standing as a candidate, so an API server outage heals without restarting anything.
import { setTimeout as sleep } from "node:timers/promises";
import { CoordinationV1Api, type KubeConfig, type V1Lease } from "@kubernetes/client-node";
import type { Logger } from "pino";
import { apiTimeMicro } from "../../../core/api/time.js";
import { isConflict, isNotFound } from "./errors.js";

/** Lease timing, in milliseconds (client-go's defaults: 15 s, 10 s, 2 s). */
export interface LeaseTiming {
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
}

/** client-go's defaults. */
export const defaultLeaseTiming: LeaseTiming = {
  leaseDurationMs: 15_000,
  renewDeadlineMs: 10_000,
  retryPeriodMs: 2_000,
};

/** Options of a {@link LeaderElector}. */
export interface LeaderElectorOptions {
  name: string;
  namespace: string;
  identity: string;
  timing?: LeaseTiming;
  onStartedLeading(): void;
  onStoppedLeading(): void;
  onLeaderChange?(leader: string): void;
}

/** Acquires and holds a Lease for as long as it can. */
export class LeaderElector {
  private readonly api: CoordinationV1Api;
  private readonly timing: LeaseTiming;
  private observed?: { record: string; at: number };
  private leading = false;
  private stopped = false;
  private lastRenew = 0;
  private loop?: Promise<void>;

  constructor(
    kubeConfig: KubeConfig,
    private readonly options: LeaderElectorOptions,
    private readonly log: Logger,
  ) {
    this.api = kubeConfig.makeApiClient(CoordinationV1Api);
    this.timing = options.timing ?? defaultLeaseTiming;
  }

  /** Whether this replica holds the Lease now. */
  get isLeader(): boolean {
    return this.leading;
  }

  /** Starts trying to acquire, then to renew, in the background. */
  start(): void {
    this.loop ??= this.run();
  }

  /** Stops; a leader releases the Lease first. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
    if (this.leading) {
      await this.release().catch((error) =>
        this.log.warn({ error: String(error) }, "could not release the lease"),
      );
      this.leading = false;
    }
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      let renewed = false;
      try {
        renewed = await this.tryAcquireOrRenew();
      } catch (error) {
        this.log.warn({ error: String(error) }, "leader election request failed");
      }
      const now = Date.now();
      if (renewed) {
        this.lastRenew = now;
        if (!this.leading) {
          this.leading = true;
          this.log.info({ lease: this.options.name }, "became leader");
          this.options.onStartedLeading();
        }
      } else if (this.leading && now - this.lastRenew > this.timing.renewDeadlineMs) {
        // Another replica may take over from now on: stop acting, and stand again as a candidate.
        this.leading = false;
        this.log.error({ lease: this.options.name }, "could not renew the lease: stopped leading");
        this.options.onStoppedLeading();
      }
      await sleep(this.timing.retryPeriodMs);
    }
  }

  private async tryAcquireOrRenew(): Promise<boolean> {
    const { name, namespace, identity } = this.options;
    const now = new Date();
    const spec = {
      holderIdentity: identity,
      leaseDurationSeconds: Math.round(this.timing.leaseDurationMs / 1000),
      renewTime: apiTimeMicro(now),
    };
    let lease: V1Lease;
    try {
      lease = await this.api.readNamespacedLease({ name, namespace });
    } catch (error) {
      if (!isNotFound(error)) throw error;
      await this.api.createNamespacedLease({
        namespace,
        body: {
          metadata: { name, namespace },
          spec: { ...spec, acquireTime: apiTimeMicro(now) } as never,
        },
      });
      return true;
    }
    const holder = lease.spec?.holderIdentity ?? "";
    const record = JSON.stringify([holder, lease.spec?.renewTime, lease.spec?.leaseTransitions]);
    if (this.observed?.record !== record) {
      this.observed = { record, at: Date.now() };
      if (holder && holder !== identity) this.options.onLeaderChange?.(holder);
    }
    const expired =
      !holder || Date.now() - this.observed.at > (lease.spec?.leaseDurationSeconds ?? 15) * 1000;
    if (holder !== identity && !expired) return false;
    const transitions = (lease.spec?.leaseTransitions ?? 0) + (holder === identity ? 0 : 1);
    try {
      await this.api.replaceNamespacedLease({
        name,
        namespace,
        body: {
          metadata: { name, namespace, resourceVersion: lease.metadata?.resourceVersion },
          spec: {
            ...spec,
            acquireTime: holder === identity ? lease.spec?.acquireTime : apiTimeMicro(now),
            leaseTransitions: transitions,
          } as never,
        },
      });
      return true;
    } catch (error) {
      // Someone else wrote the Lease first: they lead (or renewed); try again next period.
      if (isConflict(error)) return false;
      throw error;
    }
  }

  private async release(): Promise<void> {
    const { name, namespace, identity } = this.options;
    const lease = await this.api.readNamespacedLease({ name, namespace });
    if (lease.spec?.holderIdentity !== identity) return;
    await this.api.replaceNamespacedLease({
      name,
      namespace,
      body: {
        metadata: { name, namespace, resourceVersion: lease.metadata?.resourceVersion },
        spec: { ...lease.spec, holderIdentity: "", leaseDurationSeconds: 1 } as never,
      },
    });
    this.log.info({ lease: name }, "released the lease");
  }
}
