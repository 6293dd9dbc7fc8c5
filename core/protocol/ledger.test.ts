import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { signedCommits } from "../../test/fixtures/commits.js";
import { encodeUpdate, RoundAuditor, type RoundRules } from "../codec/index.js";
import { payloadDigest } from "./digest.js";
import { generateKeyPair } from "./identity.js";
import { type ScoreAudit, verifyLedger } from "./ledger.js";
import type { Commit, CommitEntry, RoundScores } from "./types.js";

const alpha = generateKeyPair();
const mallory = generateKeyPair();
const rules: RoundRules = {
  aggregation: { kind: "centredClip", radiusMedianMultiple: 2, iterations: 2 },
  normBound: { action: "clip", medianMultiple: 3 },
};

/** Round r's payloads: two honest workers of alpha and a member pushing the other way. */
function payloadsOf(round: number): { entry: CommitEntry; payload: Uint8Array }[] {
  const sender = (memberId: string, workerId: string, values: number[]) => {
    const payload = encodeUpdate(Float32Array.from(values), { method: "none" });
    const entry: CommitEntry = {
      memberId,
      workerId,
      publicKey: memberId === "alpha" ? alpha.publicKey : mallory.publicKey,
      digest: payloadDigest(payload),
      size: payload.length,
    };
    return { entry, payload };
  };
  return [
    sender("alpha", "w0", [1, round, 0.5]),
    sender("alpha", "w1", [1.2, round, 0.4]),
    sender("mallory", "w0", [-8, -round, 3]),
  ];
}

/**
 * Four rounds; each commit from the second on records the previous round's scores as a replica
 * computed them (`change` alters what a round's commit records).
 */
function ledger(change: (round: number, scores: RoundScores[]) => RoundScores[] = (_, s) => s) {
  const replica = new RoundAuditor(3, rules);
  const rounds = [1, 2, 3, 4].map((round) => payloadsOf(round));
  const recorded: RoundScores[][] = [[]];
  for (const [i, updates] of rounds.entries()) {
    const assessments = replica.apply(updates.map((u) => u.payload));
    recorded.push([
      {
        round: i + 1,
        updates: assessments.map((a, j) => ({
          memberId: updates[j]!.entry.memberId,
          workerId: updates[j]!.entry.workerId,
          ...a,
        })),
      },
    ]);
  }
  const links = signedCommits(
    rounds.map((updates, i) => ({
      signer: alpha,
      coordinator: "alpha",
      entries: updates.map((u) => u.entry),
      change: { scores: change(i + 1, recorded[i]!) },
    })),
  );
  const stored = new Map(rounds.flat().map((u) => [u.entry.digest.join(), u.payload]));
  const audit = (lost?: string): ScoreAudit => ({
    auditor: new RoundAuditor(3, rules),
    payloads: async (commit: Commit) =>
      commit.entries.map((e) =>
        `${commit.round}.${e.memberId}.${e.workerId}` === lost
          ? undefined
          : stored.get(e.digest.join()),
      ),
  });
  return { records: links.map(({ sequence, data }) => ({ sequence, data })), audit };
}

describe("ledger verification of the recorded update scores", () => {
  test("scores recorded as a replica computed them are recomputed and agree", async () => {
    const { records, audit } = ledger();
    const report = await verifyLedger(records, { scores: audit() });
    assert.deepEqual(report.problems, []);
    assert.equal(report.scoresVerified, 3);
    // Without an auditor nothing is said about them.
    assert.equal((await verifyLedger(records)).scoresVerified, undefined);
  });

  test("a score changed by the coordinator is a problem of its commit", async () => {
    const { records, audit } = ledger((round, scores) =>
      round === 3
        ? scores.map((s) => ({
            ...s,
            updates: s.updates.map((u) => (u.memberId === "mallory" ? { ...u, cosine: 0.9 } : u)),
          }))
        : scores,
    );
    const report = await verifyLedger(records, { scores: audit() });
    assert.equal(report.ok, false);
    assert.equal(report.problems.length, 1);
    assert.equal(report.problems[0]?.sequence, 3);
    assert.match(
      report.problems[0]?.reason ?? "",
      /scores of round 2 disagree with its stored updates: mallory.w0 cosine recorded 0.9, recomputed -?[\d.]+/,
    );
    // The link stands: later rounds are still checked, and agree.
    assert.equal(report.rounds, 4);
    assert.equal(report.scoresVerified, 2);
  });

  test("scores that leave an update out, or name another, disagree", async () => {
    const { records, audit } = ledger((round, scores) =>
      round === 2 ? scores.map((s) => ({ ...s, updates: s.updates.slice(0, 2) })) : scores,
    );
    const report = await verifyLedger(records, { scores: audit() });
    assert.match(report.problems[0]?.reason ?? "", /recorded for \[alpha.w0, alpha.w1\]/);
  });

  test("an update missing from the streams stops the recomputation, and says so", async () => {
    const { records, audit } = ledger();
    const report = await verifyLedger(records, { scores: audit("2.alpha.w1") });
    assert.equal(report.ok, false);
    assert.equal(report.scoresVerified, 1);
    assert.match(
      report.problems[0]?.reason ?? "",
      /alpha.w1 in round 2 is not in the update streams/,
    );
  });
});

describe("ledger verification: the chain the workers accept", () => {
  const records = (links: ReturnType<typeof signedCommits>) =>
    links.map(({ data }, i) => ({ sequence: i + 1, data }));

  test("a stale coordinator's commit of an old round, stored after newer ones, is only rejected", async () => {
    const honest = signedCommits([1, 2, 3].map(() => ({ signer: alpha, coordinator: "alpha" })));
    // Round 2 again, built on round 3's hash, as a coordinator resumed past its lease would.
    const [stale] = signedCommits([
      { signer: alpha, coordinator: "alpha" },
      { signer: alpha, coordinator: "alpha", change: { prevHash: honest[2]!.commit.prevHash } },
    ]).slice(1);
    const report = await verifyLedger(records([...honest, stale!]));
    assert.equal(report.ok, true, JSON.stringify(report.problems));
    assert.equal(report.rounds, 3);
    assert.deepEqual(
      report.rejected.map((r) => [r.sequence, r.round]),
      [[4, 2]],
    );
    assert.match(report.rejected[0]!.reason, /round 2 follows round 3/);
  });

  test("a signed commit beyond a missing round breaks the ledger", async () => {
    const honest = signedCommits([1, 2, 3, 4].map(() => ({ signer: alpha, coordinator: "alpha" })));
    const report = await verifyLedger(records([honest[0]!, honest[2]!, honest[3]!]));
    assert.equal(report.ok, false);
    assert.equal(report.rounds, 1);
    assert.deepEqual(
      report.problems.map((p) => p.round),
      [3, 4],
    );
    assert.match(report.problems[0]!.reason, /the accepted chain ends at round 1/);
  });
});
