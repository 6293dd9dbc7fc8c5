// Following the ledger: every commit is checked against the chain rule (chain.ts) as it arrives;
// the valid ones wait here until the applier has applied them.

import { CommitChain } from "../chain.js";
import { AdmissionError, ProtocolMessageError } from "../errors.js";
import { equalBytes } from "../identity.js";
import { readStream } from "../resources.js";
import type { CheckpointRef, Commit, WorkerRef } from "../types.js";
import { decodeCommit } from "../wire.js";
import type { WorkerContext } from "./context.js";
import { followStream, type StreamFollower } from "./follow.js";

/** How many of the latest commits' worker lists a worker keeps (a trainer asks for recent ones). */
const ROSTER_ROUNDS = 64;

/** What the ledger follower asks of the other roles (wired by the facade). */
export interface LedgerLinks {
  /** The last round applied here: commits up to it need not be kept. */
  appliedRound(): number;
  /** A valid commit was added. */
  committed(): void;
}

/** The ledger as this worker follows it; see the file comment. */
export class LedgerFollower {
  readonly chain: CommitChain;
  /** The last stream sequence seen (a coordinator publishes its commit after it). */
  lastSeq = 0;
  /** The round of the last checkpoint a commit referenced. */
  lastCheckpointReferenced = 0;
  // The ledger's last sequence when this worker started following it: commits up to it are history.
  private historySeq = 0;
  private readonly commits = new Map<number, Commit>();
  // The workers each of the last ROSTER_ROUNDS accepted commits included, for committedWorkers().
  private readonly rosters = new Map<number, WorkerRef[]>();
  // The commit that vouches for a restored checkpoint whose signer is no current member.
  private voucher: { round: number; digest: Uint8Array; accepted: boolean } | undefined;
  private follower: StreamFollower | undefined;

  constructor(
    private readonly ctx: WorkerContext,
    private readonly links: LedgerLinks,
  ) {
    const { admission } = ctx;
    this.chain = new CommitChain(
      {
        allows: (memberId, key) => admission.allows(memberId, key),
        registered: (memberId) => admission.members.get(memberId)?.publicKey,
      },
      { specHash: ctx.options.specHash, entryKeys: "policy" },
    );
  }

  /**
   * Reads the ledger again from the last sequence seen: the ledger holds more than this worker
   * has seen (a commit was refused for a later expected sequence), so its consumer may be stuck.
   */
  refresh(): void {
    this.follower?.refresh();
  }

  /** The last round committed in the ledger. */
  get lastRound(): number {
    return this.chain.round;
  }

  /**
   * Follows the ledger from its start and returns once the commits stored now are read. Throws
   * {@link AdmissionError} when the federation commits under another spec hash than ours.
   */
  async follow(): Promise<void> {
    const { jsm, names } = this.ctx.resources;
    const last = (await jsm.streams.info(names.ledgerStream)).state.last_seq;
    this.historySeq = last;
    let caughtUp: () => void = () => {};
    const initial = new Promise<void>((resolve) => {
      caughtUp = resolve;
    });
    if (last === 0) caughtUp();
    this.follower = followStream(
      this.ctx,
      names.ledgerStream,
      undefined,
      4 << 20,
      (seq, _, data) => {
        this.onCommit(seq, data);
        if (seq >= last) caughtUp();
      },
    );
    await initial;
    if (this.lastRound === 0 && this.ctx.counters.dropped["spec-mismatch"] > 0)
      throw new AdmissionError(
        `federation ${this.ctx.options.spec.id} commits rounds under another federation spec hash: apply the same spec.federation as the other members`,
      );
    this.links.committed();
  }

  private onCommit(seq: number, data: Uint8Array): void {
    this.lastSeq = Math.max(this.lastSeq, seq);
    try {
      const { body: commit, signer } = decodeCommit(data);
      const link = { commit, signer, data };
      const violation = this.chain.check(link, seq <= this.historySeq);
      if (violation)
        throw new ProtocolMessageError(
          violation.reason,
          `commit of round ${commit.round}: ${violation.message}`,
        );
      this.chain.append(link);
      if (commit.checkpoint) this.lastCheckpointReferenced = commit.checkpoint.round;
      const voucher = this.voucher;
      if (voucher && voucher.round === commit.round)
        voucher.accepted = equalBytes(
          commit.checkpoint?.digest ?? new Uint8Array(),
          voucher.digest,
        );
      if (commit.round > this.links.appliedRound()) this.commits.set(commit.round, commit);
      this.rosters.set(
        commit.round,
        commit.entries.map(({ memberId, workerId }) => ({ memberId, workerId })),
      );
      this.rosters.delete(commit.round - ROSTER_ROUNDS);
      this.links.committed();
    } catch (error) {
      this.ctx.drop(error);
    }
  }

  /** The accepted commit of round, while it is kept. */
  commitOf(round: number): Commit | undefined {
    return this.commits.get(round);
  }

  /** Lets go of the commit of round. */
  release(round: number): void {
    this.commits.delete(round);
  }

  /** The workers the accepted commit of round included, in commit order, while kept. */
  committedWorkers(round: number): WorkerRef[] | undefined {
    return this.rosters.get(round)?.map((worker) => ({ ...worker }));
  }

  /** The round of a commit in the ledger that references this checkpoint, if any. */
  async commitReferencing(ref: CheckpointRef): Promise<number | undefined> {
    const { resources } = this.ctx;
    for (const { data } of await readStream(resources, resources.names.ledgerStream)) {
      try {
        const { body } = decodeCommit(data);
        if (body.checkpoint && equalBytes(body.checkpoint.digest, ref.digest)) return body.round;
      } catch {
        // An invalid commit vouches for nothing.
      }
    }
    return undefined;
  }

  /** Expects the commit of round, read with the ledger, to reference the checkpoint digest. */
  expectVoucher(round: number, digest: Uint8Array): void {
    this.voucher = { round, digest, accepted: false };
  }

  /** Throws unless the commit expected to vouch for the restored checkpoint was accepted. */
  checkVoucher(): void {
    const voucher = this.voucher;
    this.voucher = undefined;
    if (voucher && !voucher.accepted)
      throw new AdmissionError(
        `the restored checkpoint is signed by no current member, and the commit of round ${voucher.round} that references it is not part of the valid ledger`,
      );
  }

  stop(): void {
    this.follower?.stop();
  }
}
