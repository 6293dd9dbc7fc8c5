// One trainer process: loads the data and the model for each of its workers, runs DiLoCo over the
// exchange transport it is given, reports metrics, and checkpoints the global model with each
// worker's own state (every sync.checkpointEveryRounds rounds, when stopped, and at the end).
// Stopping (the signal) ends every worker after its current inner step; a round in flight is
// dropped, never half-applied, and the checkpoint holds the state as of the last applied round.
// Over a federated transport (one with `join`, the NATS exchange) the federation's checkpoint and
// ledger are the global state to start from, not the local checkpoints (a local one of the round
// the worker joins at still gives its worker-local state), and the process is ready only once it
// has joined.
import { createHash } from "node:crypto";
import type { Logger } from "pino";
import { canonicalJson, crdDefault } from "../../core/api/index.js";
import type { TrainerConfig } from "../../core/api/trainer-config.js";
import { OuterOptimizer, ReputationBook } from "../../core/codec/index.js";
import type { WorkerRef } from "../../core/protocol/index.js";
import {
  CHECKPOINT_FORMAT_V1,
  type Checkpoint,
  type CheckpointLocalState,
  latestCheckpoint,
  readCheckpoint,
  writeCheckpoint,
} from "../training/checkpoint.js";
import { dilocoConfig, federationData } from "../training/config.js";
import {
  BatchSampler,
  type DataSet,
  type ExampleSet,
  evaluationBatches,
  type TextCorpus,
} from "../training/data.js";
import { DiLoCoWorker, parameterHash, type RoundReport } from "../training/diloco.js";
import { describeSkill, type Learned, measureSkill } from "../training/learned.js";
import {
  arithmeticLossLevels,
  arithmeticProblemCount,
  type LossLevels,
  natsToBits,
  textLossLevels,
} from "../training/levels.js";
import { initialParameters, Model, type ModelDefinition } from "../training/model.js";
import {
  federationWorkerId,
  rosterRound,
  type ShardChange,
  WorkerShard,
  workerName,
} from "../training/roster.js";
import { readLocalExamples } from "../training/text-data.js";
import { ExchangeClosedError, type ExchangeTransport } from "./exchange.js";
import type { TrainerMetrics } from "./metrics.js";

/** Evaluation windows of text data per round: enough for a stable loss, cheap next to training. */
const MAX_EVAL_WINDOWS = 256;
/** Training tokens the loss levels are estimated from: plenty for 3-character statistics. */
const LEVELS_MAX_TOKENS = 4_000_000;
/** Arithmetic problems the exact levels enumerate at most (maxOperand 110 and below). */
const LEVELS_MAX_ARITHMETIC_PROBLEMS = 25_000;

/** The id of worker `index` of `member` in updates, commits and logs. */
export function workerId(member: string, index: number): string {
  return `${member}-${index}`;
}

/**
 * The batch stream of a federated worker, told apart by member and index: a newcomer's shard may
 * overlap another worker's for its first round, and must not draw the same batches from it.
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
  /**
   * Indices of the workers this process runs (one in a pod, N in local mode). Over the local
   * exchange they are all the workers the data is dealt among; over a federated one, the
   * federation's workers are (see roster.ts).
   */
  workerIndices: number[];
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
  /** Each member's update cosine over the rounds applied. */
  private readonly reputation = new ReputationBook();
  private evalModel: Model | null = null;
  private evalBatches: ReturnType<typeof evaluationBatches> = [];
  private definition: ModelDefinition | null = null;
  private firstRound = 0;
  private loaded = false;
  /** The held-out text, for what the model learned (text data only). */
  private evalText: TextCorpus | undefined;
  /** The workers of a round no commit names: this process's own, or those live at the start. */
  private startingRoster: WorkerRef[] = [];

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
    const { config, workerIndices } = this.settings;
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
    const federated = this.transport.join !== undefined;
    if (federated && workerIndices.length !== 1)
      throw new RangeError(`the ${this.transport.kind} exchange serves one worker per process`);
    const { data, definition } = await federationData(federation, config.dataDir);
    this.definition = definition;
    const contextLength = definition.kind === "transformer" ? definition.contextLength : 0;
    const examples = config.localData ? await this.localExamples(data, contextLength) : data.train;
    const localData = config.localData !== undefined;
    this.startingRoster = workerIndices.map((index) => ({
      memberId: config.member.id,
      workerId: federationWorkerId(index, localData),
    }));
    let global = initialParameters(definition, federation.training.seed);
    let outer: OuterOptimizer | null = null;
    const resumed = this.settings.resume ? await this.resumable(definition) : null;
    // A federated worker replays the federation's commits onto the initial weights (or restores
    // the federation's checkpoint): starting from a local checkpoint would apply rounds twice.
    if (resumed && !federated) {
      this.log.info(
        { checkpoint: resumed.path, rounds: resumed.checkpoint.rounds },
        "resuming from checkpoint",
      );
      global = resumed.checkpoint.global;
      outer = OuterOptimizer.deserialize(resumed.checkpoint.outerState, global.length);
      this.firstRound = resumed.checkpoint.rounds;
    }
    const dealSettings = {
      seed: federation.training.seed,
      strategy: federation.data.sharding.strategy,
      concentration: federation.data.sharding.concentration,
    };
    workerIndices.forEach((index, i) => {
      const label = String(index);
      const shard = new WorkerShard({
        examples,
        settings: dealSettings,
        self: this.startingRoster[i]!,
        roster: (round) => this.roster(round, diloco.overlap),
        minimum:
          examples.kind === "text"
            ? federation.training.batchSize * (contextLength + 1)
            : federation.training.batchSize,
        onChange: (change) => this.logShard(label, change),
      });
      const sampler = new BatchSampler(
        shard,
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
        worker.outer.restore(outer);
      }
      const local: LocalWorker = {
        index,
        label,
        worker,
        model,
        rounds: this.firstRound,
        roundStarted: 0,
      };
      this.workers.push(local);
      if (resumed && !federated) this.restoreLocalState(local, resumed);
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
    this.evalText = data.eval.kind === "text" ? data.eval : undefined;
    this.evalBatches = evaluationBatches(
      data.eval,
      federation.training.batchSize,
      contextLength,
      MAX_EVAL_WINDOWS,
    );
    // Before joining: the computation holds the event loop for up to a few seconds, which a
    // joined worker's heartbeats and coordinator lease cannot wait for.
    this.logLossLevels(data);
    if (federated) {
      const local = this.workers[0]!;
      const { firstRound } = await this.transport.join!(local.worker, local.model);
      this.firstRound = firstRound;
      local.rounds = firstRound;
      if (
        resumed?.checkpoint.rounds === firstRound &&
        parameterHash(local.worker.global) !== parameterHash(resumed.checkpoint.global)
      ) {
        this.log.info(
          { checkpoint: resumed.path, rounds: resumed.checkpoint.rounds },
          "worker-local state starts fresh: the federation's global model at that round is not the local checkpoint's",
        );
      } else if (resumed?.checkpoint.rounds === firstRound) {
        this.restoreLocalState(local, resumed);
      } else if (resumed) {
        this.log.info(
          { checkpoint: resumed.path, rounds: resumed.checkpoint.rounds, firstRound },
          "worker-local state starts fresh: the local checkpoint is of another round than the one the worker joined at",
        );
      }
    }
    for (const local of this.workers)
      this.metrics.round.set({ worker: local.label }, this.firstRound);
    this.evalModel = new Model(definition, global);
    this.loaded = true;
    this.log.info(
      {
        workers: workerIndices,
        model: definition,
        parameters: global.length,
        firstRound: this.firstRound,
        rounds: diloco.rounds,
        exchange: this.transport.kind,
      },
      "model and data loaded",
    );
  }

  /**
   * Logs the loss levels of the evaluation set (levels.ts), so that a reader of the eval loss
   * sees what a model that learned nothing scores and how far a run got: exact for Arithmetic
   * while its problems are few enough to enumerate, otherwise estimated from (at most the first
   * few million tokens of) the training text.
   */
  private logLossLevels(data: DataSet): void {
    if (data.train.kind !== "text" || data.eval.kind !== "text") return;
    const train: TextCorpus = {
      kind: "text",
      tokens: data.train.tokens.subarray(0, LEVELS_MAX_TOKENS),
      vocabulary: data.train.vocabulary,
    };
    const synthetic = this.settings.config.federation.data.synthetic;
    const exact =
      synthetic?.preset === "Arithmetic" &&
      arithmeticProblemCount(synthetic.maxOperand) <= LEVELS_MAX_ARITHMETIC_PROBLEMS;
    const levels: LossLevels = exact
      ? arithmeticLossLevels(synthetic, train, this.evalBatches)
      : textLossLevels(train, this.evalBatches);
    const bits = Object.fromEntries(
      Object.entries(levels).map(([name, nats]) => [name, natsToBits(nats as number)]),
    );
    this.log.info(
      { ...levels, bits, exact },
      "evaluation loss levels (nats per token; bits per token under bits)",
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
    await this.awaitStartingRoster(stop);
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
    if (status === "completed") await this.logLearned(newest.worker.global);
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

  /**
   * Logs what the final global model can do on the held-out data next to the untrained model
   * (the federation's initial weights): answer accuracy for Arithmetic, generated lines for text.
   */
  private async logLearned(global: Float32Array): Promise<void> {
    const definition = this.definition;
    const evalText = this.evalText;
    if (definition?.kind !== "transformer" || !evalText) return;
    const federation = this.settings.config.federation;
    const arithmetic = federation.data.synthetic?.preset === "Arithmetic";
    const initial = initialParameters(definition, federation.training.seed);
    const learned: Learned = {
      trained: await measureSkill(definition, global, evalText, arithmetic),
      untrained: await measureSkill(definition, initial, evalText, arithmetic),
    };
    this.log.info(
      {
        learned,
        trained: describeSkill(learned.trained),
        untrained: describeSkill(learned.untrained),
      },
      "what the model learned",
    );
  }

  /**
   * Over a federated transport whose first round no commit names, waits (at most one round
   * deadline) until the quorum's minimum of members is live, and takes the live workers as that
   * round's. Starting alone would deal this worker all the data for the round.
   */
  private async awaitStartingRoster(signal: AbortSignal): Promise<void> {
    const { federation } = this.settings.config;
    const source = rosterRound(
      this.firstRound,
      federation.sync.overlap ?? crdDefault("spec.federation.sync.overlap"),
    );
    const liveWorkers = this.transport.liveWorkers?.bind(this.transport);
    if (!liveWorkers || (source >= 0 && this.transport.committedWorkers?.(source))) return;
    const minMembers =
      federation.sync.quorum.minMembers ?? crdDefault("spec.federation.sync.quorum").minMembers;
    const live = await liveWorkers(minMembers, federation.sync.roundDeadlineSeconds * 1000, signal);
    const members = new Set(live.map((worker) => worker.memberId)).size;
    if (members < minMembers)
      this.log.info(
        { live: live.map(workerName), minMembers },
        "dealing the first round's data among the workers live now: fewer members than the quorum needs are live",
      );
    this.startingRoster = [...this.startingRoster, ...live];
  }

  /** The workers of DiLoCo round `round` (roster.ts). */
  private roster(round: number, overlap: boolean): readonly WorkerRef[] {
    const source = rosterRound(round, overlap);
    return (
      (source >= 0 ? this.transport.committedWorkers?.(source) : undefined) ?? this.startingRoster
    );
  }

  /** This member's own data (contribution.localData) in the federation's vocabulary. */
  private async localExamples(data: DataSet, contextLength: number): Promise<ExampleSet> {
    const { config } = this.settings;
    const spec = config.localData!;
    if (data.train.kind !== "text")
      throw new RangeError(
        "contribution.localData is text: it cannot stand in for the federation's classification data (GaussianClusters)",
      );
    const { examples, skipped } = await readLocalExamples(
      spec,
      data.train.vocabulary,
      config.dataDir,
    );
    if (examples.tokens.length < contextLength + 2)
      throw new RangeError(
        `contribution.localData: ${spec.path} has ${examples.tokens.length} characters in the federation's vocabulary, fewer than the context length + 2 (${contextLength + 2})`,
      );
    this.log.info(
      {
        path: spec.path,
        format: spec.format,
        examples: examples.bounds.length - 1,
        characters: examples.tokens.length,
        skippedCharacters: skipped,
      },
      skipped > 0
        ? "training on this member's own data; characters outside the federation's vocabulary skipped"
        : "training on this member's own data",
    );
    return examples;
  }

  /**
   * Logs a worker's new shard: its workers and size, a digest of its examples, and at debug level
   * the examples themselves (base64 of a bitmap, bit e of byte e >> 3 for example e).
   */
  private logShard(worker: string, change: ShardChange): void {
    const owned = new Uint8Array(
      change.owned.buffer,
      change.owned.byteOffset,
      change.owned.byteLength,
    );
    const fields = {
      worker,
      round: change.round,
      workers: change.workers,
      localData: this.settings.config.localData !== undefined,
      examples: change.owned.length,
      of: change.examples,
      digest: createHash("sha256").update(owned).digest("hex").slice(0, 16),
    };
    if (change.fallback) {
      const { strategy, concentration } = this.settings.config.federation.data.sharding;
      this.log.warn(
        { ...fields, fallback: change.fallback, strategy, concentration },
        change.fallback === "IID"
          ? "training data dealt: the NonIID deal left this worker less than one batch, so it trains on an IID share (raise data.sharding.concentration, or use more data or fewer workers)"
          : "training data dealt: this worker's share is less than one batch, so it trains on the whole data set, overlapping the others (use more data or fewer workers)",
      );
    } else {
      this.log.info(fields, "training data dealt");
    }
    if (!this.log.isLevelEnabled("debug")) return;
    const bitmap = new Uint8Array(Math.ceil(change.examples / 8));
    for (const example of change.owned) bitmap[example >> 3]! |= 1 << (example & 7);
    this.log.debug(
      { worker, round: change.round, owned: Buffer.from(bitmap).toString("base64") },
      "training examples owned",
    );
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
    const cosines = this.scoreMembers(report);
    const { protection } = report;
    if (protection.unprotected) {
      this.metrics.roundsUnprotected.inc();
      this.log.warn(
        {
          round: report.round,
          included: report.included,
          tolerate: protection.required,
          withstood: protection.provided,
        },
        `round ${report.round} is unprotected: its ${report.included} updates withstand ${protection.provided} faulty ones, the aggregation must withstand ${protection.required} (that takes ${2 * protection.required + 1} updates)`,
      );
    }
    this.evalModel!.writeParameters(local.worker.global);
    const evalLoss = await this.evalModel!.evaluate(this.evalBatches);
    for (const each of this.workers) this.metrics.evalLoss.set({ worker: each.label }, evalLoss);
    // The operator's status shows them (kubectl get tfed), from this worker's heartbeats.
    this.transport.reportProgress?.({
      evalLoss: Number.isFinite(evalLoss) ? evalLoss : Number.NaN,
      bytesSent: report.bytesSent,
      denseBytes: 4 * local.worker.global.length,
    });
    this.log.info(
      {
        round: report.round,
        trainLoss: report.trainLoss,
        evalLoss,
        evalBitsPerToken: natsToBits(evalLoss),
        bytesSent: report.bytesSent,
        bytesReceived: report.bytesReceived,
        included: report.included,
        clipped: membersWith(report, "clipped"),
        dropped: membersWith(report, "dropped"),
        unprotected: report.protection.unprotected,
        cosines,
        globalHash: report.globalHash,
      },
      "round applied",
    );
    const every = federation.sync.checkpointEveryRounds;
    if (every > 0 && local.rounds % every === 0 && local.rounds < federation.training.rounds) {
      await this.checkpoint(local);
    }
  }

  /**
   * Sets each member's update cosine and reputation from the round's scores, warns of a member
   * whose update points away from the aggregate, and returns the cosines for the round's log line.
   */
  private scoreMembers(report: RoundReport): Record<string, number> {
    const cosines: Record<string, number> = {};
    for (const [member, cosine] of this.reputation.record(report.scores)) {
      const { reputation } = this.reputation.get(member)!;
      this.metrics.memberCosine.set({ member }, cosine);
      this.metrics.memberReputation.set({ member }, reputation);
      if (cosine < 0) {
        this.log.warn(
          { round: report.round, member, cosine, reputation },
          `member ${member}'s update in round ${report.round} points away from the round's aggregate (cosine ${cosine.toFixed(3)})`,
        );
      }
      cosines[member] = Math.round(cosine * 1000) / 1000;
    }
    return cosines;
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
      local: await this.localStates(local.rounds),
    };
    const path = await writeCheckpoint(this.settings.checkpointDir, checkpoint);
    const globalHash = parameterHash(checkpoint.global);
    this.log.info({ checkpoint: path, rounds: local.rounds, globalHash }, "checkpoint written");
    return { path, globalHash };
  }

  /**
   * The worker-local state of every worker that is at the boundary of round `rounds` (all of them
   * but in overlap mode, which saves none, since this process's workers apply each commit
   * together).
   */
  private async localStates(rounds: number): Promise<CheckpointLocalState[]> {
    const states: CheckpointLocalState[] = [];
    for (const local of this.workers) {
      const state = await local.worker.localState();
      if (state?.round === rounds) {
        states.push({ worker: local.index, state });
      } else if (state) {
        this.log.warn(
          { worker: local.index, round: state.round, rounds },
          "worker-local state left out of the checkpoint: the worker is at another round",
        );
      }
    }
    return states;
  }

  /** Continues `local`'s inner optimiser and error feedback from the checkpoint, if it has them. */
  private restoreLocalState(
    local: LocalWorker,
    resumed: { path: string; checkpoint: Checkpoint },
  ): void {
    const { path, checkpoint } = resumed;
    const fields = { checkpoint: path, rounds: checkpoint.rounds, worker: local.index };
    if (local.worker.config.overlap) {
      this.log.info(
        fields,
        "worker-local state starts fresh: an overlap-mode run does not checkpoint it",
      );
      return;
    }
    const saved = checkpoint.local.find((each) => each.worker === local.index);
    if (!saved) {
      this.log.warn(
        fields,
        checkpoint.format === CHECKPOINT_FORMAT_V1
          ? "worker-local state starts fresh: a version 1 checkpoint holds none"
          : "worker-local state starts fresh: the checkpoint holds none for this worker",
      );
      return;
    }
    try {
      local.worker.restoreLocalState(saved.state);
    } catch (error) {
      this.log.warn({ ...fields, err: error }, "worker-local state starts fresh: unusable");
      return;
    }
    this.log.info(
      { ...fields, innerSteps: saved.state.innerStepCount },
      "worker-local state restored",
    );
  }

  /** The newest checkpoint of this federation spec and model in checkpointDir, if any. */
  private async resumable(
    definition: ModelDefinition,
  ): Promise<{ path: string; checkpoint: Checkpoint } | null> {
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
      return { path, checkpoint };
    } catch (error) {
      this.log.warn({ checkpoint: path, err: error }, "not resuming: unreadable checkpoint");
      return null;
    }
  }
}
