// Built-in synthetic datasets, deterministic from the federation seed, and their sharding across
// workers. Everything is generated in plain JavaScript (see prng.ts) so every member and every
// process gets the same bytes.
import { Random } from "./prng.js";

/** A classification dataset: row-major features and integer labels. */
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

/** Which part of the training data a worker owns. */
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

/**
 * GaussianClusters: `classes` centres drawn once from the seed at distance ~√features, examples
 * are a centre plus `noise`-scaled Gaussian noise. The evaluation set is a separate stream.
 */
export function gaussianClusters(
  seed: number,
  spec: GaussianClustersSpec,
  shard: ShardSpec,
): ShardedClassification {
  checkShard(shard);
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
  const all = generate(spec.trainExamples, "train");
  const owned = assignExamples(seed, all.labels, spec.classes, shard);
  const features = new Float32Array(owned.length * spec.features);
  const labels = new Int32Array(owned.length);
  owned.forEach((example, i) => {
    labels[i] = all.labels[example]!;
    features.set(
      all.features.subarray(example * spec.features, (example + 1) * spec.features),
      i * spec.features,
    );
  });
  return {
    train: { ...all, features, labels, count: owned.length },
    eval: generate(spec.evalExamples, "eval"),
  };
}

/** The operations of the Arithmetic corpus; NonIID skews each worker's mix of them. */
const OPERATIONS = ["+", "*"] as const;

/**
 * Arithmetic: lines such as "12+7=19\n" and "3*8=24\n" with operands in [0, maxOperand]. A
 * worker's text is its shard of the training lines, concatenated; NonIID skews the operation mix.
 */
export function arithmetic(seed: number, spec: ArithmeticSpec, shard: ShardSpec): ShardedText {
  checkShard(shard);
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
  const owned = assignExamples(seed, train.ops, OPERATIONS.length, shard);
  const text = owned.map((line) => train.lines[line]!).join("");
  return {
    train: encodeText(text, ARITHMETIC_VOCABULARY),
    eval: encodeText(generate(spec.evalExamples, "eval").lines.join(""), ARITHMETIC_VOCABULARY),
  };
}

/** Maps text to token ids over `vocabulary`; characters outside it are an error. */
export function encodeText(text: string, vocabulary: string): TextCorpus {
  if (vocabulary.length > 256) {
    throw new RangeError(`a vocabulary of ${vocabulary.length} characters exceeds 256`);
  }
  const index = new Map<string, number>();
  for (let i = 0; i < vocabulary.length; i++) index.set(vocabulary[i]!, i);
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

/**
 * The examples of the whole training set that `shard` owns, in ascending order. IID: a seeded
 * shuffle dealt round-robin. NonIID: for each group (class or operation) a Dirichlet draw over
 * workers decides what fraction of that group each worker gets (Hsu et al., 2019).
 */
export function assignExamples(
  seed: number,
  groups: Int32Array,
  groupCount: number,
  shard: ShardSpec,
): number[] {
  const random = new Random(seed, "shard", shard.strategy, shard.workerCount);
  const owned: number[] = [];
  if (shard.strategy === "IID") {
    const order = random.shuffle(Int32Array.from(groups, (_, i) => i));
    for (let i = shard.workerIndex; i < order.length; i += shard.workerCount) owned.push(order[i]!);
  } else {
    if (!(shard.concentration > 0)) {
      throw new RangeError(`NonIID concentration ${shard.concentration} must be positive`);
    }
    for (let group = 0; group < groupCount; group++) {
      const members: number[] = [];
      for (let i = 0; i < groups.length; i++) if (groups[i] === group) members.push(i);
      random.shuffle(members);
      const shares = random.dirichlet(shard.workerCount, shard.concentration);
      let cumulative = 0;
      for (let w = 0; w < shard.workerCount; w++) {
        const start = Math.round(cumulative * members.length);
        cumulative += shares[w]!;
        const end =
          w === shard.workerCount - 1 ? members.length : Math.round(cumulative * members.length);
        if (w === shard.workerIndex) owned.push(...members.slice(start, end));
      }
    }
  }
  return owned.sort((a, b) => a - b);
}

function checkShard(shard: ShardSpec): void {
  if (!(Number.isInteger(shard.workerCount) && shard.workerCount >= 1)) {
    throw new RangeError(`worker count ${shard.workerCount} must be a positive integer`);
  }
  if (
    !(
      Number.isInteger(shard.workerIndex) &&
      shard.workerIndex >= 0 &&
      shard.workerIndex < shard.workerCount
    )
  ) {
    throw new RangeError(`worker index ${shard.workerIndex} must be in [0, ${shard.workerCount})`);
  }
}

/** A batch of classification examples, or of next-character windows. */
export type Batch =
  | { kind: "classification"; features: Float32Array; labels: Int32Array; size: number }
  | { kind: "text"; inputs: Int32Array; targets: Int32Array; size: number; length: number };

/**
 * Draws a worker's training batches in a fixed order from the seed and the worker's stream. A
 * DiLoCo worker starts every round with {@link startRound}, which makes the round's batches a
 * function of (seed, stream, round) alone: a worker resumed at a round boundary draws exactly the
 * batches an uninterrupted one would, with no sampler state to save.
 */
export class BatchSampler {
  private random: Random;

  constructor(
    private readonly data: ClassificationSet | TextCorpus,
    readonly batchSize: number,
    private readonly seed: number,
    private readonly stream: number,
    /** Window length of text batches (the model's context length). */
    private readonly contextLength = 0,
  ) {
    this.random = new Random(seed, "batches", stream);
    if (data.kind === "classification" && data.count === 0) {
      throw new RangeError(`the worker of batch stream ${stream} has no training examples`);
    }
    if (data.kind === "text" && data.tokens.length < contextLength + 2) {
      throw new RangeError(
        `the worker of batch stream ${stream} has ${data.tokens.length} characters of text, fewer than the context length + 2`,
      );
    }
  }

  /** Restarts the batch stream at the first batch of DiLoCo round `round`. */
  startRound(round: number): void {
    this.random = new Random(this.seed, "batches", this.stream, "round", round);
  }

  /** The next batch. */
  next(): Batch {
    const data = this.data;
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
