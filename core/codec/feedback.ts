/**
 * Error feedback of one worker: the part of its pseudo-gradients that compression has not sent
 * yet. Each encode adds it to the new pseudo-gradient and keeps exactly what was left out, so
 * nothing is lost, only delayed to a later round.
 */
export class ErrorFeedback {
  /** Unsent remainder, one entry per model parameter. */
  readonly residual: Float32Array;

  constructor(elementCount: number) {
    this.residual = new Float32Array(elementCount);
  }

  /** Forgets the remainder, e.g. after the worker loaded a checkpoint from another worker. */
  reset(): void {
    this.residual.fill(0);
  }

  /** A copy of the remainder, for a checkpoint. */
  exportResidual(): Float32Array {
    return Float32Array.from(this.residual);
  }

  /**
   * Replaces the remainder with a checkpointed one (from {@link exportResidual}), which must have
   * one finite value per parameter; on a RangeError the remainder is left as it was.
   */
  importResidual(residual: Float32Array): void {
    if (residual.length !== this.residual.length) {
      throw new RangeError(
        `error-feedback residual of ${residual.length} values for ${this.residual.length} parameters`,
      );
    }
    for (let i = 0; i < residual.length; i++) {
      if (!Number.isFinite(residual[i]!)) {
        throw new RangeError(`error-feedback residual value ${i} is not finite`);
      }
    }
    this.residual.set(residual);
  }
}
