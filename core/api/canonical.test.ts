import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { member } from "../../test/fixtures/manifests.js";
import {
  canonicalFederation,
  canonicalJson,
  federationSpecHash,
  specHashBytes,
} from "./canonical.js";
import type { FederationSpec } from "./types.generated.js";
import { validateTrainingFederation } from "./validation.js";

/** spec.federation as the API server would store it (schema defaults applied). */
function stored(federation: Record<string, unknown>): FederationSpec {
  const manifest = member();
  manifest.spec.federation = federation;
  const result = validateTrainingFederation(manifest);
  assert.ok(result.valid, JSON.stringify(!result.valid && result.errors));
  return result.object.spec.federation;
}

describe("federation spec hash", () => {
  const base = () => structuredClone(member().spec.federation);

  test("is sha256 of the canonical JSON", () => {
    assert.match(federationSpecHash(stored(base())), /^sha256:[0-9a-f]{64}$/);
  });

  test("does not depend on key order or on defaults being written out", () => {
    const written = base();
    written.training = { rounds: 100, outerOptimizer: { momentum: 0.9, learningRate: 0.7 } };
    written.sync.compression.topK = { valueBits: 4, density: 0.01, errorFeedback: true };
    assert.equal(federationSpecHash(stored(written)), federationSpecHash(stored(base())));
  });

  test("an omitted variant block hashes like the same block with its defaults", () => {
    const omitted = base();
    omitted.sync.compression = { method: "TopK" };
    omitted.sync.aggregation = { rule: "TrimmedMean" };
    const explicit = base();
    explicit.sync.compression = { method: "TopK", topK: { density: 0.02, valueBits: 4 } };
    explicit.sync.aggregation = { rule: "TrimmedMean", trimFraction: 0.2 };
    assert.equal(federationSpecHash(stored(omitted)), federationSpecHash(stored(explicit)));
    assert.equal(canonicalFederation(stored(omitted)).sync.compression.topK?.errorFeedback, true);
  });

  test("any meaningful change changes it", () => {
    const hash = federationSpecHash(stored(base()));
    const changes: ((f: Record<string, any>) => void)[] = [
      (f) => (f.id = "other"),
      (f) => (f.training = { seed: 1 }),
      (f) => (f.sync.compression.topK.density = 0.03),
      (f) => (f.model.charTransformer.layers = 3),
      (f) => f.membership.members.push({ id: "birch", publicKey: `${"B".repeat(43)}=` }),
    ];
    for (const change of changes) {
      const changed = base();
      change(changed);
      assert.notEqual(federationSpecHash(stored(changed)), hash, String(change));
    }
  });

  test("canonical JSON sorts keys at every depth and drops undefined", () => {
    assert.equal(
      canonicalJson({ b: 1, a: { d: [3, { f: 1, e: 2 }], c: undefined } }),
      '{"a":{"d":[3,{"e":2,"f":1}]},"b":1}',
    );
  });
});

describe("specHashBytes", () => {
  const hex = "0f".repeat(32);
  test("reads sha256:<hex> as 32 bytes", () => {
    const bytes = specHashBytes(`sha256:${hex}`);
    assert.equal(bytes.length, 32);
    assert.equal(Buffer.from(bytes).toString("hex"), hex);
  });
  test("reads what federationSpecHash writes", () => {
    const hash = federationSpecHash(member().spec.federation);
    assert.equal(`sha256:${Buffer.from(specHashBytes(hash)).toString("hex")}`, hash);
  });
  const bad: [string, string][] = [
    ["empty", ""],
    ["no prefix", hex],
    ["short", `sha256:${hex.slice(2)}`],
    ["upper case", `sha256:${hex.toUpperCase()}`],
    ["another algorithm", `md5:${hex}`],
  ];
  for (const [name, value] of bad)
    test(`rejects ${name}, saying what the form is`, () => {
      assert.throws(() => specHashBytes(value), {
        name: "RangeError",
        message: /is not sha256:<64 lowercase hex digits>/,
      });
    });
});
