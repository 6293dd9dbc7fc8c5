// What a language model learned, shown as behaviour rather than loss: exact answers to held-out
// Arithmetic problems, and text continued from fixed prompts. Decoding is batched (every prompt
// advances one token per model call) and deterministic: greedy picks the first most likely token;
// sampling draws from the project's seeded generator.
import * as tf from "@tensorflow/tfjs";
import type { TextCorpus } from "./data.js";
import { decodeTokens, encodeString, isByteVocabulary } from "./encoding.js";
import type { Model } from "./model.js";
import { Random } from "./prng.js";

/** How the next token is picked from a row of logits. */
export interface DecodeOptions {
  /** Tokens generated per prompt at most. */
  maxTokens: number;
  /** A token that ends a prompt's generation (included in its output). */
  stopToken?: number;
  /** 0 (the default): greedy. Above 0: sample from softmax(logits / temperature). */
  temperature?: number;
  /** Seed of the sampling stream. */
  seed?: number;
}

/**
 * Continues every prompt (token ids) by up to `maxTokens` tokens, all prompts in one batch per
 * step. A row is its prompt and what it generated so far, its last contextLength tokens when
 * longer; shorter rows are padded at the end, which the causal mask keeps out of their last
 * position. Returns the generated tokens of each prompt.
 */
export async function decode(
  model: Model,
  prompts: readonly Uint8Array[],
  options: DecodeOptions,
): Promise<Uint8Array[]> {
  const definition = model.definition;
  if (definition.kind !== "transformer") throw new TypeError("decoding needs the CharTransformer");
  const vocabularySize = definition.vocabularySize;
  const context = definition.contextLength;
  prompts.forEach((prompt, i) => {
    if (prompt.length === 0) throw new RangeError(`prompt ${i} is empty`);
  });
  const temperature = options.temperature ?? 0;
  const random = new Random(options.seed ?? 0, "decode");
  const rows = prompts.map((prompt) => Array.from(prompt));
  const generated: number[][] = prompts.map(() => []);
  let active = prompts.map((_, i) => i);
  for (let step = 0; step < options.maxTokens && active.length > 0; step++) {
    const windows = active.map((i) => rows[i]!.slice(-context));
    const width = Math.max(...windows.map((window) => window.length));
    const inputs = new Int32Array(windows.length * width);
    const last = new Int32Array(windows.length);
    windows.forEach((window, r) => {
      inputs.set(window, r * width);
      last[r] = r * width + window.length - 1;
    });
    const logits = tf.tidy(() =>
      tf.gather(model.nextTokenLogits(inputs, windows.length, width), tf.tensor1d(last, "int32")),
    );
    const values = (await logits.data()) as Float32Array;
    logits.dispose();
    const still: number[] = [];
    active.forEach((i, r) => {
      const row = values.subarray(r * vocabularySize, (r + 1) * vocabularySize);
      const token = temperature > 0 ? sample(row, temperature, random) : argmax(row);
      rows[i]!.push(token);
      generated[i]!.push(token);
      if (token !== options.stopToken) still.push(i);
    });
    active = still;
  }
  return generated.map((tokens) => Uint8Array.from(tokens));
}

/** The index of the first largest value. */
function argmax(values: Float32Array): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return best;
}

function sample(logits: Float32Array, temperature: number, random: Random): number {
  let max = Number.NEGATIVE_INFINITY;
  for (const value of logits) max = Math.max(max, value);
  const weights = new Float64Array(logits.length);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) {
    weights[i] = Math.exp((logits[i]! - max) / temperature);
    sum += weights[i]!;
  }
  let u = random.uniform() * sum;
  for (let i = 0; i < weights.length; i++) {
    u -= weights[i]!;
    if (u < 0) return i;
  }
  return argmax(logits);
}

/** One Arithmetic problem: "a+b=" or "a*b=" and its answer. */
export interface ArithmeticProblem {
  prompt: string;
  answer: string;
}

/** A line of Arithmetic text ("12+7=19") as a problem; a malformed or wrong line is an error. */
export function parseArithmeticLine(line: string): ArithmeticProblem {
  const match = /^(\d+)([+*])(\d+)=(\d+)$/.exec(line);
  if (!match) throw new RangeError(`${JSON.stringify(line)} is not an Arithmetic line`);
  const [, a, op, b, answer] = match as unknown as [string, string, string, string, string];
  const expected = op === "+" ? Number(a) + Number(b) : Number(a) * Number(b);
  if (String(expected) !== answer) {
    throw new RangeError(
      `${JSON.stringify(line)} is not a true equation (${a}${op}${b}=${expected})`,
    );
  }
  return { prompt: `${a}${op}${b}=`, answer };
}

/** The first `count` complete lines of Arithmetic evaluation text, as problems. */
export function heldOutProblems(data: TextCorpus, count: number): ArithmeticProblem[] {
  const lines = decodeTokens(data.tokens, data.vocabulary).split("\n");
  // The text ends with "\n", so the last piece is empty (or an incomplete line): skip it.
  return lines.slice(0, Math.min(count, lines.length - 1)).map(parseArithmeticLine);
}

/** A problem, what the model answered, and whether it was exactly right. */
export interface AnsweredProblem {
  prompt: string;
  expected: string;
  /** The generated text before its "\n" (all of it when no "\n" came within the cap). */
  predicted: string;
  correct: boolean;
}

/** Exact-answer accuracy on held-out problems, and the first few answers. */
export interface ArithmeticAccuracy {
  accuracy: number;
  problems: number;
  examples: AnsweredProblem[];
}

/**
 * Scores completions of problems: right means the answer's digits followed by "\n", nothing more
 * or less.
 */
export function scoreAnswers(
  problems: readonly ArithmeticProblem[],
  completions: readonly string[],
): AnsweredProblem[] {
  return problems.map((problem, i) => {
    const completion = completions[i] ?? "";
    const end = completion.indexOf("\n");
    return {
      prompt: problem.prompt,
      expected: problem.answer,
      predicted: end >= 0 ? completion.slice(0, end) : completion,
      correct: completion === `${problem.answer}\n`,
    };
  });
}

/**
 * Exact-answer accuracy of greedy decoding on the first `count` problems of the Arithmetic
 * evaluation text: each prompt is "\n" + "a+b=" (a line start, as in training), and the model
 * writes until "\n" or two characters past the longest answer among the problems.
 */
export async function arithmeticAccuracy(
  model: Model,
  data: TextCorpus,
  options: { count?: number; examples?: number } = {},
): Promise<ArithmeticAccuracy> {
  const problems = heldOutProblems(data, options.count ?? 200);
  if (problems.length === 0) throw new RangeError("the evaluation text holds no Arithmetic lines");
  const longest = Math.max(...problems.map((problem) => problem.answer.length));
  const generated = await decode(
    model,
    problems.map((problem) => encodeString(`\n${problem.prompt}`, data.vocabulary)),
    { maxTokens: longest + 2, stopToken: newlineToken(data.vocabulary) },
  );
  const answered = scoreAnswers(
    problems,
    generated.map((tokens) => decodeTokens(tokens, data.vocabulary)),
  );
  const correct = answered.filter((problem) => problem.correct).length;
  return {
    accuracy: correct / problems.length,
    problems: problems.length,
    examples: answered.slice(0, options.examples ?? 5),
  };
}

/** The token of "\n" in `vocabulary`, if it has one. */
function newlineToken(vocabulary: string): number | undefined {
  if (isByteVocabulary(vocabulary)) return 10;
  const index = vocabulary.indexOf("\n");
  return index >= 0 ? index : undefined;
}

/** Prompts that start a line of English text (BrownCorpus). */
export const ENGLISH_PROMPTS = ["The ", "In the ", "He said that ", "It is "];

/**
 * Continues each prompt as a new line of text ("\n" + prompt), up to `maxTokens` tokens or the
 * end of the line: greedy by default, seeded sampling with a temperature. Returns the prompt and
 * its continuation, decoded (UTF-8 for a byte vocabulary), without the final "\n".
 */
export async function generateText(
  model: Model,
  vocabulary: string,
  prompts: readonly string[],
  options: Partial<DecodeOptions> = {},
): Promise<string[]> {
  const decodeOptions: DecodeOptions = { ...options, maxTokens: options.maxTokens ?? 200 };
  const newline = newlineToken(vocabulary);
  if (newline !== undefined) decodeOptions.stopToken ??= newline;
  const generated = await decode(
    model,
    prompts.map((prompt) => encodeString(`\n${prompt}`, vocabulary)),
    decodeOptions,
  );
  return generated.map((tokens, i) => {
    const text = `${prompts[i]}${decodeTokens(tokens, vocabulary)}`;
    return text.endsWith("\n") ? text.slice(0, -1) : text;
  });
}
