// Aggregation rules: combine a round's decoded updates, given in the canonical order the round's
// commit names, into one pseudo-gradient. Every member must get bit-identical results, so each
// rule fixes its arithmetic: sums run over updates in the given order (and over coordinates in
// ascending index order for norms), in float64, and each output coordinate is rounded to float32
// once. JavaScript numbers are IEEE 754 doubles with no fused multiply-add, so this is portable.
import type { AggregationRule, NormBound, NormBoundReport, RoundProtection } from "./types.js";

/** Coordinates summed per block in `mean`, so the float64 accumulators stay in L1 cache. */
const MEAN_BLOCK = 4096;

/** Combines updates by `rule`; updates must be finite and of one length. */
export function aggregate(updates: readonly Float32Array[], rule: AggregationRule): Float32Array {
  switch (rule.kind) {
    case "mean":
      return mean(updates);
    case "trimmedMean": {
      const { required, provided } = roundProtection(rule, updates.length);
      if (!rule.sparse) return trimmedMean(updates, provided);
      return sparseCoordinateWise(updates, (column, s) =>
        trimmedOf(column, s, Math.min(required, Math.floor((s - 1) / 2))),
      );
    }
    case "median":
      return rule.sparse ? sparseCoordinateWise(updates, medianOf64) : median(updates);
    case "centredClip": {
      if ((rule.radius === undefined) === (rule.radiusMedianMultiple === undefined)) {
        throw new RangeError(
          "centred clipping needs exactly one of radius and radiusMedianMultiple",
        );
      }
      const radius =
        rule.radius ??
        ({ medianMultiple: rule.radiusMedianMultiple } as { medianMultiple: number });
      return centredClip(updates, radius, rule.iterations, rule.reference);
    }
  }
}

function requireUpdates(updates: readonly Float32Array[]): number {
  const first = updates[0];
  if (first === undefined) throw new RangeError("cannot aggregate a round with no updates");
  for (let j = 1; j < updates.length; j++) {
    if (updates[j]!.length !== first.length) {
      throw new RangeError(
        `update ${j} has ${updates[j]!.length} elements, update 0 has ${first.length}`,
      );
    }
  }
  return first.length;
}

/** Coordinate-wise mean: fround((Σ_j u_j[i]) / N), summed in update order in float64. */
export function mean(updates: readonly Float32Array[]): Float32Array {
  const n = requireUpdates(updates);
  const count = updates.length;
  const out = new Float32Array(n);
  const sums = new Float64Array(Math.min(n, MEAN_BLOCK));
  for (let start = 0; start < n; start += MEAN_BLOCK) {
    const end = Math.min(n, start + MEAN_BLOCK);
    sums.fill(0);
    for (const update of updates) {
      for (let i = start; i < end; i++) sums[i - start] = sums[i - start]! + update[i]!;
    }
    for (let i = start; i < end; i++) out[i] = sums[i - start]! / count;
  }
  return out;
}

/** Sorts values[0..count) ascending; insertion sort, as count is the number of updates (small). */
function sortSmall(values: Float64Array, count: number): void {
  for (let a = 1; a < count; a++) {
    const v = values[a]!;
    let b = a - 1;
    while (b >= 0 && values[b]! > v) {
      values[b + 1] = values[b]!;
      b--;
    }
    values[b + 1] = v;
  }
}

/**
 * What `rule` is asked to withstand in a round of `count` updates and what it can: a trimmed
 * mean trims min(required, ⌊(N − 1)/2⌋) values at each end, so at least one value is left.
 */
export function roundProtection(rule: AggregationRule, count: number): RoundProtection {
  if (!(Number.isInteger(count) && count >= 0)) {
    throw new RangeError(`update count ${count} must be a non-negative integer`);
  }
  const majority = Math.max(0, Math.floor((count - 1) / 2));
  let required: number;
  switch (rule.kind) {
    case "mean":
      return { required: 0, provided: 0, unprotected: false };
    case "trimmedMean": {
      const { tolerate, trimFraction } = rule;
      if ((tolerate === undefined) === (trimFraction === undefined)) {
        throw new RangeError("a trimmed mean needs exactly one of tolerate and trimFraction");
      }
      if (trimFraction !== undefined && !(trimFraction > 0 && trimFraction < 0.5)) {
        throw new RangeError(`trimFraction ${trimFraction} must be in (0, 0.5)`);
      }
      required = tolerate ?? Math.ceil(trimFraction! * count);
      break;
    }
    default:
      required = rule.tolerate ?? 0;
  }
  if (!(Number.isInteger(required) && required >= 0)) {
    throw new RangeError(`tolerate ${required} must be a non-negative integer`);
  }
  const provided = rule.kind === "trimmedMean" ? Math.min(required, majority) : majority;
  return { required, provided, unprotected: provided < required };
}

/**
 * Coordinate-wise trimmed mean: per coordinate, drop the `trim` smallest and `trim` largest
 * values and average the rest (ascending order, float64).
 */
export function trimmedMean(updates: readonly Float32Array[], trim: number): Float32Array {
  const n = requireUpdates(updates);
  const count = updates.length;
  if (!(Number.isInteger(trim) && trim >= 0 && 2 * trim < count)) {
    throw new RangeError(`cannot trim ${trim} values at each end of ${count}`);
  }
  const kept = count - 2 * trim;
  const column = new Float64Array(count);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < count; j++) column[j] = updates[j]![i]!;
    sortSmall(column, count);
    let sum = 0;
    for (let j = trim; j < count - trim; j++) sum += column[j]!;
    out[i] = sum / kept;
  }
  return out;
}

/** Mean of column[trim..s − trim) once column[0..s) is sorted in place. */
function trimmedOf(column: Float64Array, s: number, trim: number): number {
  sortSmall(column, s);
  let sum = 0;
  for (let j = trim; j < s - trim; j++) sum += column[j]!;
  return sum / (s - 2 * trim);
}

/** Median of column[0..s), sorted in place; the mean of the middle two for an even s. */
function medianOf64(column: Float64Array, s: number): number {
  sortSmall(column, s);
  const middle = s >> 1;
  return s % 2 === 1 ? column[middle]! : (column[middle - 1]! + column[middle]!) / 2;
}

/**
 * A coordinate-wise rule over the updates that sent each coordinate (nonzero values), scaled by
 * senders / N (the `sparse` option of AggregationRule).
 */
function sparseCoordinateWise(
  updates: readonly Float32Array[],
  rule: (column: Float64Array, senders: number) => number,
): Float32Array {
  const n = requireUpdates(updates);
  const count = updates.length;
  const column = new Float64Array(count);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = 0; j < count; j++) {
      const v = updates[j]![i]!;
      if (v !== 0) column[s++] = v;
    }
    if (s > 0) out[i] = (rule(column, s) * s) / count;
  }
  return out;
}

/** Coordinate-wise median; for an even count, the mean of the two middle values. */
export function median(updates: readonly Float32Array[]): Float32Array {
  const n = requireUpdates(updates);
  const count = updates.length;
  const column = new Float64Array(count);
  const out = new Float32Array(n);
  const middle = count >> 1;
  const odd = count % 2 === 1;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < count; j++) column[j] = updates[j]![i]!;
    sortSmall(column, count);
    out[i] = odd ? column[middle]! : (column[middle - 1]! + column[middle]!) / 2;
  }
  return out;
}

/** L2 norm, squares summed in ascending index order in float64. */
export function l2Norm(update: Float32Array): number {
  let sum = 0;
  for (let i = 0; i < update.length; i++) sum += update[i]! * update[i]!;
  return Math.sqrt(sum);
}

/**
 * Centred clipping (Karimireddy, He & Jaggi, 2021): starting from `reference` (zero when absent;
 * as published, the previous round's aggregate), repeat `iterations` times
 *   v ← v + (1/N) Σ_j (u_j − v) · min(1, τ / ‖u_j − v‖),
 * so no single update can move the result by more than τ / N per iteration. τ is `radius`, or
 * `medianMultiple` × the median of the updates' distances from the reference.
 */
export function centredClip(
  updates: readonly Float32Array[],
  radius: number | { medianMultiple: number },
  iterations: number,
  reference?: Float32Array,
): Float32Array {
  const n = requireUpdates(updates);
  const relative = typeof radius !== "number";
  const given = relative ? radius.medianMultiple : radius;
  if (!(given > 0 && Number.isFinite(given))) {
    throw new RangeError(`centred clipping radius ${given} must be positive and finite`);
  }
  if (!Number.isInteger(iterations) || iterations < 1) {
    throw new RangeError(`centred clipping iterations ${iterations} must be a positive integer`);
  }
  if (reference !== undefined && reference.length !== n) {
    throw new RangeError(`reference has ${reference.length} elements, updates have ${n}`);
  }
  const count = updates.length;
  const centre = reference === undefined ? new Float32Array(n) : Float32Array.from(reference);
  const weights = new Float64Array(count);
  const distances = new Float64Array(count);
  let tau = relative ? Number.NaN : given;
  for (let iteration = 0; iteration < iterations; iteration++) {
    for (let j = 0; j < count; j++) {
      const update = updates[j]!;
      let sum = 0;
      for (let i = 0; i < n; i++) {
        const d = update[i]! - centre[i]!;
        sum += d * d;
      }
      distances[j] = Math.sqrt(sum);
    }
    if (Number.isNaN(tau)) tau = given * medianOf([...distances]);
    for (let j = 0; j < count; j++) {
      const distance = distances[j]!;
      weights[j] = distance > tau ? tau / distance : 1;
    }
    for (let i = 0; i < n; i++) {
      const c = centre[i]!;
      let step = 0;
      for (let j = 0; j < count; j++) step += weights[j]! * (updates[j]![i]! - c);
      centre[i] = c + step / count;
    }
  }
  return centre;
}

/**
 * Norm-bound pre-filter: every update whose L2 norm exceeds the bound (absolute, or a multiple of
 * this round's median norm) is dropped, or with action "clip" scaled onto the bound. An update
 * whose norm is not finite is always dropped. Kept updates keep their relative order; the report
 * names everyone affected by input position.
 */
export function applyNormBound(
  updates: readonly Float32Array[],
  bound: NormBound,
): { updates: Float32Array[]; report: NormBoundReport } {
  requireUpdates(updates);
  const hasAbsolute = bound.maxNorm !== undefined;
  const hasRelative = bound.medianMultiple !== undefined;
  if (hasAbsolute === hasRelative) {
    throw new RangeError("a norm bound needs exactly one of maxNorm and medianMultiple");
  }
  const limit = hasAbsolute ? bound.maxNorm! : bound.medianMultiple!;
  if (!(limit >= 0 && Number.isFinite(limit))) {
    throw new RangeError(`norm bound ${limit} must be non-negative and finite`);
  }
  const norms = updates.map(l2Norm);
  const maxNorm = hasAbsolute ? limit : limit * medianOf(norms);
  const report: NormBoundReport = { bound: maxNorm, norms, kept: [], dropped: [], clipped: [] };
  const kept: Float32Array[] = [];
  for (let j = 0; j < updates.length; j++) {
    const update = updates[j]!;
    const norm = norms[j]!;
    if (norm <= maxNorm) {
      kept.push(update);
      report.kept.push(j);
    } else if (bound.action === "clip" && Number.isFinite(norm)) {
      const scale = maxNorm / norm;
      const clipped = new Float32Array(update.length);
      for (let i = 0; i < update.length; i++) clipped[i] = update[i]! * scale;
      kept.push(clipped);
      report.kept.push(j);
      report.clipped.push(j);
    } else {
      report.dropped.push(j);
    }
  }
  return { updates: kept, report };
}

/** Median of a short list; typed-array sort orders NaN last, so even a NaN norm sorts the same everywhere. */
function medianOf(values: readonly number[]): number {
  const sorted = Float64Array.from(values).sort();
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}
