// What each trainer of a federation trains on, over a real nats-server with three trainer
// processes: every worker gets its own disjoint shard of the federation's data set, the shards of
// the workers a commit names cover it, and a member with contribution.localData trains on its own
// file instead, left out of the shared data's deal. The trainers report their shards in their
// logs (at debug level, a bitmap of the examples each owns).
import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { canonicalFederation, type FederationSpec, type LocalData } from "../../core/api/index.js";
import { type NatsServer, startNatsServer } from "../../testbed/nats.js";
import { ARITHMETIC_VOCABULARY } from "../../trainer-image/training/data.js";
import {
  createMembers,
  type LogLine,
  type Member,
  startMemberTrainer,
  type TrainerProcess,
  writeTrainerConfig,
} from "../fixtures/trainer-process.js";

const ROUNDS = 3;
// Three cold tfjs processes and three short rounds on a loaded 2-core machine take well under this.
const RUN_TIMEOUT_MS = 90_000;

/** A small federation of all three members that waits for all three every round. */
function federationSpec(
  members: Member[],
  id: string,
  model: FederationSpec["model"],
  data: object,
): FederationSpec {
  // canonicalFederation fills in every default the literal leaves out.
  return canonicalFederation({
    id,
    model,
    data,
    training: { rounds: ROUNDS, innerSteps: 3, batchSize: 8 },
    sync: {
      compression: { method: "Int8" },
      quorum: { minMembers: 3 },
      roundDeadlineSeconds: 2,
      checkpointEveryRounds: 100,
    },
    membership: {
      policy: "Allowlist",
      members: members.map(({ id, publicKey }) => ({ id, publicKey })),
      organiserKeys: [members[0]!.publicKey],
    },
  } as unknown as FederationSpec);
}

/** A worker's latest shard, from its "training data dealt" and "training examples owned" lines. */
interface Shard {
  round: number;
  workers: string[];
  owned: Set<number>;
  deals: number;
}

function latestShard(trainer: TrainerProcess, name: string): Shard {
  const dealt = trainer.lines.filter((line) => line.msg === "training data dealt");
  const owned = trainer.lines.filter((line) => line.msg === "training examples owned");
  const last = dealt.at(-1);
  assert.ok(last, `${name} reported no shard:\n${trainer.tail()}`);
  const bitmap = owned.find((line) => line.round === last.round);
  assert.ok(bitmap, `${name} logged no examples for its shard of round ${last.round}`);
  const bytes = Buffer.from(String(bitmap.owned), "base64");
  const examples = new Set<number>();
  for (let e = 0; e < Number(last.of); e++) if (bytes[e >> 3]! & (1 << (e & 7))) examples.add(e);
  assert.equal(examples.size, last.examples, `${name}'s bitmap and count disagree`);
  return {
    round: Number(last.round),
    workers: last.workers as string[],
    owned: examples,
    deals: dealt.length,
  };
}

/** Asserts that the shards are pairwise disjoint and together hold all `count` examples. */
function assertPartition(shards: Map<string, Shard>, count: number): void {
  const seenBy = new Map<number, string>();
  for (const [name, shard] of shards) {
    assert.ok(shard.owned.size > 0, `${name} owns no examples`);
    for (const e of shard.owned) {
      const other = seenBy.get(e);
      assert.equal(other, undefined, `example ${e} is in the shards of ${other} and ${name}`);
      seenBy.set(e, name);
    }
  }
  assert.equal(seenBy.size, count, "the shards do not cover the data set");
}

describe("what federated trainers train on", () => {
  let server: NatsServer;
  let directory: string;
  let members: Member[] = [];

  before(async () => {
    server = await startNatsServer();
    directory = await mkdtemp(join(tmpdir(), "fedtrain-trainer-data-"));
    members = await createMembers(directory, ["alpha", "beta", "gamma"]);
  });

  after(async () => {
    await server?.stop();
    if (directory) await rm(directory, { recursive: true, force: true });
  });

  /**
   * Runs one trainer per member (at debug level, so that they log their examples) until all
   * exit, and asserts that every one completed with every member's update in every round.
   */
  async function train(
    federation: FederationSpec,
    own: Map<string, { dataDir: string; localData: LocalData }> = new Map(),
  ): Promise<TrainerProcess[]> {
    const trainers = await Promise.all(
      members.map(async (member) => {
        const file = await writeTrainerConfig(
          directory,
          federation,
          member,
          server.url,
          own.get(member.id),
        );
        return startMemberTrainer(directory, federation, member, file, ["--log-level", "debug"]);
      }),
    );
    const timeout = setTimeout(() => {
      for (const t of trainers) t.child.kill("SIGKILL");
    }, RUN_TIMEOUT_MS);
    const codes = await Promise.all(trainers.map((t) => t.exited));
    clearTimeout(timeout);
    trainers.forEach((trainer, i) => {
      assert.equal(codes[i], 0, `${members[i]!.id} exited ${codes[i]}:\n${trainer.tail()}`);
      const rounds = trainer.lines.filter((line) => line.msg === "round applied");
      assert.deepEqual(
        rounds.map((line) => [line.round, line.included]),
        Array.from({ length: ROUNDS }, (_, r) => [r, 3]),
        members[i]!.id,
      );
    });
    return trainers;
  }

  test("every worker trains on its own shard: disjoint, and together the whole data set", async () => {
    const trainExamples = 600;
    const federation = federationSpec(
      members,
      "shards",
      { preset: "MLP", mlp: { hiddenLayers: [8], activation: "ReLU" } },
      {
        synthetic: {
          preset: "GaussianClusters",
          trainExamples,
          evalExamples: 50,
          features: 4,
          classes: 3,
          noise: 1,
        },
      },
    );
    const trainers = await train(federation);
    const shards = new Map(
      trainers.map((trainer, i) => [members[i]!.id, latestShard(trainer, members[i]!.id)]),
    );
    for (const [name, shard] of shards) {
      assert.deepEqual(shard.workers, ["alpha/w0", "beta/w0", "gamma/w0"], name);
      // Dealt for round 0 among the live workers, again for round 1 at most (when a member saw
      // only some of the others live at the start), then never: the commits name all three.
      assert.ok(shard.round <= 1 && shard.deals <= 2, `${name} re-dealt: ${JSON.stringify(shard)}`);
    }
    assertPartition(shards, trainExamples);
  });

  test("a member with local data trains on its own file, the others share the federation's", async () => {
    const trainExamples = 400;
    const federation = federationSpec(
      members,
      "local-data",
      {
        preset: "CharTransformer",
        charTransformer: {
          layers: 1,
          modelWidth: 16,
          heads: 2,
          contextLength: 16,
          feedForwardMultiplier: 2,
        },
      },
      { synthetic: { preset: "Arithmetic", trainExamples, evalExamples: 40, maxOperand: 20 } },
    );
    // Thirty paragraphs of sums in the federation's vocabulary, with words it does not have.
    const text = Array.from(
      { length: 30 },
      (_, i) => `${i}+${i}=${2 * i}\n${i}*3=${3 * i} (thrice ${i})\n\n`,
    ).join("");
    const outside = [...text].filter((c) => !ARITHMETIC_VOCABULARY.includes(c)).length;
    const gammaData = join(directory, "gamma-data");
    await mkdir(join(gammaData, "lab"), { recursive: true });
    await writeFile(join(gammaData, "lab", "sums.txt"), text);
    const trainers = await train(
      federation,
      new Map([
        ["gamma", { dataDir: gammaData, localData: { format: "Text", path: "lab/sums.txt" } }],
      ]),
    );
    const gamma = trainers[2]!;
    const own = gamma.lines.find((line: LogLine) =>
      String(line.msg).startsWith("training on this member's own data"),
    );
    assert.ok(own, `gamma did not report its own data:\n${gamma.tail()}`);
    assert.deepEqual(
      [own.path, own.examples, own.characters, own.skippedCharacters],
      ["lab/sums.txt", 30, text.length - outside, outside],
    );
    assert.equal(
      gamma.line("joining the federation over NATS")?.worker,
      "local-w0",
      "gamma's worker is not named as one on local data",
    );
    const gammaShard = latestShard(gamma, "gamma");
    assert.deepEqual(gammaShard.workers, ["gamma/local-w0"]);
    assert.equal(gammaShard.owned.size, 30, "gamma does not train on all of its own file");
    assert.equal(gamma.line("training data dealt")?.localData, true);
    // Alpha and beta deal the federation's examples between them alone.
    const shared = new Map(
      trainers
        .slice(0, 2)
        .map((trainer, i) => [members[i]!.id, latestShard(trainer, members[i]!.id)]),
    );
    for (const [name, shard] of shared)
      assert.deepEqual(shard.workers, ["alpha/w0", "beta/w0"], name);
    assertPartition(shared, trainExamples);
  });
});
