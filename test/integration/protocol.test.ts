// The federation protocol against a real nats-server: rounds, fail-over, rejoin from a checkpoint,
// a server restart, pause/resume, exclusion, the view and the ledger.
import assert from "node:assert/strict";
import crypto from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { privateKeyToPem } from "../../core/protocol/identity.js";
import {
  AdmissionError,
  type Commit,
  type CommittedUpdate,
  connectNats,
  deregisterMember,
  type FaultHooks,
  FederationNotFoundError,
  FederationWorker,
  federationNames,
  generateKeyPair,
  type KeyPair,
  openFederation,
  type ProtocolSpec,
  publishControl,
  type ReplicaModel,
  type RoundResult,
  readFederationView,
  readStream,
  registerMember,
  toBase64,
  verifyFederationLedger,
  type WorkerOptions,
  wire,
} from "../../core/protocol/index.js";
import { type NatsServer, startNatsServer } from "../../testbed/nats.js";
import { runCli } from "../fixtures/cli.js";

const modelSize = 1024;

/** A toy deterministic model: a Float32Array moved by the mean of the committed payloads. */
class ToyModel implements ReplicaModel {
  weights: Float32Array = new Float32Array(modelSize);
  applied: number[] = [];
  apply(commit: Commit, updates: readonly CommittedUpdate[]) {
    this.applied.push(commit.round);
    if (updates.length === 0) return;
    const scale = Math.fround(1 / updates.length);
    for (const u of updates) {
      const delta = new Float32Array(u.payload.buffer.slice(u.payload.byteOffset), 0, modelSize);
      for (let i = 0; i < modelSize; i++)
        this.weights[i] = Math.fround(this.weights[i]! + Math.fround(delta[i]! * scale));
    }
  }
  hash() {
    return new Uint8Array(crypto.createHash("sha256").update(this.weights).digest());
  }
  snapshot() {
    return new Uint8Array(this.weights.buffer.slice(0));
  }
  restore(bytes: Uint8Array) {
    this.weights = new Float32Array(
      bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length),
    );
  }
}

function pseudoGradient(round: number, worker: string, bytes = modelSize * 4): Uint8Array {
  const out = new Uint8Array(bytes);
  const seed = crypto.createHash("sha256").update(`${round}/${worker}`).digest();
  for (let i = 0; i < bytes; i += 32) out.set(seed.subarray(0, Math.min(32, bytes - i)), i);
  // Keep the floats finite and small: the bytes become values in [-1, 1).
  const floats = new Float32Array(out.buffer, 0, Math.floor(bytes / 4));
  for (let i = 0; i < floats.length; i++) floats[i] = ((i * 31 + seed[i % 32]!) % 200) / 100 - 1;
  return out;
}

const fast = {
  heartbeatIntervalMs: 150,
  // Longer than the round deadline, so a dead worker still counts as live when the deadline hits.
  workerTtlMs: 2_500,
  leaseTtlMs: 900,
  publishRetryMs: 20_000,
};

function specFor(
  id: string,
  members: { id: string; keys: KeyPair }[],
  organiser: KeyPair,
): ProtocolSpec {
  return {
    id,
    sync: { quorum: { minMembers: 2 }, roundDeadlineSeconds: 1.5, checkpointEveryRounds: 2 },
    membership: {
      policy: "Allowlist",
      members: members.map((m) => ({ id: m.id, publicKey: toBase64(m.keys.publicKey) })),
      organiserKeys: [toBase64(organiser.publicKey)],
    },
  };
}

interface Running {
  worker: FederationWorker;
  model: ToyModel;
  nc: NatsConnection;
}

describe("federation protocol over a real nats-server", () => {
  let server: NatsServer;
  const connections: NatsConnection[] = [];
  const workers: FederationWorker[] = [];
  const specHash = new Uint8Array(crypto.createHash("sha256").update("spec-v1").digest());
  const organiser = generateKeyPair();
  const members = ["alpha", "beta", "gamma"].map((id) => ({ id, keys: generateKeyPair() }));

  async function startWorker(
    spec: ProtocolSpec,
    memberIndex: number,
    workerId = "w0",
    model = new ToyModel(),
    options: Pick<WorkerOptions, "faults" | "role" | "log"> = {},
  ): Promise<Running> {
    const member = members[memberIndex]!;
    const nc = await connectNats(server.url, `${member.id}-${workerId}`);
    connections.push(nc);
    const worker = await FederationWorker.start({
      nc,
      spec,
      specHash,
      memberId: member.id,
      workerId,
      privateKey: member.keys.privateKey,
      model,
      settings: fast,
      log: process.env.PROTOCOL_LOG ? (line) => console.error(line) : undefined,
      ...options,
    });
    workers.push(worker);
    return { worker, model, nc };
  }

  /**
   * Fault hooks that, at `hook` for round 2, freeze the worker's timers (as SIGSTOP would) and hold
   * it there: `holding` resolves once it is held, `release()` lets it go on.
   */
  function holdAtRound2(hook: "beforeCommit" | "beforeCheckpointRecord") {
    let frozen = false;
    let release: () => void = () => {};
    let held: () => void = () => {};
    const holding = new Promise<void>((resolve) => {
      held = resolve;
    });
    const faults: FaultHooks = {
      frozen: () => frozen,
      [hook]: async (round: number) => {
        if (round !== 2) return;
        frozen = true;
        held();
        await new Promise<void>((resolve) => {
          release = resolve;
        });
      },
    };
    return {
      faults,
      holding,
      release: () => {
        frozen = false;
        release();
      },
    };
  }

  /** Simulates a crash: no goodbye, the connection just goes away. */
  async function kill(running: Running): Promise<void> {
    await running.worker.stop({ graceful: false });
    await running.nc.close();
  }

  function everyone(group: Running[], round: number): Promise<RoundResult[]> {
    return Promise.all(
      group.map((x) =>
        x.worker.contribute(pseudoGradient(round, x.worker.memberId), { loss: 1 / round }),
      ),
    );
  }

  function assertAgree(results: RoundResult[], round: number, entries: number): void {
    for (const result of results) {
      assert.equal(result.round, round);
      assert.equal(result.commit.entries.length, entries);
      assert.equal(result.modelHash, results[0]!.modelHash);
    }
  }

  before(async () => {
    server = await startNatsServer();
  });
  after(async () => {
    for (const w of workers) await w.stop({ graceful: false });
    for (const nc of connections) await nc.close().catch(() => {});
    await server.stop();
  });

  test("rounds commit and every worker ends with the same model hash", async () => {
    const spec = specFor("toy", members, organiser);
    const all = [
      await startWorker(spec, 0),
      await startWorker(spec, 1),
      await startWorker(spec, 2),
    ];
    let results: RoundResult[] = [];
    for (let r = 1; r <= 3; r++) {
      results = await everyone(all, r);
      assertAgree(results, r, 3);
      for (const result of results) assert.equal(result.included, true);
    }
    for (const x of all) assert.deepEqual(x.model.applied, [1, 2, 3]);
    const view = await readFederationView(all[0]!.nc, spec, specHash);
    assert.equal(view.round, 4);
    assert.equal(view.members.length, 3);
    for (const m of view.members) {
      assert.equal(m.state, "Active");
      assert.equal(m.roundsContributed, 3);
      assert.equal(m.workers[0]?.appliedRound, 3);
    }
    assert.equal(view.lastCheckpoint?.round, 2);
    assert.equal(view.lastCommit?.round, 3);
    assert.ok(view.coordinator);
    assert.ok(Math.abs((view.loss ?? 0) - 1 / 3) < 1e-9);
    assert.deepEqual(view.disagreements, []);
    for (const x of all) assert.equal(x.worker.counterSnapshot().modelHashMismatches, 0);
    const report = await verifyFederationLedger(all[0]!.nc, "toy", { spec });
    assert.equal(report.ok, true, JSON.stringify(report.problems));
    assert.equal(report.rounds, 3);
    assert.equal(report.checkpointsVerified, 1);
    // Commits 2 and 3 record the model hashes after rounds 1 and 2, and they agree.
    assert.deepEqual(report.agreement, { rounds: 2, disagreements: [] });
    const recorded = results.at(-1)!.commit.agreement;
    assert.equal(recorded?.round, 2);
    assert.ok((recorded?.hashes.length ?? 0) >= 1);
    for (const x of all) await x.worker.stop();
  });

  test("the coordinator dies mid-round: another takes over and the round commits", async () => {
    const spec = specFor("failover", members, organiser);
    const all = [
      await startWorker(spec, 0),
      await startWorker(spec, 1),
      await startWorker(spec, 2),
    ];
    assertAgree(await everyone(all, 1), 1, 3);
    const coordinator = all.find((x) => x.worker.isCoordinator);
    assert.ok(coordinator, "one worker holds the lease");
    const rest = all.filter((x) => x !== coordinator);
    const pending = everyone(rest, 2);
    await kill(coordinator);
    const results = await pending;
    assertAgree(results, 2, 2);
    assert.ok(rest.some((x) => x.worker.isCoordinator));
    assertAgree(await everyone(rest, 3), 3, 2);
    for (const x of rest) assert.deepEqual(x.model.applied, [1, 2, 3]);
    for (const x of rest) await x.worker.stop();
  });

  test("a dead worker is left out at the deadline, then rejoins from a checkpoint", async () => {
    const spec = specFor("rejoin", members, organiser);
    const all = [
      await startWorker(spec, 0),
      await startWorker(spec, 1),
      await startWorker(spec, 2),
    ];
    assertAgree(await everyone(all, 1), 1, 3);
    assertAgree(await everyone(all, 2), 2, 3);
    const victim = all.find((x) => !x.worker.isCoordinator)!;
    const rest = all.filter((x) => x !== victim);
    await kill(victim);
    const started = Date.now();
    const results = await everyone(rest, 3);
    assertAgree(results, 3, 2);
    assert.equal(results[0]!.commit.closedBy, "deadline");
    assert.ok(Date.now() - started >= 1_000, "waited for the deadline");

    const index = members.findIndex((m) => m.id === victim.worker.memberId);
    const back = await startWorker(spec, index, "w0");
    assert.equal(back.worker.applied.round, 3, "checkpoint of round 2 + replay of round 3");
    assert.deepEqual(back.model.applied, [3]);
    assert.equal(back.worker.applied.modelHash, results[0]!.modelHash);
    const next = await everyone([...rest, back], 4);
    assertAgree(next, 4, 3);
    for (const result of next) assert.equal(result.included, true);
    for (const x of [...rest, back]) await x.worker.stop();
  });

  test("a nats-server restart mid-run loses no committed round and applies none twice", async () => {
    const spec = specFor("restart", members, organiser);
    const all = [await startWorker(spec, 0), await startWorker(spec, 1)];
    assertAgree(await everyone(all, 1), 1, 2);
    const pending = everyone(all, 2);
    await server.restart();
    assertAgree(await pending, 2, 2);
    assertAgree(await everyone(all, 3), 3, 2);
    for (const x of all) assert.deepEqual(x.model.applied, [1, 2, 3]);
    const report = await verifyFederationLedger(all[0]!.nc, "restart", { spec });
    assert.equal(report.ok, true, JSON.stringify(report.problems));
    assert.equal(report.rounds, 3);
    for (const x of all) await x.worker.stop();
  });

  test("a coordinator held up past its lease, resumed after others committed, commits nothing", async () => {
    // As a coordinator stopped (SIGSTOP) between deciding to commit a round and publishing it,
    // and resumed after another took over and committed that round and the next. The ledger's
    // duplicate window is shortened so that the resumed publish is past it, where only the
    // coordinator's own checks stand between its stale commit and the ledger.
    const spec = specFor("stale", members, organiser);
    const { faults, holding, release } = holdAtRound2("beforeCommit");
    const a = await startWorker(spec, 0, "w0", new ToyModel(), { faults });
    await waitFor(async () => a.worker.isCoordinator, 3_000);
    const rest = [await startWorker(spec, 1), await startWorker(spec, 2)];
    const all = [a, ...rest];
    assertAgree(await everyone(all, 1), 1, 3);
    const jsm = await jetstreamManager(a.nc);
    const ledgerStream = federationNames("stale").ledgerStream;
    const config = (await jsm.streams.info(ledgerStream)).config;
    await jsm.streams.update(ledgerStream, { ...config, duplicate_window: 500 * 1e6 });

    const second = everyone(all, 2);
    await holding;
    // Alpha's lease expires (its renewals are frozen); another worker takes over and commits
    // rounds 2 and 3, which alpha's subscriptions still apply.
    await waitFor(async () => rest.some((x) => x.worker.isCoordinator), 5_000);
    assertAgree(await second, 2, 3);
    assertAgree(await everyone(all, 3), 3, 3);
    await sleep(600); // past the shortened duplicate window
    release();
    await waitFor(async () => a.worker.counterSnapshot().commitsAbandoned >= 1, 3_000);
    assert.equal(a.worker.counterSnapshot().commitsPublished, 1, "alpha committed round 1 only");
    assertAgree(await everyone(all, 4), 4, 3);
    // One commit per round, and the ledger verifies.
    const rounds = (await readStream(await openFederation(a.nc, "stale", fast), ledgerStream)).map(
      (m) => wire.decodeCommit(m.data).body.round,
    );
    assert.deepEqual(rounds, [1, 2, 3, 4]);
    const report = await verifyFederationLedger(a.nc, "stale", { spec });
    assert.equal(report.ok, true, JSON.stringify(report.problems));
    for (const x of all) await x.worker.stop();
  });

  test("a deposed coordinator finishing an old checkpoint does not move the record backwards", async () => {
    const spec = specFor("checkpoint-cas", members, organiser);
    const { faults, holding, release } = holdAtRound2("beforeCheckpointRecord");
    const a = await startWorker(spec, 0, "w0", new ToyModel(), { faults });
    await waitFor(async () => a.worker.isCoordinator, 3_000);
    const rest = [await startWorker(spec, 1), await startWorker(spec, 2)];
    assertAgree(await everyone([a, ...rest], 1), 1, 3);
    void a.worker.contribute(pseudoGradient(2, "alpha")).catch(() => {});
    assertAgree(await everyone(rest, 2), 2, 3);
    await holding;
    // Alpha is stuck before recording round 2's checkpoint; the others go on to round 4, whose
    // checkpoint the new coordinator records.
    assertAgree(await everyone(rest, 3), 3, 2);
    assertAgree(await everyone(rest, 4), 4, 2);
    const state = (await openFederation(a.nc, "checkpoint-cas", fast)).state;
    const recorded = async () => {
      const entry = await state.get("checkpoint");
      return entry?.operation === "PUT" ? wire.decodeCheckpoint(entry.value).body.round : 0;
    };
    await waitFor(async () => (await recorded()) === 4, 5_000);
    release();
    // Alpha records round 2's checkpoint (or not), then catches up with rounds 3 and 4.
    await waitFor(async () => a.worker.applied.round === 4, 5_000);
    await sleep(300);
    // The record's history never goes back to an older round.
    const history: number[] = [];
    for await (const entry of await state.history({ key: "checkpoint" }))
      if (entry.operation === "PUT") history.push(wire.decodeCheckpoint(entry.value).body.round);
    assert.deepEqual(
      history,
      [...history].sort((x, y) => x - y),
      `checkpoint record history ${history}`,
    );
    assert.equal(await recorded(), 4, "the record still names round 4");
    for (const x of [a, ...rest]) await x.worker.stop();
  });

  test("after a SIGKILL of nats-server, the next commit is applied everywhere within 5 s of its return", async () => {
    const spec = specFor("crash", members, organiser);
    const all = [
      await startWorker(spec, 0),
      await startWorker(spec, 1),
      await startWorker(spec, 2),
    ];
    assertAgree(await everyone(all, 1), 1, 3);
    // A crash between rounds, then one in the middle of a round: every consumer must notice the
    // restarted server by itself, not when a long pull request expires.
    await server.restart("SIGKILL");
    let back = Date.now();
    assertAgree(await everyone(all, 2), 2, 3);
    const between = Date.now() - back;
    const pending = everyone(all, 3);
    await sleep(50);
    await server.restart("SIGKILL");
    back = Date.now();
    assertAgree(await pending, 3, 3);
    const during = Date.now() - back;
    assert.ok(between <= 5_000, `round 2 applied ${between} ms after the server returned`);
    assert.ok(during <= 5_000, `round 3 applied ${during} ms after the server returned`);
    for (const x of all) assert.deepEqual(x.model.applied, [1, 2, 3]);
    // The verifier's own requests may still meet a server recovering its streams.
    let report: Awaited<ReturnType<typeof verifyFederationLedger>> | undefined;
    await waitFor(async () => {
      report = await verifyFederationLedger(all[0]!.nc, "crash", { spec }).catch(() => undefined);
      return report !== undefined;
    }, 10_000);
    assert.equal(report?.ok, true, JSON.stringify(report?.problems));
    assert.equal(report?.rounds, 3);
    for (const x of all) await x.worker.stop();
  });

  test("a member registered by a protocol 1.0 release is refused with the reason, until it upgrades", async () => {
    const spec = specFor("revision", members, organiser);
    const [a, b] = [await startWorker(spec, 0), await startWorker(spec, 1)];
    // gamma's record as a 1.0 release writes it: no revision.
    const gamma = members[2]!;
    const resources = await openFederation(a.nc, "revision", fast);
    await resources.members.put(
      "gamma",
      wire.encodeMember(
        { memberId: "gamma", specHash, registeredAtMs: Date.now(), revision: 0 },
        gamma.keys.privateKey,
      ),
    );
    await waitFor(async () => {
      const view = await readFederationView(a.nc, spec, specHash);
      return view.members.find((m) => m.memberId === "gamma")?.state === "Refused";
    }, 3_000);
    const view = await readFederationView(a.nc, spec, specHash);
    assert.match(
      view.members.find((m) => m.memberId === "gamma")?.reason ?? "",
      /speak protocol 1\.0, this member 1\.1/,
    );
    // A worker of this release re-registers gamma at 1.1, and it takes part again.
    const upgraded = await startWorker(spec, 2);
    assertAgree(await everyone([a, b, upgraded], 1), 1, 3);
    for (const x of [a, b, upgraded]) await x.worker.stop();
  });

  test("a contributor only never coordinates, yet contributes and applies every round", async () => {
    const spec = specFor("roles", members, organiser);
    const alone = await startWorker(spec, 0, "w0", new ToyModel(), { role: "contributor" });
    const contributor = alone.worker;
    const peer = await startWorker(spec, 1);
    for (let round = 1; round <= 2; round++)
      assertAgree(await everyone([alone, peer], round), round, 2);
    assert.equal(contributor.isCoordinator, false);
    assert.equal(contributor.counterSnapshot().coordinatorTerms, 0);
    // The peer leaves: nobody closes round 3 until another peer comes.
    await peer.worker.stop();
    let done = false;
    const third = alone.worker.contribute(pseudoGradient(3, "alpha")).then((r) => {
      done = true;
      return r;
    });
    await sleep(2 * fast.leaseTtlMs);
    assert.equal(done, false, "a contributor only closed a round");
    const second = await startWorker(spec, 2);
    const [result] = await Promise.all([
      third,
      second.worker.contribute(pseudoGradient(3, "gamma")),
    ]);
    assert.equal(result.round, 3);
    assert.equal(second.worker.isCoordinator, true);
    for (const x of [alone, second]) await x.worker.stop();
  });

  test("once the run's last round is committed, the round status says the run is completed", async () => {
    const spec = { ...specFor("complete", members, organiser), training: { rounds: 2 } };
    const all = [await startWorker(spec, 0), await startWorker(spec, 1)];
    assertAgree(await everyone(all, 1), 1, 2);
    let view = await readFederationView(all[0]!.nc, spec, specHash);
    assert.notEqual(view.roundStatus?.phase, "completed");
    assertAgree(await everyone(all, 2), 2, 2);
    await waitFor(async () => {
      view = await readFederationView(all[0]!.nc, spec, specHash);
      return view.roundStatus?.phase === "completed";
    }, 3_000);
    assert.equal(view.roundStatus?.round, 2);
    assert.match(view.roundStatus?.reason ?? "", /all 2 rounds of the run are committed/);
    for (const x of all) await x.worker.stop();
  });

  test("a diverged replica restores the latest checkpoint by itself, replays and agrees again", async () => {
    const spec = specFor("self-restore", members, organiser);
    // Gamma's model goes wrong once, in round 2; gamma never coordinates, so every checkpoint is
    // another member's.
    const broken = new ToyModel();
    const apply = broken.apply.bind(broken);
    broken.apply = (commit, updates) => {
      apply(commit, updates);
      if (commit.round === 2) broken.weights[0] = Math.fround(broken.weights[0]! + 1e-3);
    };
    const lines: string[] = [];
    const all = [
      await startWorker(spec, 0),
      await startWorker(spec, 1),
      await startWorker(spec, 2, "w0", broken, { role: "contributor", log: (l) => lines.push(l) }),
    ];
    const gamma = all[2]!;
    const applied = (round: number) =>
      waitFor(
        async () =>
          (await readFederationView(all[0]!.nc, spec, specHash)).members.every((m) =>
            m.workers.every((w) => w.appliedRound >= round),
          ),
        3_000,
      );
    for (let round = 1; round <= 5; round++) {
      // Each commit records the hashes every worker reported for the round before.
      const results = await everyone(all, round);
      if (round === 2) assert.notEqual(results[2]!.modelHash, results[0]!.modelHash);
      if (round === 5) assertAgree(results, 5, 3);
      await applied(round);
    }
    // Commit 3 showed gamma's model after round 2 to differ from both others'; before applying
    // round 4 it restored the checkpoint of round 2 (alpha's or beta's) and replayed round 3.
    const counters = gamma.worker.counterSnapshot();
    assert.equal(counters.replicaDivergences, 1, lines.join("\n"));
    assert.equal(counters.replicaRestores, 1, lines.join("\n"));
    assert.ok(
      lines.some((l) => /this replica diverged: after round 2 /.test(l)),
      lines.join("\n"),
    );
    assert.ok(
      lines.some((l) => /restored the checkpoint of round 2; replaying rounds 3\.\.3/.test(l)),
      lines.join("\n"),
    );
    assert.equal(gamma.model.applied.filter((r) => r === 3).length, 2, "round 3 applied twice");
    assert.equal(gamma.worker.applied.round, 5);
    // The ledger shows the divergence and the repair: no disagreement after round 3.
    const report = await verifyFederationLedger(all[0]!.nc, "self-restore", { spec });
    assert.equal(report.ok, true);
    const rounds = report.agreement.disagreements.map((d) => d.round);
    assert.ok(rounds.includes(2) && rounds.every((r) => r <= 3), `disagreements ${rounds}`);
    assert.equal(gamma.worker.counterSnapshot().roundsApplied, 5, "a replayed round counts once");
    for (const x of all) await x.worker.stop();
  });

  test("quorum missed at the deadline: the round is retried with a visible reason", async () => {
    const spec = specFor("retry", members, organiser);
    const [a, b] = [await startWorker(spec, 0), await startWorker(spec, 1)];
    const first = a.worker.contribute(pseudoGradient(1, "alpha"));
    await waitFor(async () => {
      const view = await readFederationView(a.nc, spec, specHash);
      return view.roundStatus?.phase === "retrying";
    }, 6_000);
    const view = await readFederationView(a.nc, spec, specHash);
    assert.match(
      view.roundStatus?.reason ?? "",
      /quorum not met.*1 of 2 active members, 2 required/,
    );
    const coordinator = [a, b].find((x) => x.worker.isCoordinator)!;
    assert.ok(coordinator.worker.counterSnapshot().roundsRetried >= 1);
    const [r1, r2] = await Promise.all([first, b.worker.contribute(pseudoGradient(1, "beta"))]);
    assertAgree([r1!, r2!], 1, 2);
    assert.ok(r1!.commit.attempt >= 1);
    for (const x of [a, b]) await x.worker.stop();
  });

  test("a diverging replica is detected within the round: counter, list and view", async () => {
    const spec = specFor("diverge", members, organiser);
    const broken = new ToyModel();
    const apply = broken.apply.bind(broken);
    broken.apply = (commit, updates) => {
      apply(commit, updates);
      broken.weights[0] = Math.fround(broken.weights[0]! + 1e-3);
    };
    const all = [
      await startWorker(spec, 0),
      await startWorker(spec, 1),
      await startWorker(spec, 2, "w0", broken),
    ];
    const results = await everyone(all, 1);
    assert.notEqual(results[2]!.modelHash, results[0]!.modelHash);
    await waitFor(async () => all[0]!.worker.counterSnapshot().modelHashMismatches >= 1, 3_000);
    const [seen] = all[0]!.worker.modelDisagreements();
    assert.deepEqual(seen?.worker, { memberId: "gamma", workerId: "w0" });
    assert.equal(seen?.round, 1);
    const view = await readFederationView(all[0]!.nc, spec, specHash);
    assert.deepEqual(
      view.disagreements.map((d) => [d.round, d.worker.memberId, d.reported]),
      [[1, "gamma", results[2]!.modelHash]],
    );
    // The next commit records the hashes after round 1: the divergence is in the ledger, where
    // the verifier shows it offline (and the CLI exits 1).
    await waitFor(
      async () =>
        (await readFederationView(all[0]!.nc, spec, specHash)).members.every((m) =>
          m.workers.every((w) => w.appliedRound === 1),
        ),
      3_000,
    );
    const second = await everyone(all, 2);
    assert.equal(second[0]!.commit.agreement?.round, 1);
    const report = await verifyFederationLedger(all[0]!.nc, "diverge", { spec });
    assert.equal(report.ok, true, "the ledger itself is intact");
    assert.deepEqual(
      report.agreement.disagreements.map((d) => d.round),
      [1],
    );
    const cli = await runCli(["ledger", "verify", "--nats", server.url, "--federation", "diverge"]);
    assert.equal(cli.code, 1, cli.output);
    assert.match(cli.output, /replicas DISAGREED after round 1: .*gamma\.w0/);
    for (const x of all) await x.worker.stop();
  });

  test("a worker stopped while it applies a round leaves no heartbeat behind", async () => {
    const spec = specFor("stop-mid-apply", members, organiser);
    // gamma's replica holds round 1's apply until it is released.
    const slow = new ToyModel();
    const apply = slow.apply.bind(slow);
    let entered: () => void = () => {};
    const applying = new Promise<void>((resolve) => {
      entered = resolve;
    });
    let release: () => void = () => {};
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    slow.apply = async (commit, updates) => {
      entered();
      await released;
      apply(commit, updates);
    };
    const all = [
      await startWorker(spec, 0),
      await startWorker(spec, 1),
      await startWorker(spec, 2, "w0", slow),
    ];
    const gamma = all[2]!;
    const rounds = everyone(all, 1);
    await applying;
    await gamma.worker.stop();
    // The apply finishes after the worker left: no heartbeat may bring its record back.
    release();
    await assert.rejects(rounds, AdmissionError);
    await sleep(5 * fast.heartbeatIntervalMs);
    const view = await readFederationView(all[0]!.nc, spec, specHash);
    const gammaView = view.members.find((m) => m.memberId === "gamma");
    assert.deepEqual(gammaView?.workers ?? [], [], "gamma's record came back after it left");
    for (const x of all.slice(0, 2)) await x.worker.stop();
  });

  test("the operator registers and deregisters its member; a taken id is refused", async () => {
    const spec = specFor("operator", members, organiser);
    const nc = await connectNats(server.url, "operator");
    connections.push(nc);
    const gamma = members[2]!;
    const member = { federationId: "operator", memberId: gamma.id, specHash };
    await registerMember(nc, { ...member, privateKey: gamma.keys.privateKey });
    await registerMember(nc, { ...member, privateKey: gamma.keys.privateKey });
    let view = await readFederationView(nc, spec, specHash);
    assert.deepEqual(
      view.members.map((m) => [m.memberId, m.state, m.publicKey]),
      [["gamma", "Idle", toBase64(gamma.keys.publicKey)]],
    );
    await assert.rejects(
      registerMember(nc, { ...member, privateKey: generateKeyPair().privateKey }),
      AdmissionError,
    );
    await deregisterMember(nc, { ...member, privateKey: gamma.keys.privateKey });
    await deregisterMember(nc, { ...member, privateKey: gamma.keys.privateKey });
    view = await readFederationView(nc, spec, specHash);
    assert.deepEqual(view.members, []);
  });

  test("the view, deregistration and ledger verification create nothing on NATS", async () => {
    const spec = specFor("unborn", members, organiser);
    const nc = await connectNats(server.url, "reader");
    connections.push(nc);
    const gamma = members[2]!;
    await deregisterMember(nc, {
      federationId: "unborn",
      memberId: gamma.id,
      privateKey: gamma.keys.privateKey,
    });
    await assert.rejects(readFederationView(nc, spec, specHash), FederationNotFoundError);
    await assert.rejects(verifyFederationLedger(nc, "unborn"), FederationNotFoundError);
    const streams: string[] = [];
    for await (const name of (await jetstreamManager(nc)).streams.names()) streams.push(name);
    assert.deepEqual(
      streams.filter((name) => name.toLowerCase().includes("unborn")),
      [],
    );
  });

  test("Open: a member that left rejoins with a new key; its old key's history stays valid", async () => {
    const spec: ProtocolSpec = {
      id: "rekey",
      sync: { quorum: { minMembers: 1 }, roundDeadlineSeconds: 1.5, checkpointEveryRounds: 2 },
      membership: { policy: "Open", members: [], organiserKeys: [] },
    };
    const start = async (memberId: string, workerId: string, keys: KeyPair) => {
      const model = new ToyModel();
      const nc = await connectNats(server.url, `${memberId}-${workerId}`);
      connections.push(nc);
      const worker = await FederationWorker.start({
        nc,
        spec,
        specHash,
        memberId,
        workerId,
        privateKey: keys.privateKey,
        model,
        settings: fast,
      });
      workers.push(worker);
      return { worker, nc, model };
    };
    // The leaver starts first and so holds the coordinator lease: its old key signs the commits
    // and the checkpoint of round 2, and its update is in round 3.
    const oldKeys = generateKeyPair();
    const leaver = await start("beta", "w0", oldKeys);
    const alpha = await start("alpha", "w0", members[0]!.keys);
    for (let round = 1; round <= 3; round++)
      assertAgree(
        await Promise.all(
          [alpha, leaver].map((x) => x.worker.contribute(pseudoGradient(round, x.worker.memberId))),
        ),
        round,
        2,
      );
    assert.ok(leaver.worker.isCoordinator, "the leaving member coordinated the rounds so far");

    // As in Kubernetes: the trainers stop, then the leave Job deregisters the member.
    await leaver.worker.stop();
    const federation = { federationId: "rekey", memberId: "beta" };
    assert.equal(
      await deregisterMember(leaver.nc, { ...federation, privateKey: oldKeys.privateKey }),
      "deregistered",
    );

    const newKeys = generateKeyPair();
    const rejoined = await start("beta", "w0", newKeys);
    // The checkpoint of round 2 is signed by a key nobody holds now, but commit 3 vouches for it;
    // round 3 replays with the update of beta's old key, which commit 3 names.
    assert.deepEqual(rejoined.model.applied, [3], "restored round 2, replayed round 3");
    assert.equal(rejoined.worker.applied.modelHash, alpha.worker.applied.modelHash);
    assertAgree(
      await Promise.all(
        [alpha, rejoined].map((x) => x.worker.contribute(pseudoGradient(4, x.worker.memberId))),
      ),
      4,
      2,
    );
    const results = await Promise.all(
      [alpha, rejoined].map((x) => x.worker.contribute(pseudoGradient(5, x.worker.memberId))),
    );
    assertAgree(results, 5, 2);
    assert.ok(
      results[0]!.commit.entries.some(
        (e) => e.memberId === "beta" && toBase64(e.publicKey) === toBase64(newKeys.publicKey),
      ),
      "the new key contributed",
    );
    // A worker that starts now reads history signed with beta's old key and joins.
    const late = await start("alpha", "w1", members[0]!.keys);
    assert.equal(late.worker.applied.round, 5);
    assert.equal(late.worker.applied.modelHash, results[0]!.modelHash);
    const view = await readFederationView(alpha.nc, spec, specHash);
    assert.equal(
      view.members.find((m) => m.memberId === "beta")?.publicKey,
      toBase64(newKeys.publicKey),
    );
    const report = await verifyFederationLedger(alpha.nc, "rekey", { spec });
    assert.deepEqual(report.problems, []);
    assert.equal(report.rounds, 5);
    // The old key cannot take the member id back while the new record stands.
    await assert.rejects(
      registerMember(leaver.nc, { ...federation, specHash, privateKey: oldKeys.privateKey }),
      AdmissionError,
    );
    for (const x of [alpha, rejoined, late]) await x.worker.stop();
  });

  test("organiser pause holds every round until resume; forged control is dropped", async () => {
    const spec = specFor("pause", members, organiser);
    const [a, b] = [await startWorker(spec, 0), await startWorker(spec, 1)];
    await publishControl(
      a.nc,
      "pause",
      { action: "pause", reason: "maintenance" },
      organiser.privateKey,
    );
    await waitFor(async () => a.worker.isPaused && b.worker.isPaused, 3_000);
    const intruder = generateKeyPair();
    await publishControl(a.nc, "pause", { action: "resume" }, intruder.privateKey);
    await waitFor(async () => a.worker.counterSnapshot().dropped["unknown-key"] >= 1, 3_000);
    let done = false;
    const pending = everyone([a, b], 1).then((r) => {
      done = true;
      return r;
    });
    await sleep(2_000);
    assert.equal(done, false, "no commit while paused");
    const view = await readFederationView(a.nc, spec, specHash);
    assert.equal(view.paused, true);
    assert.equal(view.roundStatus?.phase, "paused");
    await publishControl(a.nc, "pause", { action: "resume" }, organiser.privateKey);
    assertAgree(await pending, 1, 2);
    for (const x of [a, b]) await x.worker.stop();
  });

  test("an old signed pause replayed to a restarted worker is dropped and counted", async () => {
    const spec = specFor("control-replay", members, organiser);
    const a = await startWorker(spec, 0);
    const names = federationNames("control-replay");
    // A pause the organiser signed 11 minutes ago (captured then), published again now. The
    // stream no longer holds the original (it was purged, as its message limit would), so a
    // worker starting now has seen no sequence of this organiser.
    const issuedAtMs = Date.now() - 11 * 60_000;
    const old = wire.encodeControl(
      { action: "pause", memberId: "", sequence: issuedAtMs, issuedAtMs, reason: "old" },
      organiser.privateKey,
    );
    await a.worker.stop();
    const jsm = await jetstreamManager(a.nc);
    await jsm.streams.purge(names.controlStream);
    await a.nc.publish(names.controlSubject, old);
    await a.nc.flush();
    const again = await startWorker(spec, 0, "w1");
    await waitFor(async () => again.worker.counterSnapshot().dropped.replayed >= 1, 3_000);
    assert.equal(again.worker.isPaused, false);
    const view = await readFederationView(a.nc, spec, specHash);
    assert.equal(view.paused, false, "the view refuses it too");
    await again.worker.stop();
  });

  test("an organiser excludes a member with `fedtrain control`: rounds close without it until it is readmitted", async () => {
    const spec = specFor("exclude", members, organiser);
    const all = [
      await startWorker(spec, 0),
      await startWorker(spec, 1),
      await startWorker(spec, 2),
    ];
    assertAgree(await everyone(all, 1), 1, 3);
    // The organiser's key as `openssl genpkey -algorithm ed25519` writes it.
    const dir = await mkdtemp(path.join(tmpdir(), "fedtrain-organiser-"));
    const keyFile = path.join(dir, "organiser.pem");
    await writeFile(keyFile, privateKeyToPem(organiser.privateKey));
    const cli = (...args: string[]) =>
      runCli([
        "control",
        ...args,
        "--nats",
        server.url,
        "--federation",
        "exclude",
        "--key",
        keyFile,
      ]);
    const publicKey = await runCli(["control", "public-key", "--key", keyFile]);
    assert.equal(publicKey.output.trim(), toBase64(organiser.publicKey));
    const refused = await cli("exclude");
    assert.equal(refused.code, 2);
    assert.match(refused.output, /exclude needs --member/);
    const excluded = await cli("exclude", "--member", "gamma", "--reason", "updates point away");
    assert.equal(excluded.code, 0, excluded.output);
    await waitFor(async () => all.every((x) => x.worker.isExcluded("gamma")), 3_000);

    // Rounds close with everyone else's updates, without waiting for gamma's deadline.
    const second = await everyone(all, 2);
    for (const result of second) {
      assert.deepEqual(
        result.commit.entries.map((e) => e.memberId),
        ["alpha", "beta"],
      );
      assert.equal(result.commit.closedBy, "all-in");
      assert.equal(result.commit.activeMembers, 2);
    }
    assert.equal(second[2]!.included, false);
    assert.equal(second[2]!.modelHash, second[0]!.modelHash, "gamma still follows the model");
    const view = await readFederationView(all[0]!.nc, spec, specHash);
    const gamma = view.members.find((m) => m.memberId === "gamma");
    assert.equal(gamma?.state, "Excluded");
    assert.equal(gamma?.reason, "excluded by an organiser: updates point away");

    // Readmitted, its updates count again.
    const readmitted = await cli("readmit", "--member", "gamma");
    assert.equal(readmitted.code, 0, readmitted.output);
    await waitFor(async () => all.every((x) => !x.worker.isExcluded("gamma")), 3_000);
    assertAgree(await everyone(all, 3), 3, 3);
    for (const x of all) await x.worker.stop();
    await rm(dir, { recursive: true, force: true });
  });
});

async function waitFor(check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`condition not met in ${timeoutMs} ms`);
    await sleep(50);
  }
}
