import assert from "node:assert/strict";
import { before, describe, it } from "node:test";
import { OuterOptimizer } from "../../core/codec/index.js";
import { dilocoSettings, mlpDefinition } from "../../test/fixtures/diloco.js";
import { initBackend } from "../training/backend.js";
import { BatchSampler, gaussianClusters } from "../training/data.js";
import {
  applyRound,
  type DiLoCoConfig,
  DiLoCoWorker,
  InProcessExchange,
  parameterHash,
  type RoundCommit,
  type RoundReport,
} from "../training/diloco.js";
import { initialParameters, Model, type ModelDefinition } from "../training/model.js";
import {
  decodeReplicaSnapshot,
  encodeReplicaSnapshot,
  ReplicaSnapshotError,
} from "./nats-exchange.js";

function outerWithState(n: number): OuterOptimizer {
  const outer = new OuterOptimizer(n, { learningRate: 0.7, momentum: 0.9, nesterov: true });
  const params = Float32Array.from({ length: n }, (_, i) => i / 7);
  outer.step(
    params,
    Float32Array.from({ length: n }, (_, i) => Math.sin(i)),
  );
  return outer;
}

describe("replica snapshot", () => {
  const n = 37;
  const global = Float32Array.from({ length: n }, (_, i) => (i - 18) / 3);
  const outer = outerWithState(n);
  const snapshot = encodeReplicaSnapshot({ round: 9, global, outerState: outer.serialize() });

  it("round-trips the global model, the outer optimiser and the round", () => {
    const state = decodeReplicaSnapshot(snapshot, n);
    assert.equal(state.round, 9);
    assert.deepEqual([...state.global], [...global]);
    const restored = OuterOptimizer.deserialize(state.outerState, n);
    assert.deepEqual([...restored.momentumBuffer], [...outer.momentumBuffer]);
    assert.equal(restored.stepCount, 1);
  });

  it("decodes a Buffer view at an odd offset (as the object store returns it)", () => {
    const pool = Buffer.alloc(snapshot.length + 175);
    pool.set(snapshot, 175);
    const state = decodeReplicaSnapshot(pool.subarray(175), n);
    const restored = OuterOptimizer.deserialize(state.outerState, n);
    assert.deepEqual([...restored.momentumBuffer], [...outer.momentumBuffer]);
    assert.deepEqual([...state.global], [...global]);
  });

  const broken: { name: string; bytes: Uint8Array; parameters: number; message: RegExp }[] = [
    {
      name: "truncated header",
      bytes: snapshot.subarray(0, 10),
      parameters: n,
      message: /truncated/,
    },
    {
      name: "truncated parameters",
      bytes: snapshot.subarray(0, 16 + 4 * n - 1),
      parameters: n,
      message: /truncated/,
    },
    {
      name: "wrong magic",
      bytes: Uint8Array.from(snapshot, (b, i) => (i === 0 ? 0 : b)),
      parameters: n,
      message: /magic/,
    },
    {
      name: "other version",
      bytes: Uint8Array.from(snapshot, (b, i) => (i === 4 ? 2 : b)),
      parameters: n,
      message: /version 2/,
    },
    { name: "other model size", bytes: snapshot, parameters: n + 1, message: /37 parameters/ },
  ];
  for (const c of broken) {
    it(`rejects a snapshot with ${c.name}`, () => {
      assert.throws(
        () => decodeReplicaSnapshot(c.bytes, c.parameters),
        (error: unknown) => error instanceof ReplicaSnapshotError && c.message.test(error.message),
      );
    });
  }
});

describe("replaying committed rounds", () => {
  before(async () => {
    await initBackend("WASM", { log: () => {} });
  });

  it("gives the bits the DiLoCo workers' own apply gave, round by round", async () => {
    const seed = 5;
    const definition: ModelDefinition = mlpDefinition(8, 3, [8]);
    const config: DiLoCoConfig = dilocoSettings({
      rounds: 3,
      innerSteps: 3,
      inner: { learningRate: 1e-2, warmupSteps: 1 },
      codec: { method: "topk", density: 0.3, bits: 4, groupSize: 256 },
      aggregation: { kind: "trimmedMean", trimFraction: 0.34 },
      normBound: { action: "clip", medianMultiple: 1.5 },
    });
    const ids = ["a", "b", "c"];
    const clusters = { trainExamples: 300, evalExamples: 30, features: 8, classes: 3, noise: 1 };
    const initial = initialParameters(definition, seed);
    const inner = new InProcessExchange(ids);
    const commits: RoundCommit[] = [];
    const reports: RoundReport[] = [];
    const models = ids.map(() => new Model(definition, initial));
    const workers = ids.map((id, i) => {
      const shard = gaussianClusters(seed, clusters, {
        workerIndex: i,
        workerCount: ids.length,
        strategy: "IID",
        concentration: 0.5,
      });
      const endpoint = inner.endpoint(id);
      return new DiLoCoWorker(
        id,
        models[i]!,
        initial,
        new BatchSampler(shard.train, 16, seed, i),
        {
          exchange: async (round, message) => {
            const commit = await endpoint.exchange(round, message);
            if (id === "a") commits.push(commit);
            return commit;
          },
        },
        config,
      );
    });
    try {
      await Promise.all(
        workers.map((w) =>
          w.run((report) => {
            if (w.id === "a") reports.push(report);
          }),
        ),
      );
    } finally {
      for (const w of workers) w.dispose();
      for (const m of models) m.dispose();
    }

    const global = Float32Array.from(initial);
    const outer = new OuterOptimizer(global.length, config.outer);
    assert.equal(commits.length, 3);
    for (const [r, commit] of commits.entries()) {
      const { included, bounded } = applyRound(global, outer, config, commit.updates);
      assert.equal(included, reports[r]!.included);
      assert.deepEqual(bounded, reports[r]!.bounded);
      assert.equal(parameterHash(global), reports[r]!.globalHash, `round ${r}`);
    }
    assert.equal(parameterHash(global), parameterHash(workers[0]!.global));
  });
});
