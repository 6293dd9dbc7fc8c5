// A run stopped after some rounds and resumed from its checkpoint ends bit for bit where the
// uninterrupted run does: global model, outer optimiser and every worker's own state (AdamW
// moments and step count, error-feedback residual, inner step count). Three workers in process
// on the plain-JS backend, top-k with error feedback and a cosine schedule with warm-up, so that
// every piece of state changes what later rounds compute.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { before, describe, it } from "node:test";
import { pino } from "pino";
import {
  canonicalFederation,
  type FederationSpec,
  federationSpecHash,
} from "../../core/api/index.js";
import type { TrainerConfig } from "../../core/api/trainer-config.js";
import { OuterOptimizer } from "../../core/codec/index.js";
import { mlpDefinition } from "../../test/fixtures/diloco.js";
import { scratchDirectory } from "../../test/fixtures/scratch.js";
import { trainerConfigFile } from "../../test/fixtures/trainer-config.js";
import { initBackend } from "../training/backend.js";
import {
  CHECKPOINT_FORMAT_V1,
  type Checkpoint,
  decodeCheckpoint,
  encodeCheckpoint,
  readCheckpoint,
} from "../training/checkpoint.js";
import { dilocoConfig } from "../training/config.js";
import { BatchSampler, gaussianClusters } from "../training/data.js";
import {
  type DiLoCoConfig,
  DiLoCoWorker,
  InProcessExchange,
  parameterHash,
  type RoundReport,
  type UpdateExchange,
} from "../training/diloco.js";
import { initialParameters, Model, type ModelDefinition } from "../training/model.js";
import {
  parseSafetensors,
  type SafetensorsTensor,
  writeSafetensors,
} from "../training/safetensors.js";
import { ExchangeClosedError, type ExchangeTransport, LocalExchange } from "./exchange.js";
import { TrainerMetrics } from "./metrics.js";
import { TrainerRuntime } from "./runtime.js";
import { checkTrainerConfig } from "./trainer-config.js";

const seed = 5;
const rounds = 6;
const innerSteps = 3;
/** The round the interrupted runs stop in: past warm-up, into the cosine decay. */
const stopRound = 3;
const workerCount = 3;
const clusters = { trainExamples: 300, evalExamples: 60, features: 6, classes: 3, noise: 1 };

/** The same run as a federation spec, for TrainerRuntime (and the checkpoints' metadata). */
const federation = canonicalFederation({
  id: "resume-test",
  model: { preset: "MLP", mlp: { hiddenLayers: [8], activation: "ReLU" } },
  data: { synthetic: { preset: "GaussianClusters", ...clusters } },
  training: {
    seed,
    rounds,
    innerSteps,
    batchSize: 8,
    innerOptimizer: { learningRate: 0.02, warmupSteps: 5, schedule: "Cosine" },
  },
  sync: {
    compression: { method: "TopK", topK: { density: 0.1, valueBits: 4, errorFeedback: true } },
    checkpointEveryRounds: 2,
  },
} as FederationSpec);

function digest(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** A version 2 checkpoint file as version 1 wrote it: the same, less the worker-local state. */
function asVersion1(bytes: Uint8Array): Uint8Array {
  const file = parseSafetensors(bytes);
  const tensors: SafetensorsTensor[] = [];
  for (const [name, entry] of file.entries) {
    if (name.startsWith("worker")) continue;
    const data = file.data.slice(entry.data_offsets[0], entry.data_offsets[1]);
    tensors.push({
      name,
      dtype: entry.dtype as SafetensorsTensor["dtype"],
      shape: entry.shape,
      data: entry.dtype === "F32" ? new Float32Array(data.buffer) : data,
    });
  }
  const { local: _, ...metadata } = file.metadata;
  return writeSafetensors(tensors, { ...metadata, format: CHECKPOINT_FORMAT_V1 });
}

/**
 * A LocalExchange that records every update's digest by round and worker, and can abort a
 * controller when one worker publishes one round: that worker has then taken the round's inner
 * steps and updated its residual, and the others have taken the round's inner steps too, so a
 * checkpoint of the live state (instead of the round boundary's) would be wrong.
 */
class RecordingExchange implements ExchangeTransport {
  readonly kind = "local";
  readonly updates = new Map<string, string>();
  private readonly inner: LocalExchange;

  constructor(
    workers: readonly string[],
    private readonly stopAt?: { worker: string; round: number; controller: AbortController },
  ) {
    this.inner = new LocalExchange(workers);
  }

  endpoint(worker: string): UpdateExchange {
    const inner = this.inner.endpoint(worker);
    return {
      exchange: (round, message) => {
        this.updates.set(`${round}/${worker}`, digest(message));
        const stop = this.stopAt;
        if (stop?.worker === worker && stop.round === round) {
          stop.controller.abort();
          void this.close();
        }
        return inner.exchange(round, message);
      },
    };
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

describe("resuming from a checkpoint", () => {
  before(async () => {
    await initBackend("JS", { log: () => {} });
  });

  it("starts a round's batches from (seed, stream, round) alone", () => {
    const shard = gaussianClusters(seed, clusters, {
      workerIndex: 1,
      workerCount,
      strategy: "IID",
      concentration: 1,
    });
    const draw = (sampler: BatchSampler) => {
      const batch = sampler.next();
      assert.equal(batch.kind, "classification");
      return digest(new Uint8Array(batch.features.buffer));
    };
    const uninterrupted = new BatchSampler(shard.train, 8, seed, 1);
    for (let round = 0; round < stopRound; round++) {
      uninterrupted.startRound(round);
      for (let step = 0; step < innerSteps; step++) draw(uninterrupted);
    }
    // Half a round drawn, then the round restarted, as a stop and resume do.
    uninterrupted.startRound(stopRound);
    draw(uninterrupted);
    uninterrupted.startRound(stopRound);
    const resumed = new BatchSampler(shard.train, 8, seed, 1);
    resumed.startRound(stopRound);
    for (let step = 0; step < innerSteps; step++) {
      assert.equal(draw(resumed), draw(uninterrupted), `batch ${step} of round ${stopRound}`);
    }
  });

  describe("DiLoCo workers", () => {
    const definition: ModelDefinition = mlpDefinition(clusters.features, clusters.classes, [8]);
    const config: DiLoCoConfig = dilocoConfig(federation);
    const ids = Array.from({ length: workerCount }, (_, w) => `worker-${w}`);
    const shards = ids.map((_, workerIndex) =>
      gaussianClusters(seed, clusters, {
        workerIndex,
        workerCount,
        strategy: "IID",
        concentration: 1,
      }),
    );

    /** What a run computed: per round and worker, the local model after the inner steps. */
    interface Trace {
      local: Map<string, string>;
      global: Map<number, string>;
      status: string[];
      /** The checkpoint of the last round applied, with every worker's local state. */
      checkpoint: Checkpoint;
    }

    async function train(
      from?: Checkpoint,
      stopAt?: { worker: string; round: number },
    ): Promise<Trace> {
      const controller = new AbortController();
      const exchange = new RecordingExchange(ids, stopAt && { ...stopAt, controller });
      const global = from?.global ?? initialParameters(definition, seed);
      const models = ids.map(() => new Model(definition, global));
      const workers = ids.map(
        (id, w) =>
          new DiLoCoWorker(
            id,
            models[w]!,
            global,
            new BatchSampler(shards[w]!.train, 8, seed, w),
            exchange.endpoint(id),
            config,
          ),
      );
      const trace: Trace = {
        local: new Map(),
        global: new Map(),
        status: [],
        checkpoint: undefined as unknown as Checkpoint,
      };
      try {
        if (from) {
          const outer = OuterOptimizer.deserialize(from.outerState, global.length);
          for (const [w, worker] of workers.entries()) {
            worker.outer.momentumBuffer.set(outer.momentumBuffer);
            worker.outer.stepCount = outer.stepCount;
            worker.restoreLocalState(from.local.find((each) => each.worker === w)!.state);
          }
        }
        // In onRound the local model still holds the round's inner steps (local ← global follows).
        const onRound = (w: number) => async (report: RoundReport) => {
          const local = await models[w]!.readParameters();
          trace.local.set(`${report.round}/${w}`, parameterHash(local));
          trace.global.set(report.round, report.globalHash);
        };
        trace.status = await Promise.all(
          workers.map((worker, w) =>
            worker
              .run(onRound(w), {
                signal: controller.signal,
                firstRound: from?.rounds ?? 0,
              })
              .catch((error: unknown) => {
                if (error instanceof ExchangeClosedError) return "stopped";
                throw error;
              }),
          ),
        );
        const states = await Promise.all(workers.map((worker) => worker.localState()));
        const applied = states[0]!.round;
        trace.checkpoint = {
          federation,
          federationSpecHash: federationSpecHash(federation),
          member: "test",
          worker: 0,
          rounds: applied,
          definition,
          global: Float32Array.from(workers[0]!.global),
          outerState: workers[0]!.outer.serialize(),
          local: states.map((state, w) => ({ worker: w, state: state! })),
        };
        return trace;
      } finally {
        for (const worker of workers) worker.dispose();
        for (const model of models) model.dispose();
      }
    }

    it("save no local state in overlap mode, and refuse to restore one", async () => {
      const overlap = { ...config, rounds: 2, overlap: true };
      const global = initialParameters(definition, seed);
      const model = new Model(definition, global);
      const worker = new DiLoCoWorker(
        "solo",
        model,
        global,
        new BatchSampler(shards[0]!.train, 8, seed, 0),
        new InProcessExchange(["solo"]).endpoint("solo"),
        overlap,
      );
      try {
        assert.equal(await worker.run(), "completed");
        assert.equal(await worker.localState(), null);
        const zeros = () => new Float32Array(global.length);
        const state = {
          round: 2,
          innerStepCount: 0,
          inner: { firstMoment: zeros(), secondMoment: zeros(), stepCount: 0 },
          residual: zeros(),
          pendingShareScale: 0,
        };
        assert.throws(() => worker.restoreLocalState(state), /overlap-mode worker has no local/);
      } finally {
        worker.dispose();
        model.dispose();
      }
    });

    it("continue bit for bit after a stop in the middle of a round", async () => {
      const uninterrupted = await train();
      assert.deepEqual(uninterrupted.status, ["completed", "completed", "completed"]);

      const stopped = await train(undefined, { worker: "worker-0", round: stopRound });
      assert.deepEqual(stopped.status, ["stopped", "stopped", "stopped"]);
      assert.equal(stopped.checkpoint.rounds, stopRound, "the round in flight is dropped");
      for (const { state } of stopped.checkpoint.local) {
        assert.equal(state.innerStepCount, stopRound * innerSteps);
        assert.equal(state.inner.stepCount, stopRound * innerSteps);
      }
      // Through the file format, as a real resume reads it.
      const saved = decodeCheckpoint(encodeCheckpoint(stopped.checkpoint));
      const resumed = await train(saved);
      assert.deepEqual(resumed.status, ["completed", "completed", "completed"]);

      for (let round = stopRound; round < rounds; round++) {
        assert.equal(resumed.global.get(round), uninterrupted.global.get(round), `round ${round}`);
        for (let w = 0; w < workerCount; w++) {
          const key = `${round}/${w}`;
          assert.equal(resumed.local.get(key), uninterrupted.local.get(key), `local model ${key}`);
        }
      }
      assert.equal(
        parameterHash(resumed.checkpoint.global),
        parameterHash(uninterrupted.checkpoint.global),
      );
      assert.deepEqual(resumed.checkpoint, uninterrupted.checkpoint);
    });
  });

  describe("TrainerRuntime in local mode", () => {
    const config: TrainerConfig = checkTrainerConfig(trainerConfigFile(federation));
    const indices = Array.from({ length: workerCount }, (_, w) => w);
    const ids = indices.map((w) => `alpha-${w}`);
    const scratch = scratchDirectory("fedtrain-resume-");
    let uninterruptedHash: string | undefined;

    async function run(options: { folder: string; resume: boolean; stop?: boolean }) {
      const controller = new AbortController();
      const exchange = new RecordingExchange(
        ids,
        options.stop ? { worker: ids[0]!, round: stopRound, controller } : undefined,
      );
      const lines: Record<string, unknown>[] = [];
      const log = pino(
        { level: "info" },
        { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) },
      );
      const runtime = new TrainerRuntime(
        {
          config,
          workerIndices: indices,
          checkpointDir: join(scratch.path, options.folder),
          resume: options.resume,
        },
        exchange,
        new TrainerMetrics(),
        log,
      );
      try {
        await runtime.load({ backend: "cpu-js", device: "cpu" });
        const outcome = await runtime.run(controller.signal);
        return { outcome, updates: exchange.updates, lines };
      } finally {
        runtime.dispose();
      }
    }

    /** The updates of rounds from `first` on, which the local models and residuals determine. */
    function updatesFrom(updates: Map<string, string>, first: number): [string, string][] {
      return [...updates].filter(([key]) => Number(key.split("/")[0]) >= first).sort();
    }

    it("continues bit for bit from the checkpoint of a stop", async () => {
      const uninterrupted = await run({ folder: "uninterrupted", resume: false });
      assert.equal(uninterrupted.outcome.status, "completed");
      uninterruptedHash = uninterrupted.outcome.globalHash;

      const stopped = await run({ folder: "stopped", resume: false, stop: true });
      assert.equal(stopped.outcome.status, "stopped");
      assert.equal(stopped.outcome.rounds, stopRound);
      const checkpoint = await readCheckpoint(stopped.outcome.checkpoint);
      assert.deepEqual(
        checkpoint.local.map((each) => [each.worker, each.state.innerStepCount]),
        indices.map((w) => [w, stopRound * innerSteps]),
      );

      const resumed = await run({ folder: "stopped", resume: true });
      assert.equal(resumed.outcome.status, "completed");
      assert.equal(
        resumed.lines.filter((line) => line.msg === "worker-local state restored").length,
        workerCount,
      );
      assert.equal(resumed.outcome.globalHash, uninterrupted.outcome.globalHash);
      assert.deepEqual(
        updatesFrom(resumed.updates, stopRound),
        updatesFrom(uninterrupted.updates, stopRound),
      );
      const [end, expected] = await Promise.all(
        [resumed, uninterrupted].map((each) => readCheckpoint(each.outcome.checkpoint)),
      );
      // The whole final state: global model, outer optimiser and every worker's own state.
      assert.deepEqual(end, expected);
      assert.equal(end!.local.length, workerCount);
    });

    it("resumes a version 1 checkpoint with fresh local state, and ends elsewhere", async () => {
      const path = (await run({ folder: "v1", resume: false, stop: true })).outcome.checkpoint;
      await writeFile(path, asVersion1(new Uint8Array(await readFile(path))));
      const resumed = await run({ folder: "v1", resume: true });
      assert.equal(resumed.outcome.status, "completed");
      const fresh = resumed.lines.filter(
        (line) => line.msg === "worker-local state starts fresh: a version 1 checkpoint holds none",
      );
      assert.deepEqual(
        fresh.map((line) => line.worker),
        indices,
      );
      // What the test above would see if the local state were not restored.
      assert.ok(uninterruptedHash, "the test above runs first");
      assert.notEqual(resumed.outcome.globalHash, uninterruptedHash);
    });
  });
});
