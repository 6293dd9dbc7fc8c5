// A poisoning drill over a real nats-server: three trainer runtimes (as three members' pods run
// them), one of which sends its pseudo-gradients sign-flipped and ×10 (trainer.json's
// drill.poisonScale, what the fedtrain.dev/drill-poison-scale annotation renders). With a norm
// bound configured, every worker counts the poisoner's updates as clipped (or dropped) in its
// metrics, its heartbeats carry the counts, and the operator's view shows them for the poisoner
// and zero for the honest members.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { NatsConnection } from "@nats-io/transport-node";
import { pino } from "pino";
import {
  canonicalFederation,
  type FederationSpec,
  federationSpecHash,
  specHashBytes,
} from "../../core/api/index.js";
import {
  connectNats,
  type FederationView,
  generateKeyPair,
  readFederationView,
} from "../../core/protocol/index.js";
import { type NatsServer, startNatsServer } from "../../testbed/nats.js";
import type { ExchangeTransport, LocalParameters } from "../../trainer-image/process/exchange.js";
import { TrainerMetrics } from "../../trainer-image/process/metrics.js";
import { NatsExchange } from "../../trainer-image/process/nats-exchange.js";
import { TrainerRuntime } from "../../trainer-image/process/runtime.js";
import { checkTrainerConfig } from "../../trainer-image/process/trainer-config.js";
import { initBackend } from "../../trainer-image/training/backend.js";
import type {
  DiLoCoWorker,
  RoundReport,
  UpdateExchange,
} from "../../trainer-image/training/diloco.js";
import { trainerConfigFile } from "../fixtures/trainer-config.js";

const rounds = 4;
// Short protocol timings: a test round takes well under a second.
const fast = {
  heartbeatIntervalMs: 150,
  workerTtlMs: 2_500,
  leaseTtlMs: 900,
  publishRetryMs: 20_000,
};
const members = ["alpha", "beta", "mallory"] as const;
const poisoner = "mallory";

function federation(id: string, action: "Clip" | "Drop"): FederationSpec {
  return canonicalFederation({
    id,
    model: { preset: "MLP", mlp: { hiddenLayers: [16], activation: "ReLU" } },
    data: {
      synthetic: {
        preset: "GaussianClusters",
        trainExamples: 600,
        evalExamples: 60,
        features: 8,
        classes: 3,
        noise: 1,
      },
    },
    training: { rounds, innerSteps: 4, batchSize: 16, seed: 5 },
    sync: {
      compression: { method: "Int8" },
      aggregation: { rule: "Mean", normBound: { action, maxMedianMultiple: 3 } },
      // Every round waits for all three, so every commit holds the poisoner's update.
      quorum: { minMembers: 3 },
      roundDeadlineSeconds: 30,
      checkpointEveryRounds: 100,
    },
    membership: { policy: "Open" },
  } as FederationSpec);
}

/**
 * The NATS exchange with its close held until the test releases it: closing leaves the
 * federation, which deletes the worker's heartbeat, and the test reads the view before that.
 */
class HeldOpen implements ExchangeTransport {
  readonly kind = "nats";
  constructor(
    readonly inner: NatsExchange,
    private readonly released: Promise<void>,
  ) {}
  endpoint(worker: string): UpdateExchange {
    return this.inner.endpoint(worker);
  }
  join(worker: DiLoCoWorker, local: LocalParameters): Promise<{ firstRound: number }> {
    return this.inner.join(worker, local);
  }
  roundApplied(report: RoundReport): void {
    this.inner.roundApplied(report);
  }
  async close(): Promise<void> {
    await this.released;
    await this.inner.close();
  }
}

interface Member {
  id: string;
  runtime: TrainerRuntime;
  exchange: NatsExchange;
  metrics: TrainerMetrics;
}

describe("a poisoning drill against a norm bound", () => {
  let server: NatsServer;
  let directory: string;
  const connections: NatsConnection[] = [];
  const runtimes: TrainerRuntime[] = [];

  before(async () => {
    await initBackend("WASM", { log: () => {} });
    server = await startNatsServer();
    directory = await mkdtemp(join(tmpdir(), "fedtrain-poisoning-"));
  });

  after(async () => {
    for (const runtime of runtimes) runtime.dispose();
    for (const nc of connections) await nc.close().catch(() => {});
    await server?.stop();
    await rm(directory, { recursive: true, force: true });
  });

  async function member(
    spec: FederationSpec,
    id: string,
    released: Promise<void>,
  ): Promise<Member> {
    const config = checkTrainerConfig(
      trainerConfigFile(spec, {
        member: { id, publicKey: "", privateKeyFile: "" },
        ...(id === poisoner ? { drill: { poisonScale: -10 } } : {}),
      }),
    );
    const nc = await connectNats(server.url, `${spec.id}-${id}`);
    connections.push(nc);
    const exchange = new NatsExchange({
      nc,
      spec: config.federation,
      specHash: specHashBytes(config.federationSpecHash),
      memberId: id,
      workerId: "w0",
      privateKey: generateKeyPair().privateKey,
      settings: fast,
    });
    const metrics = new TrainerMetrics();
    const runtime = new TrainerRuntime(
      {
        config,
        workerIndices: [0],
        checkpointDir: join(directory, spec.id, id),
        resume: false,
      },
      new HeldOpen(exchange, released),
      metrics,
      pino({ level: "silent" }),
    );
    runtimes.push(runtime);
    return { id, runtime, exchange, metrics };
  }

  /** Polls the view until every worker's heartbeat reports the last round applied. */
  async function viewAfterLastRound(spec: FederationSpec): Promise<FederationView> {
    const nc = connections[0]!;
    const specHash = specHashBytes(federationSpecHash(spec));
    const deadline = Date.now() + 20_000;
    for (;;) {
      const view = await readFederationView(nc, spec, specHash);
      const workers = view.members.flatMap((m) => m.workers);
      if (workers.length === members.length && workers.every((w) => w.appliedRound === rounds))
        return view;
      assert.ok(Date.now() < deadline, `workers never reported round ${rounds}`);
      await sleep(100);
    }
  }

  for (const [action, counted] of [
    ["Clip", "clipped"],
    ["Drop", "dropped"],
  ] as const) {
    test(`with ${action}, the poisoner's updates are counted ${counted}, the honest ones not`, async () => {
      const spec = federation(`poison-${action.toLowerCase()}`, action);
      let release!: () => void;
      const released = new Promise<void>((resolve) => {
        release = resolve;
      });
      const group = await Promise.all(members.map((id) => member(spec, id, released)));
      await Promise.all(group.map((m) => m.runtime.load({ backend: "wasm", device: "cpu" })));
      const runs = group.map((m) => m.runtime.run(new AbortController().signal));
      try {
        const view = await viewAfterLastRound(spec);
        const shown = Object.fromEntries(
          view.members.map((m) => [m.memberId, [m.updatesClipped, m.updatesDropped]]),
        );
        const poisoned = action === "Clip" ? [rounds, 0] : [0, rounds];
        assert.deepEqual(shown, { alpha: [0, 0], beta: [0, 0], mallory: poisoned });
        // Every worker's heartbeat counts the same committed sets.
        for (const m of group)
          assert.deepEqual(m.exchange.boundedUpdates(), [
            {
              memberId: poisoner,
              clipped: poisoned[0],
              dropped: poisoned[1],
            },
          ]);
      } finally {
        release();
        await Promise.allSettled(runs);
      }
      const outcomes = await Promise.all(runs);
      assert.deepEqual(
        outcomes.map((o) => o.status),
        ["completed", "completed", "completed"],
      );
      assert.equal(new Set(outcomes.map((o) => o.globalHash)).size, 1, "models differ");
      for (const m of group) {
        const { values } = await m.metrics.updatesBounded.get();
        assert.deepEqual(
          values.map((v) => [v.labels.member, v.labels.action, v.value]),
          [[poisoner, counted, rounds]],
          `${m.id}'s fedtrain_trainer_updates_bounded_total`,
        );
      }
    });
  }
});
