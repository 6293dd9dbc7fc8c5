// How each update of a round relates to what the round aggregated: the same numbers on every
// member (sums in ascending index order, in float64), so that an attacker is visible to all, not
// only through the norm bound.
import { l2Norm } from "./aggregate.js";

/** One update's relation to its round's aggregate. */
export interface UpdateScore {
  /** cos(update, aggregate); 0 when either is the zero vector. */
  cosine: number;
  /** ‖update − aggregate‖ / ‖aggregate‖ (infinite for a nonzero update and a zero aggregate). */
  relativeDistance: number;
  /** ‖update‖ / ‖aggregate‖, with the same convention. */
  relativeNorm: number;
}

/** Scores every update against the aggregate, in the updates' order. */
export function scoreUpdates(
  updates: readonly Float32Array[],
  aggregate: Float32Array,
): UpdateScore[] {
  const aggregateNorm = l2Norm(aggregate);
  const ratio = (value: number): number =>
    aggregateNorm > 0 ? value / aggregateNorm : value > 0 ? Number.POSITIVE_INFINITY : 0;
  return updates.map((update, j) => {
    if (update.length !== aggregate.length) {
      throw new RangeError(
        `update ${j} has ${update.length} elements, the aggregate has ${aggregate.length}`,
      );
    }
    let dot = 0;
    let squares = 0;
    let distance = 0;
    for (let i = 0; i < update.length; i++) {
      const u = update[i]!;
      const a = aggregate[i]!;
      dot += u * a;
      squares += u * u;
      distance += (u - a) * (u - a);
    }
    const norm = Math.sqrt(squares);
    return {
      cosine: norm > 0 && aggregateNorm > 0 ? dot / (norm * aggregateNorm) : 0,
      relativeDistance: ratio(Math.sqrt(distance)),
      relativeNorm: ratio(norm),
    };
  });
}
