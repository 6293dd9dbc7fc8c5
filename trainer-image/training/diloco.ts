// DiLoCo for one worker: H inner AdamW steps on its shard, the pseudo-gradient global − local as
// a flat Float32Array, compression with error feedback, exchange, aggregation and the outer
// Nesterov step on plain typed arrays (never on the accelerator, so members on different
// backends hold bit-identical global models), then local ← global. With `overlap` (DiLoCoX's
// one-step delay) round r+1's inner steps start before round r's commit arrives, and the commit
// is applied one round late. At each round boundary the worker keeps its own state (AdamW moments
// and steps, error-feedback residual) on the accelerator, so that a checkpoint written then or
// after a stop can hold it (`localState`) and a resumed worker continue from it
// (`restoreLocalState`); overlap mode has no such boundary and saves none.
import { createHash } from "node:crypto";
import {
  type AggregationRule,
  aggregateRound,
  type CodecParams,
  decodeUpdate,
  ErrorFeedback,
  type NormBound,
  OuterOptimizer,
  type OuterOptimizerConfig,
  type RoundProtection,
  type UpdateAssessment,
  UpdateEncoder,
} from "../../core/codec/index.js";
import { AdamW, type AdamWConfig, type AdamWSnapshot, type AdamWState } from "./adamw.js";
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
  /**
   * With error feedback, start each round's inner steps from the global model plus this worker's
   * pending share: its unsent residual as one outer step of the mean would apply it (× outer
   * learning rate ÷ updates aggregated), instead of from the global model alone. Exact for plain
   * averaging; with outer momentum, later steps add more of it, so the share is an underestimate
   * there (a deliberately cautious one). Default on; it applies with the mean (the only rule
   * whose effect of one update is that share) outside overlap mode.
   */
  startWithPendingShare?: boolean;
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
  /** What the aggregation rule was asked to withstand and could, with the included updates. */
  protection: RoundProtection;
  /** Every committed update scored against the aggregate, in commit order. */
  scores: MemberScore[];
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

/** One committed update's assessment against the round's aggregate (see aggregateRound). */
export interface MemberScore extends UpdateAssessment {
  member: string;
  worker: string;
}

/** What applying one round's commit did. */
export interface AppliedRound {
  /** Updates aggregated. */
  included: number;
  bounded: BoundedUpdate[];
  /** The stated protection against what the included updates allowed (see roundProtection). */
  protection: RoundProtection;
  /** Every committed update scored against the aggregate, in commit order (empty without one). */
  scores: MemberScore[];
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
  const decoded = committed.map((update) => decodeUpdate(update.message, global.length));
  const round = aggregateRound(decoded, config, outer.lastAggregate);
  if (round.aggregated) outer.step(global, round.aggregated);
  const bounded: BoundedUpdate[] = [];
  committed.forEach((update, j) => {
    const action = round.bound[j];
    if (action === "clipped" || action === "dropped")
      bounded.push({ member: update.member ?? update.worker, worker: update.worker, action });
  });
  const scores = round.assessments.map((assessment, j) => ({
    member: committed[j]!.member ?? committed[j]!.worker,
    worker: committed[j]!.worker,
    ...assessment,
  }));
  return { included: round.included, bounded, protection: round.protection, scores };
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

/**
 * A worker's own state at a round boundary, what the global model and outer optimiser do not
 * hold: with them, it is everything a worker needs to continue a run as if never stopped (the
 * round's batches are a function of the seed, the stream and the round; see BatchSampler).
 */
export interface WorkerLocalState {
  /** The round this state starts: the rounds applied to the global model when it was taken. */
  round: number;
  /** Inner steps the worker had taken. */
  innerStepCount: number;
  /** The inner optimiser's moments and step count (which drives warm-up and decay). */
  inner: AdamWState;
  /** The error-feedback residual; null for a worker without error feedback. */
  residual: Float32Array | null;
  /**
   * The scale of the residual in the round's starting point (outer learning rate ÷ updates the
   * last commit aggregated; 0 when the worker starts from the global model alone).
   */
  pendingShareScale: number;
}

/** A local state as of a round boundary, kept on the accelerator until a checkpoint asks. */
interface BoundarySnapshot {
  round: number;
  innerStepCount: number;
  inner: AdamWSnapshot;
  residual: Float32Array | null;
  pendingShareScale: number;
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
  /** The local state at the latest round boundary, what a checkpoint saves. */
  private boundary: BoundarySnapshot | null = null;
  /** How much of the residual the next round starts with (see startWithPendingShare). */
  private pendingShareScale = 0;

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
    this.outer = new OuterOptimizer(this.global.length, config.outer, {
      keepLastAggregate: config.aggregation.kind === "centredClip",
    });
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
    let anchor = this.roundStart();
    let pending: {
      round: number;
      commit: Promise<RoundCommit>;
      trainLoss: number;
      bytes: number;
    } | null = null;
    const firstRound = options.firstRound ?? 0;
    if (this.boundary && this.boundary.round !== firstRound) {
      throw new RangeError(
        `the worker holds the local state of round ${this.boundary.round} but runs from round ${firstRound}`,
      );
    }
    this.markBoundary(firstRound);
    for (let round = firstRound; round < this.config.rounds; round++) {
      this.sampler.startRound(round);
      const trainLoss = await this.innerSteps(round, options);
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
        const committed = await commit;
        // The inner optimiser and the residual are as round + 1 starts with them: a checkpoint
        // written while the commit is applied (in onRound) or after a later stop holds this.
        this.markBoundary(round + 1);
        await this.apply(committed, trainLoss, message.byteLength, onRound);
        anchor = this.roundStart();
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

  /**
   * The local state as of the latest round boundary this worker reached (its round is the rounds
   * applied to its global model then), read back to the host; null before the first run, and
   * always in overlap mode. A worker stopped in the middle of a round drops that round, so its
   * state is the one from the round's start, not the half-round's. In overlap mode there is no
   * such boundary: the local model carries the pseudo-gradient of a round whose commit is still
   * in flight, which a checkpoint cannot hold, so a resumed overlap run starts its local state
   * fresh.
   */
  async localState(): Promise<WorkerLocalState | null> {
    const boundary = this.boundary;
    if (this.config.overlap || !boundary) return null;
    // Taken before the read-back, during which the worker may reach its next boundary.
    const residual = boundary.residual ? Float32Array.from(boundary.residual) : null;
    const inner = boundary.inner.clone();
    try {
      return {
        round: boundary.round,
        innerStepCount: boundary.innerStepCount,
        inner: await inner.read(),
        residual,
        pendingShareScale: boundary.pendingShareScale,
      };
    } finally {
      inner.dispose();
    }
  }

  /**
   * Continues from `state` (from {@link localState}, of a worker with the same config and
   * model): the next run must start at `state.round`, with the global model and outer optimiser
   * of that round. Not in overlap mode.
   */
  restoreLocalState(state: WorkerLocalState): void {
    if (this.config.overlap) {
      throw new RangeError("an overlap-mode worker has no local state to restore");
    }
    if ((state.residual === null) !== (this.feedback === null)) {
      throw new RangeError(
        this.feedback
          ? "the local state has no error-feedback residual, but this worker uses error feedback"
          : "the local state has an error-feedback residual, but this worker sends without error feedback",
      );
    }
    if (!(Number.isInteger(state.innerStepCount) && state.innerStepCount >= 0)) {
      throw new RangeError(
        `inner step count ${state.innerStepCount} must be a non-negative integer`,
      );
    }
    // Checked before anything changes, so a state that fails leaves the worker as it was.
    const { firstMoment, secondMoment, stepCount } = state.inner;
    if (firstMoment.length !== this.global.length || secondMoment.length !== this.global.length) {
      throw new RangeError(
        `the local state's moments hold ${firstMoment.length} and ${secondMoment.length} values for ${this.global.length} parameters`,
      );
    }
    if (!(Number.isInteger(stepCount) && stepCount >= 0)) {
      throw new RangeError(`AdamW step count ${stepCount} must be a non-negative integer`);
    }
    if (!(Number.isFinite(state.pendingShareScale) && state.pendingShareScale >= 0)) {
      throw new RangeError(
        `pending share scale ${state.pendingShareScale} must be a finite non-negative number`,
      );
    }
    if (state.residual) this.feedback!.importResidual(state.residual);
    this.optimizer.writeState(state.inner);
    this.innerStepCount = state.innerStepCount;
    this.pendingShareScale = state.pendingShareScale;
    this.boundary?.inner.dispose();
    this.boundary = null;
    this.markBoundary(state.round);
  }

  /**
   * Takes the local state as `round` starts: references to the moments on the accelerator and a
   * copy of the residual (no read-back), replacing the previous boundary's.
   */
  private markBoundary(round: number): void {
    if (this.config.overlap) return;
    const previous = this.boundary;
    let residual: Float32Array | null = null;
    if (this.feedback) {
      residual = previous?.residual ?? new Float32Array(this.feedback.residual.length);
      residual.set(this.feedback.residual);
    }
    previous?.inner.dispose();
    this.boundary = {
      round,
      innerStepCount: this.innerStepCount,
      inner: this.optimizer.snapshot(),
      residual,
      pendingShareScale: this.pendingShareScale,
    };
  }

  /** Whether rounds start from the global model plus the pending share (startWithPendingShare). */
  private get withPendingShare(): boolean {
    return (
      this.feedback !== null &&
      !this.config.overlap &&
      this.config.aggregation.kind === "mean" &&
      this.config.startWithPendingShare !== false
    );
  }

  /**
   * Puts the local model where a round's inner steps start and returns that point, the anchor
   * the round's pseudo-gradient is measured from: the global model, less the pending share of
   * the residual. Error feedback adds the whole residual to what the round sends, so measuring
   * from the shifted point counts every change once. Starting there keeps this worker's own
   * progress that compression has not sent yet (a dense, one-worker share of it), instead of
   * discarding it locally until the residual is sent: with top-k at 1 % most of a round's
   * progress waits several rounds.
   */
  private roundStart(): Float32Array {
    const start = Float32Array.from(this.global);
    const scale = this.pendingShareScale;
    if (this.feedback && scale !== 0) {
      const residual = this.feedback.residual;
      for (let i = 0; i < start.length; i++) start[i] = start[i]! - scale * residual[i]!;
    }
    this.model.writeParameters(start);
    return start;
  }

  /** What this worker sends for `pseudoGradient`: itself, or its poisoned copy in a drill. */
  private outgoing(pseudoGradient: Float32Array): Float32Array {
    const scale = this.config.poisonScale;
    if (scale === undefined || scale === 1) return pseudoGradient;
    const poisoned = new Float32Array(pseudoGradient.length);
    for (let i = 0; i < poisoned.length; i++) poisoned[i] = pseudoGradient[i]! * scale;
    return poisoned;
  }

  /**
   * The round's inner steps and the last one's loss, or null when stopped in between. The
   * learning rate follows the federation's schedule (round × H + step), so a worker that joined
   * late decays with the others instead of warming up from scratch.
   */
  private async innerSteps(round: number, options: WorkerRunOptions): Promise<number | null> {
    let loss = Number.NaN;
    const h = this.config.innerSteps;
    for (let step = 0; step < h; step++) {
      if (options.signal?.aborted) return null;
      const last = step === h - 1;
      const value = await this.optimizer.step(this.sampler.next(), last, round * h + step);
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
    const { included, bounded, protection, scores } = applyRound(
      this.global,
      this.outer,
      this.config,
      commit.updates,
    );
    if (this.withPendingShare && included > 0) {
      // Set before onRound, whose checkpoint saves the boundary the next round starts from.
      this.pendingShareScale = this.config.outer.learningRate / included;
      if (this.boundary?.round === commit.round + 1) {
        this.boundary.pendingShareScale = this.pendingShareScale;
      }
    }
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
      protection,
      scores,
      globalHash: parameterHash(this.global),
    });
  }

  dispose(): void {
    this.boundary?.inner.dispose();
    this.boundary = null;
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

  /**
   * `tamper`, for robustness benchmarks only, sees every round's updates before they are
   * committed and returns what to commit instead (an omniscient attacker's view).
   */
  constructor(
    readonly workers: readonly string[],
    private readonly tamper?: (round: number, updates: CommittedUpdate[]) => CommittedUpdate[],
  ) {}

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
      const updates = this.workers.map((id) => ({ worker: id, message: messages.get(id)! }));
      state.resolve({ round, updates: this.tamper ? this.tamper(round, updates) : updates });
      this.rounds.delete(round);
    }
    return state.done;
  }
}
