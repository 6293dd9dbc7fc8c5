// The coordinator's decision for the open round, as a pure function of what it sees: the table
// of cases lives here, the effects (status records, commits, the lease) in coordinator.ts.
import { Admission } from "../admission.js";
import type { ProtocolSpec, WorkerRef } from "../types.js";

/** How long a coordinator waits for its own commit to come back through the ledger. */
export const COMMIT_ECHO_MS = 5_000;

/** What the coordinator sees when it decides. */
export interface RoundView {
  now: number;
  /** The round to close: the last committed round + 1. */
  round: number;
  /** The run's last round, when it has one (ProtocolSpec.training.rounds). */
  lastRound: number | undefined;
  /** Whether this replica has not yet applied the last committed round. */
  behind: boolean;
  /** Since when it has been behind (set by the coordinator when it first saw it behind). */
  behindSince: number | undefined;
  deadlineMs: number;
  /** The round this coordinator opened last, and that round's current deadline. */
  opened: { round: number; deadline: number } | undefined;
  /** This coordinator's commit on its way back through the ledger. */
  committing: { round: number; since: number } | undefined;
  paused: boolean;
  quorum: ProtocolSpec["sync"]["quorum"];
  /** The live, admitted, active workers. */
  live: readonly WorkerRef[];
  /** The workers whose update of this round is stored and usable. */
  committable: readonly WorkerRef[];
}

/** What the coordinator does next. */
export type RoundDecision =
  /** Behind the ledger for two deadlines: hand the lease on. */
  | { kind: "resign" }
  /**
   * Nothing to do now: this replica must catch up, our commit is on its way back, or updates are
   * still coming. readFromStore: re-read the round's updates from the streams.
   */
  | { kind: "wait"; for: "catch-up" | "commit-echo" | "updates"; readFromStore: boolean }
  /** Every round of the run is committed: status "completed", and nothing more to close. */
  | { kind: "completed" }
  /** Open the round: attempt 0, deadline now + deadlineMs, status "open". */
  | { kind: "open" }
  /** Paused by an organiser: the deadline moves on, status "paused". */
  | { kind: "paused" }
  /** Commit the committable updates. */
  | {
      kind: "commit";
      closedBy: "all-in" | "deadline";
      activeMembers: number;
      readFromStore: boolean;
    }
  /** The deadline passed without a quorum: try again with a new deadline. */
  | { kind: "retry"; reason: string; readFromStore: boolean };

/** Decides the coordinator's next step for the open round; see {@link RoundDecision}. */
export function decideRound(view: RoundView): RoundDecision {
  const { now, round, deadlineMs, opened } = view;
  if (view.lastRound !== undefined && round > view.lastRound) return { kind: "completed" };
  // Close a round only once our own replica has applied the previous one (and written its
  // checkpoint), so commit r+1 references the checkpoint of round r when one is due. A
  // coordinator that cannot catch up (e.g. an update it cannot fetch) would stall every round
  // while holding the lease: after two deadlines it hands the lease on.
  if (view.behind)
    return view.behindSince !== undefined && now - view.behindSince > 2 * deadlineMs
      ? { kind: "resign" }
      : { kind: "wait", for: "catch-up", readFromStore: false };
  // Our commit is on its way back through the ledger; re-decide if it never shows up.
  if (view.committing?.round === round && now - view.committing.since < COMMIT_ECHO_MS)
    return { kind: "wait", for: "commit-echo", readFromStore: false };
  if (opened?.round !== round) return { kind: "open" };
  if (view.paused) return { kind: "paused" };
  const activeMembers = new Set(view.live.map((w) => w.memberId)).size;
  const contributing = new Set(view.committable.map((u) => u.memberId)).size;
  const required = Admission.required(view.quorum, activeMembers);
  const inKeys = new Set(view.committable.map(refKey));
  const allIn = view.live.length > 0 && view.live.every((w) => inKeys.has(refKey(w)));
  // Halfway to the deadline without every update, a lost live message is the likelier cause
  // than a slow worker: read the round from the streams before the deadline decides.
  const readFromStore = !allIn && now >= opened.deadline - deadlineMs / 2;
  const pastDeadline = now >= opened.deadline;
  if (contributing >= required && (allIn || pastDeadline))
    return {
      kind: "commit",
      closedBy: allIn ? "all-in" : "deadline",
      activeMembers,
      readFromStore,
    };
  if (!pastDeadline) return { kind: "wait", for: "updates", readFromStore };
  return {
    kind: "retry",
    reason: `quorum not met at the deadline: updates from ${contributing} of ${activeMembers} active members, ${required} required`,
    readFromStore,
  };
}

function refKey(w: WorkerRef): string {
  return `${w.memberId}\u0000${w.workerId}`;
}
