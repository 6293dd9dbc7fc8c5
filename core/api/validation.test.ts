import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { validateTrainingFederation } from "./validation.js";

/** A valid member manifest, rebuilt for every case so mutations never leak between cases. */
function member(): Record<string, any> {
  return {
    apiVersion: "fedtrain.dev/v1alpha1",
    kind: "TrainingFederation",
    metadata: { name: "quickstart", namespace: "default" },
    spec: {
      federation: {
        id: "quickstart",
        model: { preset: "CharTransformer", charTransformer: { modelWidth: 64, heads: 4 } },
        data: { synthetic: { preset: "Arithmetic" } },
        sync: { compression: { method: "TopK", topK: { density: 0.01 } } },
        membership: {
          policy: "Allowlist",
          members: [{ id: "alpine", publicKey: `${"A".repeat(43)}=` }],
        },
      },
      contribution: {
        memberId: "alpine",
        resources: { requests: { cpu: "500m", memory: "1Gi" } },
        tolerations: [{ key: "nvidia.com/gpu", operator: "Exists", effect: "NoSchedule" }],
      },
      transport: { natsUrls: ["nats://127.0.0.1:4222"], credentialsSecretRef: { name: "nats" } },
    },
  };
}

type Mutation = (o: Record<string, any>) => void;

/** Invalid manifests: a change to a valid one, and the field path the error must name. */
const invalid: [string, Mutation, string][] = [
  ["no spec", (o) => delete o.spec, "spec"],
  ["no spec.federation", (o) => delete o.spec.federation, "spec.federation"],
  ["no federation id", (o) => delete o.spec.federation.id, "spec.federation.id"],
  ["federation id not a DNS label", (o) => (o.spec.federation.id = "Bad_Id"), "spec.federation.id"],
  ["federation id too long", (o) => (o.spec.federation.id = "a".repeat(64)), "spec.federation.id"],
  ["no model", (o) => delete o.spec.federation.model, "spec.federation.model"],
  [
    "unknown model preset",
    (o) => (o.spec.federation.model.preset = "RNN"),
    "spec.federation.model.preset",
  ],
  [
    "heads below the minimum",
    (o) => (o.spec.federation.model.charTransformer.heads = 0),
    "spec.federation.model.charTransformer.heads",
  ],
  [
    "synthetic data without preset",
    (o) => delete o.spec.federation.data.synthetic.preset,
    "spec.federation.data.synthetic.preset",
  ],
  [
    "trainExamples of the wrong type",
    (o) => (o.spec.federation.data.synthetic.trainExamples = "many"),
    "spec.federation.data.synthetic.trainExamples",
  ],
  [
    "a single class",
    (o) => (o.spec.federation.data.synthetic.classes = 1),
    "spec.federation.data.synthetic.classes",
  ],
  [
    "text data without format",
    (o) => (o.spec.federation.data.text = { url: "https://example.com/a.txt" }),
    "spec.federation.data.text.format",
  ],
  [
    "zero rounds",
    (o) => (o.spec.federation.training = { rounds: 0 }),
    "spec.federation.training.rounds",
  ],
  [
    "fractional innerSteps",
    (o) => (o.spec.federation.training = { innerSteps: 1.5 }),
    "spec.federation.training.innerSteps",
  ],
  [
    "negative seed",
    (o) => (o.spec.federation.training = { seed: -1 }),
    "spec.federation.training.seed",
  ],
  [
    "inner learning rate of zero",
    (o) => (o.spec.federation.training = { innerOptimizer: { learningRate: 0 } }),
    "spec.federation.training.innerOptimizer.learningRate",
  ],
  [
    "outer momentum of one",
    (o) => (o.spec.federation.training = { outerOptimizer: { momentum: 1 } }),
    "spec.federation.training.outerOptimizer.momentum",
  ],
  [
    "nesterov as a string",
    (o) => (o.spec.federation.training = { outerOptimizer: { nesterov: "yes" } }),
    "spec.federation.training.outerOptimizer.nesterov",
  ],
  [
    "unknown compression method",
    (o) => (o.spec.federation.sync.compression.method = "Int4"),
    "spec.federation.sync.compression.method",
  ],
  [
    "int8 chunk too small",
    (o) => (o.spec.federation.sync.compression = { method: "Int8", int8: { chunkSize: 8 } }),
    "spec.federation.sync.compression.int8.chunkSize",
  ],
  [
    "unknown aggregation rule",
    (o) => (o.spec.federation.sync.aggregation = { rule: "Krum" }),
    "spec.federation.sync.aggregation.rule",
  ],
  [
    "zero round deadline",
    (o) => (o.spec.federation.sync.roundDeadlineSeconds = 0),
    "spec.federation.sync.roundDeadlineSeconds",
  ],
  [
    "quorum of zero members",
    (o) => (o.spec.federation.sync.quorum = { minMembers: 0 }),
    "spec.federation.sync.quorum.minMembers",
  ],
  [
    "norm bound with an unknown action",
    (o) => (o.spec.federation.sync.aggregation = { normBound: { action: "Ban", maxNorm: 1 } }),
    "spec.federation.sync.aggregation.normBound.action",
  ],
  [
    "unknown membership policy",
    (o) => (o.spec.federation.membership.policy = "Closed"),
    "spec.federation.membership.policy",
  ],
  [
    "allowlisted member without a key",
    (o) => delete o.spec.federation.membership.members[0].publicKey,
    "spec.federation.membership.members[0].publicKey",
  ],
  ["negative replicas", (o) => (o.spec.contribution.replicas = -1), "spec.contribution.replicas"],
  [
    "65 GPUs per replica",
    (o) => (o.spec.contribution.gpusPerReplica = 65),
    "spec.contribution.gpusPerReplica",
  ],
  ["unknown backend", (o) => (o.spec.contribution.backend = "TPU"), "spec.contribution.backend"],
  [
    "GPU resource name without a domain",
    (o) => (o.spec.contribution.gpuResourceName = "gpu"),
    "spec.contribution.gpuResourceName",
  ],
  [
    "CPU request that is not a quantity",
    (o) => (o.spec.contribution.resources.requests.cpu = "two"),
    "spec.contribution.resources.requests.cpu",
  ],
  [
    "toleration with an unknown operator",
    (o) => (o.spec.contribution.tolerations[0].operator = "Maybe"),
    "spec.contribution.tolerations[0].operator",
  ],
  ["no NATS URL", (o) => (o.spec.transport.natsUrls = []), "spec.transport.natsUrls"],
  [
    "an http URL for NATS",
    (o) => (o.spec.transport.natsUrls = ["http://nats:4222"]),
    "spec.transport.natsUrls[0]",
  ],
  [
    "credentials Secret without name",
    (o) => (o.spec.transport.credentialsSecretRef = {}),
    "spec.transport.credentialsSecretRef.name",
  ],
  ["suspend as a string", (o) => (o.spec.suspend = "true"), "spec.suspend"],
  ["misspelt field", (o) => (o.spec.federation.modle = {}), "spec.federation.modle"],
];

describe("validateTrainingFederation", () => {
  test("accepts the valid member and fills in the schema's defaults", () => {
    const result = validateTrainingFederation(member());
    assert.ok(result.valid, JSON.stringify(!result.valid && result.errors));
    const { spec } = result.object;
    assert.equal(spec.suspend, false);
    assert.equal(spec.contribution.replicas, 1);
    assert.equal(spec.contribution.gpuResourceName, "nvidia.com/gpu");
    assert.equal(spec.contribution.backend, "Auto");
    assert.equal(spec.federation.training.rounds, 100);
    assert.equal(spec.federation.training.outerOptimizer.learningRate, 0.7);
    assert.equal(spec.federation.training.outerOptimizer.momentum, 0.9);
    assert.equal(spec.federation.sync.compression.topK?.valueBits, 4);
    assert.equal(spec.federation.sync.compression.topK?.density, 0.01);
    assert.deepEqual(spec.federation.sync.quorum, { minMembers: 1 });
    assert.equal(spec.federation.model.charTransformer?.layers, 2);
    assert.equal(spec.federation.data.sharding.strategy, "IID");
  });

  test("does not modify its input", () => {
    const input = member();
    validateTrainingFederation(input);
    assert.deepEqual(input, member());
  });

  test(`rejects ${invalid.length} invalid manifests, each at the expected field`, () => {
    assert.ok(invalid.length >= 20);
    for (const [name, mutate, path] of invalid) {
      const manifest = member();
      mutate(manifest);
      const result = validateTrainingFederation(manifest);
      assert.equal(result.valid, false, `${name}: accepted`);
      if (result.valid) continue;
      const paths = result.errors.map((e) => e.path);
      assert.ok(paths.includes(path), `${name}: expected an error at ${path}, got ${paths}`);
      for (const other of paths) {
        assert.ok(other.startsWith(path), `${name}: unexpected error at ${other}`);
      }
    }
  });

  test("names the supported values of an enum", () => {
    const manifest = member();
    manifest.spec.contribution.backend = "TPU";
    const result = validateTrainingFederation(manifest);
    assert.ok(!result.valid);
    assert.match(result.errors[0]?.message ?? "", /"Auto", "CUDA", "WebGPU", "CPU"/);
  });
});
