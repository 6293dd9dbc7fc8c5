// How a federation aggregates its rounds, from its spec: the aggregation rule and the norm bound
// that every replica applies, and that a ledger verifier recomputes the recorded scores with. A
// field that a spec which skipped the API server leaves out takes the CRD's default.
import type { AggregationRule, NormBound, RoundRules } from "../codec/index.js";
import { defaultRadiusMedianMultiple, defaultTrimFraction } from "./canonical.js";
import { crdDefault } from "./defaults.js";
import type { FederationSpec } from "./types.generated.js";

/** The aggregation rule and norm bound of `spec.sync`. */
export function roundRules(spec: FederationSpec): RoundRules {
  const rules: RoundRules = { aggregation: aggregationRule(spec) };
  const bound = spec.sync.aggregation.normBound;
  if (bound) {
    const normBound: NormBound = { action: bound.action === "Drop" ? "drop" : "clip" };
    if (bound.maxNorm !== undefined) normBound.maxNorm = bound.maxNorm;
    if (bound.maxMedianMultiple !== undefined) normBound.medianMultiple = bound.maxMedianMultiple;
    rules.normBound = normBound;
  }
  return rules;
}

/**
 * The aggregation rule of the spec. With TopK compression the coordinate-wise rules vote only with
 * the updates that sent each coordinate (`sparse`): counting unsent coordinates as zeros made the
 * median 2.9 % worse than the mean without any attacker and 40 % worse against a member training
 * on corrupted data at 2 of 7, where the sparse rules stay within 0.6 % and 4.2 %
 * (bench/results/poisoning.json).
 */
function aggregationRule(spec: FederationSpec): AggregationRule {
  const aggregation = spec.sync.aggregation;
  const { tolerate } = aggregation;
  const stated = tolerate === undefined ? {} : { tolerate };
  const sparse = spec.sync.compression.method === "TopK" ? { sparse: true } : {};
  switch (aggregation.rule) {
    case "Mean":
      return { kind: "mean" };
    case "TrimmedMean":
      return tolerate === undefined
        ? {
            kind: "trimmedMean",
            trimFraction: aggregation.trimFraction ?? defaultTrimFraction,
            ...sparse,
          }
        : { kind: "trimmedMean", tolerate, ...sparse };
    case "Median":
      return { kind: "median", ...stated, ...sparse };
    case "CentredClip":
      return {
        kind: "centredClip",
        ...(aggregation.centredClip?.radius === undefined
          ? {
              radiusMedianMultiple:
                aggregation.centredClip?.radiusMedianMultiple ?? defaultRadiusMedianMultiple,
            }
          : { radius: aggregation.centredClip.radius }),
        iterations:
          aggregation.centredClip?.iterations ??
          crdDefault("spec.federation.sync.aggregation.centredClip.iterations"),
        ...stated,
      };
  }
}
