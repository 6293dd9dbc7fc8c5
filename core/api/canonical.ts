// The canonical form of spec.federation and its hash. Members co-train only when their hashes
// agree, so two manifests that mean the same must hash the same: the canonical form applies every
// default (including the settings block of the selected variant, which the schema cannot default)
// and serialises with sorted keys and no whitespace.
import { createHash } from "node:crypto";
import { applyDefaults, schemaAt } from "./defaults.js";
import type { FederationSpec } from "./types.generated.js";

/** The trim fraction of TrimmedMean when the manifest does not set one. */
export const defaultTrimFraction = 0.2;

/** CentredClip's radius, as a multiple of the median distance, when the manifest sets none. */
export const defaultRadiusMedianMultiple = 2;

/** Returns spec.federation with every default filled in. */
export function canonicalFederation(federation: FederationSpec): FederationSpec {
  const out = applyDefaults(schemaAt("spec.federation"), federation);
  const { model } = out;
  if (model.preset === "MLP") model.mlp ??= {} as never;
  if (model.preset === "CharTransformer") model.charTransformer ??= {} as never;
  const { compression, aggregation } = out.sync;
  if (compression.method === "Int8") compression.int8 ??= {} as never;
  if (compression.method === "TopK") compression.topK ??= {} as never;
  if (aggregation.rule === "TrimmedMean" && aggregation.tolerate === undefined)
    aggregation.trimFraction ??= defaultTrimFraction;
  if (aggregation.rule === "CentredClip") {
    aggregation.centredClip ??= {} as never;
    if (aggregation.centredClip.radius === undefined)
      aggregation.centredClip.radiusMedianMultiple ??= defaultRadiusMedianMultiple;
  }
  // Second pass: defaults inside the variant blocks just added.
  return applyDefaults(schemaAt("spec.federation"), out);
}

/** JSON with object keys sorted and no whitespace: one text per value. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

/** `sha256:<hex>` of the canonical form of spec.federation. */
export function federationSpecHash(federation: FederationSpec): string {
  const digest = createHash("sha256").update(canonicalJson(canonicalFederation(federation)));
  return `sha256:${digest.digest("hex")}`;
}

/**
 * The protocol's 32-byte spec hash from its text form `sha256:<hex>` (what
 * {@link federationSpecHash} returns, status.federationSpecHash and a TrainerConfig's
 * federationSpecHash). Throws a RangeError for anything else.
 */
export function specHashBytes(federationSpecHash: string): Uint8Array {
  const match = /^sha256:([0-9a-f]{64})$/.exec(federationSpecHash);
  if (!match)
    throw new RangeError(
      `federationSpecHash ${JSON.stringify(federationSpecHash)} is not sha256:<64 lowercase hex digits>: take it from the operator's status.federationSpecHash or the trainer config it renders`,
    );
  return new Uint8Array(Buffer.from(match[1] as string, "hex"));
}
