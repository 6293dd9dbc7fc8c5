// The coordinator: every worker campaigns for the lease; the one that holds it closes rounds.
// decideRound (decide.ts) says what to do; this file does it: status records, commits, and
// handing the lease on.
import { compareEntries } from "../chain.js";
import { equalBytes } from "../identity.js";
import type { ReceivedUpdate, RoundInbox } from "../inbox.js";
import { isWrongLastSequence, publishDurable } from "../resources.js";
import type {
  CheckpointRef,
  Commit,
  CommitEntry,
  RoundAgreement,
  RoundScores,
  RoundStatus,
  WorkerRef,
} from "../types.js";
import {
  decodeCheckpoint,
  decodeLease,
  encodeCommit,
  encodeLease,
  encodeRoundStatus,
  MAX_COMMIT_SCORES,
  MAX_SCORED_ROUNDS,
} from "../wire.js";
import type { WorkerContext } from "./context.js";
import { decideRound } from "./decide.js";

const leaseKey = "coordinator";
/** How long a coordinator whose commit the ledger refused waits to read the ledger past it. */
const REFUSED_WAIT_MS = 5_000;

/** What the coordinator asks of the other roles (wired by the facade). */
export interface CoordinatorLinks {
  appliedRound(): number;
  lastRound(): number;
  /** SHA-256 of the last commit: the next commit's previous hash. */
  lastHash(): Uint8Array;
  /** The ledger's last stream sequence seen: a commit is published only right after it. */
  ledgerSeq(): number;
  /** The ledger holds more than this worker has seen: read it again. */
  refreshLedger(): void;
  lastCheckpointReferenced(): number;
  /** The last round whose scores a commit in the ledger carries. */
  lastScoredRound(): number;
  /**
   * The model hashes after `round`: this replica's, and those of the given workers' latest
   * heartbeats that report that round; in canonical order.
   */
  modelHashesAfter(round: number, workers: readonly WorkerRef[]): RoundAgreement["hashes"];
  /** This replica's scores of rounds after `round` (Applier.scoresAfter). */
  scoresAfter(round: number, maxRounds: number, maxUpdates: number): RoundScores[];
  isPaused(): boolean;
  /** Whether an organiser excluded this member: its updates are not committed. */
  isExcluded(memberId: string): boolean;
  liveWorkers(): WorkerRef[];
  inboxFor(round: number): RoundInbox;
  readFromStore(round: number): void;
}

/** The lease and the closing of rounds; see the file comment. */
export class Coordinator {
  private leaseRevision: number | undefined;
  private opened: { round: number; deadline: number } | undefined;
  private attempt = 0;
  private committing: { round: number; since: number } | undefined;
  private statusWritten = "";
  private running = false;
  private again = false;
  private behindSince: number | undefined;
  /**
   * The ledger sequence a commit was refused after, and when: no new try until the ledger is read
   * past it (or a while has passed, and the ledger is read again).
   */
  private refused: { seq: number; at: number } | undefined;

  constructor(
    private readonly ctx: WorkerContext,
    private readonly links: CoordinatorLinks,
  ) {}

  /** True while this worker holds the coordinator lease. */
  get isCoordinator(): boolean {
    return this.leaseRevision !== undefined;
  }

  private leaseValue(): Uint8Array {
    const { memberId, workerId, options } = this.ctx;
    return encodeLease({ memberId, workerId, acquiredAtMs: Date.now() }, options.privateKey);
  }

  /** Renews the lease when held; else takes it when free and this replica is not behind. */
  async campaign(): Promise<void> {
    const { lease } = this.ctx.resources;
    if (this.leaseRevision !== undefined) {
      try {
        this.leaseRevision = await lease.update(leaseKey, this.leaseValue(), this.leaseRevision);
      } catch (error) {
        this.leaseRevision = undefined;
        this.ctx.log(`lost the coordinator lease: ${String(error)}`);
      }
      return;
    }
    // A worker behind the ledger could not close the next round: it leaves the lease to others.
    if (this.links.appliedRound() < this.links.lastRound()) return;
    try {
      this.leaseRevision = await lease.create(leaseKey, this.leaseValue());
    } catch {
      return; // held by another worker
    }
    this.ctx.counters.coordinatorTerms++;
    this.opened = undefined;
    this.committing = undefined;
    this.ctx.log("is the coordinator");
  }

  private async resign(): Promise<void> {
    const revision = this.leaseRevision;
    this.leaseRevision = undefined;
    this.behindSince = undefined;
    this.ctx.log("hands the coordinator lease on: it is behind the ledger");
    if (revision !== undefined)
      await this.ctx.resources.lease.delete(leaseKey, { previousSeq: revision }).catch(() => {});
  }

  /** Gives the lease back (a worker leaving gracefully). */
  async release(): Promise<void> {
    if (this.leaseRevision !== undefined)
      await this.ctx.resources.lease.delete(leaseKey).catch(() => {});
  }

  /**
   * Runs one coordinator step, called on ticks and on new updates. A call while a step runs
   * makes that step run once more when it ends: the update that arrived during it may close the
   * round, which should not wait for the next tick.
   */
  async coordinateOnce(): Promise<void> {
    if (this.leaseRevision === undefined || this.ctx.stopping) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    try {
      do {
        this.again = false;
        await this.coordinate();
      } while (this.again && this.leaseRevision !== undefined && !this.ctx.stopping);
    } finally {
      this.running = false;
    }
  }

  private async coordinate(): Promise<void> {
    const { ctx, links } = this;
    for (;;) {
      if (this.leaseRevision === undefined) return;
      const now = Date.now();
      const behind = links.appliedRound() < links.lastRound();
      if (behind) this.behindSince ??= now;
      else this.behindSince = undefined;
      const round = links.lastRound() + 1;
      const inbox = behind ? undefined : links.inboxFor(round);
      // An excluded member neither contributes nor counts as live: rounds do not wait for it.
      const committable = inbox
        ? [...inbox.committable().values()].filter((u) => !links.isExcluded(u.manifest.memberId))
        : [];
      const decision = decideRound({
        now,
        round,
        behind,
        behindSince: this.behindSince,
        deadlineMs: ctx.deadlineMs,
        opened: this.opened,
        committing: this.committing,
        lastRound: ctx.options.spec.training?.rounds,
        paused: links.isPaused(),
        quorum: ctx.options.spec.sync.quorum,
        live: behind ? [] : links.liveWorkers().filter((w) => !links.isExcluded(w.memberId)),
        committable: committable.map((u) => u.manifest),
      });
      // Our commit in flight is kept only while we wait for its echo (or to catch up, or resign);
      // once decideRound decides this round afresh, it is forgotten.
      const waitsForLedger = decision.kind === "wait" && decision.for !== "updates";
      if (decision.kind !== "resign" && !waitsForLedger) this.committing = undefined;
      switch (decision.kind) {
        case "resign":
          await this.resign();
          return;
        case "wait":
          if (decision.readFromStore) links.readFromStore(round);
          return;
        case "open":
          this.opened = { round, deadline: now + ctx.deadlineMs };
          this.attempt = 0;
          await this.writeStatus(round, "open", "");
          continue;
        case "completed":
          await this.writeStatus(
            round - 1,
            "completed",
            `all ${round - 1} rounds of the run are committed`,
          );
          return;
        case "paused":
          this.opened = { round, deadline: now + ctx.deadlineMs };
          await this.writeStatus(round, "paused", "paused by an organiser");
          return;
        case "commit":
          if (decision.readFromStore) links.readFromStore(round);
          await this.commit(round, committable, decision.activeMembers, decision.closedBy);
          return;
        case "retry":
          if (decision.readFromStore) links.readFromStore(round);
          this.attempt++;
          this.opened = { round, deadline: now + ctx.deadlineMs };
          ctx.counters.roundsRetried++;
          ctx.log(`round ${round} retried: ${decision.reason}`);
          await this.writeStatus(round, "retrying", decision.reason);
          return;
      }
    }
  }
  private async writeStatus(round: number, phase: RoundStatus["phase"], reason: string) {
    const { ctx } = this;
    const id = `${round}/${this.attempt}/${phase}`;
    if (this.statusWritten === id) return;
    this.statusWritten = id;
    await ctx.resources.state.put(
      "round",
      encodeRoundStatus(
        {
          round,
          attempt: this.attempt,
          phase,
          reason,
          coordinator: { memberId: ctx.memberId, workerId: ctx.workerId },
          updatedAtMs: Date.now(),
        },
        ctx.options.privateKey,
      ),
    );
  }

  private async commit(
    round: number,
    received: ReceivedUpdate[],
    activeMembers: number,
    closedBy: Commit["closedBy"],
  ): Promise<void> {
    const { ctx, links } = this;
    const entries: CommitEntry[] = received
      .map((u) => ({
        memberId: u.manifest.memberId,
        workerId: u.manifest.workerId,
        publicKey: u.signer,
        digest: u.manifest.digest,
        size: u.manifest.size,
      }))
      .sort(compareEntries);
    await ctx.options.faults?.beforeCommit?.(round);
    const checkpoint = await this.unreferencedCheckpoint();
    // Fencing, after every wait: the lease must still be ours (a coordinator held up past its
    // lease, by the scheduler or a stop signal, has been replaced), and the round, the previous
    // hash and the expected ledger sequence are read together, now. Read apart, a coordinator
    // resumed after others committed would name an old round after the newest hash and sequence,
    // and the ledger would store it.
    const refused = this.refused;
    if (refused && links.ledgerSeq() <= refused.seq && Date.now() - refused.at < REFUSED_WAIT_MS)
      return;
    this.refused = undefined;
    const leaseProblem = await this.leaseProblem();
    if (leaseProblem) {
      this.abandon(round, leaseProblem);
      return;
    }
    if (links.lastRound() + 1 !== round) {
      this.abandon(round, `round ${links.lastRound()} is committed meanwhile`);
      return;
    }
    const commit: Commit = {
      round,
      attempt: this.attempt,
      prevHash: links.lastHash(),
      specHash: ctx.options.specHash,
      coordinator: { memberId: ctx.memberId, workerId: ctx.workerId },
      closedBy,
      activeMembers,
      committedAtMs: Date.now(),
      entries,
      checkpoint,
      scores: links.scoresAfter(links.lastScoredRound(), MAX_SCORED_ROUNDS, MAX_COMMIT_SCORES),
      agreement:
        round > 1
          ? agreementAfter(round - 1, links.modelHashesAfter(round - 1, entries))
          : undefined,
    };
    const bytes = encodeCommit(commit, ctx.options.privateKey);
    this.committing = { round, since: Date.now() };
    try {
      // The expected last sequence makes the ledger linear even if two workers briefly both
      // believe they hold the lease: only one commit per position is stored.
      const ack = await publishDurable(
        ctx.resources.js,
        ctx.resources.names.ledgerSubject,
        bytes,
        { expect: { lastSequence: links.ledgerSeq() }, msgID: `commit.${round}` },
        ctx.settings.publishRetryMs,
        // A commit is worth retrying while this worker may still make it.
        () => ctx.stopping || this.leaseRevision === undefined,
      );
      if (ack.duplicate && !(await this.storedAt(ack.seq, bytes))) {
        // A commit of this round with this message id is already stored, and it is another
        // coordinator's (this one's own, retried after a lost acknowledgement, has its bytes).
        this.committing = undefined;
        this.abandon(round, "the ledger already holds another commit of this round");
        return;
      }
      ctx.counters.commitsPublished++;
      ctx.log(`committed round ${round}: ${entries.length} updates`);
    } catch (error) {
      this.committing = undefined;
      if (!isWrongLastSequence(error)) throw error;
      // The ledger holds commits this worker has not seen: wait until it has read them.
      this.refused = { seq: links.ledgerSeq(), at: Date.now() };
      links.refreshLedger();
      this.abandon(round, "the ledger holds commits this worker has not read yet");
    }
  }

  /** Whether the ledger message at seq is exactly these bytes (unknown: assumed not). */
  private async storedAt(seq: number, bytes: Uint8Array): Promise<boolean> {
    const { jsm, names } = this.ctx.resources;
    const stored = await jsm.streams.getMessage(names.ledgerStream, { seq }).catch(() => null);
    return stored !== null && equalBytes(stored.data, bytes);
  }

  /**
   * Reads the lease record: undefined while it names this worker (only its holder can write it),
   * else why not.
   */
  private async leaseProblem(): Promise<string | undefined> {
    if (this.leaseRevision === undefined) return "the coordinator lease was lost";
    const { ctx } = this;
    let entry: Awaited<ReturnType<typeof ctx.resources.lease.get>>;
    try {
      entry = await ctx.resources.lease.get(leaseKey);
    } catch (error) {
      // Unknown for now: not this time, and the lease is kept for the next try.
      return `the coordinator lease cannot be read: ${String(error)}`;
    }
    if (entry?.operation === "PUT") {
      try {
        const { body, signer } = decodeLease(entry.value);
        if (
          body.memberId === ctx.memberId &&
          body.workerId === ctx.workerId &&
          equalBytes(signer, ctx.publicKey)
        )
          return undefined;
      } catch {
        // Not a lease this worker wrote.
      }
    }
    this.leaseRevision = undefined;
    ctx.log("lost the coordinator lease: it expired or another worker holds it");
    return "the coordinator lease is no longer ours";
  }

  private abandon(round: number, why: string): void {
    this.ctx.counters.commitsAbandoned++;
    this.ctx.log(`did not commit round ${round}: ${why}`);
  }

  private async unreferencedCheckpoint(): Promise<CheckpointRef | undefined> {
    const { ctx, links } = this;
    // Checkpoints are taken after rounds divisible by checkpointEveryRounds: none can be newer
    // than the last one referenced until such a round was committed since (saves a KV read).
    const every = ctx.options.spec.sync.checkpointEveryRounds;
    const referenced = links.lastCheckpointReferenced();
    if (every <= 0 || Math.floor(links.lastRound() / every) * every <= referenced) return undefined;
    const entry = await ctx.resources.state.get("checkpoint").catch(() => null);
    if (entry?.operation !== "PUT") return undefined;
    try {
      const { body, signer } = decodeCheckpoint(entry.value);
      if (!ctx.admission.isMemberKey(signer) || body.round <= referenced) return undefined;
      return body;
    } catch (error) {
      ctx.drop(error);
      return undefined;
    }
  }
}

function agreementAfter(
  round: number,
  hashes: RoundAgreement["hashes"],
): RoundAgreement | undefined {
  return hashes.length > 0 ? { round, hashes } : undefined;
}
