// Who trains in a DiLoCo round, and on which examples. Every member derives a round's workers
// from what the federation agreed on, the commit of an earlier round, so that all deal the data
// alike (shards.ts) without exchanging anything else:
// - round k takes the workers named by the commit of round k − 1 (k − 2 with overlap, the newest
//   commit a worker has applied when round k's inner steps begin), plus the worker itself when it
//   is not in it: a newcomer deals itself a share that overlaps other workers' until a commit
//   includes its update (normally after its first round);
// - a round that no earlier commit can name (round 0; round 1 with overlap) takes the workers
//   live when training starts, which workers starting at different moments may see differently:
//   the shards of that round alone may overlap;
// - a worker that trains on its member's own data (contribution.localData) is named
//   `local-w<index>` in the federation, so that every member leaves it out of the shared data's
//   deal; its member's local-data workers deal the member's data among themselves.
import type { WorkerRef } from "../../core/protocol/index.js";
import {
  type ClassificationSet,
  type ExampleSet,
  exampleCount,
  exampleGroups,
  type RoundData,
  selectExamples,
  type TextCorpus,
} from "./data.js";
import { type DealSettings, dealExamples } from "./shards.js";

/** How a worker id marks a worker that trains on its member's own data. */
export const LOCAL_DATA_WORKER_PREFIX = "local-";

/**
 * The id under which worker `index` of a member takes part in the federation: `w<index>`, or
 * `local-w<index>` when it trains on its member's own data.
 */
export function federationWorkerId(index: number, localData: boolean): string {
  return `${localData ? LOCAL_DATA_WORKER_PREFIX : ""}w${index}`;
}

/** Whether a worker of the federation trains on its member's own data (by its id). */
export function trainsOnLocalData(worker: WorkerRef): boolean {
  return worker.workerId.startsWith(LOCAL_DATA_WORKER_PREFIX);
}

/** How a deal names a worker: `<member>/<worker>`. */
export function workerName(worker: WorkerRef): string {
  return `${worker.memberId}/${worker.workerId}`;
}

/**
 * The DiLoCo round whose commit names the workers of round `round`: the one before, or with
 * overlap the one before that. Negative when no commit can (the workers live at the start).
 */
export function rosterRound(round: number, overlap: boolean): number {
  return round - (overlap ? 2 : 1);
}

/**
 * The workers that share `self`'s data in a round whose workers are `roster`: the federation's
 * shared-data workers, or `self`'s member's local-data workers; `self` always among them.
 */
export function dealWorkers(roster: readonly WorkerRef[], self: WorkerRef): string[] {
  const local = trainsOnLocalData(self);
  const names = roster
    .filter((w) =>
      local ? w.memberId === self.memberId && trainsOnLocalData(w) : !trainsOnLocalData(w),
    )
    .map(workerName);
  return [...new Set([...names, workerName(self)])].sort();
}

/** What a worker trains on after its round's workers changed. */
export interface ShardChange {
  round: number;
  /** The workers the data was dealt among (`<member>/<worker>`, sorted). */
  workers: readonly string[];
  /** The examples this worker owns, ascending. */
  owned: Int32Array;
  /** Examples in the whole data set. */
  examples: number;
  data: ClassificationSet | TextCorpus;
}

/**
 * One worker's training data round by round: its share of `examples` among the workers that
 * `roster(round)` names, dealt again only when they change.
 */
export class WorkerShard implements RoundData {
  private key = "";
  private data: ClassificationSet | TextCorpus | undefined;

  constructor(
    private readonly options: {
      examples: ExampleSet;
      settings: DealSettings;
      self: WorkerRef;
      /** The workers of DiLoCo round `round` (see the rules above); may leave `self` out. */
      roster: (round: number) => readonly WorkerRef[];
      onChange?: (change: ShardChange) => void;
    },
  ) {}

  forRound(round: number): ClassificationSet | TextCorpus {
    const { examples, settings, self } = this.options;
    const workers = dealWorkers(this.options.roster(round), self);
    const key = workers.join("\n");
    if (this.data && key === this.key) return this.data;
    const deal = dealExamples(settings, workers, exampleCount(examples), exampleGroups(examples));
    const owned = deal.owned(workerName(self));
    const data = selectExamples(examples, owned);
    this.key = key;
    this.data = data;
    this.options.onChange?.({ round, workers, owned, examples: exampleCount(examples), data });
    return data;
  }
}
