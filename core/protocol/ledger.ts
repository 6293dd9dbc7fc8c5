// Verification of the ledger: the hash chain of commits, their signatures, their entries and the
// checkpoints they reference. verifyLedger is pure over the records; verifyFederationLedger reads
// them (and the checkpoints) from NATS first.
import type { NatsConnection } from "@nats-io/transport-node";
import { Admission } from "./admission.js";
import { type ChainLink, CommitChain } from "./chain.js";
import { ProtocolMessageError } from "./errors.js";
import { equalBytes, sha256 } from "./identity.js";
import { openExistingFederation, readStream } from "./resources.js";
import type { CheckpointRef, ProtocolSpec } from "./types.js";
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
  /** Every failed link, in stream order; the first is where tampering starts. */
  problems: LedgerProblem[];
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
}

/**
 * Verifies every link: signature, round numbering, the previous-commit hash, canonical entry
 * order, signer and entry keys, and each referenced checkpoint's size and SHA-256. A message that
 * fails is reported and skipped, so one tampered commit shows as a problem at its own sequence
 * (and usually a broken link at the next).
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
  let checkpointsVerified = 0;
  for (const { sequence, data } of records) {
    let link: ChainLink;
    try {
      const { body: commit, signer } = decodeCommit(data);
      link = { commit, signer, data };
    } catch (error) {
      const reason = error instanceof ProtocolMessageError ? error.message : String(error);
      problems.push({ sequence, round: undefined, reason: `not a valid signed commit: ${reason}` });
      continue;
    }
    const fail = (reason: string) => problems.push({ sequence, round: link.commit.round, reason });
    // Everything a verifier reads is history: a member's earlier key may stand for it.
    const violation = chain.check(link, true);
    if (violation) {
      fail(violation.message);
      continue;
    }
    const ref = link.commit.checkpoint;
    if (ref && trust.checkpoint) {
      const bytes = await trust.checkpoint(ref);
      if (!bytes) {
        fail(`checkpoint ${ref.objectName} of round ${ref.round} is missing`);
        continue;
      }
      if (bytes.length !== ref.size || !equalBytes(sha256(bytes), ref.digest)) {
        fail(`checkpoint ${ref.objectName} does not match its digest`);
        continue;
      }
      checkpointsVerified++;
    }
    chain.append(link);
  }
  return {
    ok: problems.length === 0,
    rounds: chain.round,
    head: chain.headHex,
    checkpointsVerified,
    problems,
  };
}

/** Reads a federation's ledger, member keys and checkpoints from NATS and verifies them. */
export async function verifyFederationLedger(
  nc: NatsConnection,
  federationId: string,
  options: { spec?: Pick<ProtocolSpec, "membership"> } = {},
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
  return verifyLedger(records, {
    ...options,
    memberKeys,
    checkpoint: async (ref) =>
      (await resources.checkpoints.getBlob(ref.objectName).catch(() => null)) ?? undefined,
  });
}
