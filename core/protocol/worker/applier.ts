// Applying: every accepted commit is applied to the caller's model in round order, with exactly
// the updates it names in its canonical order, so every replica holds the same model. The
// coordinator's replica also writes the checkpoints the spec asks for; a joining worker starts
// from the latest one.
import { AdmissionError } from "../errors.js";
import { equalBytes, sha256, toHex } from "../identity.js";
import type { RoundInbox } from "../inbox.js";
import type { CheckpointRef, Commit, CommittedUpdate, RoundScores, WorkerRef } from "../types.js";
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
    const entry = await ctx.resources.state.get("checkpoint");
    if (entry?.operation !== "PUT") {
      this.modelHash = await model.hash();
      return;
    }
    const { body: ref, signer } = decodeCheckpoint(entry.value);
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
    const bytes = await ctx.resources.checkpoints.getBlob(ref.objectName);
    if (!bytes || bytes.length !== ref.size || !equalBytes(sha256(bytes), ref.digest))
      throw new AdmissionError(`checkpoint ${ref.objectName} is missing or fails its digest`);
    await model.restore(bytes);
    this.round = ref.round;
    this.modelHash = await model.hash();
    this.hashes.set(ref.round, toHex(this.modelHash));
    ctx.log(`restored checkpoint of round ${ref.round}`);
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
      const assessed = await ctx.options.model.apply(commit, updates);
      this.modelHash = await ctx.options.model.hash();
      this.round = round;
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
      ctx.counters.roundsApplied++;
      if (commit.entries.some((e) => e.memberId === ctx.memberId && e.workerId === ctx.workerId))
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
