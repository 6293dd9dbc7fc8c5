// Three trainer processes (dist/trainer-image/process/main.js run --config FILE), one per member,
// each with its own Ed25519 key, federate over a real nats-server through the NATS exchange:
// every process exits 0 after the last round, their final checkpoints hold bit-identical global
// parameters, and the run's hash-chained ledger verifies. A member stopped by SIGTERM leaves at
// once and, restarted, rejoins from the federation's checkpoint and ledger with the same model.
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { NatsConnection } from "@nats-io/transport-node";
import {
  canonicalFederation,
  type FederationSpec,
  federationSpecHash,
  roundRules,
  specHashBytes,
} from "../../core/api/index.js";
import { declaredElementCount, RoundAuditor } from "../../core/codec/index.js";
import {
  connectNats,
  readFederationView,
  verifyFederationLedger,
} from "../../core/protocol/index.js";
import { type NatsServer, startNatsServer } from "../../testbed/nats.js";
import { TcpProxy } from "../../testbed/tcp-proxy.js";
import { type Checkpoint, readCheckpoint } from "../../trainer-image/training/checkpoint.js";
import {
  createMembers,
  type Member,
  startMemberTrainer,
  TrainerProcess,
  writeTrainerConfig,
} from "../fixtures/trainer-process.js";

const ROUNDS = 4;
// Three cold tfjs processes and four rounds on a loaded 2-core machine take well under this.
const RUN_TIMEOUT_MS = 90_000;
/** How long the cut-off test keeps a trainer from NATS. */
const CUT_MS = 180_000;

/** A run's shape: its federation id, rounds, quorum and checkpoint interval. */
interface RunShape {
  id: string;
  rounds: number;
  innerSteps: number;
  minMembers: number;
  checkpointEveryRounds: number;
}

function federationSpec(
  members: { id: string; publicKey: string }[],
  shape: RunShape,
): FederationSpec {
  return canonicalFederation({
    id: shape.id,
    model: { preset: "MLP", mlp: { hiddenLayers: [16], activation: "ReLU" } },
    data: {
      synthetic: {
        preset: "GaussianClusters",
        trainExamples: 600,
        evalExamples: 100,
        features: 8,
        classes: 4,
        noise: 1,
      },
    },
    training: { rounds: shape.rounds, innerSteps: shape.innerSteps, batchSize: 16 },
    sync: {
      compression: { method: "Int8" },
      quorum: { minMembers: shape.minMembers },
      roundDeadlineSeconds: 2,
      checkpointEveryRounds: shape.checkpointEveryRounds,
    },
    membership: {
      policy: "Allowlist",
      members: members.map(({ id, publicKey }) => ({ id, publicKey })),
      organiserKeys: [members[0]!.publicKey],
    },
  } as FederationSpec);
}

describe("trainer processes federated over NATS", () => {
  let server: NatsServer;
  let directory: string;
  let nc: NatsConnection | undefined;
  let members: Member[] = [];

  before(async () => {
    server = await startNatsServer();
    directory = await mkdtemp(join(tmpdir(), "fedtrain-trainer-processes-"));
    members = await createMembers(directory, ["alpha", "beta", "gamma"]);
  });

  /** Writes each member's TrainerConfig for a run; returns the files, in member order. */
  async function writeConfigs(federation: FederationSpec): Promise<string[]> {
    return Promise.all(
      members.map((member) => writeTrainerConfig(directory, federation, member, server.url)),
    );
  }

  // Every trainer a test started: one left running by a failed assertion would keep this file's
  // process (and the whole suite) from ever ending.
  const started: TrainerProcess[] = [];

  function startTrainer(federation: FederationSpec, configFile: string, member: Member) {
    const trainer = startMemberTrainer(directory, federation, member, configFile);
    started.push(trainer);
    return trainer;
  }

  after(async () => {
    for (const trainer of started) {
      if (trainer.child.exitCode === null && trainer.child.signalCode === null) {
        trainer.child.kill("SIGKILL");
      }
    }
    await nc?.close().catch(() => {});
    await server?.stop();
    if (directory) await rm(directory, { recursive: true, force: true });
  });

  /** Waits for every trainer to exit (SIGKILL after RUN_TIMEOUT_MS) and asserts exit code 0. */
  async function allExitZero(trainers: TrainerProcess[], names: string[]): Promise<void> {
    const timeout = setTimeout(() => {
      for (const t of trainers) t.child.kill("SIGKILL");
    }, RUN_TIMEOUT_MS);
    const codes = await Promise.all(trainers.map((t) => t.exited));
    clearTimeout(timeout);
    codes.forEach((code, i) => {
      assert.equal(code, 0, `${names[i]} exited ${code}:\n${trainers[i]!.tail()}`);
    });
  }

  /** Each finished trainer's final checkpoint; asserts they hold bit-identical global models. */
  async function assertOneGlobalModel(
    trainers: TrainerProcess[],
    rounds: number,
  ): Promise<Checkpoint[]> {
    const finals = await Promise.all(
      trainers.map(async (trainer, i) => {
        const completed = trainer.line("training completed");
        assert.ok(completed, `${members[i]!.id} did not complete:\n${trainer.tail()}`);
        assert.equal(completed.rounds, rounds);
        assert.equal(trainer.line("model and data loaded")?.exchange, "nats");
        return { completed, checkpoint: await readCheckpoint(completed.checkpoint as string) };
      }),
    );
    const first = finals[0]!.checkpoint;
    const bits = (global: Float32Array) =>
      new Uint8Array(global.buffer, global.byteOffset, global.byteLength);
    for (const [i, { completed, checkpoint }] of finals.entries()) {
      assert.equal(checkpoint.rounds, rounds);
      assert.equal(checkpoint.member, members[i]!.id);
      assert.deepEqual(
        bits(checkpoint.global),
        bits(first.global),
        `${members[i]!.id}'s global parameters differ from ${members[0]!.id}'s`,
      );
      assert.equal(completed.globalHash, finals[0]!.completed.globalHash);
    }
    return finals.map((f) => f.checkpoint);
  }

  /**
   * The ledger is intact, with its checkpoints and the update scores its commits record, at least
   * `scored` rounds of them (round r's are in commit r + 1, so the last round's are in none; a
   * coordinator that joined from a checkpoint has no scores of the rounds before it).
   */
  async function assertLedger(
    federation: FederationSpec,
    rounds: number,
    scored = rounds - 1,
  ): Promise<void> {
    nc ??= await connectNats(server.url, "ledger-check");
    const rules = roundRules(canonicalFederation(federation));
    const report = await verifyFederationLedger(nc, federation.id, {
      spec: federation,
      auditor: (payload) => new RoundAuditor(declaredElementCount(payload), rules),
    });
    assert.ok(report.ok, `ledger problems: ${JSON.stringify(report.problems)}`);
    assert.equal(report.rounds, rounds);
    assert.ok(report.checkpointsVerified >= 1, "no federation checkpoint was verified");
    assert.ok(
      (report.scoresVerified ?? 0) >= scored,
      `${report.scoresVerified} rounds' scores verified, ${scored} expected`,
    );
  }

  test("configuration problems of the NATS exchange exit 2 before joining", async () => {
    const federation = federationSpec(members, {
      id: "broken",
      rounds: 1,
      innerSteps: 1,
      minMembers: 1,
      checkpointEveryRounds: 1,
    });
    const [alphaConfig] = await writeConfigs(federation);
    const base = JSON.parse(await readFile(alphaConfig!, "utf8")) as Record<string, unknown>;
    const variants: [string, (config: Record<string, unknown>) => void, string[], RegExp][] = [
      [
        "no key file",
        (c) => Object.assign(c, { member: { id: "alpha", publicKey: "", privateKeyFile: "" } }),
        [],
        /member\.privateKeyFile: Required value/,
      ],
      [
        "an unreadable key file",
        (c) =>
          Object.assign(c, { member: { id: "alpha", publicKey: "", privateKeyFile: c.dataDir } }),
        [],
        /member\.privateKeyFile: cannot read/,
      ],
      [
        "a bad PEM",
        (c) =>
          Object.assign(c, { member: { id: "alpha", publicKey: "", privateKeyFile: alphaConfig } }),
        [],
        /is not a PKCS #8 PEM Ed25519 private key/,
      ],
      [
        "another member's key",
        (c) =>
          Object.assign(c, {
            member: {
              id: "alpha",
              publicKey: members[0]!.publicKey,
              privateKeyFile: members[1]!.keyFile,
            },
          }),
        [],
        /member\.publicKey .* is not the public key of/,
      ],
      [
        "no NATS URL",
        (c) => Object.assign(c, { transport: { natsUrls: [] } }),
        ["--exchange", "nats"],
        /transport\.natsUrls: Required value/,
      ],
    ];
    for (const [name, mutate, flags, message] of variants) {
      const config = structuredClone(base);
      mutate(config);
      const file = join(directory, `broken-${name.replaceAll(" ", "-")}.json`);
      await writeFile(file, JSON.stringify(config));
      const trainer = new TrainerProcess(["run", "--config", file, ...flags]);
      assert.equal(await trainer.exited, 2, `${name}: ${trainer.tail()}`);
      assert.match(trainer.stderr, message, name);
    }
  });

  test("an unreachable NATS server is a runtime failure: exit 1, which the Job retries", async () => {
    const federation = federationSpec(members, {
      id: "unreachable",
      rounds: 1,
      innerSteps: 1,
      minMembers: 1,
      checkpointEveryRounds: 1,
    });
    const [alphaConfig] = await writeConfigs(federation);
    const config = JSON.parse(await readFile(alphaConfig!, "utf8")) as Record<string, unknown>;
    // Port 1 on loopback: nothing listens there.
    config.transport = { natsUrls: ["nats://127.0.0.1:1"] };
    await writeFile(alphaConfig!, JSON.stringify(config));
    const trainer = startTrainer(federation, alphaConfig!, members[0]!);
    assert.equal(await trainer.exited, 1, trainer.tail());
    assert.ok(trainer.line("cannot connect to NATS"), trainer.tail());
  });

  test("three members train every round and end with one global model and a valid ledger", async () => {
    const federation = federationSpec(members, {
      id: "processes",
      rounds: ROUNDS,
      innerSteps: 5,
      // Every round waits for all three members (a slow process start only delays round 1).
      minMembers: 3,
      checkpointEveryRounds: 2,
    });
    const configs = await writeConfigs(federation);
    const trainers = members.map((member, i) => startTrainer(federation, configs[i]!, member));
    await allExitZero(
      trainers,
      members.map((m) => m.id),
    );
    await assertOneGlobalModel(trainers, ROUNDS);
    // Every member's round log shows all three updates included, every round.
    for (const t of trainers) {
      const rounds = t.lines.filter((line) => line.msg === "round applied");
      assert.deepEqual(
        rounds.map((line) => line.round),
        Array.from({ length: ROUNDS }, (_, r) => r),
      );
      for (const line of rounds) assert.equal(line.included, 3);
    }
    await assertLedger(federation, ROUNDS);
  });

  test("a trainer cut off from NATS for 3 minutes keeps running and rejoins by itself", async () => {
    const rounds = 12;
    const federation = federationSpec(members, {
      id: "cut-off",
      rounds,
      innerSteps: 20,
      // Two members carry the run while the third is cut off.
      minMembers: 2,
      checkpointEveryRounds: 4,
    });
    const proxy = await TcpProxy.start(server.url);
    try {
      const configs = await Promise.all(
        members.map((member, i) =>
          writeTrainerConfig(directory, federation, member, i === 2 ? proxy.url : server.url),
        ),
      );
      const trainers = members.map((member, i) => startTrainer(federation, configs[i]!, member));
      const gamma = trainers[2]!;
      await gamma.waitFor((line) => line.msg === "round applied" && Number(line.round) >= 1);
      proxy.cut();
      const cutAt = Date.now();
      // Longer than every publish, request and consumer timeout the trainer has.
      await sleep(CUT_MS);
      assert.equal(gamma.child.exitCode, null, `gamma exited during the cut:\n${gamma.tail()}`);
      const appliedDuringCut = gamma.lines.filter(
        (line) => line.msg === "round applied" && Number(line.time ?? 0) > cutAt + 5_000,
      );
      assert.deepEqual(appliedDuringCut, [], "gamma applied nothing while cut off");
      proxy.restore();
      await allExitZero(
        trainers,
        members.map((m) => m.id),
      );
      assert.equal(gamma.lines.filter((line) => line.msg === "model and data loaded").length, 1);
      await assertOneGlobalModel(trainers, rounds);
      await assertLedger(federation, rounds);
    } finally {
      await proxy.close();
    }
  });

  test("SIGTERM leaves the federation gracefully; the restarted member rejoins from its checkpoint", async () => {
    const rounds = 30;
    const federation = federationSpec(members, {
      id: "leave-rejoin",
      rounds,
      innerSteps: 40,
      // Two members carry the run while the third is away.
      minMembers: 2,
      checkpointEveryRounds: 3,
    });
    const configs = await writeConfigs(federation);
    const trainers = members.map((member, i) => startTrainer(federation, configs[i]!, member));
    const gamma = trainers[2]!;
    await gamma.waitFor((line) => line.msg === "round applied" && Number(line.round) >= 2);
    gamma.child.kill("SIGTERM");
    // Stopped before the last round: 128 + SIGTERM, so that a Job does not count it complete.
    assert.equal(await gamma.exited, 143, gamma.tail());
    const stopped = gamma.line("training stopped");
    assert.ok(stopped, gamma.tail());
    assert.ok(Number(stopped.rounds) < rounds, "gamma stopped before the last round");

    // Its heartbeat is gone at once (not after the worker TTL): the next rounds do not wait.
    nc ??= await connectNats(server.url, "ledger-check");
    const view = await readFederationView(
      nc,
      federation,
      specHashBytes(federationSpecHash(federation)),
    );
    const gammaView = view.members.find((m) => m.memberId === "gamma");
    assert.deepEqual(gammaView?.workers ?? [], [], "gamma still heartbeats after leaving");

    const rejoined = startTrainer(federation, configs[2]!, members[2]!);
    await allExitZero(
      [trainers[0]!, trainers[1]!, rejoined],
      members.map((m) => m.id),
    );
    const loaded = rejoined.line("model and data loaded");
    assert.ok(
      Number(loaded?.firstRound) >= Number(stopped.rounds),
      `gamma rejoined at round ${loaded?.firstRound}, before the ${stopped.rounds} it had left at`,
    );
    assert.ok(
      rejoined.lines.some((line) => /restored checkpoint of round \d+/.test(String(line.msg))),
      `gamma did not restore the federation's checkpoint:\n${rejoined.tail()}`,
    );
    await assertOneGlobalModel([trainers[0]!, trainers[1]!, rejoined], rounds);
    // If gamma took the lease after its restart, the rounds between the last scored one and its
    // checkpoint have no scores.
    await assertLedger(federation, rounds, rounds - 1 - federation.sync.checkpointEveryRounds);
  });
});
