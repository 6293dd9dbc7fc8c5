// The TrainingFederation API shared by the operator, the trainer and the tools: generated types,
// the schema, resource names and validation.

export {
  canonicalFederation,
  canonicalJson,
  defaultRadiusMedianMultiple,
  defaultTrimFraction,
  federationSpecHash,
  specHashBytes,
} from "./canonical.js";
export {
  applyDefaults,
  type CrdDefault,
  crdDefault,
  type DefaultedPath,
  schemaAt,
} from "./defaults.js";
export type { ObjectMeta, OwnerReference } from "./meta.js";
export * from "./resource.js";
export { roundRules } from "./round-rules.js";
export { trainingFederationSchema } from "./schema.generated.js";
export { apiTime, apiTimeMicro } from "./time.js";
export type * from "./types.generated.js";
export {
  type FieldError,
  formatFieldErrors,
  type ValidationResult,
  validateTrainingFederation,
} from "./validation.js";
