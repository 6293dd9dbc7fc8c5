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

type Schema = typeof trainingFederationSchema;

/** Dotted paths below the root of every field that has a default in the CRD. */
export type DefaultedPath = PathsWithDefault<Schema, "">;

type PathsWithDefault<N, Prefix extends string> = N extends { properties: infer Props }
  ? {
      [K in keyof Props & string]:
        | (Props[K] extends { default: unknown } ? `${Prefix}${K}` : never)
        | PathsWithDefault<Props[K], `${Prefix}${K}.`>;
    }[keyof Props & string]
  : never;

type NodeAt<N, P extends string> = N extends { properties: infer Props }
  ? P extends `${infer Head}.${infer Rest}`
    ? Head extends keyof Props
      ? NodeAt<Props[Head], Rest>
      : never
    : P extends keyof Props
      ? Props[P]
      : never
  : never;

/** A schema default as a value: literal numbers and booleans widened, lists mutable. */
type Widen<T> = T extends number
  ? number
  : T extends boolean
    ? boolean
    : T extends readonly (infer E)[]
      ? Widen<E>[]
      : T extends object
        ? { -readonly [K in keyof T]: Widen<T[K]> }
        : T;

/** The type of the CRD's default at a path. */
export type CrdDefault<P extends DefaultedPath> =
  NodeAt<Schema, P> extends { default: infer D } ? Widen<D> : never;

/**
 * The CRD's default of a field (a fresh copy), for code that reads a spec which may have skipped
 * the API server: the CRD stays the one place where defaults are written.
 */
export function crdDefault<P extends DefaultedPath>(path: P): CrdDefault<P> {
  const node = schemaAt(path) as Node;
  if (node.default === undefined)
    throw new Error(`the TrainingFederation field ${path} has no default`);
  return structuredClone(node.default) as CrdDefault<P>;
}
