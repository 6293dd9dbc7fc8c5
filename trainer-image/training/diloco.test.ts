import assert from "node:assert/strict";
import { before, describe, it } from "node:test";
import {
  centredClip,
  decodeUpdate,
  encodeUpdate,
  OuterOptimizer,
  RoundAuditor,
} from "../../core/codec/index.js";
import { dilocoSettings, mlpDefinition } from "../../test/fixtures/diloco.js";
import { initBackend } from "./backend.js";
import { BatchSampler, evaluationBatches, gaussianClusters } from "./data.js";
import { applyRound, type DiLoCoConfig, DiLoCoWorker, InProcessExchange } from "./diloco.js";
import { initialParameters, Model, type ModelDefinition } from "./model.js";
import { simulateDiLoCo } from "./simulate.js";

// Small enough to run in a few seconds on two shared cores with WASM; big enough that chance
// (ln 4 ≈ 1.39) and a trained model (≈ 0.4) are far apart.
const seed = 7;
const workerCount = 3;
const clusters = { trainExamples: 3000, evalExamples: 500, features: 16, classes: 4, noise: 1.5 };
const definition: ModelDefinition = mlpDefinition(16, 4, [32]);
const base: DiLoCoConfig = dilocoSettings({
  rounds: 20,
  innerSteps: 10,
  inner: { learningRate: 1e-3, warmupSteps: 10 },
});
const TARGET_EVAL_LOSS = 0.6;

function run(config: DiLoCoConfig, strategy: "IID" | "NonIID" = "IID") {
  const shards = Array.from({ length: workerCount }, (_, workerIndex) =>
    gaussianClusters(seed, clusters, { workerIndex, workerCount, strategy, concentration: 0.5 }),
  );
  return simulateDiLoCo({
    definition,
    seed,
    samplers: shards.map((shard, w) => new BatchSampler(shard.train, 32, seed, w)),
    config,
    evalBatches: evaluationBatches(shards[0]!.eval, 500),
    evalEvery: 5,
  });
}

describe("DiLoCo in process", () => {
  before(async () => {
    await initBackend("WASM", { log: () => {} });
  });

  let uncompressed = Number.NaN;

  it("trains the MLP with 3 workers below the target eval loss, all holding one global model", async () => {
    const result = await run(base);
    uncompressed = result.finalEvalLoss;
    assert.ok(
      result.finalEvalLoss < TARGET_EVAL_LOSS,
      `eval loss ${result.finalEvalLoss} (curve ${result.curve.map((p) => p.evalLoss.toFixed(3))})`,
    );
    assert.ok(result.curve[0]!.evalLoss > result.finalEvalLoss);
    assert.equal(new Set(result.finalHashes).size, 1, "workers disagree on the global model");
    // 20 dense fp32 updates of every parameter, plus each message's header.
    const parameters = 16 * 32 + 32 + 32 * 4 + 4;
    assert.ok(result.bytesPerWorker >= 20 * 4 * parameters);
    assert.ok(result.bytesPerWorker < 20 * (4 * parameters + 64));
  });

  it("with top-k 3 %, 4-bit values and error feedback gets within 5 % of uncompressed", async () => {
    const result = await run({
      ...base,
      codec: { method: "topk", density: 0.03, bits: 4, groupSize: 256 },
    });
    assert.ok(Number.isFinite(uncompressed), "the uncompressed run must run first");
    assert.ok(
      result.finalEvalLoss <= uncompressed * 1.05,
      `top-k eval loss ${result.finalEvalLoss} vs uncompressed ${uncompressed}`,
    );
    assert.equal(new Set(result.finalHashes).size, 1);
  });

  it("lets timers and I/O run between inner steps", async () => {
    const initial = initialParameters(definition, seed);
    const shard = gaussianClusters(seed, clusters, {
      workerIndex: 0,
      workerCount: 1,
      strategy: "IID",
      concentration: 0.5,
    });
    const exchange = new InProcessExchange(["solo"]);
    const worker = new DiLoCoWorker(
      "solo",
      new Model(definition, initial),
      initial,
      new BatchSampler(shard.train, 32, seed, 0),
      exchange.endpoint("solo"),
      { ...base, rounds: 1 },
    );
    // A heartbeat timer stands for the federation's: it must fire while the steps go on.
    let ticks = 0;
    const ticksAtStep: number[] = [];
    const timer = setInterval(() => ticks++, 0);
    try {
      await worker.run(undefined, { onInnerStep: () => ticksAtStep.push(ticks) });
    } finally {
      clearInterval(timer);
    }
    assert.equal(ticksAtStep.length, base.innerSteps);
    assert.ok(ticksAtStep.at(-1)! > ticksAtStep[0]!, `timer ticks at each step: ${ticksAtStep}`);
  });

  it("starts each round from the global model less its pending share of the residual", async () => {
    const initial = initialParameters(definition, seed);
    const ids = ["a", "b"];
    const endState = async (startWithPendingShare: boolean) => {
      const exchange = new InProcessExchange(ids);
      const models = ids.map(() => new Model(definition, initial));
      const workers = ids.map((id, w) => {
        const shard = gaussianClusters(seed, clusters, {
          workerIndex: w,
          workerCount: ids.length,
          strategy: "IID",
          concentration: 0.5,
        });
        return new DiLoCoWorker(
          id,
          models[w]!,
          initial,
          new BatchSampler(shard.train, 32, seed, w),
          exchange.endpoint(id),
          {
            ...base,
            rounds: 3,
            innerSteps: 2,
            outer: { learningRate: 0.8, momentum: 0, nesterov: false },
            codec: { method: "topk", density: 0.05, bits: 4, groupSize: 256 },
            startWithPendingShare,
          },
        );
      });
      try {
        await Promise.all(workers.map((worker) => worker.run()));
        const worker = workers[0]!;
        return {
          local: await models[0]!.readParameters(),
          global: Float32Array.from(worker.global),
          state: (await worker.localState())!,
        };
      } finally {
        for (const worker of workers) worker.dispose();
        for (const model of models) model.dispose();
      }
    };
    // After the last round the local model is where a next round would start.
    const shared = await endState(true);
    assert.equal(shared.state.pendingShareScale, 0.8 / 2);
    const residual = shared.state.residual!;
    assert.ok(
      residual.some((v) => v !== 0),
      "top-k at 5 % leaves a residual",
    );
    const expected = shared.global.map((g, i) => g - 0.4 * residual[i]!);
    assert.deepEqual(shared.local, expected);
    const plain = await endState(false);
    assert.equal(plain.state.pendingShareScale, 0);
    assert.deepEqual(plain.local, plain.global);
  });

  it("also trains with one-round-delayed overlap and NonIID shards", async () => {
    const result = await run({ ...base, overlap: true }, "NonIID");
    assert.ok(result.finalEvalLoss < TARGET_EVAL_LOSS, `eval loss ${result.finalEvalLoss}`);
    assert.equal(result.curve[result.curve.length - 1]!.round, base.rounds - 1);
    assert.equal(new Set(result.finalHashes).size, 1);
  });
});

describe("InProcessExchange", () => {
  it("closes a round when every worker has published, in worker order", async () => {
    const exchange = new InProcessExchange(["a", "b", "c"]);
    const update = (value: number) =>
      encodeUpdate(Float32Array.of(value, value), { method: "none" });
    let closed = false;
    const first = exchange
      .endpoint("c")
      .exchange(0, update(3))
      .then((commit) => {
        closed = true;
        return commit;
      });
    const second = exchange.endpoint("a").exchange(0, update(1));
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(closed, false);
    const third = exchange.endpoint("b").exchange(0, update(2));
    const commits = await Promise.all([first, second, third]);
    for (const commit of commits) {
      assert.deepEqual(
        commit.updates.map((u) => [u.worker, decodeUpdate(u.message, 2)[0]]),
        [
          ["a", 1],
          ["b", 2],
          ["c", 3],
        ],
      );
    }
    await assert.rejects(
      Promise.all([
        exchange.endpoint("a").exchange(1, update(1)),
        exchange.endpoint("a").exchange(1, update(1)),
      ]),
      /published twice/,
    );
  });
});

describe("applyRound", () => {
  const config = (action: "clip" | "drop"): Pick<DiLoCoConfig, "aggregation" | "normBound"> => ({
    aggregation: { kind: "mean" },
    normBound: { action, medianMultiple: 3 },
  });
  const update = (worker: string, value: number, member?: string) => ({
    worker,
    ...(member ? { member } : {}),
    message: encodeUpdate(Float32Array.of(value, value), { method: "none" }),
  });
  const round = [update("a-0", 1, "a"), update("m/w0", -10, "m"), update("b/w0", 1.5, "b")];
  const outer = { learningRate: 1, momentum: 0, nesterov: false };

  it("names the updates the norm bound clipped, by member and worker", () => {
    const global = new Float32Array(2);
    const applied = applyRound(global, new OuterOptimizer(2, outer), config("clip"), round);
    assert.equal(applied.included, 3);
    assert.deepEqual(applied.bounded, [{ member: "m", worker: "m/w0", action: "clipped" }]);
    // Plain averaging: −(1 + 1.5 − 4.5) / 3, the poisoner scaled onto 3 × the median norm.
    assert.ok(Math.abs(global[0]! - 2 / 3) < 1e-6, String(global[0]));
  });

  it("names the dropped ones, and an update without a member by its worker", () => {
    const global = new Float32Array(2);
    const unnamed = [update("a", 1), update("m", 10), update("b", 1)];
    const applied = applyRound(global, new OuterOptimizer(2, outer), config("drop"), unnamed);
    assert.equal(applied.included, 2);
    assert.deepEqual(applied.bounded, [{ member: "m", worker: "m", action: "dropped" }]);
    assert.ok(Math.abs(global[0]! + 1) < 1e-6, String(global[0]));
  });

  it("bounds nothing without a norm bound", () => {
    const global = new Float32Array(2);
    const applied = applyRound(
      global,
      new OuterOptimizer(2, outer),
      { aggregation: { kind: "mean" } },
      round,
    );
    assert.equal(applied.included, 3);
    assert.deepEqual(applied.bounded, []);
    assert.deepEqual(applied.protection, { required: 0, provided: 0, unprotected: false });
    // The plain mean follows the poisoner (−2.5 in both coordinates): the honest updates are the
    // ones pointing away from it.
    assert.deepEqual(
      applied.scores.map((s) => [s.member, Math.sign(s.cosine)]),
      [
        ["a", -1],
        ["m", 1],
        ["b", -1],
      ],
    );
  });

  it("starts centred clipping from the previous round's aggregate", () => {
    const clip: Pick<DiLoCoConfig, "aggregation" | "normBound"> = {
      aggregation: { kind: "centredClip", radius: 0.5, iterations: 1 },
    };
    const optimizer = new OuterOptimizer(2, outer, { keepLastAggregate: true });
    const global = new Float32Array(2);
    const first = [update("a", 1), update("b", 1), update("c", 1)];
    applyRound(global, optimizer, clip, first);
    // Round 1 from zero: every update is at distance √2 > 0.5, scaled to 0.5: (0.5/√2, 0.5/√2).
    const firstAggregate = Float32Array.from(optimizer.lastAggregate!);
    assert.ok(Math.abs(firstAggregate[0]! - 0.5 / Math.SQRT2) < 1e-6, String(firstAggregate[0]));
    const second = [update("a", 1), update("b", 1.2), update("c", 0.8)];
    const expected = centredClip(
      second.map((u) => decodeUpdate(u.message, 2)),
      0.5,
      1,
      firstAggregate,
    );
    applyRound(global, optimizer, clip, second);
    assert.deepEqual([...optimizer.lastAggregate!], [...expected]);
  });

  it("scores what an auditor recomputes from the same messages alone, round after round", () => {
    // Centred clipping from the previous aggregate, behind a norm bound that drops the poisoner:
    // the auditor keeps no model, only the aggregate the next round starts from.
    const rules: Pick<DiLoCoConfig, "aggregation" | "normBound"> = {
      aggregation: { kind: "centredClip", radiusMedianMultiple: 2, iterations: 2 },
      normBound: { action: "drop", medianMultiple: 3 },
    };
    const optimizer = new OuterOptimizer(2, outer, { keepLastAggregate: true });
    const global = new Float32Array(2);
    const auditor = new RoundAuditor(2, rules);
    for (const scale of [1, 0.7, 1.3, 0.4]) {
      const updates = [
        update("a", scale, "a"),
        update("m", -20 * scale, "m"),
        update("b", 1.5 * scale, "b"),
        update("c", 0.5, "c"),
      ];
      const applied = applyRound(global, optimizer, rules, updates);
      const recomputed = auditor.apply(updates.map((u) => u.message));
      assert.deepEqual(
        applied.scores.map(({ member: _, worker: __, ...assessment }) => assessment),
        recomputed,
      );
      assert.equal(recomputed[1]?.bound, "dropped");
    }
  });

  it("flags a round that the norm bound leaves too small for the stated protection", () => {
    const trimmed = (action: "clip" | "drop"): Pick<DiLoCoConfig, "aggregation" | "normBound"> => ({
      aggregation: { kind: "trimmedMean", tolerate: 1 },
      normBound: { action, medianMultiple: 3 },
    });
    const clipped = applyRound(
      new Float32Array(2),
      new OuterOptimizer(2, outer),
      trimmed("clip"),
      round,
    );
    assert.deepEqual(clipped.protection, { required: 1, provided: 1, unprotected: false });
    // Under the robust rule the poisoner is the one pointing away from the aggregate.
    assert.deepEqual(
      clipped.scores.map((s) => [s.member, Math.round(s.cosine * 1e6) / 1e6]),
      [
        ["a", 1],
        ["m", -1],
        ["b", 1],
      ],
    );
    const global = new Float32Array(2);
    const dropped = applyRound(global, new OuterOptimizer(2, outer), trimmed("drop"), round);
    assert.equal(dropped.included, 2);
    assert.deepEqual(dropped.protection, { required: 1, provided: 0, unprotected: true });
    // Still applied: the mean of the two left, −(1 + 1.5) / 2.
    assert.ok(Math.abs(global[0]! + 1.25) < 1e-6, String(global[0]));
  });
});
