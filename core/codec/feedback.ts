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
}
