// Public entry point of the update codec, aggregation rules and outer optimiser: pure functions
// on typed arrays shared by the trainer and the federation protocol.
export {
  aggregate,
  applyNormBound,
  centredClip,
  l2Norm,
  mean,
  median,
  roundProtection,
  trimmedMean,
} from "./aggregate.js";
export { accumulateUpdate, decodeUpdate, encodeUpdate, UpdateEncoder } from "./codec.js";
export { CodecError, type CodecErrorCode } from "./errors.js";
export { ErrorFeedback } from "./feedback.js";
export {
  declaredElementCount,
  encodedByteLength,
  FORMAT_VERSION,
  MAX_ELEMENTS,
  readUpdateHeader,
  topKCount,
} from "./format.js";
export { DILOCO_OUTER, OuterOptimizer } from "./outer.js";
export {
  aggregateRound,
  type RoundAggregate,
  RoundAuditor,
  type RoundRules,
  type UpdateAssessment,
} from "./round.js";
export {
  type MemberReputation,
  REPUTATION_WEIGHT,
  ReputationBook,
  scoreUpdates,
  type UpdateScore,
} from "./score.js";
export type * from "./types.js";
