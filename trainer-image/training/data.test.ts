import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { describe, it } from "node:test";
import { promisify } from "node:util";
import {
  ARITHMETIC_VOCABULARY,
  arithmetic,
  BatchSampler,
  evaluationBatches,
  gaussianClusters,
  type ShardSpec,
} from "./data.js";

const clusters = { trainExamples: 600, evalExamples: 100, features: 4, classes: 3, noise: 0.5 };
const sums = { trainExamples: 400, evalExamples: 50, maxOperand: 20 };
const shard = (workerIndex: number, strategy: ShardSpec["strategy"] = "IID"): ShardSpec => ({
  workerIndex,
  workerCount: 3,
  strategy,
  concentration: 0.3,
});

function digest(...arrays: ArrayBufferView[]): string {
  const hash = createHash("sha256");
  for (const a of arrays) hash.update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
  return hash.digest("hex");
}

function datasetDigest(seed: number): string {
  const c = gaussianClusters(seed, clusters, shard(1, "NonIID"));
  const t = arithmetic(seed, sums, shard(2, "NonIID"));
  return digest(c.train.features, c.train.labels, c.eval.features, t.train.tokens, t.eval.tokens);
}

describe("synthetic data", () => {
  it("is the same for the same seed and differs for another", () => {
    assert.equal(datasetDigest(5), datasetDigest(5));
    assert.notEqual(datasetDigest(5), datasetDigest(6));
  });

  it("is the same in another process", async () => {
    const script = `import { createHash } from "node:crypto";
import { gaussianClusters, arithmetic } from ${JSON.stringify(new URL("./data.js", import.meta.url).href)};
const c = gaussianClusters(5, ${JSON.stringify(clusters)}, { workerIndex: 1, workerCount: 3, strategy: "NonIID", concentration: 0.3 });
const t = arithmetic(5, ${JSON.stringify(sums)}, { workerIndex: 2, workerCount: 3, strategy: "NonIID", concentration: 0.3 });
const hash = createHash("sha256");
for (const a of [c.train.features, c.train.labels, c.eval.features, t.train.tokens, t.eval.tokens]) hash.update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
console.log(hash.digest("hex"));`;
    const { stdout } = await promisify(execFile)(process.execPath, [
      "--input-type=module",
      "-e",
      script,
    ]);
    assert.equal(stdout.trim(), datasetDigest(5));
  });

  it("splits the training set into disjoint shards that cover it, with one shared eval set", () => {
    for (const strategy of ["IID", "NonIID"] as const) {
      const shards = [0, 1, 2].map((w) => gaussianClusters(9, clusters, shard(w, strategy)));
      assert.equal(
        shards.reduce((n, s) => n + s.train.count, 0),
        clusters.trainExamples,
        strategy,
      );
      const rows = new Set<string>();
      for (const s of shards) {
        for (let i = 0; i < s.train.count; i++) {
          rows.add(s.train.features.subarray(i * 4, i * 4 + 4).join(","));
        }
        assert.deepEqual(s.eval.features, shards[0]!.eval.features);
      }
      assert.equal(rows.size, clusters.trainExamples, `${strategy} shards overlap`);
    }
  });

  it("skews the label mix of NonIID shards and not of IID ones", () => {
    const spread = (strategy: ShardSpec["strategy"]) =>
      [0, 1, 2].map((w) => {
        const labels = gaussianClusters(9, clusters, shard(w, strategy)).train.labels;
        return labels.filter((label) => label === 0).length / labels.length;
      });
    const iid = spread("IID");
    const nonIid = spread("NonIID");
    const range = (xs: number[]) => Math.max(...xs) - Math.min(...xs);
    assert.ok(range(iid) < 0.1, `IID class-0 shares ${iid}`);
    assert.ok(range(nonIid) > 0.3, `NonIID class-0 shares ${nonIid}`);
  });

  it("writes arithmetic lines that are correct", () => {
    const { train } = arithmetic(3, sums, shard(0));
    const text = Array.from(train.tokens, (id) => ARITHMETIC_VOCABULARY[id]).join("");
    const lines = text.trimEnd().split("\n");
    assert.ok(lines.length > 100);
    for (const line of lines) {
      const match = /^(\d+)([+*])(\d+)=(\d+)$/.exec(line);
      assert.ok(match, line);
      const [, a, op, b, c] = match;
      assert.equal(Number(c), op === "+" ? Number(a) + Number(b) : Number(a) * Number(b), line);
    }
  });

  it("draws batches deterministically per worker, targets shifted by one", () => {
    const { train, eval: held } = arithmetic(3, sums, shard(0));
    const a = new BatchSampler(train, 4, 3, 0, 8).next();
    const b = new BatchSampler(train, 4, 3, 0, 8).next();
    const c = new BatchSampler(train, 4, 3, 1, 8).next();
    assert.deepEqual(a, b);
    assert.notDeepEqual(a, c);
    assert.equal(a.kind, "text");
    if (a.kind === "text") assert.deepEqual(a.inputs.subarray(1, 8), a.targets.subarray(0, 7));
    const evalBatches = evaluationBatches(held, 16, 8);
    const windows = evalBatches.reduce((n, batch) => n + batch.size, 0);
    assert.equal(windows, Math.floor((held.tokens.length - 1) / 8));
  });
});
