// Runs a reconciler over a work queue with bounded concurrency. A reconcile that returns a
// requeue-after waits that long; one that throws is retried with back-off; a TerminalError is
// logged and counted and not retried. Callers only enqueue keys (namespace/name).
import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import { describeError, type ReconcileResult, TerminalError } from "./errors.js";
import type { ControllerMetrics } from "./metrics.js";
import type { WorkQueue } from "./queue.js";

/** Reconciles one object, named by its key; re-reads the world itself. */
export interface Reconciler {
  reconcile(key: string, log: Logger): Promise<ReconcileResult | undefined>;
}

/** Options of a {@link Controller}. */
export interface ControllerOptions {
  name: string;
  reconciler: Reconciler;
  queue: WorkQueue;
  concurrency: number;
  metrics: ControllerMetrics;
  log: Logger;
}

/** A queue of keys and the workers that reconcile them. */
export class Controller {
  private workers: Promise<void>[] = [];
  private running = false;
  private pausing: Promise<void> = Promise.resolve();

  constructor(private readonly options: ControllerOptions) {
    options.metrics.maxConcurrentReconciles.set(options.concurrency);
  }

  /** Queues a key for reconciliation. */
  enqueue(key: string): void {
    this.options.queue.add(key);
  }

  /** Starts the workers (after a pause, once the paused ones have finished). */
  start(): void {
    if (this.running) return;
    this.running = true;
    void this.pausing.then(() => {
      if (!this.running) return;
      for (let i = 0; i < this.options.concurrency; i++) this.workers.push(this.work());
    });
  }

  /**
   * Stops the workers (keys keep queueing) and waits for reconciles in flight: a replica that lost
   * the leader Lease must stop acting at once, and may lead again later.
   */
  async pause(): Promise<void> {
    this.running = false;
    this.options.queue.release();
    this.pausing = Promise.all(this.workers.splice(0)).then(() => undefined);
    await this.pausing;
  }

  /** Stops for good: no more keys, reconciles in flight finish. */
  async stop(): Promise<void> {
    this.running = false;
    this.options.queue.shutdown();
    await Promise.all(this.workers.splice(0));
  }

  private async work(): Promise<void> {
    const { queue, reconciler, metrics, name } = this.options;
    while (this.running) {
      const key = await queue.get();
      if (key === undefined) continue;
      const log = this.options.log.child({ controller: name, key, reconcileID: randomUUID() });
      const started = performance.now();
      metrics.activeWorkers.inc();
      try {
        const result = await reconciler.reconcile(key, log);
        queue.forget(key);
        if (result?.requeueAfterMs !== undefined) {
          metrics.reconciles.inc({ result: "requeue_after" });
          queue.addAfter(key, result.requeueAfterMs);
        } else {
          metrics.reconciles.inc({ result: "success" });
        }
      } catch (error) {
        metrics.reconciles.inc({ result: "error" });
        metrics.errors.inc();
        if (error instanceof TerminalError) {
          metrics.terminalErrors.inc();
          queue.forget(key);
          log.error({ error: error.message }, "reconcile failed for good; waiting for a change");
        } else {
          log.warn(
            { error: describeError(error), retries: queue.retries(key) },
            "reconcile failed; retrying with back-off",
          );
          queue.addRateLimited(key);
        }
      } finally {
        metrics.activeWorkers.dec();
        metrics.reconcileTime.observe((performance.now() - started) / 1000);
        queue.done(key);
      }
    }
  }
}
