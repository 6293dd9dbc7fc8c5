// The organisers' control over a federation, as every worker and the operator's view derive it
// from the control stream: signed messages applied in sequence order. The latest pause or resume
// decides whether rounds close; exclusions hold until the member is readmitted. A message is
// taken only while fresh (issued at most CONTROL_MAX_AGE_MS before the server stored it) and with
// a sequence above its signer's previous one, so an old signed message published again is
// refused by every reader, also one that starts after the original left the stream.
import type { Admission } from "./admission.js";
import { ProtocolMessageError } from "./errors.js";
import { toHex } from "./identity.js";
import type { ControlMessage } from "./types.js";
import { decodeControl } from "./wire.js";

/**
 * How long before the server stored it a control message may have been issued: an older one is
 * a replay (or a copy held back that long) and is refused.
 */
export const CONTROL_MAX_AGE_MS = 10 * 60_000;
/** How far ahead of the server's clock an organiser's clock may run. */
export const CONTROL_MAX_SKEW_MS = 60_000;

/** What the control messages seen so far decide. */
export class ControlState {
  /** Each organiser key's highest sequence applied: one at or below it is a replay. */
  private readonly sequences = new Map<string, number>();
  paused = false;
  /** Excluded members, with the organiser's reason. */
  readonly excluded = new Map<string, string>();

  constructor(private readonly admission: Pick<Admission, "isOrganiser">) {}

  /**
   * Applies one control message, which the server stored at `storedAtMs` (the stream message's
   * timestamp: the same for every reader), and returns it. Throws ProtocolMessageError (the
   * caller drops and counts it) when it is malformed, not signed by an organiser, stale or
   * replayed.
   */
  apply(data: Uint8Array, storedAtMs: number): ControlMessage {
    const { body, signer } = decodeControl(data);
    if (!this.admission.isOrganiser(signer))
      throw new ProtocolMessageError("unknown-key", "control message not from an organiser");
    if (body.issuedAtMs > storedAtMs + CONTROL_MAX_SKEW_MS)
      throw new ProtocolMessageError(
        "malformed",
        `control message issued ${Math.round((body.issuedAtMs - storedAtMs) / 1000)} s after the server stored it`,
      );
    if (storedAtMs - body.issuedAtMs > CONTROL_MAX_AGE_MS)
      throw new ProtocolMessageError(
        "replayed",
        `control message issued ${Math.round((storedAtMs - body.issuedAtMs) / 1000)} s before the server stored it: stale`,
      );
    const key = toHex(signer);
    if (body.sequence <= (this.sequences.get(key) ?? 0))
      throw new ProtocolMessageError("replayed", `control sequence ${body.sequence} replayed`);
    this.sequences.set(key, body.sequence);
    switch (body.action) {
      case "pause":
      case "resume":
        this.paused = body.action === "pause";
        break;
      case "exclude":
        this.excluded.set(body.memberId, body.reason);
        break;
      case "readmit":
        this.excluded.delete(body.memberId);
        break;
    }
    return body;
  }

  /** Whether an organiser excluded this member (and has not readmitted it). */
  isExcluded(memberId: string): boolean {
    return this.excluded.has(memberId);
  }
}
