// The organisers' control over a federation, as every worker and the operator's view derive it
// from the control stream: signed messages applied in sequence order. The latest pause or resume
// decides whether rounds close; exclusions hold until the member is readmitted.
import type { Admission } from "./admission.js";
import { ProtocolMessageError } from "./errors.js";
import type { ControlMessage } from "./types.js";
import { decodeControl } from "./wire.js";

/** What the control messages seen so far decide. */
export class ControlState {
  /** The highest sequence applied: a message at or below it is a replay. */
  sequence = 0;
  paused = false;
  /** Excluded members, with the organiser's reason. */
  readonly excluded = new Map<string, string>();

  constructor(private readonly admission: Pick<Admission, "isOrganiser">) {}

  /**
   * Applies one control message and returns it. Throws ProtocolMessageError (the caller drops and
   * counts it) when it is malformed, not signed by an organiser, or replayed.
   */
  apply(data: Uint8Array): ControlMessage {
    const { body, signer } = decodeControl(data);
    if (!this.admission.isOrganiser(signer))
      throw new ProtocolMessageError("unknown-key", "control message not from an organiser");
    if (body.sequence <= this.sequence)
      throw new ProtocolMessageError("replayed", `control sequence ${body.sequence} replayed`);
    this.sequence = body.sequence;
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
