import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { boundedUpdatesOf } from "./membership.js";
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
