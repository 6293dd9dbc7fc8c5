// DiLoCo trainers federated over a real nats-server: each worker's compressed pseudo-gradient goes
// through the federation protocol (NatsExchange), every worker applies exactly the committed set
// of every round, and all end with bit-identical global parameters; a late worker restores the
// protocol's checkpoint, replays the commits after it and ends with the same hash.
import assert from "node:assert/strict";
import crypto from "node:crypto";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { NatsConnection } from "@nats-io/transport-node";
import {
  connectNats,
  generateKeyPair,
  type KeyPair,
  type ProtocolSpec,
  toBase64,
} from "../../core/protocol/index.js";
import { type NatsServer, startNatsServer } from "../../testbed/nats.js";
import { NatsExchange } from "../../trainer-image/process/nats-exchange.js";
import { initBackend } from "../../trainer-image/training/backend.js";
import {
  type Batch,
  BatchSampler,
  evaluationBatches,
  gaussianClusters,
} from "../../trainer-image/training/data.js";
import {
  type DiLoCoConfig,
  DiLoCoWorker,
  parameterHash,
  type RoundReport,
} from "../../trainer-image/training/diloco.js";
import {
  initialParameters,
  Model,
  type ModelDefinition,
} from "../../trainer-image/training/model.js";
import { dilocoSettings, mlpDefinition } from "../fixtures/diloco.js";

const seed = 11;
const workerCount = 3;
const clusters = { trainExamples: 1500, evalExamples: 300, features: 16, classes: 4, noise: 1.5 };
const definition: ModelDefinition = mlpDefinition(16, 4, [16]);
const config: DiLoCoConfig = dilocoSettings({
  rounds: 5,
  innerSteps: 8,
  inner: { learningRate: 3e-3, warmupSteps: 2 },
  codec: { method: "int8", chunkSize: 256 },
});
// Short protocol timings: a test round takes well under a second.
const fast = {
  heartbeatIntervalMs: 150,
  workerTtlMs: 2_500,
  leaseTtlMs: 900,
  publishRetryMs: 20_000,
};

interface Trainer {
  member: string;
  nc: NatsConnection;
  exchange: NatsExchange;
  worker: DiLoCoWorker;
  model: Model;
  firstRound: number;
  reports: RoundReport[];
  log: string[];
}

describe("DiLoCo trainers over the federation protocol", () => {
  let server: NatsServer;
  const trainers: Trainer[] = [];
  const connections: NatsConnection[] = [];
  const specHash = new Uint8Array(crypto.createHash("sha256").update("trainer-spec").digest());
  const members = ["alpha", "beta", "gamma"].map((id) => ({ id, keys: generateKeyPair() }));
  const shards = Array.from({ length: workerCount }, (_, workerIndex) =>
    gaussianClusters(seed, clusters, {
      workerIndex,
      workerCount,
      strategy: "IID",
      concentration: 0.5,
    }),
  );
  const initial = initialParameters(definition, seed);
  let evalBatches: Batch[] = [];
  let evalModel: Model;

  function specFor(id: string, checkpointEveryRounds: number): ProtocolSpec {
    return {
      id,
      sync: { quorum: { minMembers: 2 }, roundDeadlineSeconds: 2, checkpointEveryRounds },
      membership: {
        policy: "Allowlist",
        members: members.map((m) => ({ id: m.id, publicKey: toBase64(m.keys.publicKey) })),
        organiserKeys: [toBase64((members[0]!.keys as KeyPair).publicKey)],
      },
    };
  }

  async function join(
    spec: ProtocolSpec,
    index: number,
    overrides: Partial<DiLoCoConfig>,
    role: "peer" | "contributor" = "peer",
  ): Promise<Trainer> {
    const member = members[index]!;
    const nc = await connectNats(server.url, `${spec.id}-${member.id}`);
    connections.push(nc);
    const log: string[] = [];
    const exchange = new NatsExchange({
      nc,
      spec,
      specHash,
      memberId: member.id,
      workerId: "w0",
      privateKey: member.keys.privateKey,
      settings: fast,
      role,
      log: (line) => {
        log.push(line);
        if (process.env.PROTOCOL_LOG) console.error(line);
      },
    });
    const model = new Model(definition, initial);
    const sampler = new BatchSampler(shards[index]!.train, 32, seed, index);
    const worker = new DiLoCoWorker(`${member.id}-w0`, model, initial, sampler, exchange, {
      ...config,
      ...overrides,
    });
    const { firstRound } = await exchange.join(worker, model);
    const trainer = {
      member: member.id,
      nc,
      exchange,
      worker,
      model,
      firstRound,
      reports: [],
      log,
    };
    trainers.push(trainer);
    return trainer;
  }

  function run(trainer: Trainer): Promise<"completed" | "stopped"> {
    return trainer.exchange.run((report) => {
      trainer.reports.push(report);
    });
  }

  async function evalLoss(global: Float32Array): Promise<number> {
    evalModel.writeParameters(global);
    return evalModel.evaluate(evalBatches);
  }

  before(async () => {
    await initBackend("WASM", { log: () => {} });
    evalBatches = evaluationBatches(shards[0]!.eval, 300);
    evalModel = new Model(definition, initial);
    server = await startNatsServer();
  });

  after(async () => {
    for (const t of trainers) {
      await t.exchange.close().catch(() => {});
      t.worker.dispose();
      t.model.dispose();
    }
    for (const nc of connections) await nc.close().catch(() => {});
    evalModel?.dispose();
    await server?.stop();
  });

  async function trainTogether(id: string, overrides: Partial<DiLoCoConfig>): Promise<void> {
    const rounds = overrides.rounds ?? config.rounds;
    const spec = specFor(id, 0);
    const group = [
      await join(spec, 0, overrides),
      await join(spec, 1, overrides),
      await join(spec, 2, overrides),
    ];
    for (const t of group) assert.equal(t.firstRound, 0);
    const startLoss = await evalLoss(initial);

    const outcomes = await Promise.all(group.map(run));

    assert.deepEqual(outcomes, ["completed", "completed", "completed"]);
    const every = Array.from({ length: rounds }, (_, r) => r);
    for (const t of group) {
      assert.deepEqual(
        t.reports.map((r) => r.round),
        every,
        `${t.member} applied every round once, in order`,
      );
      assert.equal(t.exchange.federation.applied.round, rounds);
      // What the trainer reports is what the protocol heartbeats.
      assert.equal(t.reports.at(-1)!.globalHash, t.exchange.federation.applied.modelHash);
    }
    const hashes = group.map((t) => parameterHash(t.worker.global));
    assert.equal(new Set(hashes).size, 1, `global models differ: ${hashes.join(" ")}`);
    // Round by round, every worker reported the same global hash and the same included count.
    for (const r of every) {
      const reports = group.map((t) => t.reports[r]!);
      assert.equal(new Set(reports.map((x) => x.globalHash)).size, 1, `round ${r} hashes`);
      assert.equal(new Set(reports.map((x) => x.included)).size, 1, `round ${r} included`);
      assert.ok(reports[0]!.included >= 2, `round ${r} met the quorum`);
    }
    const finalLoss = await evalLoss(group[0]!.worker.global);
    assert.ok(finalLoss < startLoss, `eval loss ${finalLoss} did not fall below ${startLoss}`);

    for (const t of group) {
      const counters = t.exchange.counters();
      // Every encoded update went over NATS, unless its round was committed before it was sent.
      assert.equal(counters.updatesSent + t.exchange.lateRounds, rounds);
      assert.ok(counters.updatesSent >= rounds - 2, `${t.member} sent ${counters.updatesSent}`);
      assert.equal(counters.bytesSent + t.exchange.lateBytes, t.worker.bytesSent);
      assert.ok(counters.bytesSent > 0);
      assert.ok(counters.updatesReceived >= 2 * (rounds - 2));
      assert.equal(counters.modelHashMismatches, 0);
      const received = t.reports.reduce((sum, r) => sum + r.bytesReceived, 0);
      assert.ok(received > 0, `${t.member} received no bytes from the others`);
    }
    for (const t of group) await t.exchange.close();
  }

  test("three workers train every round through NATS and hold one global model", async () => {
    await trainTogether("trainers", {});
  });

  test("with the one-step-delayed overlap and top-k, the workers still agree bit for bit", async () => {
    await trainTogether("overlap", {
      overlap: true,
      codec: { method: "topk", density: 0.1, bits: 4, groupSize: 256 },
    });
  });

  test("a slow worker applies the round committed without it, once, and keeps the same model", async () => {
    const rounds = 5;
    const spec = specFor("slow-worker", 0);
    const group = [
      await join(spec, 0, { rounds }),
      await join(spec, 1, { rounds }),
      await join(spec, 2, { rounds }),
    ];
    const slow = group[2]!;
    const runs = group.map((t) =>
      t.exchange.run(async (report) => {
        t.reports.push(report);
        if (t !== slow || report.round !== 1) return;
        // Stall before DiLoCo round 2 until the others' round-3 commit (closed at the deadline
        // without us) is in our ledger: our round-2 update is then late and must not be sent.
        while (slow.exchange.federation.committedRound < 3) await sleep(50);
      }),
    );
    assert.deepEqual(await Promise.all(runs), ["completed", "completed", "completed"]);

    assert.equal(slow.exchange.lateRounds, 1);
    assert.equal(slow.exchange.counters().updatesSent, rounds - 1);
    const every = Array.from({ length: rounds }, (_, r) => r);
    for (const t of group)
      assert.deepEqual(
        t.reports.map((r) => r.round),
        every,
      );
    assert.equal(slow.reports[2]!.included, 2, "round 3 was committed without the slow worker");
    assert.equal(group[0]!.reports[2]!.globalHash, slow.reports[2]!.globalHash);
    const hashes = group.map((t) => parameterHash(t.worker.global));
    assert.equal(new Set(hashes).size, 1, `global models differ: ${hashes.join(" ")}`);
    for (const t of group) await t.exchange.close();
  });

  test("a late worker restores the checkpoint, replays the commits after it and ends with the same hash", async () => {
    const rounds = 6;
    const spec = specFor("late-joiner", 2);
    const early = [await join(spec, 0, { rounds }), await join(spec, 1, { rounds })];
    let late: Promise<Trainer> | undefined;
    const runs = early.map((t) =>
      t.exchange.run(async (report) => {
        t.reports.push(report);
        // After DiLoCo round 2 (protocol round 3) the checkpoint of protocol round 2 exists. The
        // early workers wait for the join (so the test does not depend on training speed); their
        // protocol side has applied round 3 by now, so the joiner must replay commit 3.
        if (report.round !== 2) return;
        late ??= join(spec, 2, { rounds });
        await late;
      }),
    );
    const lateRun = (async () => {
      while (!late) await sleep(20);
      const trainer = await late;
      return { trainer, outcome: await run(trainer) };
    })();
    const outcomes = await Promise.all([...runs, lateRun.then((x) => x.outcome)]);
    const { trainer: joiner } = await lateRun;

    assert.deepEqual(outcomes, ["completed", "completed", "completed"]);
    assert.ok(
      joiner.log.some((line) => line.includes("restored checkpoint of round 2")),
      `no checkpoint restored: ${joiner.log.join("\n")}`,
    );
    assert.equal(joiner.firstRound, 3, "restored round 2, then replayed commit 3");
    assert.deepEqual(
      joiner.reports.map((r) => r.round),
      Array.from({ length: rounds - joiner.firstRound }, (_, i) => joiner.firstRound + i),
    );
    const hashes = [...early, joiner].map((t) => parameterHash(t.worker.global));
    assert.equal(new Set(hashes).size, 1, `global models differ: ${hashes.join(" ")}`);
    for (const t of [...early, joiner]) {
      assert.equal(t.exchange.federation.applied.round, rounds);
      assert.equal(t.exchange.counters().modelHashMismatches, 0);
    }
    assert.ok(joiner.exchange.counters().updatesSent >= 1, "the late worker never contributed");
    for (const t of [...early, joiner]) await t.exchange.close();
  });

  test("a trainer whose global model diverged restores a checkpoint mid-run and agrees again", async () => {
    const rounds = 8;
    const spec = specFor("self-restore", 2);
    const group = [
      await join(spec, 0, { rounds }),
      await join(spec, 1, { rounds }),
      // Gamma never coordinates: every checkpoint is another member's model.
      await join(spec, 2, { rounds }, "contributor"),
    ];
    const gamma = group[2]!;
    const runs = group.map((t) =>
      t.exchange.run((report) => {
        t.reports.push(report);
        // A fault in gamma's global model after DiLoCo round 1: from then on its replica differs.
        if (t === gamma && report.round === 1) t.worker.global[0] = t.worker.global[0]! + 0.5;
      }),
    );
    assert.deepEqual(await Promise.all(runs), ["completed", "completed", "completed"]);
    const counters = gamma.exchange.counters();
    assert.ok(counters.replicaDivergences >= 1, gamma.log.join("\n"));
    assert.ok(counters.replicaRestores >= 1, gamma.log.join("\n"));
    assert.ok(
      gamma.log.some((line) => /restored the checkpoint of round \d+/.test(line)),
      gamma.log.join("\n"),
    );
    const hashes = group.map((t) => parameterHash(t.worker.global));
    assert.equal(new Set(hashes).size, 1, `global models differ: ${hashes.join(" ")}`);
    for (const t of group) assert.equal(t.exchange.federation.applied.round, rounds);
    for (const t of group) await t.exchange.close();
  });
});
