import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ARITHMETIC_VOCABULARY, arithmetic, evaluationBatches } from "./data.js";
import { encodeString } from "./encoding.js";
import {
  ArithmeticLineModel,
  arithmeticLossLevels,
  bestLossFromKChars,
  NGramModel,
  natsToBits,
  textLossLevels,
  uniformLoss,
  unigramLoss,
  windowsLoss,
} from "./levels.js";

const ONE_WORKER = { workerIndex: 0, workerCount: 1, strategy: "IID", concentration: 1 } as const;

const ids = (text: string): Int32Array =>
  Int32Array.from(encodeString(text, ARITHMETIC_VOCABULARY));
const id = (character: string): number => ARITHMETIC_VOCABULARY.indexOf(character);

describe("loss levels", () => {
  it("reproduces the reference Arithmetic levels (seed 7, 20000/400 lines, maxOperand 99)", () => {
    const data = arithmetic(
      7,
      { trainExamples: 20000, evalExamples: 400, maxOperand: 99 },
      ONE_WORKER,
    );
    const windows = evaluationBatches(data.eval, 64, 16, 128);
    const levels = arithmeticLossLevels({ maxOperand: 99 }, data.train, windows);
    assert.ok(Math.abs(levels.uniformLoss - Math.log(14)) < 1e-12);
    assert.ok(Math.abs(levels.unigramLoss - 2.61) < 0.01, `unigram ${levels.unigramLoss}`);
    assert.ok(
      Math.abs(levels.bestLossFrom3Chars - 1.786) < 0.01,
      `3 chars ${levels.bestLossFrom3Chars}`,
    );
    assert.ok(Math.abs(levels.bestLoss! - 1.287) < 0.01, `best ${levels.bestLoss}`);
  });

  it("knows the generator exactly: answers are determined, first digits uniform", () => {
    const lines = new ArithmeticLineModel(9);
    assert.equal(lines.probability(ids("\n9*9="), id("8")), 1);
    assert.equal(lines.probability(ids("4+5\n9*9=8"), id("1")), 1, "earlier lines do not matter");
    assert.equal(lines.probability(ids("\n"), id("3")), 0.1);
    assert.equal(lines.probability(ids("\n7"), id("*")), 0.5);
    // Without a line start only the suffix is known: "=" ends lines of both operations.
    const afterEquals = [..."0123456789\n"].reduce(
      (sum, c) => sum + lines.probability(ids("="), id(c)),
      0,
    );
    assert.ok(Math.abs(afterEquals - 1) < 1e-12);
    assert.ok(
      lines.probability(ids("=8"), id("1")) > 0 && lines.probability(ids("=8"), id("1")) < 1,
    );
    assert.throws(() => lines.probability(ids("\n12+"), id("1")), /cannot occur/);
  });

  it("bounds the best loss by the 3-character level and agrees with a sampled estimate", () => {
    const spec = { trainExamples: 2000, evalExamples: 400, maxOperand: 9 };
    const data = arithmetic(7, spec, ONE_WORKER);
    const windows = evaluationBatches(data.eval, 64, 16, 128);
    const levels = arithmeticLossLevels(spec, data.train, windows);
    assert.ok(levels.bestLoss! >= 0);
    assert.ok(levels.bestLoss! <= levels.bestLossFrom3Chars + 1e-12);
    assert.ok(levels.bestLossFrom3Chars < levels.unigramLoss);
    assert.ok(levels.unigramLoss < levels.uniformLoss);
    // The model-free estimate: n-gram counts over a large sample from the project's generator on
    // another seed. A line here is at most 7 characters, so 7 characters of context are as good as
    // the whole window.
    const sample = arithmetic(
      1_000_003,
      { ...spec, trainExamples: 300_000, evalExamples: 0 },
      ONE_WORKER,
    );
    const from3 = bestLossFromKChars(sample.train, windows, 3);
    const full = bestLossFromKChars(sample.train, windows, 7);
    assert.ok(
      Math.abs(from3 - levels.bestLossFrom3Chars) < 0.01,
      `${from3} ${levels.bestLossFrom3Chars}`,
    );
    assert.ok(Math.abs(full - levels.bestLoss!) < 0.01, `${full} ${levels.bestLoss}`);
  });

  it("estimates text levels from the training text, smoothed so every target is possible", () => {
    const vocabulary = "ab\n";
    const train = {
      kind: "text" as const,
      tokens: encodeString("ab".repeat(500), vocabulary),
      vocabulary,
    };
    const held = {
      kind: "text" as const,
      tokens: encodeString(`${"ab".repeat(40)}a`, vocabulary),
      vocabulary,
    };
    const windows = evaluationBatches(held, 4, 8);
    const levels = textLossLevels(train, windows);
    assert.equal(levels.uniformLoss, Math.log(3));
    // Add-one smoothing: "\n" never occurs in the training text, yet keeps a share.
    assert.ok(Math.abs(levels.unigramLoss - Math.log(1003 / 501)) < 1e-12);
    // After one visible character the next is (nearly) certain; the first of each window is not.
    assert.ok(levels.bestLossFrom3Chars < 0.1 * levels.unigramLoss);
    assert.equal(levels.bestLoss, undefined);
    const model = new NGramModel(train.tokens, 3, 2);
    assert.ok(model.probability(Int32Array.of(0), 1) > 0.99);
    assert.ok(model.probability(Int32Array.of(0), 2) > 0, "unseen pairs keep some probability");
    assert.ok(model.probability(Int32Array.of(2, 2), 0) > 0, "unseen contexts fall back");
    assert.equal(windowsLoss(windows, model, 0), unigramLoss(train, windows));
  });

  it("converts nats to bits and knows the uniform loss", () => {
    assert.equal(natsToBits(Math.LN2), 1);
    assert.ok(Math.abs(natsToBits(uniformLoss(256)) - 8) < 1e-12);
  });
});
