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
  /**
   * Set when the deal left this worker less than one batch of data: "IID" when an IID deal was
   * used instead of the NonIID one, "all" when the worker trains on the whole data set.
   */
  fallback?: "IID" | "all";
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
      /**
       * The least data a worker trains on: examples (classification) or tokens (text), one
       * batch of distinct examples or windows. A skewed NonIID deal, or many workers on little
       * data, can leave a worker less.
       */
      minimum: number;
      onChange?: (change: ShardChange) => void;
    },
  ) {}

  forRound(round: number): ClassificationSet | TextCorpus {
    const { examples, settings, self } = this.options;
    const workers = dealWorkers(this.options.roster(round), self);
    const key = workers.join("\n");
    if (this.data && key === this.key) return this.data;
    const count = exampleCount(examples);
    const dealt = (deal: DealSettings) =>
      dealExamples(deal, workers, count, exampleGroups(examples)).owned(workerName(self));
    let owned = dealt(settings);
    let fallback: ShardChange["fallback"];
    // Too little data would stop the worker at every restart (the commits give the same deal),
    // so it takes more instead, and overlaps the others' shards: first an IID share, then all.
    if (this.size(owned) < this.options.minimum && settings.strategy === "NonIID") {
      owned = dealt({ ...settings, strategy: "IID" });
      fallback = "IID";
    }
    if (this.size(owned) < this.options.minimum) {
      owned = Int32Array.from({ length: count }, (_, e) => e);
      fallback = "all";
    }
    const data = selectExamples(examples, owned);
    this.key = key;
    this.data = data;
    this.options.onChange?.({
      round,
      workers,
      owned,
      examples: count,
      data,
      ...(fallback ? { fallback } : {}),
    });
    return data;
  }

  /** Examples (classification) or tokens (text) of the given examples. */
  private size(owned: Int32Array): number {
    const examples = this.options.examples;
    if (examples.kind === "classification") return owned.length;
    let tokens = 0;
    for (const e of owned) tokens += examples.bounds[e + 1]! - examples.bounds[e]!;
    return tokens;
  }
}
