// Dealing a data set's examples to workers by rendezvous (highest-random-weight) hashing: example
// e goes to the worker w with the best seeded 32-bit hash of (seed, e, w). Every member that knows
// the same list of workers computes the same deal with no further coordination; the shards are
// disjoint and cover the data set for any list, in any order; and when a worker comes or goes,
// only the examples it gains or loses move. NonIID weights the choice per group of examples
// (class, task, region of a document): worker w wins an example of group g with probability
// weight(g, w) / Σ weight(g, ·), the weights drawn from Gamma(concentration) on a stream keyed by
// the worker's name, so a worker's share of each group follows a Dirichlet distribution over the
// workers (Hsu et al., 2019) whatever the order or the size of the list.
// Integer hashing only (prng.ts's murmur3 mix): a few million example × worker scores per second.
import { hashLabel, mix32, Random } from "./prng.js";

/** How a data set is dealt: the federation seed and spec.federation.data.sharding. */
export interface DealSettings {
  seed: number;
  strategy: "IID" | "NonIID";
  /** Dirichlet concentration for NonIID (smaller is more skewed). */
  concentration: number;
}

/** Which worker owns each example of a data set. */
export class ExampleDeal {
  private readonly index = new Map<string, number>();

  constructor(
    /** The workers, sorted and distinct. */
    readonly workers: readonly string[],
    /** Per example, the index in `workers` of the worker that owns it. */
    readonly owners: Int32Array,
  ) {
    for (const [i, worker] of workers.entries()) this.index.set(worker, i);
  }

  /** The examples `worker` owns, ascending (none for a worker not in the deal). */
  owned(worker: string): Int32Array {
    const w = this.index.get(worker);
    if (w === undefined) return new Int32Array(0);
    let count = 0;
    for (let e = 0; e < this.owners.length; e++) if (this.owners[e] === w) count++;
    const out = new Int32Array(count);
    let next = 0;
    for (let e = 0; e < this.owners.length; e++) if (this.owners[e] === w) out[next++] = e;
    return out;
  }

  /** How many examples each worker owns, in `workers` order. */
  sizes(): number[] {
    const sizes = new Array<number>(this.workers.length).fill(0);
    for (let e = 0; e < this.owners.length; e++) sizes[this.owners[e]!]!++;
    return sizes;
  }
}

/**
 * Deals `count` examples to `workers` (names; duplicates and order do not matter). `groups`, for
 * NonIID, gives each example's group (0, 1, ...); without it NonIID deals one group, so only the
 * shard sizes are skewed.
 */
export function dealExamples(
  settings: DealSettings,
  workers: readonly string[],
  count: number,
  groups?: Int32Array,
): ExampleDeal {
  const names = [...new Set(workers)].sort();
  if (names.length === 0) throw new RangeError("cannot deal examples to no workers");
  if (!(Number.isInteger(count) && count >= 0))
    throw new RangeError(`example count ${count} must be a non-negative integer`);
  if (groups && groups.length !== count)
    throw new RangeError(`${groups.length} example groups for ${count} examples`);
  const seedKey = mix32(
    (Math.trunc(settings.seed) >>> 0) ^
      mix32((Math.floor(settings.seed / 2 ** 32) >>> 0) ^ hashLabel("deal")),
  );
  const keys = new Uint32Array(names.length);
  const secondKeys = new Uint32Array(names.length);
  names.forEach((name, w) => {
    keys[w] = mix32(hashLabel(name) ^ seedKey);
    secondKeys[w] = mix32((keys[w]! + 0x9e3779b9) >>> 0);
  });
  const owners = new Int32Array(count);
  const hash = (example: number, w: number): number =>
    mix32(mix32(exampleKey(example, seedKey) ^ keys[w]!) ^ secondKeys[w]!);
  if (settings.strategy === "IID" || names.length === 1) {
    for (let e = 0; e < count; e++) {
      const key = exampleKey(e, seedKey);
      let best = 0;
      let bestHash = -1;
      for (let w = 0; w < names.length; w++) {
        const h = mix32(mix32(key ^ keys[w]!) ^ secondKeys[w]!);
        // Ties go to the first name in sorted order: the same on every member.
        if (h > bestHash) {
          bestHash = h;
          best = w;
        }
      }
      owners[e] = best;
    }
    return new ExampleDeal(names, owners);
  }
  if (!(settings.concentration > 0))
    throw new RangeError(`NonIID concentration ${settings.concentration} must be positive`);
  let groupCount = 1;
  if (groups) for (let e = 0; e < count; e++) groupCount = Math.max(groupCount, groups[e]! + 1);
  // logWeights[g * workers + w]: ln of worker w's Gamma weight for group g, drawn in log space so
  // that a tiny concentration cannot underflow a weight to zero.
  const logWeights = new Float64Array(groupCount * names.length);
  names.forEach((name, w) => {
    const random = new Random(settings.seed, "deal", "NonIID", name);
    for (let g = 0; g < groupCount; g++)
      logWeights[g * names.length + w] = logGamma(random, settings.concentration);
  });
  for (let e = 0; e < count; e++) {
    const row = (groups ? groups[e]! : 0) * names.length;
    let best = 0;
    let bestScore = Number.POSITIVE_INFINITY;
    for (let w = 0; w < names.length; w++) {
      // −ln(u) / weight is Exponential(weight): the smallest of them belongs to worker w with
      // probability weight(w) / Σ weight. Compared as ln(−ln u) − ln weight.
      const u = (hash(e, w) + 0.5) / 4294967296;
      const score = Math.log(-Math.log(u)) - logWeights[row + w]!;
      if (score < bestScore) {
        bestScore = score;
        best = w;
      }
    }
    owners[e] = best;
  }
  return new ExampleDeal(names, owners);
}

/**
 * The names `worker-0` … of `workerCount` workers in one process, as simulate.ts names them: what
 * a ShardSpec deals among (simulations, benchmarks, tests).
 */
export function indexedWorkers(workerCount: number): string[] {
  if (!(Number.isInteger(workerCount) && workerCount >= 1))
    throw new RangeError(`worker count ${workerCount} must be a positive integer`);
  return Array.from({ length: workerCount }, (_, i) => `worker-${i}`);
}

function exampleKey(example: number, seedKey: number): number {
  return mix32((Math.imul(example, 0x9e3779b1) ^ seedKey) >>> 0);
}

/** ln of a Gamma(shape, 1) sample; for shape < 1 through Gamma(shape + 1) · U^(1/shape). */
function logGamma(random: Random, shape: number): number {
  if (shape >= 1) return Math.log(random.gamma(shape));
  let u = 0;
  while (u === 0) u = random.uniform();
  return Math.log(random.gamma(shape + 1)) + Math.log(u) / shape;
}
