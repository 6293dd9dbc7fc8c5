// Defaulting from the CRD schema, as the API server does it: a field that is absent and has a
// default gets it, and defaulting continues inside present (or just defaulted) objects and list
// items. Used where objects do not come from an API server (the standalone trainer's config) and
// to fill the settings block of the selected compression, aggregation or model variant.
import { trainingFederationSchema } from "./schema.generated.js";

type Node = {
  type?: string;
  default?: unknown;
  properties?: Record<string, Node>;
  items?: Node;
};

/** Returns a copy of value with the defaults of schema applied. */
export function applyDefaults<T>(schema: unknown, value: T): T {
  return fill(schema as Node, structuredClone(value)) as T;
}

function fill(schema: Node, value: unknown): unknown {
  if (Array.isArray(value)) {
    return schema.items ? value.map((item) => fill(schema.items as Node, item)) : value;
  }
  if (value === null || typeof value !== "object" || !schema.properties) return value;
  const object = value as Record<string, unknown>;
  for (const [key, child] of Object.entries(schema.properties)) {
    if (object[key] === undefined && child.default !== undefined) {
      object[key] = structuredClone(child.default);
    }
    if (object[key] !== undefined) object[key] = fill(child, object[key]);
  }
  return object;
}

/** The schema node at a dotted path below the root (`spec.federation.sync`). */
export function schemaAt(path: string): unknown {
  let node = trainingFederationSchema as unknown as Node;
  for (const segment of path.split(".")) {
    const next = node.properties?.[segment];
    if (!next) throw new Error(`the TrainingFederation schema has no field ${path}`);
    node = next;
  }
  return node;
}
