// Hostile and broken messages against a real nats-server: each is dropped and counted, the round
// still commits with the honest updates only, and the ledger verifier pinpoints a tampered commit.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { NatsConnection } from "@nats-io/transport-node";
import {
  AdmissionError,
  type Commit,
  type CommittedUpdate,
  connectNats,
  FederationWorker,
  federationNames,
  generateKeyPair,
  type KeyPair,
  openFederation,
  ProtocolMessageError,
  type ProtocolSpec,
  payloadDigest,
  type RejectReason,
  type ReplicaModel,
  readFederationView,
  readStream,
  registerMember,
  sha256,
  toBase64,
  verifyFederationLedger,
  wire,
} from "../../core/protocol/index.js";
import { type NatsServer, startNatsServer } from "../../testbed/nats.js";
import { runCli } from "../fixtures/cli.js";

/** A model that sums payload bytes: enough to compare hashes across workers. */
class SumModel implements ReplicaModel {
  state: Float64Array = new Float64Array(8);
  apply(_: Commit, updates: readonly CommittedUpdate[]) {
    for (const u of updates)
      for (let i = 0; i < u.payload.length; i++) this.state[i % 8]! += u.payload[i]!;
  }
  hash() {
    return sha256(new Uint8Array(this.state.buffer));
  }
  snapshot() {
    return new Uint8Array(this.state.buffer.slice(0));
  }
  restore(bytes: Uint8Array) {
    this.state = new Float64Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + 64));
  }
}

/** A SumModel whose decoder, like the trainer's, cannot use a payload of odd length. */
class EvenModel extends SumModel {
  validate(payload: Uint8Array) {
    if (payload.length % 2 !== 0) throw new RangeError(`${payload.length} bytes: odd length`);
  }
  override apply(commit: Commit, updates: readonly CommittedUpdate[]) {
    for (const u of updates) this.validate(u.payload);
    super.apply(commit, updates);
  }
}

const settings = {
  heartbeatIntervalMs: 150,
  workerTtlMs: 2_500,
  leaseTtlMs: 900,
  maxUpdateBytes: 64 * 1024,
  chunkBytes: 4096,
};

describe("hostile messages over a real nats-server", () => {
  let server: NatsServer;
  let nc: NatsConnection;
  const connections: NatsConnection[] = [];
  const workers: FederationWorker[] = [];
  const specHash = sha256(new TextEncoder().encode("spec-v1"));
  const otherHash = sha256(new TextEncoder().encode("spec-v2"));
  const keys = new Map<string, KeyPair>(
    ["alpha", "beta", "gamma"].map((id) => [id, generateKeyPair()]),
  );
  const spec = (id: string): ProtocolSpec => ({
    id,
    sync: { quorum: { minMembers: 2 }, roundDeadlineSeconds: 1.5, checkpointEveryRounds: 2 },
    membership: {
      policy: "Allowlist",
      members: [...keys].map(([member, k]) => ({ id: member, publicKey: toBase64(k.publicKey) })),
      organiserKeys: [],
    },
  });

  async function startWorker(
    federation: ProtocolSpec,
    memberId: string,
    hash = specHash,
    model = new SumModel(),
  ) {
    const conn = await connectNats(server.url, memberId);
    connections.push(conn);
    const worker = await FederationWorker.start({
      nc: conn,
      spec: federation,
      specHash: hash,
      memberId,
      workerId: "w0",
      privateKey: keys.get(memberId)!.privateKey,
      model,
      settings,
    });
    workers.push(worker);
    return { worker, model };
  }

  const opened = new Map<string, ReturnType<typeof openFederation>>();
  function resourcesOf(federationId: string) {
    if (!opened.has(federationId))
      opened.set(federationId, openFederation(nc, federationId, settings));
    return opened.get(federationId)!;
  }

  before(async () => {
    server = await startNatsServer();
    nc = await connectNats(server.url, "attacker");
  });
  after(async () => {
    for (const w of workers) await w.stop({ graceful: false });
    for (const c of connections) await c.close().catch(() => {});
    await nc.close();
    await server.stop();
  });

  test("each malformed, forged, replayed or refused message is dropped and counted", async () => {
    const federation = spec("hostile");
    const names = federationNames("hostile");
    const a = await startWorker(federation, "alpha");
    const b = await startWorker(federation, "beta");
    const first = await Promise.all([
      a.worker.contribute(new Uint8Array(10_000).fill(1)),
      b.worker.contribute(new Uint8Array(10_000).fill(2)),
    ]);
    assert.equal(first[0]!.modelHash, first[1]!.modelHash);
    const round = 2;

    // gamma is allowlisted but registered under another federation spec.
    await registerMember(nc, {
      federationId: "hostile",
      memberId: "gamma",
      specHash: otherHash,
      privateKey: keys.get("gamma")!.privateKey,
      settings,
    });
    await assert.rejects(startWorker(federation, "gamma", otherHash), AdmissionError);

    const payload = new Uint8Array(5000).fill(7);
    const manifest = (
      memberId: string,
      signer: Uint8Array,
      overrides: Partial<Parameters<typeof wire.encodeManifest>[0]> = {},
    ) =>
      wire.encodeManifest(
        {
          round,
          memberId,
          workerId: "evil",
          size: payload.length,
          digest: payloadDigest(payload),
          chunkSize: settings.chunkBytes,
          chunkCount: Math.ceil(payload.length / settings.chunkBytes),
          ...overrides,
        },
        signer,
      );
    const chunks = (data: Uint8Array) => {
      const out: Uint8Array[] = [];
      for (let i = 0; i * settings.chunkBytes < data.length; i++) {
        const part = data.subarray(i * settings.chunkBytes, (i + 1) * settings.chunkBytes);
        out.push(new Uint8Array([...wire.encodeChunkHeader(i), ...part]));
      }
      return out;
    };
    const send = async (memberId: string, messages: Uint8Array[], workerId = "evil") => {
      const subject = names.updateSubject(0, round, memberId, workerId);
      for (const m of messages) nc.publish(subject, m);
      await nc.flush();
    };
    const expected: RejectReason[] = [];

    await send("gamma", [manifest("gamma", keys.get("gamma")!.privateKey), ...chunks(payload)]);
    expected.push("spec-mismatch");
    const stranger = generateKeyPair();
    await send("alpha", [manifest("alpha", stranger.privateKey, { workerId: "evil1" })], "evil1");
    expected.push("unknown-key");
    const forged = manifest("alpha", keys.get("alpha")!.privateKey, { workerId: "evil2" });
    forged[20]! ^= 0x01;
    await send("alpha", [forged], "evil2");
    expected.push("bad-signature");
    const oldRound = manifest("alpha", keys.get("alpha")!.privateKey, {
      round: 1,
      workerId: "evil3",
    });
    await send("alpha", [oldRound], "evil3");
    expected.push("replayed");
    const whole = manifest("alpha", keys.get("alpha")!.privateKey, { workerId: "evil4" });
    await send("alpha", [whole.subarray(0, 40)], "evil4");
    expected.push("truncated");
    const huge = manifest("alpha", keys.get("alpha")!.privateKey, {
      workerId: "evil5",
      size: settings.maxUpdateBytes + 1,
      chunkCount: Math.ceil((settings.maxUpdateBytes + 1) / settings.chunkBytes),
    });
    await send("alpha", [huge], "evil5");
    expected.push("oversized");
    const wrong = new Uint8Array(payload).fill(8);
    await send(
      "alpha",
      [manifest("alpha", keys.get("alpha")!.privateKey, { workerId: "evil6" }), ...chunks(wrong)],
      "evil6",
    );
    expected.push("digest-mismatch");
    await send("alpha", [new Uint8Array([0x46, 0x54, 9, 3, 0, 0, 0, 0])], "evil7");
    expected.push("unsupported-version");
    await send("alpha", [new TextEncoder().encode("not a fedtrain message")], "evil8");
    expected.push("malformed");

    // The honest round still commits, with exactly the honest updates; then alpha's update is
    // replayed as a second update of the same round.
    const results = await Promise.all([
      a.worker.contribute(new Uint8Array(9_000).fill(3)),
      b.worker.contribute(new Uint8Array(9_000).fill(4)),
    ]);
    assert.equal(results[0]!.modelHash, results[1]!.modelHash);
    assert.deepEqual(
      results[0]!.commit.entries.map((e) => `${e.memberId}.${e.workerId}`),
      ["alpha.w0", "beta.w0"],
    );
    for (const { worker } of [a, b]) {
      const dropped = worker.counterSnapshot().dropped;
      for (const reason of expected)
        assert.ok(dropped[reason] >= 1, `${reason} counted: ${JSON.stringify(dropped)}`);
    }

    const replay = await readStream(
      await openFederation(nc, "hostile", settings),
      names.updatesStreams[0]!,
    );
    const alphaRound2 = replay.find((m) => {
      try {
        const body = wire.decodeManifest(m.data).body;
        return body.round === 2 && body.memberId === "alpha" && body.workerId === "w0";
      } catch {
        return false;
      }
    });
    assert.ok(alphaRound2);
    const before3 = a.worker.counterSnapshot().dropped.replayed;
    const pending = Promise.all([
      a.worker.contribute(new Uint8Array(100).fill(5)),
      b.worker.contribute(new Uint8Array(100).fill(6)),
    ]);
    nc.publish(names.updateSubject(0, 3, "alpha", "w0"), alphaRound2.data);
    const third = await pending;
    assert.equal(third[0]!.modelHash, third[1]!.modelHash);
    assert.ok(
      b.worker.counterSnapshot().dropped.replayed + a.worker.counterSnapshot().dropped.replayed >
        before3,
    );

    const view = await readFederationView(nc, federation, specHash);
    const gamma = view.members.find((m) => m.memberId === "gamma");
    assert.equal(gamma?.state, "Refused");
    assert.match(gamma?.reason ?? "", /spec hash differs/);
    for (const { worker } of [a, b]) await worker.stop();
  });

  test("a member cannot silence another: a manifest it signs on the victim's subject takes no slot", {
    timeout: 30_000,
  }, async () => {
    const federation = spec("censor");
    const names = federationNames("censor");
    const a = await startWorker(federation, "alpha");
    const b = await startWorker(federation, "beta");
    // Gamma, a member in good standing, publishes first on beta's subject of round 1, with its
    // own key: a well-formed update, signed, chunks and stored notice included.
    const payload = new Uint8Array(4000).fill(9);
    const chunkCount = Math.ceil(payload.length / settings.chunkBytes);
    const gamma = keys.get("gamma")!.privateKey;
    const subject = names.updateSubject(0, 1, "beta", "w0");
    nc.publish(
      subject,
      wire.encodeManifest(
        {
          round: 1,
          memberId: "beta",
          workerId: "w0",
          size: payload.length,
          digest: payloadDigest(payload),
          chunkSize: settings.chunkBytes,
          chunkCount,
        },
        gamma,
      ),
    );
    for (let i = 0; i < chunkCount; i++)
      nc.publish(
        subject,
        new Uint8Array([
          ...wire.encodeChunkHeader(i),
          ...payload.subarray(i * settings.chunkBytes, (i + 1) * settings.chunkBytes),
        ]),
      );
    nc.publish(
      subject,
      wire.encodeStored(
        { round: 1, memberId: "beta", workerId: "w0", digest: payloadDigest(payload) },
        gamma,
      ),
    );
    await nc.flush();
    await waitUntil(() => a.worker.counterSnapshot().dropped["unknown-key"] >= 1);
    const results = await Promise.all([
      a.worker.contribute(new Uint8Array(3_000).fill(1)),
      b.worker.contribute(new Uint8Array(3_000).fill(2)),
    ]);
    // Beta's real update is committed; the forgery was dropped and counted, not replayed.
    assert.deepEqual(
      results[0]!.commit.entries.map((e) => `${e.memberId}.${e.workerId}`),
      ["alpha.w0", "beta.w0"],
    );
    assert.equal(results[0]!.modelHash, results[1]!.modelHash);
    assert.equal(a.worker.counterSnapshot().dropped.replayed, 0);
    for (const { worker } of [a, b]) await worker.stop();
  });

  test("a signed update the model cannot decode is dropped and counted; workers carry on", async () => {
    const federation = spec("undecodable");
    const names = federationNames("undecodable");
    const a = await startWorker(federation, "alpha", specHash, new EvenModel());
    const b = await startWorker(federation, "beta", specHash, new EvenModel());
    await Promise.all([
      a.worker.contribute(new Uint8Array(100).fill(1)),
      b.worker.contribute(new Uint8Array(100).fill(2)),
    ]);
    // A worker refuses to send what every receiver would refuse, and may still send after.
    await assert.rejects(a.worker.submit(new Uint8Array(3)), RangeError);

    // gamma, registered and allowlisted, sends a well-signed, stored round-2 update whose
    // payload the model cannot decode, before the others contribute.
    const gamma = keys.get("gamma")!.privateKey;
    await registerMember(nc, {
      federationId: "undecodable",
      memberId: "gamma",
      specHash,
      privateKey: gamma,
      settings,
    });
    const payload = new Uint8Array(1001).fill(9);
    const body = {
      round: 2,
      memberId: "gamma",
      workerId: "w0",
      size: payload.length,
      digest: payloadDigest(payload),
    };
    const subject = names.updateSubject(0, 2, "gamma", "w0");
    for (const message of [
      wire.encodeManifest({ ...body, chunkSize: settings.chunkBytes, chunkCount: 1 }, gamma),
      new Uint8Array([...wire.encodeChunkHeader(0), ...payload]),
      wire.encodeStored(body, gamma),
    ])
      await resourcesOf("undecodable").then((r) => r.js.publish(subject, message));
    const counted = () =>
      [a, b].every(({ worker }) => worker.counterSnapshot().dropped.malformed >= 1);
    for (let i = 0; i < 100 && !counted(); i++) await new Promise((r) => setTimeout(r, 50));
    assert.ok(counted(), "both workers counted the undecodable update");

    const second = await Promise.all([
      a.worker.contribute(new Uint8Array(100).fill(3)),
      b.worker.contribute(new Uint8Array(100).fill(4)),
    ]);
    assert.deepEqual(
      second[0]!.commit.entries.map((e) => e.memberId),
      ["alpha", "beta"],
    );
    assert.equal(second[0]!.modelHash, second[1]!.modelHash);
    const third = await Promise.all([
      a.worker.contribute(new Uint8Array(100).fill(5)),
      b.worker.contribute(new Uint8Array(100).fill(6)),
    ]);
    assert.equal(third[0]!.round, 3);
    assert.equal(third[0]!.modelHash, third[1]!.modelHash);
    for (const { worker } of [a, b]) await worker.stop();
  });

  test("submit refuses a round that is already committed", async () => {
    const federation = spec("committed");
    const a = await startWorker(federation, "alpha");
    const b = await startWorker(federation, "beta");
    await Promise.all([
      a.worker.contribute(new Uint8Array(100).fill(1)),
      b.worker.contribute(new Uint8Array(100).fill(2)),
    ]);
    await assert.rejects(
      a.worker.submit(new Uint8Array(100), { round: 1 }),
      (error: unknown) => error instanceof ProtocolMessageError && error.reason === "late",
    );
    await assert.rejects(a.worker.submit(new Uint8Array(100), { round: 3 }), RangeError);
    const next = await Promise.all([
      a.worker.submit(new Uint8Array(100).fill(3), { round: 2 }),
      b.worker.submit(new Uint8Array(100).fill(4), { round: 2 }),
    ]);
    assert.deepEqual(next, [2, 2]);
    const results = await Promise.all([a.worker.waitForRound(2), b.worker.waitForRound(2)]);
    assert.equal(results[0].commit.entries.length, 2);
    for (const { worker } of [a, b]) await worker.stop();
  });

  test("ledger verification passes an honest run and pinpoints a tampered commit", async () => {
    const federation = spec("ledger");
    const a = await startWorker(federation, "alpha");
    const b = await startWorker(federation, "beta");
    for (let r = 1; r <= 4; r++)
      await Promise.all([
        a.worker.contribute(new Uint8Array(1000).fill(r)),
        b.worker.contribute(new Uint8Array(1000).fill(r + 10)),
      ]);
    await a.worker.stop();
    await b.worker.stop();
    const honest = await verifyFederationLedger(nc, "ledger", { spec: federation });
    assert.equal(honest.ok, true, JSON.stringify(honest.problems));
    assert.equal(honest.rounds, 4);
    assert.equal(honest.checkpointsVerified, 1);
    const cli = await runCli(["ledger", "verify", "--nats", server.url, "--federation", "ledger"]);
    assert.equal(cli.code, 0, cli.output);
    assert.match(cli.output, /intact: 4 rounds/);

    // Rewrite history: round 2's first entry now names another digest. The stream is purged
    // and refilled, as an attacker with write access to it could.
    const resources = await openFederation(nc, "ledger", settings);
    const records = await readStream(resources, resources.names.ledgerStream);
    const tampered = records.map((r) => new Uint8Array(r.data));
    const round2 = wire.decodeCommit(tampered[1]!).body;
    const digestAt = Buffer.from(tampered[1]!).indexOf(Buffer.from(round2.entries[0]!.digest));
    tampered[1]![digestAt]! ^= 0xff;
    await resources.jsm.streams.purge(resources.names.ledgerStream);
    for (const data of tampered) await resources.js.publish(resources.names.ledgerSubject, data);
    const report = await verifyFederationLedger(nc, "ledger", { spec: federation });
    assert.equal(report.ok, false);
    const firstSeq = records.at(-1)!.seq + 1;
    // The tampered commit is rejected as every worker rejects it; the next no longer links.
    assert.equal(report.rejected[0]?.sequence, firstSeq + 1, "the tampered commit");
    assert.equal(report.rejected[0]?.round, undefined);
    assert.match(report.rejected[0]!.reason, /signature/);
    assert.equal(report.problems[0]?.sequence, firstSeq + 2);
    assert.match(
      report.problems[0]?.reason ?? "",
      /round 3 follows round 1; the accepted chain ends at round 1/,
    );
    assert.equal(report.problems.length, 2, "rounds 3 and 4");
    const failed = await runCli([
      "ledger",
      "verify",
      "--nats",
      server.url,
      "--federation",
      "ledger",
    ]);
    assert.equal(failed.code, 1);
    assert.match(
      failed.output,
      new RegExp(`NOT intact: first problem at stream sequence ${firstSeq + 2} \\(round 3\\)`),
    );
    assert.match(
      failed.output,
      new RegExp(`rejected stream sequence ${firstSeq + 1}: .*signature`),
    );

    // Junk anyone with publish rights could add (a commit re-signed by a key outside the
    // allowlist) is rejected, as the workers reject it, and breaks nothing by itself.
    const intruder = generateKeyPair();
    // The next round after the last, linked to it: only its signer is wrong.
    const last = records.at(-1)!.data;
    const forged = wire.encodeCommit(
      { ...wire.decodeCommit(last).body, round: 5, prevHash: sha256(last) },
      intruder.privateKey,
    );
    await resources.jsm.streams.purge(resources.names.ledgerStream);
    for (const data of [...records.map((r) => r.data), forged])
      await resources.js.publish(resources.names.ledgerSubject, data);
    const forgedReport = await verifyFederationLedger(nc, "ledger", { spec: federation });
    assert.equal(forgedReport.ok, true, JSON.stringify(forgedReport.problems));
    assert.equal(forgedReport.rounds, 4);
    assert.match(forgedReport.rejected[0]?.reason ?? "", /not allowlisted/);
    const junk = await runCli(["ledger", "verify", "--nats", server.url, "--federation", "ledger"]);
    assert.equal(junk.code, 0, junk.output);
    assert.match(
      junk.output,
      /1 ledger messages rejected.*\n {2}rejected stream sequence \d+ \(round 5\)/,
    );
  });
});

async function waitUntil(check: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`condition not met in ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
