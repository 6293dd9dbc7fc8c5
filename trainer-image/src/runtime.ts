// One trainer process: loads the data and the model for each of its workers, runs DiLoCo over the
// exchange transport it is given, reports metrics, and checkpoints the global model (every
// sync.checkpointEveryRounds rounds, when stopped, and at the end). Stopping (the signal) ends
// every worker after its current inner step; a round in flight is dropped, never half-applied.
// Over a federated transport (one with `join`, the NATS exchange) the federation's checkpoint and
// ledger are the state to start from, not the local checkpoints, and the process is ready only
// once it has joined.
import { createHash } from "node:crypto";
import type { Logger } from "pino";
import { canonicalJson } from "../../core/api/index.js";
import type { TrainerConfig } from "../../core/api/trainer-config.js";
import { OuterOptimizer } from "../../core/codec/index.js";
import {
  type Checkpoint,
  latestCheckpoint,
  readCheckpoint,
  writeCheckpoint,
} from "./checkpoint.js";
import { dilocoConfig, workerData } from "./config.js";
import { BatchSampler, evaluationBatches } from "./data.js";
import { DiLoCoWorker, parameterHash, type RoundReport } from "./diloco.js";
import { ExchangeClosedError, type ExchangeTransport } from "./exchange.js";
import type { TrainerMetrics } from "./metrics.js";
import { initialParameters, Model, type ModelDefinition } from "./model.js";

/** Evaluation windows of text data per round: enough for a stable loss, cheap next to training. */
const MAX_EVAL_WINDOWS = 256;

/** The id of worker `index` of `member` in updates, commits and logs. */
export function workerId(member: string, index: number): string {
  return `${member}-${index}`;
}

/**
 * The batch stream of a federated worker: every member trains on the whole data set (sharding
 * across members is not coordinated yet), so the stream is told apart by member and index.
 */
function batchStream(member: string, index: number): number {
  return createHash("sha256").update(`${member}/${index}`).digest().readUInt32LE(0);
}

/** The members whose updates the round's norm bound clipped (or dropped), once per update. */
function membersWith(report: RoundReport, action: "clipped" | "dropped"): string[] {
  return report.bounded.filter((b) => b.action === action).map((b) => b.member);
}

/** How this process runs. */
export interface RuntimeSettings {
  config: TrainerConfig;
  /** Indices of the workers this process runs (one in a pod, N in local mode). */
  workerIndices: number[];
  /** Workers the training data is split across. */
  workerCount: number;
  checkpointDir: string;
  /** Resume from the newest matching checkpoint in checkpointDir. */
  resume: boolean;
}

/** How a run ended. */
export interface RunOutcome {
  status: "completed" | "stopped";
  /** Rounds applied to the global model. */
  rounds: number;
  checkpoint: string;
  globalHash: string;
}

interface LocalWorker {
  index: number;
  label: string;
  worker: DiLoCoWorker;
  model: Model;
  rounds: number;
  roundStarted: number;
}

/** A trainer process's workers over one exchange transport. */
export class TrainerRuntime {
  private readonly workers: LocalWorker[] = [];
  private evalModel: Model | null = null;
  private evalBatches: ReturnType<typeof evaluationBatches> = [];
  private definition: ModelDefinition | null = null;
  private firstRound = 0;
  private loaded = false;

  constructor(
    private readonly settings: RuntimeSettings,
    private readonly transport: ExchangeTransport,
    private readonly metrics: TrainerMetrics,
    private readonly log: Logger,
  ) {}

  /** Whether the model and data are loaded (what /readyz reports). */
  ready(): boolean {
    return this.loaded;
  }

  /** Loads every worker's data and model, from the newest checkpoint when resuming. */
  async load(backend: { backend: string; device: string }): Promise<void> {
    const { config, workerIndices, workerCount } = this.settings;
    const federation = config.federation;
    const diloco = dilocoConfig(federation);
    const poisonScale = config.drill?.poisonScale;
    if (poisonScale !== undefined) {
      diloco.poisonScale = poisonScale;
      this.log.warn(
        { poisonScale },
        "drill: this member's updates are poisoned (scaled before compression); for robustness tests only",
      );
    }
    const solo = workerIndices.length === 1 && workerCount === 1;
    const federated = this.transport.join !== undefined;
    if (federated && workerIndices.length !== 1)
      throw new RangeError(`the ${this.transport.kind} exchange serves one worker per process`);
    const loaded = await Promise.all(
      workerIndices.map((index) =>
        workerData(
          federation,
          // A lone worker trains on all the data whatever its index: a pod's shard of the
          // federation would need the worker count across members, which nothing agrees on yet.
          { workerIndex: solo ? 0 : index, workerCount },
          config.dataDir,
        ),
      ),
    );
    const first = loaded[0]!;
    const definition = first.definition;
    this.definition = definition;
    let global = initialParameters(definition, federation.training.seed);
    let outer: OuterOptimizer | null = null;
    // A federated worker replays the federation's commits onto the initial weights (or restores
    // the federation's checkpoint): starting from a local checkpoint would apply rounds twice.
    const resumed = this.settings.resume && !federated ? await this.resumable(definition) : null;
    if (resumed) {
      global = resumed.global;
      outer = OuterOptimizer.deserialize(resumed.outerState, global.length);
      this.firstRound = resumed.rounds;
    }
    const contextLength = definition.kind === "transformer" ? definition.contextLength : 0;
    workerIndices.forEach((index, i) => {
      const { data } = loaded[i]!;
      const sampler = new BatchSampler(
        data.train,
        federation.training.batchSize,
        federation.training.seed,
        federated ? batchStream(config.member.id, index) : index,
        contextLength,
      );
      const model = new Model(definition, global);
      const id = workerId(config.member.id, index);
      const worker = new DiLoCoWorker(
        id,
        model,
        global,
        sampler,
        this.transport.endpoint(id),
        diloco,
      );
      if (outer) {
        worker.outer.momentumBuffer.set(outer.momentumBuffer);
        worker.outer.stepCount = outer.stepCount;
      }
      const label = String(index);
      this.workers.push({
        index,
        label,
        worker,
        model,
        rounds: this.firstRound,
        roundStarted: 0,
      });
      this.metrics.info.set(
        {
          backend: backend.backend,
          device: backend.device,
          member: config.member.id,
          worker: label,
        },
        1,
      );
    });
    if (federated) {
      const local = this.workers[0]!;
      const { firstRound } = await this.transport.join!(local.worker, local.model);
      this.firstRound = firstRound;
      local.rounds = firstRound;
    }
    for (const local of this.workers)
      this.metrics.round.set({ worker: local.label }, this.firstRound);
    this.evalModel = new Model(definition, global);
    this.evalBatches = evaluationBatches(
      first.data.eval,
      federation.training.batchSize,
      contextLength,
      MAX_EVAL_WINDOWS,
    );
    this.loaded = true;
    this.log.info(
      {
        workers: workerIndices,
        workerCount,
        model: definition,
        parameters: global.length,
        firstRound: this.firstRound,
        rounds: diloco.rounds,
        exchange: this.transport.kind,
      },
      "model and data loaded",
    );
  }

  /** Runs every worker to the last round or until `signal` aborts, then checkpoints. */
  async run(signal: AbortSignal): Promise<RunOutcome> {
    if (!this.loaded) throw new Error("load() must complete before run()");
    const closeOnAbort = () => void this.transport.close();
    signal.addEventListener("abort", closeOnAbort, { once: true });
    const failure = new AbortController();
    const stop = AbortSignal.any([signal, failure.signal]);
    const started = performance.now();
    const results = await Promise.allSettled(
      this.workers.map(async (local) => {
        local.roundStarted = performance.now();
        try {
          return await local.worker.run((report) => this.onRound(local, report), {
            signal: stop,
            firstRound: this.firstRound,
            onInnerStep: (steps) => this.metrics.innerStep.set({ worker: local.label }, steps),
          });
        } catch (error) {
          if (error instanceof ExchangeClosedError && stop.aborted) return "stopped" as const;
          // One failed worker stops the others: they share the exchange.
          failure.abort();
          await this.transport.close();
          throw error;
        }
      }),
    );
    signal.removeEventListener("abort", closeOnAbort);
    await this.transport.close();
    const rejected = results.find((result) => result.status === "rejected");
    const status = results.every((r) => r.status === "fulfilled" && r.value === "completed")
      ? "completed"
      : "stopped";
    // Every worker of this process holds the same global model for the rounds it applied; the
    // one furthest along is the checkpoint (they differ only when stopped mid-commit).
    const newest = this.workers.reduce((a, b) => (b.rounds > a.rounds ? b : a));
    const checkpoint = await this.checkpoint(newest);
    if (rejected) throw (rejected as PromiseRejectedResult).reason;
    this.log.info(
      {
        status,
        rounds: newest.rounds,
        checkpoint: checkpoint.path,
        globalHash: checkpoint.globalHash,
        seconds: Math.round((performance.now() - started) / 100) / 10,
      },
      status === "completed" ? "training completed" : "training stopped",
    );
    return {
      status,
      rounds: newest.rounds,
      checkpoint: checkpoint.path,
      globalHash: checkpoint.globalHash,
    };
  }

  dispose(): void {
    for (const local of this.workers) {
      local.worker.dispose();
      local.model.dispose();
    }
    this.evalModel?.dispose();
  }

  private async onRound(local: LocalWorker, report: RoundReport): Promise<void> {
    const { config } = this.settings;
    const federation = config.federation;
    // The protocol hashes the round only once it knows the DiLoCo worker applied it.
    this.transport.roundApplied?.(report);
    const now = performance.now();
    const seconds = (now - local.roundStarted) / 1000;
    local.roundStarted = now;
    local.rounds = report.round + 1;
    const worker = { worker: local.label };
    const samples = federation.training.batchSize * federation.training.innerSteps;
    this.metrics.round.set(worker, local.rounds);
    this.metrics.loss.set(worker, report.trainLoss);
    if (seconds > 0) this.metrics.samplesPerSecond.set(worker, samples / seconds);
    this.metrics.bytesSent.inc(worker, report.bytesSent);
    this.metrics.bytesReceived.inc(worker, report.bytesReceived);
    if (report.bytesSent > 0) {
      this.metrics.compressionRatio.set(
        worker,
        (4 * local.worker.global.length) / report.bytesSent,
      );
    }
    // The global model is the same in every worker: count bounded updates, evaluate and
    // checkpoint it once.
    if (local !== this.workers[0]) return;
    for (const { member, action } of report.bounded)
      this.metrics.updatesBounded.inc({ member, action });
    this.evalModel!.writeParameters(local.worker.global);
    const evalLoss = await this.evalModel!.evaluate(this.evalBatches);
    for (const each of this.workers) this.metrics.evalLoss.set({ worker: each.label }, evalLoss);
    this.log.info(
      {
        round: report.round,
        trainLoss: report.trainLoss,
        evalLoss,
        bytesSent: report.bytesSent,
        bytesReceived: report.bytesReceived,
        included: report.included,
        clipped: membersWith(report, "clipped"),
        dropped: membersWith(report, "dropped"),
        globalHash: report.globalHash,
      },
      "round applied",
    );
    const every = federation.sync.checkpointEveryRounds;
    if (every > 0 && local.rounds % every === 0 && local.rounds < federation.training.rounds) {
      await this.checkpoint(local);
    }
  }

  private async checkpoint(local: LocalWorker): Promise<{ path: string; globalHash: string }> {
    const { config } = this.settings;
    const checkpoint: Checkpoint = {
      federation: config.federation,
      federationSpecHash: config.federationSpecHash,
      member: config.member.id,
      worker: local.index,
      rounds: local.rounds,
      definition: this.definition!,
      global: Float32Array.from(local.worker.global),
      outerState: local.worker.outer.serialize(),
    };
    const path = await writeCheckpoint(this.settings.checkpointDir, checkpoint);
    const globalHash = parameterHash(checkpoint.global);
    this.log.info({ checkpoint: path, rounds: local.rounds, globalHash }, "checkpoint written");
    return { path, globalHash };
  }

  /** The newest checkpoint of this federation spec and model in checkpointDir, if any. */
  private async resumable(definition: ModelDefinition): Promise<Checkpoint | null> {
    const { config, checkpointDir, workerIndices } = this.settings;
    const path = await latestCheckpoint(checkpointDir, config.federation.id, workerIndices[0]!);
    if (!path) return null;
    try {
      const checkpoint = await readCheckpoint(path);
      if (checkpoint.federationSpecHash !== config.federationSpecHash) {
        this.log.warn(
          { checkpoint: path, checkpointHash: checkpoint.federationSpecHash },
          "not resuming: the checkpoint was written for another federation spec",
        );
        return null;
      }
      if (canonicalJson(checkpoint.definition) !== canonicalJson(definition)) {
        this.log.warn({ checkpoint: path }, "not resuming: the checkpoint's model differs");
        return null;
      }
      this.log.info({ checkpoint: path, rounds: checkpoint.rounds }, "resuming from checkpoint");
      return checkpoint;
    } catch (error) {
      this.log.warn({ checkpoint: path, err: error }, "not resuming: unreadable checkpoint");
      return null;
    }
  }
}
