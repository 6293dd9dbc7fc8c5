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

/** Weight of the newest round in a member's reputation (an exponential moving average). */
export const REPUTATION_WEIGHT = 0.2;

/** A member's update cosine over the rounds scored. */
export interface MemberReputation {
  memberId: string;
  /** Rounds in which the member's updates were scored. */
  rounds: number;
  /** The lowest cosine of its updates in the last round scored. */
  cosine: number;
  /** That cosine averaged over the rounds, exponentially (REPUTATION_WEIGHT on the newest). */
  reputation: number;
}

/** Each member's reputation, kept from round to round. */
export class ReputationBook {
  private readonly members = new Map<string, MemberReputation>();

  /**
   * Adds one round's scores (several updates of a member count with their lowest cosine) and
   * returns that round's cosine per member.
   */
  record(scores: readonly { member: string; cosine: number }[]): Map<string, number> {
    const lowest = new Map<string, number>();
    for (const { member, cosine } of scores)
      lowest.set(member, Math.min(lowest.get(member) ?? 1, cosine));
    for (const [memberId, cosine] of lowest) {
      const before = this.members.get(memberId);
      this.members.set(memberId, {
        memberId,
        rounds: (before?.rounds ?? 0) + 1,
        cosine,
        reputation: before
          ? (1 - REPUTATION_WEIGHT) * before.reputation + REPUTATION_WEIGHT * cosine
          : cosine,
      });
    }
    return lowest;
  }

  get(memberId: string): MemberReputation | undefined {
    return this.members.get(memberId);
  }

  /** Every member's reputation, by member id. */
  all(): MemberReputation[] {
    return [...this.members.values()].sort((a, b) => (a.memberId < b.memberId ? -1 : 1));
  }
}
