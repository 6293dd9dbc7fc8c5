// Names that identify the TrainingFederation resource in the Kubernetes API.

/** API group of fedtrain's resources. */
export const group = "fedtrain.dev";
/** The served and stored API version. */
export const version = "v1alpha1";
/** `apiVersion` of a TrainingFederation. */
export const apiVersion = `${group}/${version}`;
/** `kind` of a TrainingFederation. */
export const kind = "TrainingFederation";
/** URL path segment of the resource. */
export const plural = "trainingfederations";

/** Condition types a TrainingFederation's status may carry; Ready summarises the others. */
export const conditionTypes = [
  "Ready",
  "Valid",
  "Joined",
  "TrainersReady",
  "Synced",
  "Degraded",
] as const;
/** One of the condition types fedtrain writes. */
export type ConditionType = (typeof conditionTypes)[number];
