// Validates TrainingFederation objects against the CRD's structural schema, the way the API server
// does before CEL: defaults first, then types, enums, ranges, patterns and unknown fields (as with
// kubectl's strict field validation). CEL rules need the API server (or a CEL engine) and are not
// evaluated here. Used by the standalone trainer for its config file, and by the unit tests.
import { Ajv, type ErrorObject, type ValidateFunction } from "ajv";
import { trainingFederationSchema } from "./schema.generated.js";
import type { TrainingFederation } from "./types.generated.js";

/** One problem with one field, named by its path in the object (`spec.contribution.replicas`). */
export interface FieldError {
  path: string;
  message: string;
}

/** The outcome of validating a TrainingFederation. */
export type ValidationResult =
  | { valid: true; object: TrainingFederation }
  | { valid: false; errors: FieldError[] };

type Node = Record<string, unknown>;

/**
 * Rewrites the Kubernetes dialect of OpenAPI v3 (boolean exclusive bounds, `x-kubernetes-*`
 * extensions, unknown fields rejected) into the JSON Schema that Ajv implements.
 */
export function toJsonSchema(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(toJsonSchema);
  if (node === null || typeof node !== "object") return node;
  const out: Node = {};
  for (const [key, value] of Object.entries(node as Node)) {
    if (key.startsWith("x-kubernetes-")) continue;
    if (key === "exclusiveMinimum" || key === "exclusiveMaximum") continue;
    out[key] =
      key === "properties"
        ? Object.fromEntries(Object.entries(value as Node).map(([k, v]) => [k, toJsonSchema(v)]))
        : toJsonSchema(value);
  }
  const source = node as Node;
  if (source["x-kubernetes-int-or-string"] === true) {
    // The pattern of an int-or-string (a quantity) applies to its string form only.
    delete out.pattern;
    out.anyOf = [{ type: "integer" }, { type: "string", pattern: source.pattern }];
  }
  if (source.exclusiveMinimum === true) {
    out.exclusiveMinimum = source.minimum;
    delete out.minimum;
  }
  if (source.exclusiveMaximum === true) {
    out.exclusiveMaximum = source.maximum;
    delete out.maximum;
  }
  if (source.type === "object" && source.properties && source.additionalProperties === undefined) {
    out.additionalProperties = false;
  }
  return out;
}

const rfc3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/i;

let compiled: ValidateFunction | undefined;

function validator(): ValidateFunction {
  if (!compiled) {
    const ajv = new Ajv({
      allErrors: true,
      useDefaults: true,
      strict: true,
      formats: { int64: true, "date-time": rfc3339 },
    });
    const schema = toJsonSchema(trainingFederationSchema) as { properties: Record<string, Node> };
    // The metadata is an ObjectMeta: the schema constrains its name only, and the API server keeps
    // every other ObjectMeta field.
    schema.properties.metadata!.additionalProperties = true;
    compiled = ajv.compile(schema);
  }
  return compiled;
}

/** Turns an Ajv error into a field path and a message in the API server's words. */
function toFieldError(error: ErrorObject): FieldError {
  const segments = error.instancePath
    .split("/")
    .slice(1)
    .map((s) => s.replaceAll("~1", "/").replaceAll("~0", "~"));
  let path = segments.reduce(
    (acc, s) => (/^\d+$/.test(s) ? `${acc}[${s}]` : acc ? `${acc}.${s}` : s),
    "",
  );
  const params = error.params as Record<string, unknown>;
  let message = error.message ?? "is invalid";
  switch (error.keyword) {
    case "required":
      path = path ? `${path}.${params.missingProperty}` : String(params.missingProperty);
      message = "Required value";
      break;
    case "additionalProperties":
      path = path ? `${path}.${params.additionalProperty}` : String(params.additionalProperty);
      message = "field not declared in schema";
      break;
    case "anyOf":
      // The schema's only anyOf is int-or-string, used for resource quantities.
      message = "must be an integer or a quantity string such as 500m or 4Gi";
      break;
    case "enum":
      message = `Unsupported value: supported values: ${(params.allowedValues as unknown[])
        .map((v) => JSON.stringify(v))
        .join(", ")}`;
      break;
  }
  return { path: path || "<root>", message };
}

/**
 * Validates an object against the TrainingFederation schema. On success returns a copy with the
 * schema's defaults applied, as the API server would store it.
 */
export function validateTrainingFederation(input: unknown): ValidationResult {
  const object = structuredClone(input);
  const validate = validator();
  if (validate(object)) return { valid: true, object: object as TrainingFederation };
  const seen = new Set<string>();
  const errors: FieldError[] = [];
  for (const error of validate.errors ?? []) {
    // anyOf (int-or-string) reports one error per branch plus a summary; keep the summary.
    if (error.schemaPath.includes("/anyOf/")) continue;
    const fieldError = toFieldError(error);
    const key = `${fieldError.path}\u0000${fieldError.message}`;
    if (!seen.has(key)) {
      seen.add(key);
      errors.push(fieldError);
    }
  }
  return { valid: false, errors };
}

/** Formats field errors as one line each, for CLI output. */
export function formatFieldErrors(errors: readonly FieldError[]): string {
  return errors.map((e) => `  ${e.path}: ${e.message}`).join("\n");
}
