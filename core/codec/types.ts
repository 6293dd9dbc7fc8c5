/** Compression method of an update, as named in the federation spec. */
export type CodecMethod = "none" | "int8" | "topk";

/** Dense fp32: the update as it is, the baseline every other method is measured against. */
export interface NoneParams {
  method: "none";
}

/** Dense int8 with one fp32 scale per chunk of `chunkSize` consecutive elements. */
export interface Int8Params {
  method: "int8";
  /** Elements sharing one scale (e.g. 256 or 4096); smaller chunks track layer scales better. */
  chunkSize: number;
}

/** Value widths top-k can send: one sign bit plus 1, 3 or 7 magnitude bits. */
export type TopKBits = 2 | 4 | 8;

/** The `k = round(density * n)` largest magnitudes, with low-bit values and packed indices. */
export interface TopKParams {
  method: "topk";
  /** Fraction of elements sent, in (0, 1]. */
  density: number;
  /** Bits per sent value. */
  bits: TopKBits;
  /** Sent values sharing one (offset, step) magnitude scale, e.g. 256. */
  groupSize: number;
}

/** How a worker compresses its pseudo-gradient for a round. */
export type CodecParams = NoneParams | Int8Params | TopKParams;

/** What the header of an encoded update declares, after validation. */
export interface UpdateHeader {
  /** Wire format version. */
  version: number;
  method: CodecMethod;
  /** Length of the pseudo-gradient the update applies to. */
  elementCount: number;
  /** int8: elements per scale chunk; topk: sent values per scale group; none: 0. */
  chunkSize: number;
  /** topk: bits per sent value; otherwise 0. */
  bits: number;
  /** topk: number of sent elements; otherwise 0. */
  sentCount: number;
  /** Total encoded length in bytes. */
  byteLength: number;
}

/**
 * How a round's updates are combined into one pseudo-gradient, coordinate by coordinate.
 * `tolerate`, where a rule has it, is the organiser's stated protection: how many faulty updates
 * a round must withstand. A round whose update count cannot give it is flagged (see
 * `roundProtection`).
 */
export type AggregationRule =
  | { kind: "mean" }
  | {
      kind: "trimmedMean";
      /**
       * Updates to tolerate: this many values are trimmed at each end of every coordinate.
       * Exactly one of `tolerate` and `trimFraction` is set.
       */
      tolerate?: number;
      /**
       * Fraction of the round's updates to tolerate, rounded up: ⌈trimFraction · N⌉ values are
       * trimmed at each end of every coordinate, in (0, 0.5).
       */
      trimFraction?: number;
      /**
       * For top-k updates, whose unsent coordinates decode as zeros that are not votes: per
       * coordinate, run the rule over the s updates that sent a nonzero value (trimming
       * min(required, ⌊(s − 1)/2⌋) at each end) and scale its result by s / N, so that without
       * outliers it is the mean's value, Σ / N. A coordinate nobody sent stays zero.
       */
      sparse?: boolean;
    }
  | {
      kind: "median";
      tolerate?: number;
      /** Over the updates that sent each coordinate, as for the trimmed mean. */
      sparse?: boolean;
    }
  | {
      kind: "centredClip";
      /** Clipping radius τ in L2 norm; exactly one of `radius` and `radiusMedianMultiple`. */
      radius?: number;
      /**
       * τ as a multiple of the median L2 distance of the round's updates from the reference (at
       * the first iteration): relative to the honest spread, whatever the updates' scale.
       */
      radiusMedianMultiple?: number;
      /** Fixed-point iterations; 1–3 is usual. */
      iterations: number;
      /**
       * Centre of the first iteration: the previous round's aggregate, as published (the trainer
       * passes it); the zero vector when absent.
       */
      reference?: Float32Array;
      tolerate?: number;
    };

/** What a rule is asked to withstand in one round, and what that round's update count allows. */
export interface RoundProtection {
  /** Faulty updates the rule must withstand (stated, or ⌈trimFraction · N⌉); 0 for the mean. */
  required: number;
  /**
   * Faulty updates it can withstand with N updates: no rule that keeps a majority's say survives
   * ⌈N/2⌉ or more, so at most ⌊(N − 1)/2⌋, and 0 for the mean.
   */
  provided: number;
  /** provided < required: the round did not get the stated protection. */
  unprotected: boolean;
}

/** Pre-filter against oversized updates: a bound on each update's L2 norm. */
export interface NormBound {
  /** Drop an update over the bound, or scale it down onto the bound. */
  action: "drop" | "clip";
  /** Absolute bound; exactly one of `maxNorm` and `medianMultiple` must be set. */
  maxNorm?: number;
  /** Bound as a multiple of the median norm of this round's updates. */
  medianMultiple?: number;
}

/** What the norm bound did, by position in the caller's canonical order, for every member to see. */
export interface NormBoundReport {
  /** The bound that was applied. */
  bound: number;
  /** L2 norm of every update, in input order. */
  norms: number[];
  /** Input positions of the updates that were kept (clipped or not), ascending. */
  kept: number[];
  /** Input positions of the updates that were dropped, ascending. */
  dropped: number[];
  /** Input positions of the updates that were scaled down onto the bound, ascending. */
  clipped: number[];
}

/** Settings of the outer optimiser: SGD with (Nesterov) momentum, as in DiLoCo. */
export interface OuterOptimizerConfig {
  /** Outer learning rate; DiLoCo uses 0.7. */
  learningRate: number;
  /** Momentum μ; DiLoCo uses 0.9. */
  momentum: number;
  /** Nesterov momentum (DiLoCo) or heavy-ball momentum. */
  nesterov: boolean;
}
