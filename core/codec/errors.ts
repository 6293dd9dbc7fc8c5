/** Why a message or checkpoint was rejected; stable strings that callers may count by. */
export type CodecErrorCode =
  | "truncated"
  | "trailing-bytes"
  | "bad-magic"
  | "unsupported-version"
  | "unknown-method"
  | "bad-header"
  | "element-count-mismatch"
  | "bad-scale"
  | "bad-value"
  | "bad-index"
  | "non-canonical"
  | "non-finite-input";

/**
 * Raised when bytes are not a valid update or optimiser state (malformed, truncated, from another
 * version, or for another model size), and when a pseudo-gradient cannot be encoded because it
 * holds NaN or infinity.
 */
export class CodecError extends Error {
  override readonly name = "CodecError";
  readonly code: CodecErrorCode;

  constructor(code: CodecErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/** The error for a pseudo-gradient holding NaN or infinity, which no update may carry. */
export function nonFiniteInputError(): CodecError {
  return new CodecError(
    "non-finite-input",
    "pseudo-gradient holds NaN or infinity and cannot be encoded; the local training diverged",
  );
}
