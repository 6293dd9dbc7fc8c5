// The trainer's exchange over the federation protocol (core/protocol): one DiLoCo worker per
// process contributes its encoded pseudo-gradient through a FederationWorker, and the protocol's
// commit of the round (exactly the included updates, in canonical order) comes back to the DiLoCo
// worker, which aggregates and takes the outer step on plain typed arrays.
//
// Rounds: DiLoCo round k (0-based) is protocol round k + 1. The protocol applies commits in order
// through the ReplicaModel below. While joining (checkpoint restore and catch-up of the commits a
// late worker missed) no DiLoCo round is waiting, so the replica applies them itself, with the
// same function the DiLoCo worker uses. Once joined, every commit p meets the DiLoCo worker's
// exchange(p − 1) (whichever comes first waits for the other); the commit is handed over, the
// DiLoCo worker applies it, and its round report acknowledges the round, after which the protocol
// hashes the global parameters. So each commit is applied exactly once, in order, to the one copy
// of the global model the trainer reports.
import { setTimeout as sleep } from "node:timers/promises";
import { decodeUpdate, OuterOptimizer, ReputationBook } from "../../core/codec/index.js";
import {
  type BoundedUpdateCount,
  type Commit,
  FederationWorker,
  type MemberScoreReport,
  type ProtocolCounters,
  ProtocolMessageError,
  type CommittedUpdate as ProtocolUpdate,
  type ReplicaModel,
  type UpdateAssessment,
  type WorkerOptions,
  type WorkerProgress,
  type WorkerRef,
} from "../../core/protocol/index.js";
import type {
  BoundedUpdate,
  CommittedUpdate,
  DiLoCoWorker,
  MemberScore,
  RoundCommit,
  RoundReport,
  UpdateExchange,
  WorkerRunOptions,
} from "../training/diloco.js";
import { applyRound, parameterHash } from "../training/diloco.js";
import { ExchangeClosedError, type ExchangeTransport, type LocalParameters } from "./exchange.js";

/** Options of {@link NatsExchange}: the federation worker's, less the model (the exchange's). */
export type NatsExchangeOptions = Omit<WorkerOptions, "model" | "boundedUpdates">;

/** How often a worker waiting for the federation's first members looks again. */
const LIVE_POLL_MS = 100;

/** The exchange and the DiLoCo worker disagree about which round comes next: a wiring bug. */
export class ExchangeOrderError extends Error {
  override name = "ExchangeOrderError";
}

/** A replica snapshot that cannot be restored into this trainer's model. */
export class ReplicaSnapshotError extends Error {
  override name = "ReplicaSnapshotError";
}

/** What a replica snapshot holds: the global model, the outer optimiser, the round after. */
export interface ReplicaState {
  /** The protocol round after whose apply the state was taken (0: none). */
  round: number;
  global: Float32Array;
  /** The outer optimiser's checkpoint form (core/codec FORMAT.md). */
  outerState: Uint8Array;
}

const SNAPSHOT_MAGIC = [0x46, 0x54, 0x52, 0x53]; // "FTRS"
const SNAPSHOT_VERSION = 1;
const SNAPSHOT_HEADER_BYTES = 16;

/**
 * Encodes a replica snapshot: "FTRS", version u8, 3 zero bytes, round u32 LE, parameter count n
 * u32 LE, the n float32 global parameters (little-endian), then the outer optimiser state.
 */
export function encodeReplicaSnapshot(state: ReplicaState): Uint8Array {
  const n = state.global.length;
  const bytes = new Uint8Array(SNAPSHOT_HEADER_BYTES + 4 * n + state.outerState.length);
  const view = new DataView(bytes.buffer);
  bytes.set(SNAPSHOT_MAGIC, 0);
  view.setUint8(4, SNAPSHOT_VERSION);
  view.setUint32(8, state.round, true);
  view.setUint32(12, n, true);
  for (let i = 0; i < n; i++)
    view.setFloat32(SNAPSHOT_HEADER_BYTES + 4 * i, state.global[i]!, true);
  bytes.set(state.outerState, SNAPSHOT_HEADER_BYTES + 4 * n);
  return bytes;
}

/** Decodes a replica snapshot of a model with `parameters` parameters. */
export function decodeReplicaSnapshot(bytes: Uint8Array, parameters: number): ReplicaState {
  if (bytes.length < SNAPSHOT_HEADER_BYTES)
    throw new ReplicaSnapshotError(`replica snapshot of ${bytes.length} bytes is truncated`);
  if (SNAPSHOT_MAGIC.some((b, i) => bytes[i] !== b))
    throw new ReplicaSnapshotError("not a fedtrain replica snapshot: magic is not FTRS");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = view.getUint8(4);
  if (version !== SNAPSHOT_VERSION)
    throw new ReplicaSnapshotError(
      `replica snapshot version ${version} is not supported (this build reads ${SNAPSHOT_VERSION})`,
    );
  const round = view.getUint32(8, true);
  const n = view.getUint32(12, true);
  if (n !== parameters)
    throw new ReplicaSnapshotError(
      `replica snapshot holds ${n} parameters but the model has ${parameters}: the federation's model differs`,
    );
  const outerAt = SNAPSHOT_HEADER_BYTES + 4 * n;
  if (bytes.length < outerAt)
    throw new ReplicaSnapshotError(`replica snapshot of ${bytes.length} bytes is truncated`);
  const global = new Float32Array(n);
  for (let i = 0; i < n; i++) global[i] = view.getFloat32(SNAPSHOT_HEADER_BYTES + 4 * i, true);
  // A copy into a fresh buffer: a Node Buffer's slice() is a view, and the optimiser's decoder
  // reads its floats from offset 0 of the underlying ArrayBuffer.
  const outerState = new Uint8Array(bytes.length - outerAt);
  outerState.set(bytes.subarray(outerAt));
  return { round, global, outerState };
}

interface Deferred<T> {
  promise: Promise<T>;
  resolve: (value: T) => void;
  reject: (error: Error) => void;
  settled: boolean;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: Error) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  const d: Deferred<T> = {
    promise,
    settled: false,
    resolve: (value) => {
      d.settled = true;
      resolve(value);
    },
    reject: (error) => {
      d.settled = true;
      reject(error);
    },
  };
  // A stopped DiLoCo worker leaves its round's promise unawaited: its rejection is expected.
  promise.catch(() => {});
  return d;
}

/** Where protocol round p stands between the DiLoCo worker and the protocol. */
interface RoundSlot {
  /** Resolved when the DiLoCo worker called exchange for this round. */
  exchanged: Deferred<void>;
  /** The commit as the DiLoCo worker receives it. */
  commit: Deferred<RoundCommit>;
  /** Resolved by the DiLoCo worker's round report. */
  applied: Deferred<RoundReport>;
}

/**
 * The UpdateExchange of one DiLoCo worker over the federation protocol. Use:
 * `new NatsExchange(options)` → `new DiLoCoWorker(id, model, init, sampler, exchange, config)` →
 * `await exchange.join(worker, model)` → `await exchange.run(onRound, { signal })` →
 * `await exchange.close()`.
 */
export class NatsExchange implements UpdateExchange, ExchangeTransport {
  readonly kind = "nats";
  private federationWorker: FederationWorker | undefined;
  private diloco: DiLoCoWorker | undefined;
  private joining = true;
  private closed = false;
  /** The last protocol round applied to the global model here. */
  private appliedRound = 0;
  private joinedRound = 0;
  /** Rounds up to this one are replayed after a mid-run checkpoint restore (see replica.restore). */
  private replayThrough = 0;
  private loss: number | undefined;
  private readonly slots = new Map<number, RoundSlot>();
  private readonly appliedWaiters = new Set<{ round: number; done: Deferred<void> }>();
  private readonly bounded = new Map<string, BoundedUpdateCount>();
  /** Each member's update scores over the rounds applied, for the heartbeats. */
  private readonly scores = new ReputationBook();
  /** Rounds whose commit was out before this worker's update was sent (not contributed). */
  lateRounds = 0;
  /** Bytes of the updates of those rounds, encoded but never sent. */
  lateBytes = 0;
  private readonly log: (line: string) => void;

  constructor(private readonly options: NatsExchangeOptions) {
    this.log = options.log ?? (() => {});
  }

  /**
   * The DiLoCo round the worker starts at (`WorkerRunOptions.firstRound`): the protocol rounds
   * the joined model already holds. Valid after join.
   */
  get firstRound(): number {
    return this.joinedRound;
  }

  /** The federation worker (valid after join): counters, view, coordinator state. */
  get federation(): FederationWorker {
    if (!this.federationWorker) throw new ExchangeOrderError("join() must complete first");
    return this.federationWorker;
  }

  /** The protocol's counters of this worker (bytes and updates sent, drops by reason). */
  counters(): ProtocolCounters {
    return this.federation.counterSnapshot();
  }

  /** The endpoint of this process's one worker (the ExchangeTransport shape). */
  endpoint(worker: string): UpdateExchange {
    if (this.diloco && this.diloco.id !== worker)
      throw new RangeError(`the NATS exchange serves worker ${this.diloco.id}, not ${worker}`);
    return this;
  }

  /** The workers whose updates the commit of DiLoCo round `round` included (valid after join). */
  committedWorkers(round: number): WorkerRef[] | undefined {
    return this.federation.committedWorkers(round + 1);
  }

  /**
   * The federation's live workers once `minMembers` members are live (this worker's own heartbeat
   * counts once it is back), or whoever is live when `timeoutMs` has passed, `signal` aborted or
   * the exchange closed.
   */
  async liveWorkers(
    minMembers: number,
    timeoutMs: number,
    signal?: AbortSignal,
  ): Promise<WorkerRef[]> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const live = this.federation.activeWorkers();
      const members = new Set(live.map((worker) => worker.memberId)).size;
      if (members >= minMembers || Date.now() >= until || signal?.aborted || this.closed)
        return live;
      await sleep(LIVE_POLL_MS);
    }
  }

  /**
   * Joins the federation with `worker`'s global model: restores the latest checkpoint, applies
   * the commits after it, and writes the resulting global parameters into `local` (the worker's
   * model). Resolves with the DiLoCo round to start at (`WorkerRunOptions.firstRound`).
   */
  async join(worker: DiLoCoWorker, local: LocalParameters): Promise<{ firstRound: number }> {
    if (this.diloco) throw new ExchangeOrderError("join() was called twice");
    this.diloco = worker;
    try {
      this.federationWorker = await FederationWorker.start({
        ...this.options,
        model: this.replica,
        boundedUpdates: () => this.boundedUpdates(),
        memberScores: () => this.memberScores(),
      });
    } catch (error) {
      this.diloco = undefined;
      this.appliedRound = 0;
      throw error;
    }
    // No await between reading the round and leaving the joining phase: a commit applied after
    // this point is handed to the DiLoCo worker, one before it was applied here.
    this.joining = false;
    this.joinedRound = this.appliedRound;
    local.writeParameters(worker.global);
    this.log(`[${this.options.workerId}] joined at round ${this.joinedRound}`);
    return { firstRound: this.joinedRound };
  }

  /**
   * Runs the joined DiLoCo worker from its first round with {@link reporting}'s acknowledgement
   * wrapped around `onRound`. A failed run releases the protocol's pending apply.
   */
  async run(
    onRound?: (report: RoundReport) => void | Promise<void>,
    options: Omit<WorkerRunOptions, "firstRound"> = {},
  ): Promise<"completed" | "stopped"> {
    const worker = this.diloco;
    if (!worker || this.joining) throw new ExchangeOrderError("join() must complete before run()");
    try {
      return await worker.run(this.reporting(onRound), {
        ...options,
        firstRound: this.joinedRound,
      });
    } catch (error) {
      this.failPending(error instanceof Error ? error : new Error(String(error)));
      throw error;
    }
  }

  /**
   * Wraps a round callback so that the protocol learns when the DiLoCo worker applied a round.
   * A caller that runs the DiLoCo worker itself must pass this (or call {@link roundApplied}
   * first thing in its callback): the protocol waits for it before hashing the round.
   */
  reporting(
    onRound?: (report: RoundReport) => void | Promise<void>,
  ): (report: RoundReport) => Promise<void> {
    return async (report) => {
      this.roundApplied(report);
      await onRound?.(report);
    };
  }

  /** Acknowledges that the DiLoCo worker applied the commit of its round `report.round`. */
  /** See ExchangeTransport.reportProgress. */
  reportProgress(progress: WorkerProgress): void {
    this.federationWorker?.reportProgress(progress);
  }

  roundApplied(report: RoundReport): void {
    const slot = this.slots.get(report.round + 1);
    if (!slot?.commit.settled || slot.applied.settled)
      throw new ExchangeOrderError(
        `the DiLoCo worker reported round ${report.round}, which the exchange did not hand over`,
      );
    if (Number.isFinite(report.trainLoss)) this.loss = report.trainLoss;
    // Counted before the protocol learns the round is applied: its heartbeat right after the
    // apply then already carries the round's bounded updates.
    this.countBounded(report.bounded);
    this.scores.record(report.scores);
    slot.applied.resolve(report);
  }

  /** UpdateExchange: contributes `message` to protocol round `round + 1`, resolves with its commit. */
  exchange(round: number, message: Uint8Array): Promise<RoundCommit> {
    if (this.closed) return Promise.reject(new ExchangeClosedError(round));
    if (this.joining || !this.federationWorker)
      return Promise.reject(new ExchangeOrderError("join() must complete before exchange()"));
    const protocolRound = round + 1;
    if (protocolRound <= this.appliedRound)
      return Promise.reject(
        new ExchangeOrderError(
          `DiLoCo round ${round} asked for protocol round ${protocolRound}, already applied (at ${this.appliedRound})`,
        ),
      );
    const slot = this.slot(protocolRound);
    if (slot.exchanged.settled)
      return Promise.reject(new ExchangeOrderError(`round ${round} was exchanged twice`));
    slot.exchanged.resolve();
    this.contribute(protocolRound, message).catch((error: unknown) => {
      const failure = error instanceof Error ? error : new Error(String(error));
      this.log(`[${this.options.workerId}] round ${protocolRound}: ${failure.message}`);
      if (!slot.commit.settled) slot.commit.reject(failure);
    });
    return slot.commit.promise;
  }

  /**
   * Sends the update once the previous round is applied here, unless this round's commit is
   * already out: then the update would only be dropped as late, and the commit is applied without
   * it (its pseudo-gradient is lost, as the protocol's `late` rule says).
   */
  private async contribute(protocolRound: number, message: Uint8Array): Promise<void> {
    await this.appliedThrough(protocolRound - 1);
    const federation = this.federation;
    if (this.closed) return;
    const loss = this.loss;
    try {
      await federation.submit(message, {
        round: protocolRound,
        ...(loss === undefined ? {} : { loss }),
      });
    } catch (error) {
      if (!(error instanceof ProtocolMessageError && error.reason === "late")) throw error;
      this.lateRounds++;
      this.lateBytes += message.byteLength;
      this.log(`[${this.options.workerId}] round ${protocolRound} committed before our update`);
    }
  }

  private slot(protocolRound: number): RoundSlot {
    let slot = this.slots.get(protocolRound);
    if (!slot) {
      slot = { exchanged: deferred(), commit: deferred(), applied: deferred() };
      if (this.closed) this.rejectSlot(slot, protocolRound);
      this.slots.set(protocolRound, slot);
    }
    return slot;
  }

  private appliedThrough(protocolRound: number): Promise<void> {
    if (this.appliedRound >= protocolRound) return Promise.resolve();
    if (this.closed) return Promise.reject(new ExchangeClosedError(protocolRound - 1));
    const waiter = { round: protocolRound, done: deferred<void>() };
    this.appliedWaiters.add(waiter);
    return waiter.done.promise;
  }

  private markApplied(protocolRound: number): void {
    this.appliedRound = protocolRound;
    for (const waiter of this.appliedWaiters) {
      if (waiter.round > protocolRound) continue;
      this.appliedWaiters.delete(waiter);
      waiter.done.resolve();
    }
  }

  /** The protocol's view of the trainer's global model. */
  private readonly replica: ReplicaModel = {
    apply: (commit, updates) => this.applyCommit(commit, updates),
    // The decoder apply uses: an update it cannot decode is never committed, nor applied.
    validate: (payload) => {
      decodeUpdate(payload, this.worker().global.length);
    },
    hash: () => Buffer.from(parameterHash(this.worker().global), "hex"),
    snapshot: () => {
      const worker = this.worker();
      return encodeReplicaSnapshot({
        round: this.appliedRound,
        global: worker.global,
        outerState: worker.outer.serialize(),
      });
    },
    restore: (bytes) => {
      const worker = this.worker();
      const state = decodeReplicaSnapshot(bytes, worker.global.length);
      const outer = OuterOptimizer.deserialize(state.outerState, worker.global.length);
      worker.global.set(state.global);
      worker.outer.restore(outer);
      // A diverged replica restores mid-run (the protocol repairs it): the rounds up to the one it
      // had applied are then replayed as while joining; the next round's exchange goes on.
      if (!this.joining) this.replayThrough = Math.max(this.replayThrough, this.appliedRound);
      this.markApplied(state.round);
    },
  };

  private worker(): DiLoCoWorker {
    if (!this.diloco) throw new ExchangeOrderError("join() must be called with the DiLoCo worker");
    return this.diloco;
  }

  /** Applies a commit; returns what the aggregation made of each update, for the ledger. */
  private async applyCommit(
    commit: Commit,
    updates: readonly ProtocolUpdate[],
  ): Promise<UpdateAssessment[]> {
    const round = commit.round;
    if (round !== this.appliedRound + 1)
      throw new ExchangeOrderError(
        `the protocol applies round ${round} after round ${this.appliedRound}`,
      );
    const worker = this.worker();
    if (this.joining || round <= this.replayThrough) {
      // Catch-up (or a replay after a mid-run restore): no DiLoCo round waits for this commit;
      // apply it as the worker would.
      const { bounded, scores } = applyRound(
        worker.global,
        worker.outer,
        worker.config,
        this.committed(updates),
      );
      // A replayed round was counted when it was first applied.
      if (round > this.replayThrough) {
        this.countBounded(bounded);
        this.scores.record(scores);
      }
      this.markApplied(round);
      return assessmentsOf(scores);
    }
    const slot = this.slot(round);
    await slot.exchanged.promise;
    slot.commit.resolve({ round: round - 1, updates: this.committed(updates) });
    const report = await slot.applied.promise;
    this.slots.delete(round);
    this.markApplied(round);
    return assessmentsOf(report.scores);
  }

  /** A protocol commit's updates as the DiLoCo worker names them (its own by its own id). */
  private committed(updates: readonly ProtocolUpdate[]): CommittedUpdate[] {
    const own = this.worker().id;
    return updates.map((u) => ({
      worker:
        u.memberId === this.options.memberId && u.workerId === this.options.workerId
          ? own
          : `${u.memberId}/${u.workerId}`,
      member: u.memberId,
      message: u.payload,
    }));
  }

  private countBounded(bounded: readonly BoundedUpdate[]): void {
    for (const { member, action } of bounded) {
      const count = this.bounded.get(member) ?? { memberId: member, clipped: 0, dropped: 0 };
      count[action]++;
      this.bounded.set(member, count);
    }
  }

  /**
   * Per member, how many of its updates the norm bound clipped and dropped in the rounds this
   * worker applied (replayed ones included), as its heartbeats report them; members with none
   * are left out.
   */
  boundedUpdates(): BoundedUpdateCount[] {
    return [...this.bounded.values()]
      .map((count) => ({ ...count }))
      .sort((a, b) => (a.memberId < b.memberId ? -1 : a.memberId > b.memberId ? 1 : 0));
  }

  /**
   * Per member, how its updates related to the aggregates of the rounds this worker applied
   * (replayed ones included), as its heartbeats report them.
   */
  memberScores(): MemberScoreReport[] {
    return this.scores.all();
  }

  private rejectSlot(slot: RoundSlot, protocolRound: number): void {
    const error = new ExchangeClosedError(protocolRound - 1);
    for (const d of [slot.exchanged, slot.commit, slot.applied] as Deferred<unknown>[])
      if (!d.settled) d.reject(error);
  }

  private failPending(error: Error): void {
    for (const slot of this.slots.values())
      for (const d of [slot.exchanged, slot.commit, slot.applied] as Deferred<unknown>[])
        if (!d.settled) d.reject(error);
  }

  /**
   * Leaves the federation (gracefully: the next round does not wait for this worker); pending
   * and later exchanges reject with ExchangeClosedError. Does not close the NATS connection.
   * Idempotent.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const [round, slot] of this.slots) this.rejectSlot(slot, round);
    for (const waiter of this.appliedWaiters)
      waiter.done.reject(new ExchangeClosedError(waiter.round));
    this.appliedWaiters.clear();
    await this.federationWorker?.stop();
  }
}

/** The protocol's view of a round's scores: the assessments alone, in commit order. */
function assessmentsOf(scores: readonly MemberScore[]): UpdateAssessment[] {
  return scores.map(({ bound, cosine, relativeDistance, relativeNorm }) => ({
    bound,
    cosine,
    relativeDistance,
    relativeNorm,
  }));
}
