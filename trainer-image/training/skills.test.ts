import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "./backend.js";
import { ARITHMETIC_VOCABULARY, arithmetic } from "./data.js";
import { BYTE_VOCABULARY, decodeTokens, encodeString } from "./encoding.js";
import { Model, parameterCount, parameterLayout, type TransformerDefinition } from "./model.js";
import { Random } from "./prng.js";
import {
  arithmeticAccuracy,
  decode,
  generateText,
  heldOutProblems,
  parseArithmeticLine,
  scoreAnswers,
} from "./skills.js";

const tiny = (vocabularySize: number): TransformerDefinition => ({
  kind: "transformer",
  vocabularySize,
  layers: 2,
  modelWidth: 16,
  heads: 2,
  contextLength: 12,
  feedForwardMultiplier: 2,
});

/** A random model with large weights, so its logits rarely tie. */
function randomModel(definition: TransformerDefinition, seed: number): Model {
  const random = new Random(seed, "skills-test");
  const parameters = new Float32Array(parameterCount(parameterLayout(definition)));
  for (let i = 0; i < parameters.length; i++) parameters[i] = random.normal() * 0.7;
  return new Model(definition, parameters);
}

/** Greedy decoding of one prompt at a time on exactly its tokens, the slow obvious way. */
async function slowGreedy(model: Model, prompt: Uint8Array, maxTokens: number, stop?: number) {
  const { contextLength: context, vocabularySize } = model.definition as TransformerDefinition;
  const row = Array.from(prompt);
  const out: number[] = [];
  for (let step = 0; step < maxTokens; step++) {
    const window = Int32Array.from(row.slice(-context));
    const logits = tf.tidy(() => model.nextTokenLogits(window, 1, window.length));
    const all = (await logits.data()) as Float32Array;
    logits.dispose();
    const last = Array.from(all.subarray(all.length - vocabularySize));
    const token = last.indexOf(Math.max(...last));
    row.push(token);
    out.push(token);
    if (token === stop) break;
  }
  return out;
}

describe("skills", () => {
  let arithmeticModel: Model;
  before(async () => {
    await initBackend("WASM", { log: () => {} });
    arithmeticModel = randomModel(tiny(ARITHMETIC_VOCABULARY.length), 1);
  });
  after(() => arithmeticModel.dispose());

  it("decodes a batch exactly as one prompt at a time, past the context length too", async () => {
    const prompts = ["\n", "\n7+", "\n12*34=", "5", "\n99+99=19", "3*4=12\n56+7=6"].map((text) =>
      encodeString(text, ARITHMETIC_VOCABULARY),
    );
    for (const stop of [undefined, 0]) {
      const batched = await decode(arithmeticModel, prompts, { maxTokens: 9, stopToken: stop });
      for (let i = 0; i < prompts.length; i++) {
        assert.deepEqual(
          [...batched[i]!],
          await slowGreedy(arithmeticModel, prompts[i]!, 9, stop),
          `prompt ${i}, stop ${stop}`,
        );
      }
    }
  });

  it("samples deterministically from the seed", async () => {
    const prompts = [
      encodeString("\n1", ARITHMETIC_VOCABULARY),
      encodeString("\n", ARITHMETIC_VOCABULARY),
    ];
    const draw = (seed: number) =>
      decode(arithmeticModel, prompts, { maxTokens: 20, temperature: 1.5, seed });
    assert.deepEqual(await draw(3), await draw(3));
    const greedy = await decode(arithmeticModel, prompts, { maxTokens: 20 });
    const draws = await Promise.all([1, 2, 3, 4].map(draw));
    assert.ok(
      draws.some((tokens) => tokens.some((row, i) => !row.every((t, j) => t === greedy[i]![j]))),
      "sampling at temperature 1.5 differs from greedy somewhere",
    );
  });

  it("parses Arithmetic lines and scores only exact answers ending the line", () => {
    assert.deepEqual(parseArithmeticLine("12+7=19"), { prompt: "12+7=", answer: "19" });
    assert.deepEqual(parseArithmeticLine("0*99=0"), { prompt: "0*99=", answer: "0" });
    assert.throws(() => parseArithmeticLine("12+7=20"), /not a true equation/);
    assert.throws(() => parseArithmeticLine("12-7=5"), /not an Arithmetic line/);
    const problems = ["12+7=19", "3*8=24", "9+9=18", "5*5=25", "1+1=2"].map(parseArithmeticLine);
    const scored = scoreAnswers(problems, ["19\n", "24", "180\n", "2\n5", "2\n"]);
    assert.deepEqual(
      scored.map(({ predicted, correct }) => [predicted, correct]),
      [
        ["19", true],
        ["24", false],
        ["180", false],
        ["2", false],
        ["2", true],
      ],
    );
    assert.equal(scored[0]!.expected, "19");
    assert.equal(scored[0]!.prompt, "12+7=");
  });

  it("measures exact-answer accuracy on held-out lines with greedy decoding", async () => {
    const data = arithmetic(
      7,
      { trainExamples: 10, evalExamples: 40, maxOperand: 99 },
      {
        workerIndex: 0,
        workerCount: 1,
        strategy: "IID",
        concentration: 1,
      },
    );
    const problems = heldOutProblems(data.eval, 30);
    assert.equal(problems.length, 30);
    const text = decodeTokens(data.eval.tokens, ARITHMETIC_VOCABULARY);
    assert.ok(text.startsWith(`${problems[0]!.prompt}${problems[0]!.answer}\n`));
    const result = await arithmeticAccuracy(arithmeticModel, data.eval, { count: 30, examples: 4 });
    assert.equal(result.problems, 30);
    assert.equal(result.examples.length, 4);
    assert.ok(result.accuracy >= 0 && result.accuracy <= 1);
    // The same figure from the slow decoder, problem by problem.
    const longest = Math.max(...problems.map((problem) => problem.answer.length));
    let correct = 0;
    for (const [i, problem] of problems.entries()) {
      const prompt = encodeString(`\n${problem.prompt}`, ARITHMETIC_VOCABULARY);
      const completion = decodeTokens(
        await slowGreedy(arithmeticModel, prompt, longest + 2, 0),
        ARITHMETIC_VOCABULARY,
      );
      if (completion === `${problem.answer}\n`) correct++;
      if (i < 4) assert.equal(result.examples[i]!.predicted, completion.split("\n")[0]);
    }
    assert.equal(result.accuracy, correct / 30);
    assert.deepEqual(
      await arithmeticAccuracy(arithmeticModel, data.eval, { count: 30, examples: 4 }),
      result,
    );
  });

  it("continues text prompts as one line, over characters or UTF-8 bytes", async () => {
    const vocabulary = "\n abcdefghT";
    const characters = randomModel(tiny(vocabulary.length), 2);
    const lines = await generateText(characters, vocabulary, ["The ", "a"], { maxTokens: 30 });
    assert.equal(lines.length, 2);
    assert.ok(lines[0]!.startsWith("The ") && lines[1]!.startsWith("a"));
    for (const line of lines) {
      assert.ok(!line.includes("\n") && line.length <= 34);
      for (const character of line) assert.ok(vocabulary.includes(character));
    }
    assert.deepEqual(
      await generateText(characters, vocabulary, ["The ", "a"], { maxTokens: 30 }),
      lines,
    );
    characters.dispose();
    const bytes = randomModel(tiny(256), 3);
    const [line] = await generateText(bytes, BYTE_VOCABULARY, ["café "], {
      maxTokens: 8,
      temperature: 1,
      seed: 5,
    });
    assert.ok(line!.startsWith("café "));
    bytes.dispose();
  });
});
