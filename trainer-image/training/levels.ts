// Loss levels that give a language model's evaluation loss a meaning: what a model that learned
// nothing scores (uniform, unigram), and the best a predictor can do from the last few characters
// or from everything the model sees. All are mean cross-entropies in nats per target, over exactly
// the windows evaluationBatches() produces: every target position of every window counts, and at
// window position t the predictor sees only the t + 1 characters of that window.
import { ARITHMETIC_VOCABULARY, type ArithmeticSpec, type Batch, type TextCorpus } from "./data.js";

/** Reference losses for an evaluation set, in nats per character (or byte). */
export interface LossLevels {
  /** ln V: every token equally likely. */
  uniformLoss: number;
  /** The training text's token frequencies, ignoring all context. */
  unigramLoss: number;
  /**
   * The best predictor that sees only the last 3 characters of the window: exact for Arithmetic,
   * estimated from the training text otherwise.
   */
  bestLossFrom3Chars: number;
  /** The exact Bayes loss given everything visible in the window (Arithmetic only). */
  bestLoss?: number;
}

/** Predicts the next token from the visible tokens of a window. */
export interface NextTokenModel {
  /** P(target | context); context holds the visible tokens, oldest first. */
  probability(context: Int32Array, target: number): number;
}

/** Converts nats to bits (per character or byte). */
export function natsToBits(nats: number): number {
  return nats / Math.LN2;
}

/** The loss of predicting every one of `vocabularySize` tokens with equal probability. */
export function uniformLoss(vocabularySize: number): number {
  return Math.log(vocabularySize);
}

/**
 * Mean cross-entropy of `model` on every target of every text window, when the model sees the
 * last min(k, t + 1) tokens at window position t.
 */
export function windowsLoss(
  windows: readonly Batch[],
  model: NextTokenModel,
  k = Number.POSITIVE_INFINITY,
): number {
  let total = 0;
  let count = 0;
  for (const batch of windows) {
    if (batch.kind !== "text") throw new TypeError("loss levels need text windows");
    const { inputs, targets, size, length } = batch;
    for (let b = 0; b < size; b++) {
      for (let t = 0; t < length; t++) {
        const end = b * length + t + 1;
        const context = inputs.subarray(Math.max(b * length, end - k), end);
        total -= Math.log(model.probability(context, targets[end - 1]!));
        count++;
      }
    }
  }
  return total / count;
}

/** Cross-entropy of the training text's token frequencies (add-one smoothed) on the windows. */
export function unigramLoss(train: TextCorpus, windows: readonly Batch[]): number {
  return windowsLoss(windows, new NGramModel(train.tokens, train.vocabulary.length, 0), 0);
}

/**
 * An estimate of the best loss from the last min(k, t + 1) tokens: an order-k n-gram model of the
 * training text. It is an estimate, not a bound: the conditional distributions are counted on
 * finite training text (and smoothed), not known.
 */
export function bestLossFromKChars(
  train: TextCorpus,
  windows: readonly Batch[],
  k: number,
): number {
  return windowsLoss(windows, new NGramModel(train.tokens, train.vocabulary.length, k), k);
}

/** The loss levels of text data without a known generator: unigram and a 3-character estimate. */
export function textLossLevels(train: TextCorpus, windows: readonly Batch[]): LossLevels {
  return {
    uniformLoss: uniformLoss(train.vocabulary.length),
    unigramLoss: unigramLoss(train, windows),
    bestLossFrom3Chars: bestLossFromKChars(train, windows, 3),
  };
}

/**
 * The loss levels of Arithmetic data: the unigram level from the training text, the 3-character
 * and best levels exact from the generator ({@link ArithmeticLineModel}).
 */
export function arithmeticLossLevels(
  spec: Pick<ArithmeticSpec, "maxOperand">,
  train: TextCorpus,
  windows: readonly Batch[],
): LossLevels {
  const lines = new ArithmeticLineModel(spec.maxOperand);
  return {
    uniformLoss: uniformLoss(ARITHMETIC_VOCABULARY.length),
    unigramLoss: unigramLoss(train, windows),
    bestLossFrom3Chars: windowsLoss(windows, lines, 3),
    bestLoss: windowsLoss(windows, lines),
  };
}

/**
 * Token counts of a text by preceding context, up to `order` tokens, smoothed by interpolating
 * down the orders: P_j(c | last j) = (n(last j, c) + α·P_{j−1}(c | last j−1)) / (n(last j) + α)
 * with α = 1, and P_0 the add-one smoothed token frequencies. Every target then has a positive
 * probability, and a context never seen in the text falls back to its longest seen suffix.
 */
export class NGramModel implements NextTokenModel {
  private readonly unigram: Float64Array;
  private readonly total: number;
  /** Counts of (context, next token), keyed by contextId·V + token. */
  private readonly pairs = new Map<number, number>();
  /** Counts of a context followed by any token, keyed by contextId. */
  private readonly contexts = new Map<number, number>();

  constructor(
    tokens: Uint8Array,
    private readonly vocabularySize: number,
    private readonly order: number,
  ) {
    // A context of j tokens is the number Σ (token + 1)·(V + 1)^i over its tokens, newest first
    // (i = 0), so contexts of different lengths never share an id; the largest must stay exact.
    if ((vocabularySize + 1) ** order * vocabularySize > Number.MAX_SAFE_INTEGER) {
      throw new RangeError(`an order-${order} context over ${vocabularySize} tokens is too long`);
    }
    this.unigram = new Float64Array(vocabularySize);
    for (let p = 0; p < tokens.length; p++) this.unigram[tokens[p]!]!++;
    this.total = tokens.length;
    const base = vocabularySize + 1;
    for (let p = 1; p < tokens.length; p++) {
      const target = tokens[p]!;
      let id = 0;
      let scale = 1;
      for (let j = 1; j <= order && j <= p; j++) {
        id += (tokens[p - j]! + 1) * scale;
        scale *= base;
        this.contexts.set(id, (this.contexts.get(id) ?? 0) + 1);
        const pair = id * vocabularySize + target;
        this.pairs.set(pair, (this.pairs.get(pair) ?? 0) + 1);
      }
    }
  }

  probability(context: Int32Array, target: number): number {
    const v = this.vocabularySize;
    let p = (this.unigram[target]! + 1) / (this.total + v);
    let id = 0;
    let scale = 1;
    const end = context.length;
    for (let j = 1; j <= this.order && j <= end; j++) {
      id += (context[end - j]! + 1) * scale;
      scale *= v + 1;
      const seen = this.contexts.get(id);
      if (seen === undefined) break;
      p = ((this.pairs.get(id * v + target) ?? 0) + p) / (seen + 1);
    }
    return p;
  }
}

/** The distinct Arithmetic lines (problems) the generator draws from: 2·(maxOperand + 1)². */
export function arithmeticProblemCount(maxOperand: number): number {
  return 2 * (maxOperand + 1) ** 2;
}

/**
 * The exact next-character distributions of the Arithmetic generator (data.ts: lines "a+b=c\n"
 * and "a*b=c\n", the operation uniform over two, a and b uniform in [0, maxOperand], lines
 * independent), so all 2·(maxOperand + 1)² lines are equally likely. A window starts at a
 * stationary point of the line sequence, so a target is line L's character at offset o with
 * probability ∝ P(L) for each o in [0, |L|) (longer lines are likelier to hold it). Given the
 * visible tokens:
 * - if they contain "\n", the target's line started inside the window and only its visible
 *   prefix matters (earlier lines are independent of it);
 * - otherwise they are a suffix of the target line's prefix (the line may start before the window
 *   or exactly at it), and the target is averaged over all (L, o) whose prefix ends with them.
 * Both conditional distributions are tabulated once by enumerating every (L, o) pair; lookups are
 * then exact. This is the Bayes predictor, so its loss on the windows is the best achievable by
 * any model that sees the same tokens (up to the sampling noise of the finite evaluation text).
 */
export class ArithmeticLineModel implements NextTokenModel {
  /** Next-token counts keyed by "\n" + a complete line prefix, or by a suffix of a prefix. */
  private readonly counts = new Map<string, Uint32Array>();

  constructor(readonly maxOperand: number) {
    if (!(Number.isInteger(maxOperand) && maxOperand >= 0)) {
      throw new RangeError(`maxOperand ${maxOperand} must be a non-negative integer`);
    }
    const v = ARITHMETIC_VOCABULARY.length;
    const add = (key: string, target: number): void => {
      let row = this.counts.get(key);
      if (!row) {
        row = new Uint32Array(v);
        this.counts.set(key, row);
      }
      row[target]!++;
    };
    for (const op of ["+", "*"]) {
      for (let a = 0; a <= maxOperand; a++) {
        for (let b = 0; b <= maxOperand; b++) {
          const line = `${a}${op}${b}=${op === "+" ? a + b : a * b}\n`;
          for (let o = 0; o < line.length; o++) {
            const target = ARITHMETIC_VOCABULARY.indexOf(line[o]!);
            const prefix = line.slice(0, o);
            add(`\n${prefix}`, target);
            for (let j = 0; j <= o; j++) add(prefix.slice(o - j), target);
          }
        }
      }
    }
  }

  probability(context: Int32Array, target: number): number {
    let visible = "";
    for (let i = 0; i < context.length; i++) visible += ARITHMETIC_VOCABULARY[context[i]!];
    const newline = visible.lastIndexOf("\n");
    const key = newline >= 0 ? visible.slice(newline) : visible;
    const row = this.counts.get(key);
    if (!row) {
      throw new RangeError(
        `${JSON.stringify(visible)} cannot occur in Arithmetic text with maxOperand ${this.maxOperand}`,
      );
    }
    let sum = 0;
    for (let i = 0; i < row.length; i++) sum += row[i]!;
    return row[target]! / sum;
  }
}
