// Applying: every accepted commit is applied to the caller's model in round order, with exactly
// the updates it names in its canonical order, so every replica holds the same model. The
// coordinator's replica also writes the checkpoints the spec asks for; a joining worker starts
// from the latest one, and a replica that a commit shows to have diverged from the others
// restores one by itself and replays the commits after it.
import { AdmissionError } from "../errors.js";
import { equalBytes, sha256, toHex } from "../identity.js";
import type { RoundInbox } from "../inbox.js";
import type {
  CheckpointRef,
  Commit,
  CommittedUpdate,
  RoundAgreement,
  RoundScores,
  WorkerRef,
} from "../types.js";
import { decodeCheckpoint, encodeCheckpoint } from "../wire.js";
import type { WorkerContext } from "./context.js";

/** How many applied rounds' model hashes (compared with heartbeats) and commits a worker keeps. */
const KEPT_ROUNDS = 64;

/** What the applier asks of the other roles (wired by the facade). */
export interface ApplierLinks {
  commitOf(round: number): Commit | undefined;
  /** Lets go of a commit that is applied. */
  releaseCommit(round: number): void;
  inboxFor(round: number): RoundInbox;
  readFromStore(round: number): void;
  /** Ends round's receiving once it is applied. */
  finishRound(round: number): void;
  isCoordinator(): boolean;
  /** Round was applied here; runs before the next round is applied. */
  applied(round: number): Promise<void>;
  /** The round of a commit that references this checkpoint, if any. */
  commitReferencing(ref: CheckpointRef): Promise<number | undefined>;
  /** The commit of round must vouch for the restored checkpoint with this digest. */
  expectVoucher(round: number, digest: Uint8Array): void;
  /** A commit records another worker's model hash after round (compared with this replica's). */
  recordedModelHash(round: number, worker: WorkerRef, modelHash: Uint8Array): void;
}

/** Applies commits and writes checkpoints; see the file comment. */
export class Applier {
  /** The last round applied here. */
  round = 0;
  /** This replica's model hash after that round. */
  modelHash: Uint8Array = new Uint8Array(32);
  /** Rounds applied here whose commit included this worker's update. */
  roundsContributed = 0;
  /** Why applying stopped for good: an apply failed, or the worker stopped. */
  failure: Error | undefined;
  private readonly hashes = new Map<number, string>();
  /** The update scores of the rounds applied here, while remembered (KEPT_ROUNDS). */
  private readonly scores = new Map<number, RoundScores>();
  private readonly waiters = new Map<number, Array<() => void>>();
  /** The highest round applied here (a restore can take `round` back; rounds replayed count once). */
  private highest = 0;
  /**
   * Set when a commit showed this replica's model after that round to differ from the one most
   * other workers hold; cleared once a checkpoint restores the replica (see repairIfDiverged).
   */
  private divergedAfter: number | undefined;
  private waitingReported: string | undefined;
  private applying = false;
  private again = false;

  constructor(
    private readonly ctx: WorkerContext,
    private readonly links: ApplierLinks,
  ) {}

  /** Hex of the model hash after round, while remembered. */
  hashAfter(round: number): string | undefined {
    return this.hashes.get(round);
  }

  /**
   * The update scores of the rounds after `round` that this replica applied and scored and still
   * remembers, oldest first: the consecutive run from the first such round on, at most
   * `maxRounds` rounds and `maxUpdates` scores in all (what the next commit records).
   */
  scoresAfter(round: number, maxRounds: number, maxUpdates: number): RoundScores[] {
    const out: RoundScores[] = [];
    let total = 0;
    for (let r = round + 1; r <= this.round && out.length < maxRounds; r++) {
      const scores = this.scores.get(r);
      if (!scores) {
        if (out.length > 0) break;
        continue;
      }
      total += scores.updates.length;
      if (total > maxUpdates) break;
      out.push(scores);
    }
    return out;
  }

  /**
   * Loads the latest checkpoint, when there is one this worker may trust; else hashes the
   * initial model. A checkpoint signed by no current member needs a commit that references it.
   */
  async restoreCheckpoint(): Promise<void> {
    const { ctx } = this;
    const { model } = ctx.options;
    const record = await this.checkpointRecord();
    if (!record) {
      this.modelHash = await model.hash();
      return;
    }
    const { ref, signer } = record;
    if (!ctx.admission.isMemberKey(signer)) {
      // Its signer holds no member's key now (it left, or rejoined with a new key). A commit that
      // references it vouches for it, once the ledger accepts that commit (checked after reading
      // it); without one, start from the initial model and replay the whole ledger instead.
      const round = await this.links.commitReferencing(ref);
      if (round === undefined) {
        ctx.log(
          `the checkpoint of round ${ref.round} is signed by no current member and no commit references it: replaying the ledger from round 1`,
        );
        this.modelHash = await model.hash();
        return;
      }
      this.links.expectVoucher(round, ref.digest);
    }
    await this.load(ref);
    ctx.log(`restored checkpoint of round ${ref.round}`);
  }

  /** The checkpoint KV `checkpoint` names, with its signer; undefined when there is none. */
  private async checkpointRecord(): Promise<
    { ref: CheckpointRef; signer: Uint8Array } | undefined
  > {
    const entry = await this.ctx.resources.state.get("checkpoint");
    if (entry?.operation !== "PUT") return undefined;
    const { body: ref, signer } = decodeCheckpoint(entry.value);
    return { ref, signer };
  }

  /** Loads checkpoint ref into the model (checking its digest); this replica is then at its round. */
  private async load(ref: CheckpointRef): Promise<void> {
    const { ctx } = this;
    const bytes = await ctx.resources.checkpoints.getBlob(ref.objectName);
    if (!bytes || bytes.length !== ref.size || !equalBytes(sha256(bytes), ref.digest))
      throw new AdmissionError(`checkpoint ${ref.objectName} is missing or fails its digest`);
    await ctx.options.model.restore(bytes);
    for (const round of this.hashes.keys()) if (round > ref.round) this.hashes.delete(round);
    for (const round of this.scores.keys()) if (round > ref.round) this.scores.delete(round);
    this.round = ref.round;
    this.highest = Math.max(this.highest, ref.round);
    this.modelHash = await ctx.options.model.hash();
    this.hashes.set(ref.round, toHex(this.modelHash));
  }

  /**
   * Compares this replica's model after the round a commit's agreement records with the other
   * workers' hashes there: when a strict majority of them hold one hash and it is not this
   * replica's, this replica diverged (an organiser sees it in the ledger; the replica repairs
   * itself, see repairIfDiverged).
   */
  private checkAgreement(agreement: RoundAgreement | undefined): void {
    const { ctx } = this;
    if (!agreement || this.divergedAfter !== undefined) return;
    const mine = this.hashes.get(agreement.round);
    if (!mine) return;
    const others = agreement.hashes.filter(
      (h) => !(h.memberId === ctx.memberId && h.workerId === ctx.workerId),
    );
    const counts = new Map<string, number>();
    for (const h of others) {
      const hex = toHex(h.modelHash);
      counts.set(hex, (counts.get(hex) ?? 0) + 1);
    }
    for (const [hex, count] of counts) {
      if (hex === mine || count * 2 <= others.length) continue;
      this.divergedAfter = agreement.round;
      ctx.counters.replicaDivergences++;
      ctx.log(
        `this replica diverged: after round ${agreement.round} its model is ${mine}, ${count} of the ${others.length} other workers the ledger records hold ${hex}; restoring a checkpoint`,
      );
    }
  }

  /**
   * A diverged replica restores the latest checkpoint it can trust and replays the commits after
   * it: one signed by a current member, written before the divergence or by another member (not
   * from this replica's own diverged state), of a round this replica has applied, whose later
   * commits this worker still holds. Until there is one it goes on applying, and says what it
   * waits for.
   */
  private async repairIfDiverged(): Promise<void> {
    const { ctx, links } = this;
    const after = this.divergedAfter;
    if (after === undefined) return;
    let record: Awaited<ReturnType<Applier["checkpointRecord"]>>;
    try {
      record = await this.checkpointRecord();
    } catch (error) {
      ctx.log(`a diverged replica cannot read the checkpoint record: ${String(error)}`);
      return;
    }
    let waiting: string | undefined;
    if (!record) waiting = "no checkpoint is recorded yet";
    else if (record.ref.round > this.round)
      // Restored once this replica has applied that round: jumping ahead would skip commits
      // its caller waits for.
      waiting = `the checkpoint of round ${record.ref.round} is ahead of this replica (round ${this.round})`;
    else if (!ctx.admission.isMemberKey(record.signer))
      waiting = `the checkpoint of round ${record.ref.round} is signed by no current member`;
    else if (record.ref.round >= after && equalBytes(record.signer, ctx.publicKey))
      waiting = `the checkpoint of round ${record.ref.round} is this member's own, written after the divergence`;
    else
      for (let r = record.ref.round + 1; r <= this.round && !waiting; r++)
        if (!links.commitOf(r))
          waiting = `the checkpoint of round ${record.ref.round} is older than the commits this worker keeps`;
    if (waiting) {
      if (waiting !== this.waitingReported)
        ctx.log(`a diverged replica waits to restore: ${waiting}`);
      this.waitingReported = waiting;
      return;
    }
    const { ref } = record!;
    const from = this.round;
    try {
      await this.load(ref);
    } catch (error) {
      ctx.log(
        `a diverged replica could not restore the checkpoint of round ${ref.round}: ${String(error)}`,
      );
      return;
    }
    this.divergedAfter = undefined;
    this.waitingReported = undefined;
    ctx.counters.replicaRestores++;
    ctx.log(
      ref.round < from
        ? `restored the checkpoint of round ${ref.round}; replaying rounds ${ref.round + 1}..${from}`
        : `restored the checkpoint of round ${ref.round}`,
    );
  }

  /** Applies every commit that is ready, in round order; one pass at a time. */
  pump(): void {
    if (this.ctx.stopping) return;
    if (this.applying) {
      // Something arrived while a pass runs: run another pass after it, or the wake-up is lost.
      this.again = true;
      return;
    }
    this.applying = true;
    this.again = false;
    this.applyReady()
      .catch((error) => {
        this.failure = error instanceof Error ? error : new Error(String(error));
        this.ctx.log(`apply failed: ${String(error)}`);
        this.wakeAll();
      })
      .finally(() => {
        this.applying = false;
        if (this.again && !this.failure) this.pump();
      });
  }

  private async applyReady(): Promise<void> {
    const { ctx, links } = this;
    for (;;) {
      if (ctx.stopping) return;
      await this.repairIfDiverged();
      const round = this.round + 1;
      const inbox = links.inboxFor(round);
      const commit = links.commitOf(round);
      if (!commit) return;
      const updates: CommittedUpdate[] = [];
      for (const entry of commit.entries) {
        const update = inbox.find(entry.memberId, entry.workerId, entry.digest);
        if (!update) {
          // The commit names it, so it is stored: read the round from the streams unless the
          // live path delivers it first. The next completed update pumps again.
          links.readFromStore(round);
          return;
        }
        // Counted when it completed; every replica refuses the same bytes, so all leave it out.
        if (inbox.isUnusable(entry.memberId, entry.workerId)) continue;
        updates.push({ ...entry, payload: update.payload });
      }
      // The commit records the model hashes after the previous round: this replica has its own.
      for (const h of commit.agreement?.hashes ?? [])
        links.recordedModelHash(commit.agreement!.round, h, h.modelHash);
      this.checkAgreement(commit.agreement);
      const assessed = await ctx.options.model.apply(commit, updates);
      this.modelHash = await ctx.options.model.hash();
      this.round = round;
      const replayed = round <= this.highest;
      this.highest = Math.max(this.highest, round);
      this.hashes.set(round, toHex(this.modelHash));
      this.hashes.delete(round - KEPT_ROUNDS);
      if (assessed && assessed.length > 0) {
        if (assessed.length !== updates.length)
          throw new Error(
            `the model assessed ${assessed.length} of round ${round}'s ${updates.length} updates`,
          );
        this.scores.set(round, {
          round,
          updates: updates.map((u, j) => ({
            memberId: u.memberId,
            workerId: u.workerId,
            ...assessed[j]!,
          })),
        });
      }
      this.scores.delete(round - KEPT_ROUNDS);
      if (!replayed) ctx.counters.roundsApplied++;
      if (
        !replayed &&
        commit.entries.some((e) => e.memberId === ctx.memberId && e.workerId === ctx.workerId)
      )
        this.roundsContributed++;
      links.finishRound(round);
      links.releaseCommit(round - KEPT_ROUNDS);
      if (links.isCoordinator())
        await this.checkpointIfDue(round).catch((error) =>
          ctx.log(`checkpoint of round ${round} failed: ${String(error)}`),
        );
      const waiters = this.waiters.get(round) ?? [];
      this.waiters.delete(round);
      for (const wake of waiters) wake();
      await links.applied(round);
    }
  }

  private async checkpointIfDue(round: number): Promise<void> {
    const { ctx } = this;
    const every = ctx.options.spec.sync.checkpointEveryRounds;
    if (every <= 0 || round % every !== 0) return;
    const snapshot = await ctx.options.model.snapshot();
    const ref: CheckpointRef = {
      round,
      digest: sha256(snapshot),
      size: snapshot.length,
      objectName: `round-${round}`,
    };
    const { checkpoints } = ctx.resources;
    await checkpoints.putBlob({ name: ref.objectName }, snapshot);
    await ctx.options.faults?.beforeCheckpointRecord?.(round);
    if (await this.recordCheckpoint(ref))
      ctx.log(`checkpoint of round ${round} (${snapshot.length} bytes)`);
  }

  /**
   * Points KV `checkpoint` at ref unless it already names this round or a later one: a
   * compare-and-set on the record's revision, so a deposed coordinator finishing an old
   * checkpoint can never move the record backwards. Returns whether it wrote.
   */
  private async recordCheckpoint(ref: CheckpointRef): Promise<boolean> {
    const { ctx } = this;
    const { state } = ctx.resources;
    const value = encodeCheckpoint(ref, ctx.options.privateKey);
    for (let attempt = 0; attempt < 3; attempt++) {
      const entry = await state.get("checkpoint");
      try {
        if (entry?.operation === "PUT") {
          let held: number | undefined;
          try {
            held = decodeCheckpoint(entry.value).body.round;
          } catch {
            held = undefined; // a malformed record is replaced
          }
          if (held !== undefined && held >= ref.round) {
            ctx.log(
              `checkpoint of round ${ref.round} not recorded: the record holds round ${held}`,
            );
            return false;
          }
          await state.update("checkpoint", value, entry.revision);
        } else if (entry) await state.update("checkpoint", value, entry.revision);
        else await state.create("checkpoint", value);
        return true;
      } catch (error) {
        // Another writer came in between: read again.
        if (attempt === 2) throw error;
      }
    }
    return false;
  }

  /** Resolves once round is applied here; rejects with the failure if applying stops first. */
  waitFor(round: number): Promise<void> {
    if (this.round >= round) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const list = this.waiters.get(round) ?? [];
      list.push(() => (this.failure ? reject(this.failure) : resolve()));
      this.waiters.set(round, list);
    });
  }

  /** Stops applying for good: every waiter rejects with error (unless an apply failed first). */
  fail(error: Error): void {
    this.failure ??= error;
    this.wakeAll();
  }

  private wakeAll(): void {
    for (const list of this.waiters.values()) for (const wake of list) wake();
    this.waiters.clear();
  }
}
