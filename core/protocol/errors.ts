/** Why an incoming message was dropped; stable strings, also the names of the drop counters. */
export type RejectReason =
  | "malformed"
  | "truncated"
  | "oversized"
  | "unsupported-version"
  | "bad-signature"
  | "unknown-key"
  | "spec-mismatch"
  | "replayed"
  | "late"
  | "digest-mismatch"
  | "paused";

/** An incoming message failed a check; the worker drops and counts it. */
export class ProtocolMessageError extends Error {
  override readonly name = "ProtocolMessageError";
  readonly reason: RejectReason;

  constructor(reason: RejectReason, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.reason = reason;
  }
}

/** NATS refused or timed out on something the protocol needs (streams, buckets, publishes). */
export class ProtocolTransportError extends Error {
  override readonly name = "ProtocolTransportError";
}

/** The federation's streams and buckets do not exist on this NATS: no member has joined it yet. */
export class FederationNotFoundError extends Error {
  override readonly name = "FederationNotFoundError";
}

/** This worker may not take part: its spec hash differs, its key is not admitted, it was stopped. */
export class AdmissionError extends Error {
  override readonly name = "AdmissionError";
}
