// Built-in synthetic datasets, deterministic from the federation seed, as lists of examples; and
// a worker's training data: the examples dealt to it (shards.ts), in data-set order. Everything is
// generated in plain JavaScript (see prng.ts) so every member and every process gets the same
// bytes.
import { Random } from "./prng.js";
import { type DealSettings, dealExamples, indexedWorkers } from "./shards.js";

/** A classification dataset: row-major features and integer labels; each row is an example. */
export interface ClassificationSet {
  kind: "classification";
  features: Float32Array;
  labels: Int32Array;
  count: number;
  featureCount: number;
  classCount: number;
}

/** A character-level corpus: token ids over a fixed vocabulary. */
export interface TextCorpus {
  kind: "text";
  tokens: Uint8Array;
  vocabulary: string;
}

/**
 * Text cut into examples (lines, paragraphs, records), encoded once: example i is
 * `tokens[bounds[i], bounds[i + 1])`.
 */
export interface TextExamples {
  kind: "text";
  tokens: Uint8Array;
  /** Example count + 1 offsets into `tokens`, ascending. */
  bounds: Uint32Array;
  vocabulary: string;
  /** Each example's group (Arithmetic: its operation; a document: its region) for NonIID deals. */
  groups?: Int32Array;
}

/** A whole training set as a list of examples, before it is dealt to workers. */
export type ExampleSet = ClassificationSet | TextExamples;

/** A federation's data: every training example, and the evaluation set all members share. */
export interface DataSet {
  train: ExampleSet;
  eval: ClassificationSet | TextCorpus;
}

/**
 * A share of the training data among `workerCount` workers of one process, named as
 * {@link indexedWorkers} names them (simulations, benchmarks, tests).
 */
export interface ShardSpec {
  workerIndex: number;
  workerCount: number;
  strategy: "IID" | "NonIID";
  /** Dirichlet concentration for NonIID (smaller is more skewed). */
  concentration: number;
}

/** Settings of the GaussianClusters generator. */
export interface GaussianClustersSpec {
  trainExamples: number;
  evalExamples: number;
  features: number;
  classes: number;
  noise: number;
}

/** Settings of the Arithmetic generator. */
export interface ArithmeticSpec {
  trainExamples: number;
  evalExamples: number;
  maxOperand: number;
}

/** The training examples of one worker and the evaluation set all members share. */
export interface ShardedClassification {
  train: ClassificationSet;
  eval: ClassificationSet;
}

/** The training text of one worker and the evaluation text all members share. */
export interface ShardedText {
  train: TextCorpus;
  eval: TextCorpus;
}

/** Characters of the Arithmetic corpus; token id = index. */
export const ARITHMETIC_VOCABULARY = "\n0123456789+*=";

/** How many examples a data set has. */
export function exampleCount(set: ExampleSet): number {
  return set.kind === "classification" ? set.count : set.bounds.length - 1;
}

/** The group of every example (the class of a row), for NonIID deals; undefined: one group. */
export function exampleGroups(set: ExampleSet): Int32Array | undefined {
  return set.kind === "classification" ? set.labels : set.groups;
}

/** The training data made of the `owned` examples of `set` (ascending), in data-set order. */
export function selectExamples(set: ClassificationSet, owned: Int32Array): ClassificationSet;
export function selectExamples(set: TextExamples, owned: Int32Array): TextCorpus;
export function selectExamples(set: ExampleSet, owned: Int32Array): ClassificationSet | TextCorpus;
export function selectExamples(set: ExampleSet, owned: Int32Array): ClassificationSet | TextCorpus {
  if (set.kind === "classification") {
    const width = set.featureCount;
    const features = new Float32Array(owned.length * width);
    const labels = new Int32Array(owned.length);
    for (let i = 0; i < owned.length; i++) {
      const example = owned[i]!;
      labels[i] = set.labels[example]!;
      features.set(set.features.subarray(example * width, (example + 1) * width), i * width);
    }
    return { ...set, features, labels, count: owned.length };
  }
  let length = 0;
  for (const example of owned) length += set.bounds[example + 1]! - set.bounds[example]!;
  const tokens = new Uint8Array(length);
  let offset = 0;
  for (const example of owned) {
    const piece = set.tokens.subarray(set.bounds[example]!, set.bounds[example + 1]!);
    tokens.set(piece, offset);
    offset += piece.length;
  }
  return { kind: "text", tokens, vocabulary: set.vocabulary };
}

/** Text examples over `vocabulary`, and how many characters outside it were skipped. */
export interface EncodedExamples {
  examples: TextExamples;
  skipped: number;
}

/**
 * Encodes `pieces` as text examples over `vocabulary`. A character outside the vocabulary is an
 * error, or with `skipUnknown` left out and counted (a member's own data in the federation's
 * vocabulary).
 */
export function textExamples(
  pieces: readonly string[],
  vocabulary: string,
  options: { groups?: Int32Array; skipUnknown?: boolean } = {},
): EncodedExamples {
  const index = vocabularyIndex(vocabulary);
  let length = 0;
  for (const piece of pieces) length += piece.length;
  const tokens = new Uint8Array(length);
  const bounds = new Uint32Array(pieces.length + 1);
  let offset = 0;
  let skipped = 0;
  pieces.forEach((piece, p) => {
    for (let i = 0; i < piece.length; i++) {
      const id = index.get(piece[i]!);
      if (id !== undefined) {
        tokens[offset++] = id;
      } else if (options.skipUnknown) {
        skipped++;
      } else {
        throw new RangeError(
          `character ${JSON.stringify(piece[i])} at ${i} of example ${p} is not in the vocabulary`,
        );
      }
    }
    bounds[p + 1] = offset;
  });
  const examples: TextExamples = {
    kind: "text",
    tokens: tokens.subarray(0, offset),
    bounds,
    vocabulary,
  };
  if (options.groups) examples.groups = options.groups;
  return { examples, skipped };
}

/**
 * GaussianClusters: `classes` centres drawn once from the seed at distance ~√features, examples
 * are a centre plus `noise`-scaled Gaussian noise. The evaluation set is a separate stream.
 */
export function gaussianClustersSet(
  seed: number,
  spec: GaussianClustersSpec,
): { train: ClassificationSet; eval: ClassificationSet } {
  const centreRandom = new Random(seed, "gaussian-clusters", "centres");
  const centres = new Float32Array(spec.classes * spec.features);
  for (let i = 0; i < centres.length; i++) centres[i] = centreRandom.normal();
  const generate = (count: number, stream: string): ClassificationSet => {
    const random = new Random(seed, "gaussian-clusters", stream);
    const features = new Float32Array(count * spec.features);
    const labels = new Int32Array(count);
    for (let n = 0; n < count; n++) {
      const label = random.int(spec.classes);
      labels[n] = label;
      for (let f = 0; f < spec.features; f++) {
        features[n * spec.features + f] =
          centres[label * spec.features + f]! + spec.noise * random.normal();
      }
    }
    return {
      kind: "classification",
      features,
      labels,
      count,
      featureCount: spec.features,
      classCount: spec.classes,
    };
  };
  return {
    train: generate(spec.trainExamples, "train"),
    eval: generate(spec.evalExamples, "eval"),
  };
}

/** GaussianClusters with its training rows dealt to `shard` (see {@link gaussianClustersSet}). */
export function gaussianClusters(
  seed: number,
  spec: GaussianClustersSpec,
  shard: ShardSpec,
): ShardedClassification {
  const { train, eval: held } = gaussianClustersSet(seed, spec);
  return { train: selectExamples(train, ownedByShard(seed, train, shard)), eval: held };
}

/** The operations of the Arithmetic corpus; NonIID skews each worker's mix of them. */
const OPERATIONS = ["+", "*"] as const;

/**
 * Arithmetic: lines such as "12+7=19\n" and "3*8=24\n" with operands in [0, maxOperand]; each
 * line is an example, grouped by its operation (NonIID skews a worker's mix of them).
 */
export function arithmeticSet(
  seed: number,
  spec: ArithmeticSpec,
): { train: TextExamples; eval: TextCorpus } {
  const generate = (count: number, stream: string): { lines: string[]; ops: Int32Array } => {
    const random = new Random(seed, "arithmetic", stream);
    const lines: string[] = [];
    const ops = new Int32Array(count);
    for (let n = 0; n < count; n++) {
      const op = random.int(OPERATIONS.length);
      const a = random.int(spec.maxOperand + 1);
      const b = random.int(spec.maxOperand + 1);
      ops[n] = op;
      lines.push(`${a}${OPERATIONS[op]}${b}=${op === 0 ? a + b : a * b}\n`);
    }
    return { lines, ops };
  };
  const train = generate(spec.trainExamples, "train");
  return {
    train: textExamples(train.lines, ARITHMETIC_VOCABULARY, { groups: train.ops }).examples,
    eval: encodeText(generate(spec.evalExamples, "eval").lines.join(""), ARITHMETIC_VOCABULARY),
  };
}

/** Arithmetic with its training lines dealt to `shard`, concatenated (see {@link arithmeticSet}). */
export function arithmetic(seed: number, spec: ArithmeticSpec, shard: ShardSpec): ShardedText {
  const { train, eval: held } = arithmeticSet(seed, spec);
  return { train: selectExamples(train, ownedByShard(seed, train, shard)), eval: held };
}

/** Maps text to token ids over `vocabulary`; characters outside it are an error. */
export function encodeText(text: string, vocabulary: string): TextCorpus {
  const index = vocabularyIndex(vocabulary);
  const tokens = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) {
    const id = index.get(text[i]!);
    if (id === undefined) {
      throw new RangeError(`character ${JSON.stringify(text[i])} at ${i} is not in the vocabulary`);
    }
    tokens[i] = id;
  }
  return { kind: "text", tokens, vocabulary };
}

function vocabularyIndex(vocabulary: string): Map<string, number> {
  if (vocabulary.length > 256) {
    throw new RangeError(`a vocabulary of ${vocabulary.length} characters exceeds 256`);
  }
  const index = new Map<string, number>();
  for (let i = 0; i < vocabulary.length; i++) index.set(vocabulary[i]!, i);
  return index;
}

/** The examples of `set` that `shard` owns, ascending: a deal among the process's workers. */
export function ownedByShard(seed: number, set: ExampleSet, shard: ShardSpec): Int32Array {
  const workers = indexedWorkers(shard.workerCount);
  if (
    !(
      Number.isInteger(shard.workerIndex) &&
      shard.workerIndex >= 0 &&
      shard.workerIndex < shard.workerCount
    )
  ) {
    throw new RangeError(`worker index ${shard.workerIndex} must be in [0, ${shard.workerCount})`);
  }
  const settings: DealSettings = {
    seed,
    strategy: shard.strategy,
    concentration: shard.concentration,
  };
  return dealExamples(settings, workers, exampleCount(set), exampleGroups(set)).owned(
    workers[shard.workerIndex]!,
  );
}

/** A batch of classification examples, or of next-character windows. */
export type Batch =
  | { kind: "classification"; features: Float32Array; labels: Int32Array; size: number }
  | { kind: "text"; inputs: Int32Array; targets: Int32Array; size: number; length: number };

/** Training data that may change from round to round: a worker's shard of a changing roster. */
export interface RoundData {
  /** The data to train on in DiLoCo round `round`; asked at the start of every round. */
  forRound(round: number): ClassificationSet | TextCorpus;
}

/**
 * Draws a worker's training batches in a fixed order from the seed and the worker's stream. A
 * DiLoCo worker starts every round with {@link startRound}, which makes the round's batches a
 * function of (seed, stream, round) and the round's data alone: a worker resumed at a round
 * boundary draws exactly the batches an uninterrupted one would, with no sampler state to save.
 * The data is fixed, or a {@link RoundData} asked for each round's (a shard that follows the
 * federation's workers).
 */
export class BatchSampler {
  private random: Random;
  private data: ClassificationSet | TextCorpus | undefined;
  private readonly source: RoundData | undefined;

  constructor(
    data: ClassificationSet | TextCorpus | RoundData,
    readonly batchSize: number,
    private readonly seed: number,
    private readonly stream: number,
    /** Window length of text batches (the model's context length). */
    private readonly contextLength = 0,
  ) {
    this.random = new Random(seed, "batches", stream);
    if ("forRound" in data) {
      this.source = data;
    } else {
      this.use(data);
    }
  }

  /** Restarts the batch stream at the first batch of DiLoCo round `round`. */
  startRound(round: number): void {
    if (this.source) this.use(this.source.forRound(round));
    this.random = new Random(this.seed, "batches", this.stream, "round", round);
  }

  private use(data: ClassificationSet | TextCorpus): void {
    if (data === this.data) return;
    if (data.kind === "classification" && data.count === 0) {
      throw new RangeError(
        `this worker has no training examples: the data set is too small for its workers (use more data or fewer workers)`,
      );
    }
    if (data.kind === "text" && data.tokens.length < this.contextLength + 2) {
      throw new RangeError(
        `this worker has ${data.tokens.length} tokens of training text, fewer than the context length + 2 (${this.contextLength + 2}): use more data, fewer workers or a shorter context`,
      );
    }
    this.data = data;
  }

  /** The next batch. */
  next(): Batch {
    const data = this.data;
    if (!data) throw new RangeError("startRound() must come before the first batch");
    if (data.kind === "classification") {
      const features = new Float32Array(this.batchSize * data.featureCount);
      const labels = new Int32Array(this.batchSize);
      for (let b = 0; b < this.batchSize; b++) {
        const example = this.random.int(data.count);
        labels[b] = data.labels[example]!;
        features.set(
          data.features.subarray(example * data.featureCount, (example + 1) * data.featureCount),
          b * data.featureCount,
        );
      }
      return { kind: "classification", features, labels, size: this.batchSize };
    }
    const length = this.contextLength;
    const inputs = new Int32Array(this.batchSize * length);
    const targets = new Int32Array(this.batchSize * length);
    for (let b = 0; b < this.batchSize; b++) {
      const start = this.random.int(data.tokens.length - length - 1);
      for (let t = 0; t < length; t++) {
        inputs[b * length + t] = data.tokens[start + t]!;
        targets[b * length + t] = data.tokens[start + t + 1]!;
      }
    }
    return { kind: "text", inputs, targets, size: this.batchSize, length };
  }
}

/**
 * The evaluation set cut into batches: all examples for classification; for text, consecutive
 * non-overlapping windows of the context length (at most `maxWindows`).
 */
export function evaluationBatches(
  data: ClassificationSet | TextCorpus,
  batchSize: number,
  contextLength = 0,
  maxWindows = Number.POSITIVE_INFINITY,
): Batch[] {
  const batches: Batch[] = [];
  if (data.kind === "classification") {
    for (let start = 0; start < data.count; start += batchSize) {
      const size = Math.min(batchSize, data.count - start);
      batches.push({
        kind: "classification",
        features: data.features.slice(
          start * data.featureCount,
          (start + size) * data.featureCount,
        ),
        labels: data.labels.slice(start, start + size),
        size,
      });
    }
    return batches;
  }
  const length = contextLength;
  const windows = Math.min(maxWindows, Math.floor((data.tokens.length - 1) / length));
  for (let first = 0; first < windows; first += batchSize) {
    const size = Math.min(batchSize, windows - first);
    const inputs = new Int32Array(size * length);
    const targets = new Int32Array(size * length);
    for (let b = 0; b < size; b++) {
      const start = (first + b) * length;
      for (let t = 0; t < length; t++) {
        inputs[b * length + t] = data.tokens[start + t]!;
        targets[b * length + t] = data.tokens[start + t + 1]!;
      }
    }
    batches.push({ kind: "text", inputs, targets, size, length });
  }
  return batches;
}
