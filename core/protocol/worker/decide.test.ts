import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { WorkerRef } from "../types.js";
import { COMMIT_ECHO_MS, decideRound, type RoundDecision, type RoundView } from "./decide.js";

const deadlineMs = 10_000;
const opensAt = 100_000;

/** A view of round 5, opened at opensAt, with nobody live yet; change() adjusts it. */
function view(change: Partial<RoundView> = {}): RoundView {
  return {
    now: opensAt,
    round: 5,
    lastRound: undefined,
    behind: false,
    behindSince: undefined,
    deadlineMs,
    opened: { round: 5, deadline: opensAt + deadlineMs },
    committing: undefined,
    paused: false,
    quorum: { minMembers: 1 },
    live: [],
    committable: [],
    ...change,
  };
}

/** Workers named "member.worker". */
const workers = (...names: string[]): WorkerRef[] =>
  names.map((name) => {
    const [memberId = "", workerId = ""] = name.split(".");
    return { memberId, workerId };
  });

const cases: { name: string; view: RoundView; want: RoundDecision }[] = [
  {
    name: "every round of the run committed: completed, even with updates in",
    view: view({ lastRound: 4, live: workers("a.w0"), committable: workers("a.w0") }),
    want: { kind: "completed" },
  },
  {
    name: "the run's last round still to close: commit it",
    view: view({ lastRound: 5, live: workers("a.w0"), committable: workers("a.w0") }),
    want: { kind: "commit", closedBy: "all-in", activeMembers: 1, readFromStore: false },
  },
  {
    name: "behind the ledger: wait to catch up",
    view: view({ behind: true, behindSince: opensAt }),
    want: { kind: "wait", for: "catch-up", readFromStore: false },
  },
  {
    name: "behind for exactly two deadlines: still wait",
    view: view({ behind: true, behindSince: opensAt, now: opensAt + 2 * deadlineMs }),
    want: { kind: "wait", for: "catch-up", readFromStore: false },
  },
  {
    name: "behind for more than two deadlines: resign",
    view: view({ behind: true, behindSince: opensAt, now: opensAt + 2 * deadlineMs + 1 }),
    want: { kind: "resign" },
  },
  {
    name: "own commit of this round on its way back: wait",
    view: view({ committing: { round: 5, since: opensAt - COMMIT_ECHO_MS + 1 } }),
    want: { kind: "wait", for: "commit-echo", readFromStore: false },
  },
  {
    name: "own commit not back after COMMIT_ECHO_MS: decide afresh",
    view: view({
      committing: { round: 5, since: opensAt - COMMIT_ECHO_MS },
      live: workers("alpine.w0"),
      committable: workers("alpine.w0"),
    }),
    want: { kind: "commit", closedBy: "all-in", activeMembers: 1, readFromStore: false },
  },
  {
    name: "a commit of an earlier round in flight does not hold this one",
    view: view({ committing: { round: 4, since: opensAt }, opened: undefined }),
    want: { kind: "open" },
  },
  {
    name: "a round not opened yet: open it",
    view: view({ opened: { round: 4, deadline: opensAt } }),
    want: { kind: "open" },
  },
  {
    name: "paused by an organiser, with every update in: paused",
    view: view({ paused: true, live: workers("alpine.w0"), committable: workers("alpine.w0") }),
    want: { kind: "paused" },
  },
  {
    name: "every live worker in: commit at once",
    view: view({
      live: workers("alpine.w0", "birch.w0"),
      committable: workers("alpine.w0", "birch.w0"),
    }),
    want: { kind: "commit", closedBy: "all-in", activeMembers: 2, readFromStore: false },
  },
  {
    name: "quorum met but a worker missing before the deadline: wait for it",
    view: view({
      now: opensAt + 1_000,
      live: workers("alpine.w0", "birch.w0"),
      committable: workers("alpine.w0"),
    }),
    want: { kind: "wait", for: "updates", readFromStore: false },
  },
  {
    name: "halfway to the deadline with a worker missing: read the streams",
    view: view({
      now: opensAt + deadlineMs / 2,
      live: workers("alpine.w0", "birch.w0"),
      committable: workers("alpine.w0"),
    }),
    want: { kind: "wait", for: "updates", readFromStore: true },
  },
  {
    name: "quorum met at the deadline: commit what is in",
    view: view({
      now: opensAt + deadlineMs,
      live: workers("alpine.w0", "birch.w0"),
      committable: workers("alpine.w0"),
    }),
    want: { kind: "commit", closedBy: "deadline", activeMembers: 2, readFromStore: true },
  },
  {
    name: "quorum by fraction not met at the deadline: retry",
    view: view({
      now: opensAt + deadlineMs,
      quorum: { fraction: 0.6 },
      live: workers("alpine.w0", "birch.w0", "cedar.w0"),
      committable: workers("alpine.w0"),
    }),
    want: {
      kind: "retry",
      reason: "quorum not met at the deadline: updates from 1 of 3 active members, 2 required",
      readFromStore: true,
    },
  },
  {
    name: "quorum counts members, not workers",
    view: view({
      now: opensAt + deadlineMs,
      quorum: { minMembers: 2 },
      live: workers("alpine.w0", "alpine.w1", "birch.w0"),
      committable: workers("alpine.w0", "alpine.w1"),
    }),
    want: {
      kind: "retry",
      reason: "quorum not met at the deadline: updates from 1 of 2 active members, 2 required",
      readFromStore: true,
    },
  },
  {
    name: "nobody live and nothing in: wait until the deadline",
    view: view(),
    want: { kind: "wait", for: "updates", readFromStore: false },
  },
  {
    name: "nobody live at the deadline, one update in: commit it",
    view: view({ now: opensAt + deadlineMs, committable: workers("alpine.w0") }),
    want: { kind: "commit", closedBy: "deadline", activeMembers: 0, readFromStore: true },
  },
  {
    name: "nothing in at the deadline: retry (at least one member is required)",
    view: view({ now: opensAt + deadlineMs }),
    want: {
      kind: "retry",
      reason: "quorum not met at the deadline: updates from 0 of 0 active members, 1 required",
      readFromStore: true,
    },
  },
  {
    name: "an update from a worker that is not live counts toward the quorum",
    view: view({
      now: opensAt + deadlineMs,
      live: workers("alpine.w0"),
      committable: workers("birch.w0"),
    }),
    want: { kind: "commit", closedBy: "deadline", activeMembers: 1, readFromStore: true },
  },
];

describe("decideRound", () => {
  for (const { name, view, want } of cases)
    test(name, () => {
      assert.deepEqual(decideRound(view), want);
    });
});
