// TrainerRuntime over a federated transport (one with join, as the NATS exchange): ready only once
// joined, starts at the round the join gives, never resumes a local checkpoint, acknowledges every
// applied round to the transport.
import assert from "node:assert/strict";
import { before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { pino } from "pino";
import { canonicalFederation, type FederationSpec } from "../../core/api/index.js";
import { decodeUpdate, encodeUpdate, l2Norm } from "../../core/codec/index.js";
import { scratchDirectory } from "../../test/fixtures/scratch.js";
import { trainerConfigFile } from "../../test/fixtures/trainer-config.js";
import { initBackend } from "../training/backend.js";
import { latestCheckpoint, readCheckpoint } from "../training/checkpoint.js";
import type { DiLoCoWorker, RoundReport, UpdateExchange } from "../training/diloco.js";
import type { ExchangeTransport, LocalParameters } from "./exchange.js";
import { TrainerMetrics } from "./metrics.js";
import { TrainerRuntime } from "./runtime.js";
import { checkTrainerConfig } from "./trainer-config.js";

const federation = canonicalFederation({
  id: "runtime-test",
  model: { preset: "MLP", mlp: { hiddenLayers: [8], activation: "ReLU" } },
  data: {
    synthetic: {
      preset: "GaussianClusters",
      trainExamples: 200,
      evalExamples: 50,
      features: 4,
      classes: 2,
      noise: 1,
    },
  },
  training: { rounds: 3, innerSteps: 2, batchSize: 8 },
  sync: { compression: { method: "Int8" }, checkpointEveryRounds: 100 },
} as FederationSpec);

/** A transport whose join waits for the test, and whose rounds commit this worker's update alone. */
class FederatedTransport implements ExchangeTransport {
  readonly kind = "fake";
  joined: DiLoCoWorker | undefined;
  globalAtJoin: Float32Array | undefined;
  readonly acknowledged: number[] = [];
  closed = false;
  private release: (firstRound: number) => void = () => {};

  endpoint(worker: string): UpdateExchange {
    return {
      exchange: async (round, message) => ({ round, updates: [{ worker, message }] }),
    };
  }

  join(worker: DiLoCoWorker, _local: LocalParameters): Promise<{ firstRound: number }> {
    this.joined = worker;
    this.globalAtJoin = Float32Array.from(worker.global);
    return new Promise((resolve) => {
      this.release = (firstRound) => resolve({ firstRound });
    });
  }

  /** Completes the join at `firstRound`, with the federation's global model when given. */
  finishJoin(firstRound: number, global?: Float32Array): void {
    if (global) this.joined!.global.set(global);
    this.release(firstRound);
  }

  roundApplied(report: RoundReport): void {
    this.acknowledged.push(report.round);
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

describe("TrainerRuntime over a federated transport", () => {
  const scratch = scratchDirectory("fedtrain-runtime-");
  let firstGlobalAtJoin: Float32Array | undefined;
  before(async () => {
    await initBackend("JS", { log: () => {} });
  });

  function runtimeWith(
    transport: ExchangeTransport,
    workerIndices = [0],
    lines?: Record<string, unknown>[],
  ): TrainerRuntime {
    const config = checkTrainerConfig(trainerConfigFile(federation));
    return new TrainerRuntime(
      {
        config,
        workerIndices,
        checkpointDir: scratch.path,
        resume: true,
      },
      transport,
      new TrainerMetrics(),
      lines
        ? pino(
            { level: "info" },
            {
              write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>),
            },
          )
        : pino({ level: "silent" }),
    );
  }

  /** Loads a runtime whose join gives `firstRound`, and returns its log lines and worker. */
  async function joinAt(firstRound: number, global?: Float32Array) {
    const transport = new FederatedTransport();
    const lines: Record<string, unknown>[] = [];
    const runtime = runtimeWith(transport, [0], lines);
    const loading = runtime.load({ backend: "cpu-js", device: "cpu" });
    while (!transport.joined) await sleep(5);
    transport.finishJoin(firstRound, global);
    await loading;
    return { runtime, lines, worker: transport.joined };
  }

  it("is ready only once joined, starts at the joined round and acknowledges each round", async () => {
    const transport = new FederatedTransport();
    const runtime = runtimeWith(transport);
    try {
      const loading = runtime.load({ backend: "cpu-js", device: "cpu" });
      while (!transport.joined) await sleep(5);
      assert.equal(runtime.ready(), false, "ready before the join completed");
      transport.finishJoin(1);
      await loading;
      assert.equal(runtime.ready(), true);
      const outcome = await runtime.run(new AbortController().signal);
      assert.equal(outcome.status, "completed");
      assert.equal(outcome.rounds, 3);
      assert.deepEqual(transport.acknowledged, [1, 2], "rounds 1 and 2, after joining at 1");
      assert.equal(transport.closed, true);
      firstGlobalAtJoin = transport.globalAtJoin;
    } finally {
      runtime.dispose();
    }
  });

  it("joins from the initial weights even when a local checkpoint exists", async () => {
    const transport = new FederatedTransport();
    const runtime = runtimeWith(transport);
    try {
      const loading = runtime.load({ backend: "cpu-js", device: "cpu" });
      while (!transport.joined) await sleep(5);
      transport.finishJoin(0);
      await loading;
      // The first test left a checkpoint of round 3 in the folder; resuming it would make the
      // protocol's replay of the federation's commits apply those rounds twice.
      assert.deepEqual(transport.globalAtJoin, firstGlobalAtJoin);
    } finally {
      runtime.dispose();
    }
  });

  it("restores its own local state from a local checkpoint of the round it joins at", async () => {
    // The first test's final checkpoint: round 3, with worker 0's state at the end of round 2.
    const path = await latestCheckpoint(scratch.path, federation.id, 0);
    const checkpoint = await readCheckpoint(path!);
    const saved = checkpoint.local;
    assert.equal(saved.length, 1);
    const { runtime, lines, worker } = await joinAt(3, checkpoint.global);
    try {
      assert.ok(lines.some((line) => line.msg === "worker-local state restored"));
      assert.deepEqual(await worker.localState(), saved[0]!.state);
    } finally {
      runtime.dispose();
    }
  });

  it("starts its local state fresh when the federation's model at that round is another", async () => {
    // Round 3 again, but the federation's model is not the checkpoint's (say, a federation
    // recreated under the same id): the saved moments and residual belong to another run.
    const { runtime, lines, worker } = await joinAt(3);
    try {
      const fresh = lines.find((line) => line.msg?.toString().startsWith("worker-local state"));
      assert.equal(
        fresh?.msg,
        "worker-local state starts fresh: the federation's global model at that round is not the local checkpoint's",
      );
      assert.equal(worker.innerStepCount, 0);
    } finally {
      runtime.dispose();
    }
  });

  it("starts its local state fresh when the federation is at another round", async () => {
    const { runtime, lines, worker } = await joinAt(2);
    try {
      const fresh = lines.find((line) => line.msg?.toString().startsWith("worker-local state"));
      assert.equal(
        fresh?.msg,
        "worker-local state starts fresh: the local checkpoint is of another round than the one the worker joined at",
      );
      assert.deepEqual([fresh?.rounds, fresh?.firstRound], [3, 2]);
      assert.equal(worker.innerStepCount, 0);
    } finally {
      runtime.dispose();
    }
  });

  it("serves one worker per process", async () => {
    const runtime = runtimeWith(new FederatedTransport(), [0, 1]);
    await assert.rejects(
      runtime.load({ backend: "cpu-js", device: "cpu" }),
      /the fake exchange serves one worker per process/,
    );
  });
});

/** The element count an encoded update declares (core/codec FORMAT.md: u32 at byte 8). */
function elementCountOf(message: Uint8Array): number {
  return new DataView(message.buffer, message.byteOffset, message.byteLength).getUint32(8, true);
}

/**
 * A transport without join that commits, with this worker's update, two other members' updates
 * made from it: bob's the same, mallory's ten times as large (a poisoner the norm bound catches).
 */
class ThreeMemberTransport implements ExchangeTransport {
  readonly kind = "three-members";
  /** This worker's decoded updates, round by round. */
  readonly sent: Float32Array[] = [];

  endpoint(worker: string): UpdateExchange {
    return {
      exchange: async (round, message) => {
        const update = decodeUpdate(message, elementCountOf(message));
        this.sent.push(update);
        const poisoned = encodeUpdate(
          update.map((x) => 10 * x),
          { method: "none" },
        );
        return {
          round,
          updates: [
            { worker, member: "alpha", message },
            { worker: "bob/w0", member: "bob", message },
            { worker: "mallory/w0", member: "mallory", message: poisoned },
          ],
        };
      },
    };
  }

  async close(): Promise<void> {}
}

describe("TrainerRuntime drills and bounded updates", () => {
  const scratch = scratchDirectory("fedtrain-runtime-drill-");
  before(async () => {
    await initBackend("JS", { log: () => {} });
  });

  async function train(options: { poisonScale?: number; normBound?: boolean }) {
    const spec = structuredClone(federation);
    if (options.normBound)
      spec.sync.aggregation.normBound = { action: "Clip", maxMedianMultiple: 3 };
    const config = checkTrainerConfig(
      trainerConfigFile(
        spec,
        options.poisonScale === undefined ? {} : { drill: { poisonScale: options.poisonScale } },
      ),
    );
    const transport = new ThreeMemberTransport();
    const metrics = new TrainerMetrics();
    const lines: Record<string, unknown>[] = [];
    const log = pino(
      { level: "info" },
      { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) },
    );
    const runtime = new TrainerRuntime(
      { config, workerIndices: [0], checkpointDir: scratch.path, resume: false },
      transport,
      metrics,
      log,
    );
    try {
      await runtime.load({ backend: "cpu-js", device: "cpu" });
      assert.equal((await runtime.run(new AbortController().signal)).status, "completed");
    } finally {
      runtime.dispose();
    }
    return { sent: transport.sent, metrics, lines };
  }

  it("sends the pseudo-gradient scaled by the drill's poison scale", async () => {
    const honest = await train({});
    const poisoned = await train({ poisonScale: -10 });
    // Round 0 starts from the same weights and batches: only the scale differs (up to int8).
    const a = honest.sent[0]!;
    const b = poisoned.sent[0]!;
    let dot = 0;
    for (let i = 0; i < a.length; i++) dot += a[i]! * b[i]!;
    const ratio = l2Norm(b) / l2Norm(a);
    assert.ok(Math.abs(ratio - 10) < 0.1, `norm ratio ${ratio}`);
    assert.ok(dot / (l2Norm(a) * l2Norm(b)) < -0.999, "not sign-flipped");
  });

  it("counts each member's clipped updates in the metric and the round log line", async () => {
    const { metrics, lines } = await train({ normBound: true });
    const counter = await metrics.updatesBounded.get();
    assert.deepEqual(
      counter.values.map((v) => [v.labels.member, v.labels.action, v.value]),
      [["mallory", "clipped", 3]],
    );
    const rounds = lines.filter((line) => line.msg === "round applied");
    assert.equal(rounds.length, 3);
    for (const line of rounds) {
      assert.deepEqual(line.clipped, ["mallory"]);
      assert.deepEqual(line.dropped, []);
      assert.equal(line.included, 3);
    }
    const text = await metrics.registry.metrics();
    assert.match(
      text,
      /fedtrain_trainer_updates_bounded_total\{member="mallory",action="clipped"\} 3/,
    );
  });

  it("counts nothing without a norm bound", async () => {
    const { metrics, lines } = await train({});
    assert.deepEqual((await metrics.updatesBounded.get()).values, []);
    assert.deepEqual(lines.find((line) => line.msg === "round applied")?.clipped, []);
  });
});
