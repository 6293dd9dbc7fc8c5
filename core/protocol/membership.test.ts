import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { boundedUpdatesOf, memberScoresOf } from "./membership.js";
import type { BoundedUpdateCount, WorkerHeartbeat } from "./types.js";

const heartbeat = (workerId: string, boundedUpdates: BoundedUpdateCount[]): WorkerHeartbeat => ({
  memberId: "alpha",
  workerId,
  specHash: new Uint8Array(32),
  state: "active",
  appliedRound: 5,
  modelHash: new Uint8Array(32),
  loss: undefined,
  roundsContributed: 5,
  sentAtMs: 0,
  boundedUpdates,
  memberScores: [],
});

describe("boundedUpdatesOf", () => {
  test("takes, per member, the highest clipped and dropped counts any heartbeat reports", () => {
    const counts = boundedUpdatesOf([
      heartbeat("w0", [{ memberId: "mallory", clipped: 4, dropped: 0 }]),
      // A worker that joined later has counted fewer rounds.
      heartbeat("w1", [
        { memberId: "birch", clipped: 0, dropped: 1 },
        { memberId: "mallory", clipped: 2, dropped: 1 },
      ]),
      heartbeat("w2", []),
    ]);
    assert.deepEqual(Object.fromEntries(counts), {
      mallory: { clipped: 4, dropped: 1 },
      birch: { clipped: 0, dropped: 1 },
    });
  });

  test("is empty when no heartbeat reports any", () => {
    assert.equal(boundedUpdatesOf([heartbeat("w0", [])]).size, 0);
  });
});

describe("memberScoresOf", () => {
  test("takes, per member, the score of the heartbeat that scored it over the most rounds", () => {
    const scored = (workerId: string, rounds: number, reputation: number): WorkerHeartbeat => ({
      ...heartbeat(workerId, []),
      memberScores: [{ memberId: "mallory", rounds, cosine: -1, reputation }],
    });
    const scores = memberScoresOf([
      scored("w0", 3, -0.5),
      scored("w1", 9, -0.9),
      scored("w2", 1, 0),
    ]);
    assert.deepEqual(scores.get("mallory"), {
      memberId: "mallory",
      rounds: 9,
      cosine: -1,
      reputation: -0.9,
    });
    assert.equal(memberScoresOf([heartbeat("w0", [])]).size, 0);
  });
});
