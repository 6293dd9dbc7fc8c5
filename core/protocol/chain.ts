// The commit-chain rule: which commit may extend the ledger. One rule, used by the live worker
// as it follows the ledger and by verifyLedger offline, so the two cannot disagree on a link.
import type { RejectReason } from "./errors.js";
import { equalBytes, sha256, toHex } from "./identity.js";
import type { Commit, CommitEntry } from "./types.js";

/** The keys a chain is checked against. */
export interface ChainKeys {
  /** The membership policy: whether key may sign for memberId at all (always true under Open). */
  allows(memberId: string, key: Uint8Array): boolean;
  /** The member's registered key, when one is known. */
  registered(memberId: string): Uint8Array | undefined;
}

/** What the chain checks besides numbering, hashes, signers and order. */
export interface ChainRules {
  /** When set, every commit must carry this federation spec hash. */
  specHash?: Uint8Array;
  /**
   * How entry keys are checked. "registered": like the coordinator's key (policy and registered
   * key), as a verifier that knows the whole chain does. "policy": only against the membership
   * policy; a live worker takes an entry's key on the admitted coordinator's word, because its
   * view of the members bucket may run ahead of the coordinator's (a member re-registering while
   * the commit is on its way), and it checks each update's key again when it takes the update.
   */
  entryKeys: "registered" | "policy";
}

/** A decoded commit with its signer and its bytes (whose hash the next commit names). */
export interface ChainLink {
  commit: Commit;
  signer: Uint8Array;
  data: Uint8Array;
}

/** Why a commit cannot extend the chain. */
export interface ChainViolation {
  reason: RejectReason;
  message: string;
}

const zeroHash = new Uint8Array(32);

/**
 * A ledger's valid chain so far. `history` marks a link read as history (everything, for a
 * verifier; the commits stored before a worker started, for a live worker): only history may
 * carry a member's earlier key. A member that left and rejoined with a new key signed its
 * earlier rounds with its earlier key; that key stands for it until its registered key first
 * appears in the chain, and never in a commit the checker sees live.
 */
export class CommitChain {
  /** The last round in the chain; 0 before the first commit. */
  round = 0;
  /** SHA-256 of the last commit's bytes; zeros before the first commit. */
  head: Uint8Array = zeroHash;
  /** The last round whose update scores a commit in the chain carries; 0 before any. */
  scoredRound = 0;
  private readonly registeredKeyUsed = new Set<string>();

  constructor(
    private readonly keys: ChainKeys,
    private readonly rules: ChainRules,
  ) {}

  /** Hex of the head, or undefined before the first commit. */
  get headHex(): string | undefined {
    return this.round === 0 ? undefined : toHex(this.head);
  }

  /** Why link cannot come next, or undefined when it can. */
  check(link: ChainLink, history: boolean): ChainViolation | undefined {
    const { commit, signer } = link;
    const round = commit.round;
    if (round <= this.round)
      return { reason: "replayed", message: `round ${round} follows round ${this.round}` };
    if (round !== this.round + 1)
      return { reason: "malformed", message: `round ${round} follows round ${this.round}` };
    if (!equalBytes(commit.prevHash, this.head))
      return {
        reason: "malformed",
        message: `previous-commit hash ${toHex(commit.prevHash)} is not ${toHex(this.head)}`,
      };
    const who = commit.coordinator.memberId;
    if (!this.keys.allows(who, signer))
      return {
        reason: "unknown-key",
        message: `signed by a key not allowlisted for member ${who}`,
      };
    if (!this.fitsRegistered(who, signer, history))
      return {
        reason: "unknown-key",
        message: `signed by a key that is not member ${who}'s registered key`,
      };
    if (this.rules.specHash && !equalBytes(commit.specHash, this.rules.specHash))
      return { reason: "spec-mismatch", message: "committed under another federation spec hash" };
    if (!isCanonical(commit.entries))
      return { reason: "malformed", message: "entries are not in canonical order" };
    let scored = this.scoredRound;
    for (const { round: r, updates } of commit.scores) {
      if (r <= scored || r >= round)
        return {
          reason: "malformed",
          message: `scores of round ${r} in round ${round}'s commit, after scores of round ${scored}`,
        };
      if (!isCanonical(updates))
        return { reason: "malformed", message: `scores of round ${r} are not in canonical order` };
      scored = r;
    }
    const bad = commit.entries.find(
      (e) =>
        !this.keys.allows(e.memberId, e.publicKey) ||
        (this.rules.entryKeys === "registered" &&
          !this.fitsRegistered(e.memberId, e.publicKey, history)),
    );
    if (bad)
      return {
        reason: "unknown-key",
        message: `entry of ${bad.memberId}.${bad.workerId} carries an unknown key`,
      };
    return undefined;
  }

  /**
   * Whether key may sign for memberId in the history read so far: allowed by the membership
   * policy, and the member's registered key or (until that key first appears) an earlier one.
   */
  maySign(memberId: string, key: Uint8Array): boolean {
    return this.keys.allows(memberId, key) && this.fitsRegistered(memberId, key, true);
  }

  /** Extends the chain with a link that passed check. */
  append(link: ChainLink): void {
    const { commit, signer } = link;
    for (const [memberId, key] of [
      [commit.coordinator.memberId, signer] as const,
      ...commit.entries.map((e) => [e.memberId, e.publicKey] as const),
    ]) {
      const registered = this.keys.registered(memberId);
      if (registered && equalBytes(registered, key)) this.registeredKeyUsed.add(memberId);
    }
    this.round = commit.round;
    this.head = sha256(link.data);
    this.scoredRound = commit.scores.at(-1)?.round ?? this.scoredRound;
  }

  /** Forgets that a member's registered key was used: the member deregistered. */
  forget(memberId: string): void {
    this.registeredKeyUsed.delete(memberId);
  }

  private fitsRegistered(memberId: string, key: Uint8Array, history: boolean): boolean {
    const registered = this.keys.registered(memberId);
    if (!registered || equalBytes(registered, key)) return true;
    return history && !this.registeredKeyUsed.has(memberId);
  }
}

/** What names a worker's update in a round. */
type Sender = Pick<CommitEntry, "memberId" | "workerId">;

/** Orders commit entries canonically: by member id, then worker id. */
export function compareEntries(a: Sender, b: Sender): number {
  return compareStrings(a.memberId, b.memberId) || compareStrings(a.workerId, b.workerId);
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** True when entries are strictly ordered by (memberId, workerId): the canonical apply order. */
export function isCanonical(entries: readonly Sender[]): boolean {
  for (let i = 1; i < entries.length; i++)
    if (compareEntries(entries[i - 1]!, entries[i]!) >= 0) return false;
  return true;
}
