// The operator's Prometheus metrics. Controller and work-queue metrics carry controller-runtime's
// names and labels, so dashboards and alerts written for Go operators work unchanged.
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

/** The metrics of one work queue, bound to its name. */
export interface WorkQueueMetrics {
  depth: { set(value: number): void };
  adds: { inc(): void };
  retries: { inc(): void };
  queueDuration: { observe(seconds: number): void };
  workDuration: { observe(seconds: number): void };
}

/** The metrics of one controller, bound to its name. */
export interface ControllerMetrics {
  reconciles: { inc(labels: { result: "success" | "error" | "requeue" | "requeue_after" }): void };
  errors: { inc(): void };
  terminalErrors: { inc(): void };
  reconcileTime: { observe(seconds: number): void };
  activeWorkers: { inc(): void; dec(): void };
  maxConcurrentReconciles: { set(value: number): void };
}

// Buckets of controller-runtime's reconcile_time_seconds, from 5 ms to a minute.
const durationBuckets = [
  0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9, 1,
  1.25, 1.5, 1.75, 2, 2.5, 3, 3.5, 4, 4.5, 5, 6, 7, 8, 9, 10, 15, 20, 25, 30, 40, 50, 60,
];

/** Every metric the operator exports, in one registry. */
export class OperatorMetrics {
  readonly registry = new Registry();
  private readonly reconcileTotal = new Counter({
    name: "controller_runtime_reconcile_total",
    help: "Total number of reconciliations per controller",
    labelNames: ["controller", "result"],
    registers: [this.registry],
  });
  private readonly reconcileErrors = new Counter({
    name: "controller_runtime_reconcile_errors_total",
    help: "Total number of reconciliation errors per controller",
    labelNames: ["controller"],
    registers: [this.registry],
  });
  private readonly terminalErrors = new Counter({
    name: "controller_runtime_terminal_reconcile_errors_total",
    help: "Total number of terminal reconciliation errors per controller",
    labelNames: ["controller"],
    registers: [this.registry],
  });
  private readonly reconcileTime = new Histogram({
    name: "controller_runtime_reconcile_time_seconds",
    help: "Length of time per reconciliation per controller",
    labelNames: ["controller"],
    buckets: durationBuckets,
    registers: [this.registry],
  });
  private readonly activeWorkers = new Gauge({
    name: "controller_runtime_active_workers",
    help: "Number of currently used workers per controller",
    labelNames: ["controller"],
    registers: [this.registry],
  });
  private readonly maxConcurrent = new Gauge({
    name: "controller_runtime_max_concurrent_reconciles",
    help: "Maximum number of concurrent reconciles per controller",
    labelNames: ["controller"],
    registers: [this.registry],
  });
  private readonly depth = new Gauge({
    name: "workqueue_depth",
    help: "Current depth of workqueue",
    labelNames: ["name", "controller"],
    registers: [this.registry],
  });
  private readonly adds = new Counter({
    name: "workqueue_adds_total",
    help: "Total number of adds handled by workqueue",
    labelNames: ["name", "controller"],
    registers: [this.registry],
  });
  private readonly retries = new Counter({
    name: "workqueue_retries_total",
    help: "Total number of retries handled by workqueue",
    labelNames: ["name", "controller"],
    registers: [this.registry],
  });
  private readonly queueDuration = new Histogram({
    name: "workqueue_queue_duration_seconds",
    help: "How long in seconds an item stays in workqueue before being requested",
    labelNames: ["name", "controller"],
    buckets: [1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 0.01, 0.1, 1, 10, 100, 1000],
    registers: [this.registry],
  });
  private readonly workDuration = new Histogram({
    name: "workqueue_work_duration_seconds",
    help: "How long in seconds processing an item from workqueue takes",
    labelNames: ["name", "controller"],
    buckets: [1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 0.01, 0.1, 1, 10, 100, 1000],
    registers: [this.registry],
  });
  /** 1 while this replica holds the leader-election Lease (client-go's metric). */
  readonly leader = new Gauge({
    name: "leader_election_master_status",
    help: "Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 indicates master",
    labelNames: ["name"],
    registers: [this.registry],
  });
  /** Writes the operator sent to the API server, by verb and resource. */
  readonly apiWrites = new Counter({
    name: "fedtrain_operator_api_writes_total",
    help: "Create, patch, update and delete requests the operator sent to the API server",
    labelNames: ["verb", "resource"],
    registers: [this.registry],
  });
  /** Members the finalizer deregistered from their federation, by result. */
  readonly deregistrations = new Counter({
    name: "fedtrain_operator_deregistrations_total",
    help: "Deleted members the finalizer deregistered (deregistered), had nothing to deregister (skipped), or could not deregister and let go anyway (failed)",
    labelNames: ["result"],
    registers: [this.registry],
  });
  /** TrainingFederations this operator manages, by phase. */
  readonly federations = new Gauge({
    name: "fedtrain_trainingfederations",
    help: "TrainingFederation objects managed by this operator, by status phase",
    labelNames: ["phase"],
    registers: [this.registry],
  });

  /**
   * Messages the operator's NATS connections published (requests, acknowledgements and flow
   * control included): what its federation views and watches cost the NATS servers.
   */
  watchNatsMessages(sent: () => number): void {
    new Gauge({
      name: "fedtrain_operator_nats_messages_sent",
      help: "Messages the operator's NATS connections have published since it started (JetStream requests, acknowledgements, flow control)",
      registers: [this.registry],
      collect() {
        this.set(sent());
      },
    });
  }

  constructor() {
    // process_* and nodejs_* (memory, event-loop lag, GC): the usual health of a Node.js process.
    collectDefaultMetrics({ register: this.registry });
  }

  /** The work-queue metrics of one controller. */
  workQueue(controller: string): WorkQueueMetrics {
    const labels = { name: controller, controller };
    return {
      depth: this.depth.labels(labels),
      adds: this.adds.labels(labels),
      retries: this.retries.labels(labels),
      queueDuration: this.queueDuration.labels(labels),
      workDuration: this.workDuration.labels(labels),
    };
  }

  /** The reconcile metrics of one controller. */
  controller(controller: string): ControllerMetrics {
    return {
      reconciles: { inc: ({ result }) => this.reconcileTotal.labels({ controller, result }).inc() },
      errors: this.reconcileErrors.labels({ controller }),
      terminalErrors: this.terminalErrors.labels({ controller }),
      reconcileTime: this.reconcileTime.labels({ controller }),
      activeWorkers: this.activeWorkers.labels({ controller }),
      maxConcurrentReconciles: this.maxConcurrent.labels({ controller }),
    };
  }

  /** Registers gauges that are read when scraped: unfinished and longest-running work. */
  watchQueue(
    controller: string,
    queue: { unfinishedSeconds(): number; longestRunningSeconds(): number },
  ): void {
    new Gauge({
      name: "workqueue_unfinished_work_seconds",
      help: "How many seconds of work has been done that is in progress and hasn't been observed by work_duration",
      labelNames: ["name", "controller"],
      registers: [this.registry],
      collect() {
        this.set({ name: controller, controller }, queue.unfinishedSeconds());
      },
    });
    new Gauge({
      name: "workqueue_longest_running_processor_seconds",
      help: "How many seconds has the longest running processor for workqueue been running",
      labelNames: ["name", "controller"],
      registers: [this.registry],
      collect() {
        this.set({ name: controller, controller }, queue.longestRunningSeconds());
      },
    });
  }
}
