import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { WorkerRef } from "../../core/protocol/index.js";
import { gaussianClustersSet } from "./data.js";
import {
  dealWorkers,
  federationWorkerId,
  rosterRound,
  type ShardChange,
  trainsOnLocalData,
  WorkerShard,
  workerName,
} from "./roster.js";
import { type DealSettings, dealExamples } from "./shards.js";

const iid: DealSettings = { seed: 7, strategy: "IID", concentration: 1 };
const nonIid: DealSettings = { seed: 7, strategy: "NonIID", concentration: 0.3 };
const workers = ["alpha/w0", "beta/w0", "beta/w1", "gamma/w0"];

/** Each worker's examples, by name. */
function shards(deal: ReturnType<typeof dealExamples>): Map<string, Int32Array> {
  return new Map(deal.workers.map((w) => [w, deal.owned(w)]));
}

describe("dealing examples by rendezvous hashing", () => {
  it("gives every example to exactly one worker, for IID and NonIID", () => {
    for (const settings of [iid, nonIid]) {
      const groups = Int32Array.from({ length: 5000 }, (_, e) => e % 3);
      const deal = dealExamples(settings, workers, 5000, groups);
      const seen = new Uint8Array(5000);
      for (const owned of shards(deal).values()) for (const e of owned) seen[e]!++;
      assert.ok(
        seen.every((n) => n === 1),
        `${settings.strategy}: an example is missing or dealt twice`,
      );
    }
  });

  it("balances IID shards within a few percent", () => {
    const deal = dealExamples(iid, workers, 40_000);
    for (const size of deal.sizes()) assert.ok(Math.abs(size - 10_000) < 400, `size ${size}`);
  });

  it("is the same for a permuted or repeated list, and differs with the seed", () => {
    const deal = dealExamples(nonIid, workers, 3000, new Int32Array(3000));
    const permuted = dealExamples(
      nonIid,
      [...workers].reverse().concat(workers[0]!),
      3000,
      new Int32Array(3000),
    );
    assert.deepEqual(permuted.workers, workers);
    assert.deepEqual(permuted.owners, deal.owners);
    assert.notDeepEqual(
      dealExamples({ ...iid, seed: 8 }, workers, 3000).owners,
      dealExamples(iid, workers, 3000).owners,
    );
  });

  it("moves only the examples of the worker that comes or goes", () => {
    const before = shards(dealExamples(iid, workers, 20_000));
    const after = shards(dealExamples(iid, [...workers, "delta/w0"], 20_000));
    for (const worker of workers) {
      const kept = new Set(after.get(worker));
      // Every example a worker keeps it had before; it lost only what the newcomer took.
      assert.ok(
        after.get(worker)!.every((e) => before.get(worker)!.includes(e)),
        worker,
      );
      assert.ok(kept.size > 0.75 * before.get(worker)!.length, worker);
    }
    const newcomer = after.get("delta/w0")!.length;
    assert.ok(Math.abs(newcomer - 4000) < 300, `the newcomer took ${newcomer}`);
  });

  it("skews each worker's group mix for NonIID, not for IID", () => {
    const groups = Int32Array.from({ length: 30_000 }, (_, e) => e % 4);
    const spread = (settings: DealSettings) => {
      const deal = dealExamples(settings, workers, groups.length, groups);
      const shares = deal.workers.map((w) => {
        const owned = deal.owned(w);
        return owned.filter((e) => groups[e] === 0).length / owned.length;
      });
      return Math.max(...shares) - Math.min(...shares);
    };
    assert.ok(spread(iid) < 0.03, `IID group-0 shares spread ${spread(iid)}`);
    assert.ok(spread(nonIid) > 0.3, `NonIID group-0 shares spread ${spread(nonIid)}`);
  });

  it("keeps a worker's NonIID weights when other workers come and go", () => {
    const groups = Int32Array.from({ length: 20_000 }, (_, e) => e % 4);
    const mix = (list: string[]) => {
      const owned = dealExamples(nonIid, list, groups.length, groups).owned("alpha/w0");
      return [0, 1, 2, 3].map((g) => owned.filter((e) => groups[e] === g).length);
    };
    const alone = mix(workers);
    const more = mix([...workers, "delta/w0", "delta/w1"]);
    // Its preferred group stays its preferred group: the weights are keyed by its name.
    assert.equal(more.indexOf(Math.max(...more)), alone.indexOf(Math.max(...alone)));
  });

  it("deals hundreds of thousands of examples to a handful of workers in well under a second", () => {
    const groups = Int32Array.from({ length: 300_000 }, (_, e) => e % 10);
    for (const settings of [iid, nonIid]) {
      const started = performance.now();
      dealExamples(settings, workers.concat("delta/w0"), groups.length, groups);
      const ms = performance.now() - started;
      assert.ok(ms < 1000, `${settings.strategy}: ${ms.toFixed(0)} ms`);
    }
  });
});

describe("a round's workers", () => {
  const ref = (memberId: string, workerId: string): WorkerRef => ({ memberId, workerId });

  it("come from the previous commit, or the one before it with overlap", () => {
    assert.equal(rosterRound(0, false), -1);
    assert.equal(rosterRound(3, false), 2);
    assert.equal(rosterRound(1, true), -1);
    assert.equal(rosterRound(3, true), 1);
  });

  it("deal shared data among shared-data workers and a member's own data among its own", () => {
    const roster = [
      ref("alpha", federationWorkerId(0, false)),
      ref("beta", federationWorkerId(0, true)),
      ref("beta", federationWorkerId(1, true)),
      ref("gamma", federationWorkerId(0, false)),
    ];
    assert.equal(trainsOnLocalData(roster[1]!), true);
    assert.equal(trainsOnLocalData(roster[0]!), false);
    assert.deepEqual(dealWorkers(roster, ref("alpha", "w0")), ["alpha/w0", "gamma/w0"]);
    assert.deepEqual(dealWorkers(roster, ref("beta", "local-w1")), [
      "beta/local-w0",
      "beta/local-w1",
    ]);
    // A newcomer the commit does not name yet deals itself in.
    assert.deepEqual(dealWorkers(roster, ref("delta", "w0")), ["alpha/w0", "delta/w0", "gamma/w0"]);
  });

  it("give a worker that a skewed deal starves an IID share, then the whole data set", () => {
    const { train } = gaussianClustersSet(3, {
      trainExamples: 400,
      evalExamples: 1,
      features: 2,
      classes: 4,
      noise: 1,
    });
    const roster = Array.from({ length: 8 }, (_, i) => ref(`m${i}`, "w0"));
    const skewed: DealSettings = { seed: 3, strategy: "NonIID", concentration: 0.05 };
    const shares = roster.map((self) =>
      dealExamples(skewed, roster.map(workerName), 400, train.labels).owned(workerName(self)),
    );
    // The worker the skewed deal gives the least.
    const starved = shares.reduce((a, b, i) => (b.length < shares[a]!.length ? i : a), 0);
    const minimum = shares[starved]!.length + 1;
    const changes: ShardChange[] = [];
    const shardOf = (settings: DealSettings, least: number) =>
      new WorkerShard({
        examples: train,
        settings,
        self: roster[starved]!,
        roster: () => roster,
        minimum: least,
        onChange: (change) => changes.push(change),
      }).forRound(0);
    const iidShare = shardOf(skewed, minimum);
    assert.equal(changes.at(-1)?.fallback, "IID");
    assert.ok(iidShare.kind === "classification" && iidShare.count >= minimum);
    const whole = shardOf(skewed, 1000);
    assert.equal(changes.at(-1)?.fallback, "all");
    assert.ok(whole.kind === "classification" && whole.count === 400);
    shardOf(skewed, 0);
    assert.equal(changes.at(-1)?.fallback, undefined, "a deal that is big enough stays as it is");
  });

  it("re-deal a worker's shard only when they change", () => {
    const { train } = gaussianClustersSet(3, {
      trainExamples: 300,
      evalExamples: 1,
      features: 2,
      classes: 2,
      noise: 1,
    });
    const rosters = [
      [ref("alpha", "w0")],
      [ref("alpha", "w0"), ref("beta", "w0")],
      [ref("beta", "w0"), ref("alpha", "w0")],
    ];
    const changes: ShardChange[] = [];
    const shard = new WorkerShard({
      examples: train,
      settings: iid,
      self: ref("alpha", "w0"),
      roster: (round) => rosters[Math.min(round, 2)]!,
      minimum: 1,
      onChange: (change) => changes.push(change),
    });
    const first = shard.forRound(0);
    assert.equal(first.kind === "classification" && first.count, 300);
    const second = shard.forRound(1);
    assert.equal(shard.forRound(2), second, "the same workers in another order re-dealt");
    assert.deepEqual(
      changes.map((c) => [c.round, c.workers, c.owned.length === c.examples]),
      [
        [0, ["alpha/w0"], true],
        [1, ["alpha/w0", "beta/w0"], false],
      ],
    );
  });
});
