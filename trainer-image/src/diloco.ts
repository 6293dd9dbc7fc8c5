// DiLoCo for one worker: H inner AdamW steps on its shard, the pseudo-gradient global − local as
// a flat Float32Array, compression with error feedback, exchange, aggregation and the outer
// Nesterov step on plain typed arrays (never on the accelerator, so members on different
// backends hold bit-identical global models), then local ← global. With `overlap` (DiLoCoX's
// one-step delay) round r+1's inner steps start before round r's commit arrives, and the commit
// is applied one round late.
import { createHash } from "node:crypto";
import {
  type AggregationRule,
  aggregate,
  applyNormBound,
  type CodecParams,
  decodeUpdate,
  ErrorFeedback,
  type NormBound,
  OuterOptimizer,
  type OuterOptimizerConfig,
  UpdateEncoder,
} from "../../core/codec/index.js";
import { AdamW, type AdamWConfig } from "./adamw.js";
import type { BatchSampler } from "./data.js";
import type { Model } from "./model.js";

/** One worker's update in a round's commit. */
export interface CommittedUpdate {
  worker: string;
  /** The member the worker belongs to; absent in-process, where each worker stands alone. */
  member?: string;
  message: Uint8Array;
}

/** What a round closes with: exactly the included updates, in the canonical order to apply. */
export interface RoundCommit {
  round: number;
  updates: CommittedUpdate[];
}

/**
 * How a worker exchanges updates with the rest of the federation. The NATS transport implements
 * it across machines; `InProcessExchange` implements it inside one process.
 */
export interface UpdateExchange {
  /** Publishes this worker's encoded update for `round` and resolves with the round's commit. */
  exchange(round: number, message: Uint8Array): Promise<RoundCommit>;
}

/** The DiLoCo schedule, optimisers and sync settings of a run. */
export interface DiLoCoConfig {
  rounds: number;
  innerSteps: number;
  inner: AdamWConfig;
  outer: OuterOptimizerConfig;
  codec: CodecParams;
  /** Keep what compression left out and send it in later rounds. */
  errorFeedback: boolean;
  aggregation: AggregationRule;
  normBound?: NormBound;
  overlap: boolean;
  /**
   * Drill only (fault injection, never set by the shared spec): the pseudo-gradient this worker
   * sends is multiplied by this factor before compression, to test a federation's robust
   * aggregation against a poisoning member. The worker's own local progress is not scaled.
   */
  poisonScale?: number;
}

/** What a worker reports after each round it applied. */
export interface RoundReport {
  round: number;
  worker: string;
  /** Loss of the last inner step of the round's own inner steps. */
  trainLoss: number;
  /** Bytes of this worker's encoded update. */
  bytesSent: number;
  /** Bytes of the other workers' updates in the commit. */
  bytesReceived: number;
  /** Updates aggregated: the commit's, less those the norm bound dropped. */
  included: number;
  /** The commit's updates the norm bound scaled down or dropped, in commit order. */
  bounded: BoundedUpdate[];
  /** SHA-256 of the global parameters after the round, identical on every member. */
  globalHash: string;
}

/** An update of a round's commit that the norm bound scaled down ("clipped") or left out. */
export interface BoundedUpdate {
  /** The update's member (its worker in-process). */
  member: string;
  worker: string;
  action: "clipped" | "dropped";
}

/** What applying one round's commit did. */
export interface AppliedRound {
  /** Updates aggregated. */
  included: number;
  bounded: BoundedUpdate[];
}

/**
 * Applies one round's committed updates to the global parameters, in the commit's order: decode,
 * norm bound, aggregate, outer step. DiLoCoWorker applies live rounds with it and the NATS
 * exchange replays missed ones, so a replayed round gives the bits a live one would.
 */
export function applyRound(
  global: Float32Array,
  outer: OuterOptimizer,
  config: Pick<DiLoCoConfig, "aggregation" | "normBound">,
  committed: readonly CommittedUpdate[],
): AppliedRound {
  let updates = committed.map((update) => decodeUpdate(update.message, global.length));
  const bounded: BoundedUpdate[] = [];
  if (config.normBound && updates.length > 0) {
    const { updates: kept, report } = applyNormBound(updates, config.normBound);
    updates = kept;
    const actions = new Map<number, BoundedUpdate["action"]>();
    for (const j of report.clipped) actions.set(j, "clipped");
    for (const j of report.dropped) actions.set(j, "dropped");
    committed.forEach((update, j) => {
      const action = actions.get(j);
      if (action)
        bounded.push({ member: update.member ?? update.worker, worker: update.worker, action });
    });
  }
  if (updates.length > 0) outer.step(global, aggregate(updates, config.aggregation));
  return { included: updates.length, bounded };
}

/** SHA-256 (hex) of a flat parameter vector's bytes. */
export function parameterHash(parameters: Float32Array): string {
  return createHash("sha256")
    .update(new Uint8Array(parameters.buffer, parameters.byteOffset, parameters.byteLength))
    .digest("hex");
}

/**
 * Resolves on a later turn of the event loop. tfjs computes synchronously on the CPU and WASM
 * backends, and awaiting a step only runs microtasks: without this between inner steps, a
 * round's inner steps would hold off timers and I/O for seconds at a time (heartbeats, the
 * coordinator lease's renewal, NATS pings, probes, a stop signal), and a busy worker would look
 * dead to the federation.
 */
function nextTurnOfEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Options of `DiLoCoWorker.run`. */
export interface WorkerRunOptions {
  /** When aborted, the worker stops after its current inner step, before publishing. */
  signal?: AbortSignal;
  /** The first round to run (a worker resumed from a checkpoint); default 0. */
  firstRound?: number;
  /** Called after every inner step with the steps taken so far in this run. */
  onInnerStep?: (steps: number) => void;
}

/** One DiLoCo worker: its local model and inner optimiser, and its copy of the global state. */
export class DiLoCoWorker {
  /** The global parameters, identical on every member after each applied commit. */
  readonly global: Float32Array;
  readonly outer: OuterOptimizer;
  private readonly optimizer: AdamW;
  private readonly encoder: UpdateEncoder;
  private readonly feedback: ErrorFeedback | null;
  /** Bytes this worker has sent so far. */
  bytesSent = 0;
  /** Inner steps this worker has taken so far. */
  innerStepCount = 0;

  constructor(
    readonly id: string,
    private readonly model: Model,
    initialGlobal: Float32Array,
    private readonly sampler: BatchSampler,
    private readonly exchange: UpdateExchange,
    readonly config: DiLoCoConfig,
  ) {
    if (!(Number.isInteger(config.innerSteps) && config.innerSteps >= 1)) {
      throw new RangeError(`innerSteps ${config.innerSteps} must be a positive integer`);
    }
    if (config.poisonScale !== undefined && !Number.isFinite(config.poisonScale)) {
      throw new RangeError(`poisonScale ${config.poisonScale} must be a finite number`);
    }
    this.global = Float32Array.from(initialGlobal);
    model.writeParameters(this.global);
    this.optimizer = new AdamW(model, config.inner);
    this.outer = new OuterOptimizer(this.global.length, config.outer);
    this.encoder = new UpdateEncoder(config.codec, this.global.length);
    this.feedback =
      config.errorFeedback && config.codec.method !== "none"
        ? new ErrorFeedback(this.global.length)
        : null;
  }

  /**
   * Runs all rounds; `onRound` sees every applied round (in overlap mode, one round late).
   * Resolves with "stopped" when `options.signal` aborted the run between inner steps (a round
   * in flight is dropped, its commit not awaited), else with "completed".
   */
  async run(
    onRound?: (report: RoundReport) => void | Promise<void>,
    options: WorkerRunOptions = {},
  ): Promise<"completed" | "stopped"> {
    let anchor = Float32Array.from(this.global);
    let pending: {
      round: number;
      commit: Promise<RoundCommit>;
      trainLoss: number;
      bytes: number;
    } | null = null;
    for (let round = options.firstRound ?? 0; round < this.config.rounds; round++) {
      this.sampler.startRound(round);
      const trainLoss = await this.innerSteps(options);
      if (trainLoss === null) return "stopped";
      const local = await this.model.readParameters();
      const pseudoGradient = new Float32Array(local.length);
      for (let i = 0; i < local.length; i++) pseudoGradient[i] = anchor[i]! - local[i]!;
      const message = this.encoder.encode(
        this.outgoing(pseudoGradient),
        this.feedback ?? undefined,
      );
      this.bytesSent += message.byteLength;
      const commit = this.exchange.exchange(round, message);
      if (!this.config.overlap) {
        await this.apply(await commit, trainLoss, message.byteLength, onRound);
        this.model.writeParameters(this.global);
        anchor = Float32Array.from(this.global);
        continue;
      }
      if (pending) {
        await this.apply(await pending.commit, pending.trainLoss, pending.bytes, onRound);
      }
      pending = { round, commit, trainLoss, bytes: message.byteLength };
      // Keep this round's local progress on top of the newest global model; it is replaced by
      // its aggregated form when this round's commit is applied at the end of the next round.
      for (let i = 0; i < anchor.length; i++) anchor[i] = this.global[i]! - pseudoGradient[i]!;
      this.model.writeParameters(anchor);
    }
    if (pending) {
      await this.apply(await pending.commit, pending.trainLoss, pending.bytes, onRound);
      this.model.writeParameters(this.global);
    }
    return "completed";
  }

  /** What this worker sends for `pseudoGradient`: itself, or its poisoned copy in a drill. */
  private outgoing(pseudoGradient: Float32Array): Float32Array {
    const scale = this.config.poisonScale;
    if (scale === undefined || scale === 1) return pseudoGradient;
    const poisoned = new Float32Array(pseudoGradient.length);
    for (let i = 0; i < poisoned.length; i++) poisoned[i] = pseudoGradient[i]! * scale;
    return poisoned;
  }

  /** The round's inner steps and the last one's loss, or null when stopped in between. */
  private async innerSteps(options: WorkerRunOptions): Promise<number | null> {
    let loss = Number.NaN;
    for (let step = 0; step < this.config.innerSteps; step++) {
      if (options.signal?.aborted) return null;
      const last = step === this.config.innerSteps - 1;
      const value = await this.optimizer.step(this.sampler.next(), last);
      if (value !== null) loss = value;
      this.innerStepCount++;
      options.onInnerStep?.(this.innerStepCount);
      await nextTurnOfEventLoop();
    }
    return options.signal?.aborted ? null : loss;
  }

  /** Decodes the commit's updates in its order, aggregates them and takes the outer step. */
  private async apply(
    commit: RoundCommit,
    trainLoss: number,
    bytesSent: number,
    onRound: ((report: RoundReport) => void | Promise<void>) | undefined,
  ): Promise<void> {
    const { included, bounded } = applyRound(this.global, this.outer, this.config, commit.updates);
    let bytesReceived = 0;
    for (const update of commit.updates) {
      if (update.worker !== this.id) bytesReceived += update.message.byteLength;
    }
    await onRound?.({
      round: commit.round,
      worker: this.id,
      trainLoss,
      bytesSent,
      bytesReceived,
      included,
      bounded,
      globalHash: parameterHash(this.global),
    });
  }

  dispose(): void {
    this.optimizer.dispose();
  }
}

/**
 * An exchange among workers of one process: a round closes when every worker has published,
 * and its commit lists the updates in worker order.
 */
export class InProcessExchange {
  private readonly rounds = new Map<
    number,
    {
      messages: Map<string, Uint8Array>;
      resolve: (commit: RoundCommit) => void;
      done: Promise<RoundCommit>;
    }
  >();

  constructor(readonly workers: readonly string[]) {}

  /** The exchange endpoint of one worker. */
  endpoint(worker: string): UpdateExchange {
    if (!this.workers.includes(worker)) throw new RangeError(`unknown worker ${worker}`);
    return { exchange: (round, message) => this.publish(round, worker, message) };
  }

  private publish(round: number, worker: string, message: Uint8Array): Promise<RoundCommit> {
    let state = this.rounds.get(round);
    if (!state) {
      let resolve!: (commit: RoundCommit) => void;
      const done = new Promise<RoundCommit>((r) => {
        resolve = r;
      });
      state = { messages: new Map(), resolve, done };
      this.rounds.set(round, state);
    }
    if (state.messages.has(worker)) {
      return Promise.reject(new Error(`worker ${worker} published twice in round ${round}`));
    }
    state.messages.set(worker, message);
    if (state.messages.size === this.workers.length) {
      const messages = state.messages;
      state.resolve({
        round,
        updates: this.workers.map((id) => ({ worker: id, message: messages.get(id)! })),
      });
      this.rounds.delete(round);
    }
    return state.done;
  }
}
