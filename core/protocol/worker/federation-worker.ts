// A federation worker: announces itself, follows the ledger, sends its updates, applies every
// commit to the caller's model in canonical order, and, while it holds the coordinator lease,
// closes rounds. Every worker runs the coordinator code; the lease decides which one acts.
//
// This file is the facade: it creates the roles (presence, ledger follower, receiver, publisher,
// applier, coordinator), wires them to each other through callbacks, runs their timers and
// exposes the worker's API. No role imports this file or another role.
import { compareEntries } from "../chain.js";
import { AdmissionError, ProtocolMessageError } from "../errors.js";
import { toHex } from "../identity.js";
import { workerKey } from "../inbox.js";
import { registerMemberRecord } from "../membership.js";
import { openFederation } from "../resources.js";
import type {
  ModelDisagreement,
  ProtocolCounters,
  RoundAgreement,
  RoundResult,
  WorkerProgress,
  WorkerRef,
} from "../types.js";
import { Applier } from "./applier.js";
import { WorkerContext, type WorkerOptions } from "./context.js";
import { Coordinator } from "./coordinator.js";
import { LedgerFollower } from "./ledger-follower.js";
import { Presence } from "./presence.js";
import { Publisher } from "./publisher.js";
import { Receiver } from "./receiver.js";

export type { FaultHooks, WorkerOptions } from "./context.js";

/** One worker of this member in the federation. */
export class FederationWorker {
  readonly memberId: string;
  readonly workerId: string;
  private readonly ctx: WorkerContext;
  private readonly presence: Presence;
  private readonly ledger: LedgerFollower;
  private readonly receiver: Receiver;
  private readonly publisher: Publisher;
  private readonly applier: Applier;
  private readonly coordinator: Coordinator;
  private readonly submitted = new Set<number>();
  private readonly timers: NodeJS.Timeout[] = [];
  private loss: number | undefined;
  private progress: WorkerProgress | undefined;

  private constructor(options: WorkerOptions) {
    const ctx = new WorkerContext(options);
    this.ctx = ctx;
    this.memberId = ctx.memberId;
    this.workerId = ctx.workerId;
    const closeRound = () => ctx.background(this.coordinator.coordinateOnce());
    this.presence = new Presence(ctx, {
      memberForgotten: (memberId) => this.ledger.chain.forget(memberId),
      appliedHash: (round) => this.applier.hashAfter(round),
      report: () => ({
        appliedRound: this.applier.round,
        modelHash: this.applier.modelHash,
        loss: this.loss,
        roundsContributed: this.applier.roundsContributed,
        ...(this.progress ? { progress: this.progress } : {}),
      }),
    });
    this.ledger = new LedgerFollower(ctx, {
      appliedRound: () => this.applier.round,
      committed: () => this.applier.pump(),
    });
    this.receiver = new Receiver(ctx, {
      appliedRound: () => this.applier.round,
      lastRound: () => this.ledger.lastRound,
      commitOf: (round) => this.ledger.commitOf(round),
      refreshMember: (memberId) => this.presence.refreshMember(memberId),
      updateComplete: () => this.applier.pump(),
      roundMayClose: closeRound,
    });
    this.publisher = new Publisher(ctx, (inbox) => this.receiver.completed(inbox));
    this.applier = new Applier(ctx, {
      commitOf: (round) => this.ledger.commitOf(round),
      releaseCommit: (round) => this.ledger.release(round),
      inboxFor: (round) => this.receiver.inboxFor(round),
      readFromStore: (round) => this.receiver.readFromStore(round),
      finishRound: (round) => this.receiver.finish(round),
      isCoordinator: () => this.coordinator.isCoordinator,
      applied: async () => {
        this.presence.recheckAgreement();
        await this.presence.heartbeat().catch(() => {});
        closeRound();
      },
      commitReferencing: (ref) => this.ledger.commitReferencing(ref),
      expectVoucher: (round, digest) => this.ledger.expectVoucher(round, digest),
      recordedModelHash: (round, worker, modelHash) =>
        this.presence.compareModelHash(round, worker, modelHash, "commit"),
    });
    this.coordinator = new Coordinator(ctx, {
      appliedRound: () => this.applier.round,
      lastRound: () => this.ledger.lastRound,
      lastHash: () => this.ledger.chain.head,
      ledgerSeq: () => this.ledger.lastSeq,
      refreshLedger: () => this.ledger.refresh(),
      lastCheckpointReferenced: () => this.ledger.lastCheckpointReferenced,
      lastScoredRound: () => this.ledger.chain.scoredRound,
      modelHashesAfter: (round, workers) => this.modelHashesAfter(round, workers),
      scoresAfter: (round, maxRounds, maxUpdates) =>
        this.applier.scoresAfter(round, maxRounds, maxUpdates),
      isPaused: () => this.presence.paused,
      isExcluded: (memberId) => this.presence.control.isExcluded(memberId),
      liveWorkers: () => this.presence.liveWorkers(),
      inboxFor: (round) => this.receiver.inboxFor(round),
      readFromStore: (round) => this.receiver.readFromStore(round),
    });
  }

  /**
   * Joins the federation: registers the member if needed, loads the latest checkpoint, replays
   * the commits after it, and starts heartbeating and campaigning for the coordinator lease.
   * Throws {@link AdmissionError} when this member may not take part.
   */
  static async start(options: WorkerOptions): Promise<FederationWorker> {
    const worker = new FederationWorker(options);
    try {
      await worker.join();
    } catch (error) {
      await worker.stop({ graceful: false });
      throw error;
    }
    return worker;
  }

  private async join(): Promise<void> {
    const { ctx } = this;
    const { spec, specHash, privateKey, nc } = ctx.options;
    if (!ctx.admission.allows(this.memberId, ctx.publicKey))
      throw new AdmissionError(
        `member ${this.memberId} is not in federation ${spec.id}'s allowlist with this key: ask the organiser to add its public key`,
      );
    ctx.resources = await openFederation(nc, spec.id, ctx.settings);
    await registerMemberRecord(ctx.resources, { memberId: this.memberId, specHash, privateKey });
    await this.presence.follow();
    await this.applier.restoreCheckpoint();
    this.receiver.followLive(nc);
    await this.ledger.follow();
    // Rounds up to the next open one may have started before the live subscription.
    this.receiver.liveFromRound(this.ledger.lastRound + 2);
    this.ledger.checkVoucher();
    await this.caughtUp();
    await this.presence.heartbeat();
    const { heartbeatIntervalMs, leaseTtlMs } = ctx.settings;
    this.every(heartbeatIntervalMs, () => this.presence.heartbeat());
    // A contributor only never campaigns: it sends updates and applies commits.
    if (ctx.options.role === "contributor") return;
    this.every(Math.max(50, Math.floor(leaseTtlMs / 3)), () => this.coordinator.campaign());
    this.every(Math.min(250, Math.max(20, Math.floor(ctx.deadlineMs / 20))), () =>
      this.coordinator.coordinateOnce(),
    );
    await this.coordinator.campaign();
  }

  private every(ms: number, task: () => Promise<void>): void {
    let running = false;
    const timer = setInterval(() => {
      if (running || this.ctx.stopping || this.ctx.options.faults?.frozen?.()) return;
      running = true;
      task()
        .catch((error) => this.ctx.log(String(error)))
        .finally(() => {
          running = false;
        });
    }, ms);
    this.timers.push(timer);
  }

  /**
   * Reports the caller's training progress (evaluation loss, bytes sent, dense update size) in
   * this worker's heartbeats from the next one on, where the operator's status shows it.
   */
  reportProgress(progress: WorkerProgress): void {
    this.progress = { ...progress };
  }

  /**
   * Sends this worker's update for the next round and returns once that round is committed and
   * applied. `loss` is reported in heartbeats for the federation view.
   */
  async contribute(payload: Uint8Array, options: { loss?: number } = {}): Promise<RoundResult> {
    const round = await this.submit(payload, options);
    return this.waitForRound(round);
  }

  /**
   * Sends this worker's update for the next round; returns that round. With `round`, refuses
   * (ProtocolMessageError "late") when that round is already committed, and throws RangeError
   * when it is not the next round.
   */
  async submit(
    payload: Uint8Array,
    options: { loss?: number; round?: number } = {},
  ): Promise<number> {
    this.assertRunning();
    if (options.loss !== undefined) this.loss = options.loss;
    await this.caughtUp();
    const round = this.applier.round + 1;
    const wanted = options.round ?? round;
    // An update for a committed round could only be dropped as late by everyone.
    if (wanted <= this.ledger.lastRound)
      throw new ProtocolMessageError("late", `round ${wanted} is already committed`);
    if (wanted !== round)
      throw new RangeError(`round ${wanted} is not open yet: the next round is ${round}`);
    if (this.submitted.has(round))
      throw new ProtocolMessageError("replayed", `already sent an update for round ${round}`);
    if (payload.length > this.ctx.settings.maxUpdateBytes)
      throw new ProtocolMessageError("oversized", `update of ${payload.length} bytes`);
    // Every receiver would refuse it: say so to the caller instead.
    this.ctx.options.model.validate?.(payload);
    this.submitted.add(round);
    await this.publisher.publish(round, payload, this.receiver.inboxFor(round));
    return round;
  }

  private async caughtUp(): Promise<void> {
    while (this.applier.round < this.ledger.lastRound)
      await this.applier.waitFor(this.ledger.lastRound);
  }

  /** Waits until round is committed and applied here. */
  async waitForRound(round: number): Promise<RoundResult> {
    await this.applier.waitFor(round);
    const commit = this.ledger.commitOf(round);
    if (!commit) throw new ProtocolMessageError("late", `round ${round} was applied elsewhere`);
    return {
      round,
      included: commit.entries.some(
        (e) => e.memberId === this.memberId && e.workerId === this.workerId,
      ),
      commit,
      modelHash: this.applier.hashAfter(round) ?? toHex(this.applier.modelHash),
    };
  }

  /**
   * The workers whose updates the accepted commit of `round` included, in commit order; undefined
   * before that commit, or 64 rounds after it. Every worker that follows the ledger gets the
   * same list (the trainer deals each round's data among them).
   */
  committedWorkers(round: number): WorkerRef[] | undefined {
    return this.ledger.committedWorkers(round);
  }

  /**
   * The workers live now: heartbeating within the worker TTL, active, admitted and under this
   * spec; this worker among them once its own heartbeat has come back through the bucket.
   */
  activeWorkers(): WorkerRef[] {
    return this.presence.liveWorkers().map(({ memberId, workerId }) => ({ memberId, workerId }));
  }

  /** True while this worker holds the coordinator lease. */
  get isCoordinator(): boolean {
    return this.coordinator.isCoordinator;
  }

  /** A copy of this worker's counters. */
  counterSnapshot(): ProtocolCounters {
    return structuredClone(this.ctx.counters);
  }

  /** Model disagreements this worker detected (the most recent 100). */
  modelDisagreements(): ModelDisagreement[] {
    return this.presence.modelDisagreements();
  }

  /** The last round applied here, and the model hash after it. */
  get applied(): { round: number; modelHash: string } {
    return { round: this.applier.round, modelHash: toHex(this.applier.modelHash) };
  }

  /** The last round committed in the ledger. */
  get committedRound(): number {
    return this.ledger.lastRound;
  }

  /** See CoordinatorLinks.modelHashesAfter. */
  private modelHashesAfter(round: number, workers: readonly WorkerRef[]): RoundAgreement["hashes"] {
    const hashes: RoundAgreement["hashes"] = [];
    const self = { memberId: this.memberId, workerId: this.workerId };
    if (this.applier.round === round) hashes.push({ ...self, modelHash: this.applier.modelHash });
    const wanted = new Set(workers.map((w) => workerKey(w.memberId, w.workerId)));
    wanted.delete(workerKey(self.memberId, self.workerId));
    for (const hb of this.presence.liveWorkers())
      if (hb.appliedRound === round && wanted.has(workerKey(hb.memberId, hb.workerId)))
        hashes.push({ memberId: hb.memberId, workerId: hb.workerId, modelHash: hb.modelHash });
    return hashes.sort(compareEntries);
  }

  /** Whether an organiser paused the federation. */
  get isPaused(): boolean {
    return this.presence.paused;
  }

  /** Whether an organiser excluded this member: no coordinator commits its updates. */
  isExcluded(memberId: string): boolean {
    return this.presence.control.isExcluded(memberId);
  }

  private assertRunning(): void {
    if (this.ctx.stopping) throw new AdmissionError(`worker ${this.workerId} is stopped`);
    if (this.applier.failure) throw this.applier.failure;
  }

  /**
   * Leaves the federation. graceful (default): hands back the coordinator lease and removes the
   * heartbeat, so the next round does not wait for this worker; false simulates a crash.
   */
  async stop(options: { graceful?: boolean } = {}): Promise<void> {
    const { ctx } = this;
    if (ctx.stopping) return;
    ctx.stopping = true;
    for (const timer of this.timers) clearInterval(timer);
    await Promise.allSettled([this.receiver.stop(), this.presence.stop(), this.ledger.stop()]);
    if (options.graceful !== false && ctx.resources) {
      await this.presence.heartbeat("leaving").catch(() => {});
      await this.coordinator.release();
      await this.presence.remove().catch(() => {});
    }
    this.applier.fail(new AdmissionError(`worker ${this.workerId} stopped`));
  }
}
