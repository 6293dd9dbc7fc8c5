// Verification of the ledger: the hash chain of commits, their signatures, their entries and the
// checkpoints they reference. verifyLedger is pure over the records; verifyFederationLedger reads
// them (and the checkpoints) from NATS first.
import type { NatsConnection } from "@nats-io/transport-node";
import { Admission } from "./admission.js";
import { ProtocolMessageError } from "./errors.js";
import { equalBytes, sha256, toHex } from "./identity.js";
import { openExistingFederation, readStream } from "./resources.js";
import type { CheckpointRef, Commit, ProtocolSpec } from "./types.js";
import { decodeCommit, decodeMember } from "./wire.js";
import { isCanonical } from "./worker.js";

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
  const problems: LedgerProblem[] = [];
  const registeredKeyUsed = new Set<string>();
  // Whether key may sign for memberId here: the registered key, or an earlier key of the member
  // before the registered one took over (the chain's later signatures vouch for those rounds).
  const fitsRegistered = (memberId: string, key: Uint8Array) => {
    const registered = trust.memberKeys?.get(memberId);
    if (!registered) return true;
    if (equalBytes(registered, key)) return true;
    return !registeredKeyUsed.has(memberId);
  };
  let round = 0;
  let prev: Uint8Array = new Uint8Array(32);
  let head: string | undefined;
  let checkpointsVerified = 0;
  for (const { sequence, data } of records) {
    let commit: Commit;
    let signer: Uint8Array;
    try {
      ({ body: commit, signer } = decodeCommit(data));
    } catch (error) {
      const reason = error instanceof ProtocolMessageError ? error.message : String(error);
      problems.push({ sequence, round: undefined, reason: `not a valid signed commit: ${reason}` });
      continue;
    }
    const fail = (reason: string) => problems.push({ sequence, round: commit.round, reason });
    if (commit.round !== round + 1) {
      fail(`round ${commit.round} follows round ${round}`);
      continue;
    }
    if (!equalBytes(commit.prevHash, prev)) {
      fail(`previous-commit hash ${toHex(commit.prevHash)} is not ${toHex(prev)}`);
      continue;
    }
    const who = commit.coordinator.memberId;
    if (admission && !admission.allows(who, signer)) {
      fail(`signed by a key not allowlisted for member ${who}`);
      continue;
    }
    if (!fitsRegistered(who, signer)) {
      fail(`signed by a key that is not member ${who}'s registered key`);
      continue;
    }
    if (!isCanonical(commit.entries)) {
      fail("entries are not in canonical order");
      continue;
    }
    const badEntry = commit.entries.find(
      (e) =>
        (admission && !admission.allows(e.memberId, e.publicKey)) ||
        !fitsRegistered(e.memberId, e.publicKey),
    );
    if (badEntry) {
      fail(`entry of ${badEntry.memberId}.${badEntry.workerId} carries an unknown key`);
      continue;
    }
    if (commit.checkpoint && trust.checkpoint) {
      const ref = commit.checkpoint;
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
    for (const [memberId, key] of [
      [who, signer] as const,
      ...commit.entries.map((e) => [e.memberId, e.publicKey] as const),
    ])
      if (trust.memberKeys?.has(memberId) && equalBytes(trust.memberKeys.get(memberId)!, key))
        registeredKeyUsed.add(memberId);
    round = commit.round;
    prev = sha256(data);
    head = toHex(prev);
  }
  return { ok: problems.length === 0, rounds: round, head, checkpointsVerified, problems };
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
