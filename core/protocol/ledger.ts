// Verification of the ledger: the hash chain of commits, their signatures, their entries, the
// checkpoints they reference and, given the federation's aggregation, the update scores they
// record, recomputed from the stored updates. verifyLedger is pure over the records and what its
// callbacks return; verifyFederationLedger reads them (checkpoints, updates) from NATS.
import type { NatsConnection } from "@nats-io/transport-node";
import { Admission } from "./admission.js";
import { type ChainLink, CommitChain } from "./chain.js";
import { ProtocolMessageError } from "./errors.js";
import { equalBytes, sha256, toHex } from "./identity.js";
import { RoundInbox } from "./inbox.js";
import {
  type FederationResources,
  openExistingFederation,
  readStream,
  readSubject,
} from "./resources.js";
import type {
  CheckpointRef,
  Commit,
  ProtocolSpec,
  RoundScores,
  UpdateAssessment,
  UpdateScoreRecord,
} from "./types.js";
import { decodeCommit, decodeMember } from "./wire.js";

/** One stored ledger message. */
export interface LedgerRecord {
  /** Its stream sequence. */
  sequence: number;
  data: Uint8Array;
}

/** A link of the chain that failed, and why. */
export interface LedgerProblem {
  sequence: number;
  /** The round the message claims, when it could be decoded. */
  round: number | undefined;
  reason: string;
}

/** The outcome of a ledger verification. */
export interface LedgerReport {
  ok: boolean;
  /** Rounds in the valid chain. */
  rounds: number;
  /** Hex SHA-256 of the last valid commit. */
  head: string | undefined;
  checkpointsVerified: number;
  /**
   * Rounds whose recorded update scores were recomputed from the stored updates and agreed;
   * undefined when scores were not checked (no auditor given).
   */
  scoresVerified: number | undefined;
  /**
   * The model hashes the commits record after earlier rounds: in how many rounds the recorded
   * replicas all agreed, and the rounds where they did not (with every recorded hash, hex).
   */
  agreement: {
    rounds: number;
    disagreements: { round: number; hashes: { worker: string; modelHash: string }[] }[];
  };
  /**
   * What breaks the ledger, in stream order: commits beyond the end of the accepted chain (history
   * missing or rewritten: the first is where it starts), checkpoints and scores that do not hold.
   */
  problems: LedgerProblem[];
  /**
   * Messages every worker rejects as well, and that break nothing: junk, replays, forks that lost,
   * commits signed by a key the member no longer holds. In stream order.
   */
  rejected: LedgerProblem[];
}

/** What the verifier trusts. */
export interface LedgerTrust {
  /** With an Allowlist, commit signers and entry keys must be listed. */
  spec?: Pick<ProtocolSpec, "membership">;
  /**
   * Member id → raw public key, e.g. from the members bucket; checked when present. A member that
   * left (deregistered) and rejoined with a new key signed its earlier rounds with its earlier
   * key: the registered key governs a member's rounds from its first use in the chain on.
   */
  memberKeys?: Map<string, Uint8Array>;
  /** The bytes of a referenced checkpoint, or undefined when it is missing. */
  checkpoint?: (ref: CheckpointRef) => Promise<Uint8Array | undefined>;
  /** Recomputes the update scores the commits record; without it they are not checked. */
  scores?: ScoreAudit;
}

/**
 * What recomputes a federation's update scores: a replica of its aggregation alone (e.g.
 * RoundAuditor in core/codec), fed every round's updates in order from the first.
 */
export interface ScoreAuditor {
  /** Throws when a replica could not use this payload (as ReplicaModel.validate). */
  validate(payload: Uint8Array): void;
  /** Aggregates one round's usable payloads, in commit order; one assessment each. */
  apply(payloads: readonly Uint8Array[]): readonly UpdateAssessment[];
}

/** The auditor, and where the updates of each committed round come from. */
export interface ScoreAudit {
  auditor: ScoreAuditor;
  /**
   * The payloads of a commit's entries, in entry order: the bytes when stored with the entry's
   * digest, "unusable" when the auditor's validate refused them, undefined when missing.
   */
  payloads(commit: Commit): Promise<(Uint8Array | "unusable" | undefined)[]>;
}

/**
 * How far a recorded score may be from the recomputed one: the same code gives the same bits; a
 * second implementation summing in the order the spec gives agrees far closer than this.
 */
export const SCORE_TOLERANCE = 1e-6;

/**
 * Replays the ledger under the commit-chain rule every worker follows (chain.ts): the commits it
 * accepts are the ledger's history. A message it rejects is listed in `rejected` with why: junk,
 * a replay, a fork that lost, a commit signed by a key the member no longer holds. The ledger is
 * broken (`problems`) when a commit signed by a key its coordinator may sign with claims a round
 * beyond where the accepted chain ends, for then history is missing or was rewritten (a tampered
 * commit is rejected, and the next one no longer links); and when a referenced checkpoint or a
 * recorded score does not hold.
 */
export async function verifyLedger(
  records: readonly LedgerRecord[],
  trust: LedgerTrust = {},
): Promise<LedgerReport> {
  const admission = trust.spec ? new Admission(trust.spec, new Uint8Array(32)) : undefined;
  const chain = new CommitChain(
    {
      allows: (memberId, key) => admission?.allows(memberId, key) ?? true,
      registered: (memberId) => trust.memberKeys?.get(memberId),
    },
    { entryKeys: "registered" },
  );
  const problems: LedgerProblem[] = [];
  const refused: (LedgerProblem & { claims: boolean })[] = [];
  let checkpointsVerified = 0;
  const audit = trust.scores ? new ScoreReplay(trust.scores) : undefined;
  const agreement: LedgerReport["agreement"] = { rounds: 0, disagreements: [] };
  for (const { sequence, data } of records) {
    let link: ChainLink;
    try {
      const { body: commit, signer } = decodeCommit(data);
      link = { commit, signer, data };
    } catch (error) {
      const reason = error instanceof ProtocolMessageError ? error.message : String(error);
      refused.push({
        sequence,
        round: undefined,
        reason: `not a valid signed commit: ${reason}`,
        claims: false,
      });
      continue;
    }
    const { commit, signer } = link;
    const fail = (reason: string) => problems.push({ sequence, round: commit.round, reason });
    // Everything a verifier reads is history: a member's earlier key may stand for it.
    const violation = chain.check(link, true);
    if (violation) {
      refused.push({
        sequence,
        round: commit.round,
        reason: violation.message,
        claims: chain.maySign(commit.coordinator.memberId, signer),
      });
      continue;
    }
    const ref = commit.checkpoint;
    if (ref && trust.checkpoint) {
      const bytes = await trust.checkpoint(ref);
      if (!bytes) fail(`checkpoint ${ref.objectName} of round ${ref.round} is missing`);
      else if (bytes.length !== ref.size || !equalBytes(sha256(bytes), ref.digest))
        fail(`checkpoint ${ref.objectName} does not match its digest`);
      else checkpointsVerified++;
    }
    // A wrong checkpoint or score is a problem of this commit, yet the link stands, as it does
    // for every worker: the models it leads to do not depend on them.
    for (const reason of audit?.check(commit.scores) ?? []) fail(reason);
    chain.append(link);
    const recorded = commit.agreement;
    if (recorded && recorded.hashes.length > 0) {
      const hashes = recorded.hashes.map((h) => ({
        worker: `${h.memberId}.${h.workerId}`,
        modelHash: toHex(h.modelHash),
      }));
      if (hashes.every((h) => h.modelHash === hashes[0]!.modelHash)) agreement.rounds++;
      else agreement.disagreements.push({ round: recorded.round, hashes });
    }
    const missing = await audit?.replay(commit);
    if (missing) fail(missing);
  }
  const rejected: LedgerProblem[] = [];
  for (const { claims, ...entry } of refused) {
    if (claims && entry.round !== undefined && entry.round > chain.round)
      problems.push({
        ...entry,
        reason: `${entry.reason}; the accepted chain ends at round ${chain.round}, so history is missing or was rewritten`,
      });
    else rejected.push(entry);
  }
  problems.sort((a, b) => a.sequence - b.sequence);
  return {
    ok: problems.length === 0,
    rounds: chain.round,
    head: chain.headHex,
    checkpointsVerified,
    scoresVerified: audit?.verified,
    agreement,
    problems,
    rejected,
  };
}

/** Recomputes every round's assessments in chain order and checks the recorded ones. */
class ScoreReplay {
  verified = 0;
  private readonly recomputed = new Map<number, UpdateScoreRecord[]>();
  /** Why the replay stopped (an update is missing): later rounds cannot be recomputed. */
  private stopped: string | undefined;

  constructor(private readonly audit: ScoreAudit) {}

  /** Recomputes the round of an appended commit; returns why it could not, the first time. */
  async replay(commit: Commit): Promise<string | undefined> {
    if (this.stopped) return undefined;
    const payloads = await this.audit.payloads(commit);
    const usable: { entry: Commit["entries"][number]; payload: Uint8Array }[] = [];
    for (const [j, entry] of commit.entries.entries()) {
      const payload = payloads[j];
      if (payload === "unusable") continue;
      if (!payload) {
        this.stopped = `the update of ${entry.memberId}.${entry.workerId} in round ${commit.round} is not in the update streams: the scores of this and later rounds cannot be recomputed`;
        return this.stopped;
      }
      usable.push({ entry, payload });
    }
    const assessments = this.audit.auditor.apply(usable.map((u) => u.payload));
    this.recomputed.set(
      commit.round,
      assessments.map((a, j) => ({
        memberId: usable[j]!.entry.memberId,
        workerId: usable[j]!.entry.workerId,
        ...a,
      })),
    );
    return undefined;
  }

  /** Compares a commit's recorded scores with the recomputed ones; returns the disagreements. */
  check(scores: readonly RoundScores[]): string[] {
    const reasons: string[] = [];
    for (const recorded of scores) {
      const expected = this.recomputed.get(recorded.round);
      this.recomputed.delete(recorded.round);
      if (!expected) {
        if (!this.stopped) reasons.push(`scores of round ${recorded.round} cannot be recomputed`);
        continue;
      }
      const disagreement = compareScores(recorded.updates, expected);
      if (disagreement)
        reasons.push(
          `scores of round ${recorded.round} disagree with its stored updates: ${disagreement}`,
        );
      else this.verified++;
    }
    // Rounds before the last scored one can no longer be scored.
    const last = scores.at(-1)?.round;
    if (last !== undefined)
      for (const r of this.recomputed.keys()) if (r < last) this.recomputed.delete(r);
    return reasons;
  }
}

/** Why recorded scores differ from recomputed ones, or undefined when they agree. */
function compareScores(
  recorded: readonly UpdateScoreRecord[],
  expected: readonly UpdateScoreRecord[],
): string | undefined {
  const name = (s: UpdateScoreRecord) => `${s.memberId}.${s.workerId}`;
  if (
    recorded.length !== expected.length ||
    recorded.some((s, j) => name(s) !== name(expected[j]!))
  )
    return `recorded for [${recorded.map(name).join(", ")}], recomputed for [${expected.map(name).join(", ")}]`;
  for (const [j, r] of recorded.entries()) {
    const e = expected[j]!;
    if (r.bound !== e.bound) return `${name(r)} recorded ${r.bound}, recomputed ${e.bound}`;
    for (const field of ["cosine", "relativeDistance", "relativeNorm"] as const)
      if (!close(r[field], e[field]))
        return `${name(r)} ${field} recorded ${r[field]}, recomputed ${e[field]}`;
  }
  return undefined;
}

function close(a: number, b: number): boolean {
  if (a === b) return true;
  return Math.abs(a - b) <= SCORE_TOLERANCE * Math.max(1, Math.abs(b));
}

/**
 * Reads a federation's ledger, member keys and checkpoints from NATS and verifies them; with an
 * auditor, also the recorded update scores, recomputed from the updates in the update streams.
 */
export async function verifyFederationLedger(
  nc: NatsConnection,
  federationId: string,
  options: {
    spec?: Pick<ProtocolSpec, "membership">;
    /**
     * The auditor to recompute scores with, given the payload of an update that a replica scored
     * (the first one the ledger records a score for), which tells the model's size. Not called
     * when the ledger records no scores.
     */
    auditor?: (scoredPayload: Uint8Array, commit: Commit) => ScoreAuditor | undefined;
  } = {},
): Promise<LedgerReport> {
  const resources = await openExistingFederation(nc, federationId);
  const records = (await readStream(resources, resources.names.ledgerStream)).map((m) => ({
    sequence: m.seq,
    data: m.data,
  }));
  const memberKeys = new Map<string, Uint8Array>();
  for await (const key of await resources.members.keys()) {
    const entry = await resources.members.get(key);
    if (entry?.operation !== "PUT") continue;
    try {
      const { body, signer } = decodeMember(entry.value);
      if (body.memberId === key) memberKeys.set(key, signer);
    } catch {
      // A malformed record names no key; the commits it would vouch for then rely on the spec.
    }
  }
  const sample = options.auditor ? await scoredPayload(resources, records) : undefined;
  const auditor = sample ? options.auditor?.(sample.payload, sample.commit) : undefined;
  return verifyLedger(records, {
    ...(options.spec ? { spec: options.spec } : {}),
    ...(auditor
      ? { scores: { auditor, payloads: (commit) => storedPayloads(resources, commit, auditor) } }
      : {}),
    memberKeys,
    checkpoint: async (ref) =>
      (await resources.checkpoints.getBlob(ref.objectName).catch(() => null)) ?? undefined,
  });
}

/** The payload of the first update the ledger records a score for, if stored, and its commit. */
async function scoredPayload(
  resources: FederationResources,
  records: readonly LedgerRecord[],
): Promise<{ payload: Uint8Array; commit: Commit } | undefined> {
  const commits = new Map<number, Commit>();
  for (const { data } of records) {
    let commit: Commit;
    try {
      commit = decodeCommit(data).body;
    } catch {
      continue;
    }
    commits.set(commit.round, commit);
    const scoredRound = commit.scores.find((s) => s.updates.length > 0);
    if (!scoredRound) continue;
    const { memberId, workerId } = scoredRound.updates[0]!;
    const round = commits.get(scoredRound.round);
    const index =
      round?.entries.findIndex((e) => e.memberId === memberId && e.workerId === workerId) ?? -1;
    if (!round || index < 0) return undefined;
    const payload = (await storedPayloads(resources, round, { validate: () => {} }))[index];
    return payload instanceof Uint8Array ? { payload, commit: round } : undefined;
  }
  return undefined;
}

/**
 * A commit's payloads as the update streams hold them: each round's messages reassembled and
 * digest-checked as a worker does, taking exactly the updates the commit names.
 */
async function storedPayloads(
  resources: FederationResources,
  commit: Commit,
  auditor: Pick<ScoreAuditor, "validate">,
): Promise<(Uint8Array | "unusable" | undefined)[]> {
  if (commit.entries.length === 0) return [];
  const inbox = new RoundInbox({
    round: commit.round,
    // Only the committed sizes: a manifest claiming more is not the update the commit names.
    maxUpdateBytes: Math.max(...commit.entries.map((e) => e.size)),
    maxRoundBytes: commit.entries.reduce((n, e) => n + e.size, 0),
    admit: (memberId, key) =>
      commit.entries.some((e) => e.memberId === memberId && equalBytes(e.publicKey, key))
        ? undefined
        : "unknown-key",
    reject: () => {},
    validate: (payload) => auditor.validate(payload),
  });
  const { names } = resources;
  for (const [shard, stream] of names.updatesStreams.entries())
    for (const m of await readSubject(resources, stream, names.roundUpdates(shard, commit.round)))
      inbox.handle(m.subject, m.data, "stored");
  return commit.entries.map((e) => {
    const update = inbox.find(e.memberId, e.workerId, e.digest);
    if (!update) return undefined;
    return inbox.isUnusable(e.memberId, e.workerId) ? "unusable" : update.payload;
  });
}
