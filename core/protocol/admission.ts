// Who may contribute: the membership policy applied to the member records seen on NATS. Pure, so
// the worker, the coordinator, the view and the ledger verifier all decide the same way.
import type { RejectReason } from "./errors.js";
import { equalBytes, keyFromBase64, toBase64 } from "./identity.js";
import type { MemberRecord, ProtocolSpec } from "./types.js";
import { PROTOCOL_REVISION } from "./wire.js";

/** "1.<revision>", as docs/protocol.md names the revisions of wire version 1. */
function revisionName(revision: number): string {
  return `1.${revision}`;
}

/** A member record as seen on NATS, with its signer. */
export interface KnownMember {
  record: MemberRecord;
  publicKey: Uint8Array;
}

/** Applies a federation's membership policy. */
export class Admission {
  private readonly allowlist: Map<string, Uint8Array> | undefined;
  private readonly organisers: Uint8Array[];
  readonly members = new Map<string, KnownMember>();

  constructor(
    spec: Pick<ProtocolSpec, "membership">,
    readonly specHash: Uint8Array,
  ) {
    const { membership } = spec;
    this.allowlist =
      membership.policy === "Allowlist"
        ? new Map(membership.members.map((m) => [m.id, keyFromBase64(m.publicKey)]))
        : undefined;
    this.organisers = membership.organiserKeys.map(keyFromBase64);
  }

  /**
   * Records a member record read from NATS. Under Open, the first key seen for a member id keeps
   * it (trust on first use); returns false when the record was refused.
   */
  observe(record: MemberRecord, publicKey: Uint8Array): boolean {
    const known = this.members.get(record.memberId);
    if (known && !equalBytes(known.publicKey, publicKey) && !this.allowlist) return false;
    if (this.allowlist) {
      const listed = this.allowlist.get(record.memberId);
      if (!listed || !equalBytes(listed, publicKey)) return false;
    }
    this.members.set(record.memberId, { record, publicKey });
    return true;
  }

  /** Forgets a deregistered member. */
  forget(memberId: string): void {
    this.members.delete(memberId);
  }

  /** undefined when memberId may contribute signing with publicKey; else the reason it may not. */
  check(memberId: string, publicKey: Uint8Array): RejectReason | undefined {
    if (this.allowlist) {
      const listed = this.allowlist.get(memberId);
      if (!listed || !equalBytes(listed, publicKey)) return "unknown-key";
    }
    const known = this.members.get(memberId);
    if (!known || !equalBytes(known.publicKey, publicKey)) return "unknown-key";
    if (!equalBytes(known.record.specHash, this.specHash)) return "spec-mismatch";
    if (known.record.revision !== PROTOCOL_REVISION) return "unsupported-version";
    return undefined;
  }

  /** Why a member is refused, in words, or undefined when it is admitted. */
  refusal(
    memberId: string,
    publicKey: Uint8Array,
    specHash: Uint8Array,
    revision = PROTOCOL_REVISION,
  ): string | undefined {
    if (this.allowlist) {
      const listed = this.allowlist.get(memberId);
      if (!listed) return "member id is not in the allowlist";
      if (!equalBytes(listed, publicKey)) return "public key differs from the allowlisted key";
    }
    if (!equalBytes(specHash, this.specHash))
      return "federation spec hash differs from this member's";
    if (revision !== PROTOCOL_REVISION)
      return `its trainers speak protocol ${revisionName(revision)}, this member ${revisionName(PROTOCOL_REVISION)}: every member must run a release of the same protocol revision`;
    return undefined;
  }

  /** True when publicKey is the allowlisted key of memberId (always true under Open). */
  allows(memberId: string, publicKey: Uint8Array): boolean {
    if (!this.allowlist) return true;
    const listed = this.allowlist.get(memberId);
    return listed !== undefined && equalBytes(listed, publicKey);
  }

  /** True when publicKey is the key of a member seen on NATS now. */
  isMemberKey(publicKey: Uint8Array): boolean {
    for (const member of this.members.values())
      if (equalBytes(member.publicKey, publicKey)) return true;
    return false;
  }

  /** True when publicKey is one of the organiser keys. */
  isOrganiser(publicKey: Uint8Array): boolean {
    return this.organisers.some((k) => equalBytes(k, publicKey));
  }

  /** The fewest contributing members that make a quorum when `active` members are live. */
  static required(quorum: { minMembers?: number; fraction?: number }, active: number): number {
    const byFraction = quorum.fraction ? Math.ceil(quorum.fraction * active - 1e-9) : 0;
    return Math.max(quorum.minMembers ?? 1, byFraction, 1);
  }

  /** base64 of a key, for messages. */
  static show(publicKey: Uint8Array): string {
    return toBase64(publicKey);
  }
}
