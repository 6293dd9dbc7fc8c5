// One round's aggregation as every replica computes it, and as an auditor recomputes it from the
// stored updates: norm bound, aggregation rule (centred clipping from the previous aggregate),
// and each update's assessment against the aggregate. The trainer applies the aggregate with its
// outer optimiser; RoundAuditor keeps only what the next round's aggregation needs.
import { aggregate, applyNormBound, roundProtection } from "./aggregate.js";
import { decodeUpdate } from "./codec.js";
import { scoreUpdates, type UpdateScore } from "./score.js";
import type { AggregationRule, NormBound, RoundProtection } from "./types.js";

/** The rules a federation aggregates its rounds by (from its spec). */
export interface RoundRules {
  aggregation: AggregationRule;
  normBound?: NormBound;
}

/** What a round's aggregation made of one update. */
export interface UpdateAssessment extends UpdateScore {
  /** What the norm bound did to it: nothing, scaled it down, or left it out. */
  bound: "kept" | "clipped" | "dropped";
}

/** A round's aggregate and what it made of each update. */
export interface RoundAggregate {
  /** The aggregate; undefined when no update was left to aggregate. */
  aggregated: Float32Array | undefined;
  /** Updates aggregated (after the norm bound). */
  included: number;
  /** What the norm bound did to each update, in input order (also without an aggregate). */
  bound: UpdateAssessment["bound"][];
  /** One per update in input order, scored before the norm bound; empty without an aggregate. */
  assessments: UpdateAssessment[];
  /** The stated protection against what the included updates allowed. */
  protection: RoundProtection;
}

/**
 * Aggregates one round's decoded updates, given in the commit's order. `reference` is the
 * previous round's aggregate, from which centred clipping starts (zeros before the first).
 */
export function aggregateRound(
  decoded: readonly Float32Array[],
  rules: RoundRules,
  reference: Float32Array | null,
): RoundAggregate {
  let updates: readonly Float32Array[] = decoded;
  const bound: UpdateAssessment["bound"][] = decoded.map(() => "kept");
  if (rules.normBound && updates.length > 0) {
    const { updates: kept, report } = applyNormBound(updates, rules.normBound);
    updates = kept;
    for (const j of report.clipped) bound[j] = "clipped";
    for (const j of report.dropped) bound[j] = "dropped";
  }
  const rule: AggregationRule =
    rules.aggregation.kind === "centredClip" && reference
      ? { ...rules.aggregation, reference }
      : rules.aggregation;
  const protection = roundProtection(rules.aggregation, updates.length);
  if (updates.length === 0)
    return { aggregated: undefined, included: 0, bound, assessments: [], protection };
  const aggregated = aggregate(updates, rule);
  const assessments = scoreUpdates(decoded, aggregated).map((score, j) => ({
    bound: bound[j]!,
    ...score,
  }));
  return { aggregated, included: updates.length, bound, assessments, protection };
}

/**
 * Recomputes the assessments of a federation's rounds from their stored updates, round after
 * round from the first, without the model: what a ledger verifier checks the scores recorded in
 * the commits against. It keeps the previous aggregate as a replica's outer optimiser does.
 */
export class RoundAuditor {
  private readonly lastAggregate: Float32Array | null;

  constructor(
    readonly elementCount: number,
    readonly rules: RoundRules,
  ) {
    this.lastAggregate =
      rules.aggregation.kind === "centredClip" ? new Float32Array(elementCount) : null;
  }

  /** Throws when a replica could not use this payload (it does not decode for this model). */
  validate(payload: Uint8Array): void {
    decodeUpdate(payload, this.elementCount);
  }

  /** Aggregates the round's usable payloads, in commit order; returns their assessments. */
  apply(payloads: readonly Uint8Array[]): UpdateAssessment[] {
    const decoded = payloads.map((payload) => decodeUpdate(payload, this.elementCount));
    const round = aggregateRound(decoded, this.rules, this.lastAggregate);
    if (round.aggregated) this.lastAggregate?.set(round.aggregated);
    return round.assessments;
  }
}
