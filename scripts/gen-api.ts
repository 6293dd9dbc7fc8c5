// Generates the TypeScript side of the API and its reference from the CRD, so they cannot drift:
//   core/api/schema.generated.ts  the v1alpha1 openAPIV3Schema as a typed constant
//   core/api/types.generated.ts   interfaces for TrainingFederation as the API server stores it
//   docs/api.md                   the field reference
// Run `npm run gen:api` after editing crds/; scripts/gen-api.test.ts fails when they are stale.
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { compile, type JSONSchema } from "json-schema-to-typescript";
import { parse } from "yaml";
import { crdPath, repoRoot } from "./repository.js";

export { crdPath };

export const schemaModulePath = path.join(repoRoot, "core", "api", "schema.generated.ts");
export const typesModulePath = path.join(repoRoot, "core", "api", "types.generated.ts");
export const referencePath = path.join(repoRoot, "docs", "api.md");

type Schema = Record<string, unknown> & {
  type?: string;
  properties?: Record<string, Schema>;
  items?: Schema;
  additionalProperties?: Schema | boolean;
  required?: string[];
  default?: unknown;
  description?: string;
  enum?: unknown[];
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: boolean;
  exclusiveMaximum?: boolean;
  pattern?: string;
  minItems?: number;
  maxItems?: number;
  maxLength?: number;
  "x-kubernetes-validations"?: { rule: string; message: string }[];
};

/**
 * Interface names for nested objects, by JSON path from the root; any other object is named after
 * its property (PascalCase, singular for list items).
 */
const typeNames: Record<string, string> = {
  spec: "TrainingFederationSpec",
  "spec.federation": "FederationSpec",
  "spec.federation.model": "ModelSpec",
  "spec.federation.model.mlp": "MlpSettings",
  "spec.federation.model.charTransformer": "CharTransformerSettings",
  "spec.federation.data": "DataSpec",
  "spec.federation.data.synthetic": "SyntheticData",
  "spec.federation.data.text": "TextData",
  "spec.federation.training": "TrainingSchedule",
  "spec.federation.sync": "SyncSpec",
  "spec.federation.sync.compression.int8": "Int8Settings",
  "spec.federation.sync.compression.topK": "TopKSettings",
  "spec.federation.sync.aggregation.centredClip": "CentredClipSettings",
  "spec.federation.membership.members[]": "AllowedMember",
  "spec.contribution": "ContributionSpec",
  "spec.contribution.resources": "ResourceRequirements",
  "spec.transport": "TransportSpec",
  "spec.transport.credentialsSecretRef": "SecretReference",
  "spec.transport.tlsSecretRef": "SecretReference",
  status: "TrainingFederationStatus",
  "status.conditions[]": "Condition",
  "status.members[]": "MemberStatus",
  "status.trainers": "TrainerCounts",
  "status.lastCheckpoint": "CheckpointReference",
};

function pascal(name: string): string {
  return name.charAt(0).toUpperCase() + name.slice(1);
}

function singular(name: string): string {
  return name.endsWith("s") ? name.slice(0, -1) : name;
}

/** Reads the v1alpha1 openAPIV3Schema out of the CRD text. */
export function extractSchema(crdText: string): Schema {
  const crd = parse(crdText) as {
    spec: { versions: { name: string; schema: { openAPIV3Schema: Schema } }[] };
  };
  const version = crd.spec.versions.find((v) => v.name === "v1alpha1");
  if (!version) throw new Error(`${crdPath}: no v1alpha1 version`);
  return version.schema.openAPIV3Schema;
}

/**
 * Rewrites the structural schema into what json-schema-to-typescript reads: names for nested
 * objects, fields with a default marked required (the API server fills them in), metadata typed by
 * the hand-written ObjectMeta, and no additional properties where the schema has none.
 */
function forTypes(
  schema: Schema,
  at: string,
  name: string,
  named = new Map<string, string>(),
): JSONSchema {
  const out: Record<string, unknown> = { ...schema };
  delete out["x-kubernetes-validations"];
  delete out.default;
  if (at === "metadata") return { description: "Standard object metadata.", tsType: "ObjectMeta" };
  if (schema.type === "object" && schema.properties) {
    const title = typeNames[at] ?? pascal(name);
    // Two fields of one shape (like the two Secret references) share one interface.
    const shape = JSON.stringify({ ...schema, description: undefined });
    if (named.get(title) === shape) return { description: schema.description, tsType: title };
    named.set(title, shape);
    out.title = title;
    const properties: Record<string, JSONSchema> = {};
    const required = new Set(schema.required ?? []);
    for (const [key, child] of Object.entries(schema.properties)) {
      properties[key] = forTypes(child, at ? `${at}.${key}` : key, key, named);
      if (child.default !== undefined) required.add(key);
    }
    out.properties = properties;
    out.required = [...required];
    out.additionalProperties = false;
  } else if (schema.type === "object" && typeof schema.additionalProperties === "object") {
    out.additionalProperties = forTypes(schema.additionalProperties, `${at}{}`, name, named);
  }
  if (schema.type === "array" && schema.items) {
    out.items = forTypes(schema.items, `${at}[]`, singular(name), named);
  }
  return out as JSONSchema;
}

function typeLabel(schema: Schema): string {
  if (schema["x-kubernetes-int-or-string"]) return "quantity";
  if (schema.type === "array") return `[]${schema.items ? typeLabel(schema.items) : "any"}`;
  if (schema.type === "object" && typeof schema.additionalProperties === "object") {
    return `map[string]${typeLabel(schema.additionalProperties)}`;
  }
  return schema.type ?? "any";
}

function constraints(schema: Schema): string[] {
  const out: string[] = [];
  if (schema.enum) out.push(`one of ${schema.enum.map((v) => `\`${v}\``).join(", ")}`);
  if (schema.minimum !== undefined) {
    out.push(`${schema.exclusiveMinimum ? ">" : "≥"} ${schema.minimum}`);
  }
  if (schema.maximum !== undefined) {
    out.push(`${schema.exclusiveMaximum ? "<" : "≤"} ${schema.maximum}`);
  }
  if (schema.minItems !== undefined) out.push(`at least ${schema.minItems} items`);
  if (schema.maxItems !== undefined) out.push(`at most ${schema.maxItems} items`);
  if (schema.maxLength !== undefined) out.push(`at most ${schema.maxLength} characters`);
  if (schema.pattern && !schema["x-kubernetes-int-or-string"]) {
    out.push(`matches \`${schema.pattern}\``);
  }
  for (const rule of schema["x-kubernetes-validations"] ?? []) out.push(rule.message);
  return out;
}

/** Renders the field reference (docs/api.md): every field with its type, default and rules. */
export function renderReference(schema: Schema): string {
  const rows: string[] = [];
  const visit = (node: Schema, at: string, required: boolean): void => {
    if (at) {
      const cells = [
        `\`${at}\``,
        typeLabel(node),
        required ? "yes" : "",
        node.default === undefined ? "" : `\`${JSON.stringify(node.default)}\``,
        [node.description ?? "", ...constraints(node)]
          .filter(Boolean)
          .join(" · ")
          .replaceAll("|", "\\|")
          .replaceAll("\n", " "),
      ];
      rows.push(`| ${cells.join(" | ")} |`);
    }
    const requiredKeys = new Set(node.required ?? []);
    for (const [key, child] of Object.entries(node.properties ?? {})) {
      if (!at && (key === "apiVersion" || key === "kind" || key === "metadata")) continue;
      visit(child, at ? `${at}.${key}` : key, requiredKeys.has(key));
    }
    if (node.items?.properties) {
      for (const [key, child] of Object.entries(node.items.properties)) {
        visit(child, `${at}[].${key}`, (node.items.required ?? []).includes(key));
      }
    }
  };
  visit(schema, "", true);
  return `<!-- Generated from crds/trainingfederations.fedtrain.dev.yaml by scripts/gen-api.ts (npm run gen:api). -->
# TrainingFederation API reference (fedtrain.dev/v1alpha1)

${schema.description}

\`kubectl explain trainingfederation.spec --recursive\` shows the same on a cluster. Fields marked
required must be set; a field with a default is filled in by the API server when left out. The rules
are enforced by the API server (schema and CEL) when a manifest is applied.

| Field | Type | Required | Default | Description and rules |
| --- | --- | --- | --- | --- |
${rows.join("\n")}
`;
}

const banner = `// Generated from crds/trainingfederations.fedtrain.dev.yaml by scripts/gen-api.ts. Do not edit:
// change the CRD and run \`npm run gen:api\`.`;

/** Renders both generated modules from the CRD text. */
export async function renderApiModules(
  crdText: string,
): Promise<{ schema: string; types: string; reference: string }> {
  const schema = extractSchema(crdText);
  const schemaModule = `${banner}

/** The openAPIV3Schema of TrainingFederation v1alpha1, exactly as in the CRD. */
export const trainingFederationSchema = ${JSON.stringify(schema, null, 2)} as const;
`;
  const typeSchema = forTypes(schema, "", "TrainingFederation");
  typeSchema.title = "TrainingFederation";
  const types = await compile(typeSchema, "TrainingFederation", {
    bannerComment: `${banner}\n\nimport type { ObjectMeta } from "./meta.js";`,
    additionalProperties: false,
    strictIndexSignatures: true,
    ignoreMinAndMaxItems: true,
    unknownAny: true,
    style: { printWidth: 100, singleQuote: false, trailingComma: "all" },
  });
  return { schema: schemaModule, types, reference: renderReference(schema) };
}

async function main(): Promise<void> {
  const rendered = await renderApiModules(await readFile(crdPath, "utf8"));
  await writeFile(schemaModulePath, rendered.schema);
  await writeFile(typesModulePath, rendered.types);
  await writeFile(referencePath, rendered.reference);
  for (const file of [schemaModulePath, typesModulePath, referencePath]) {
    console.log(`wrote ${path.relative(repoRoot, file)}`);
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1]))
  await main();
