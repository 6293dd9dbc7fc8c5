import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { selectExamples } from "./data.js";
import { BYTE_VOCABULARY } from "./encoding.js";
import {
  documentParagraphs,
  readLocalExamples,
  readTextData,
  readTextExamples,
  splitTextExamples,
  TEXT_EXAMPLE_MAX_CHARS,
  TextDataError,
} from "./text-data.js";

describe("text data", () => {
  let root = "";
  before(async () => {
    root = await mkdtemp(path.join(tmpdir(), "fedtrain-text-"));
    await writeFile(path.join(root, "doc.txt"), "hello world\nhello federation\n");
    await writeFile(
      path.join(root, "doc.jsonl"),
      '{"text": "first record"}\n\n{"text": "second", "other": 1}\n',
    );
    await writeFile(path.join(root, "bad.jsonl"), '{"text": "ok"}\n{"body": "no text"}\n');
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it("reads Text and JSONL files under the data root", async () => {
    const text = await readTextData({ format: "Text", path: "doc.txt", evalFraction: 0.1 }, root);
    assert.equal(text, "hello world\nhello federation\n");
    const jsonl = await readTextData(
      { format: "JSONL", path: "doc.jsonl", evalFraction: 0.1 },
      root,
    );
    assert.equal(jsonl, "first record\nsecond\n");
  });

  it("says which line of a JSONL file is wrong", async () => {
    await assert.rejects(
      readTextData({ format: "JSONL", path: "bad.jsonl", evalFraction: 0.1 }, root),
      (error: unknown) =>
        error instanceof TextDataError && /line 2 has no string field "text"/.test(error.message),
    );
  });

  it("refuses paths outside the data root and missing files", async () => {
    await assert.rejects(
      readTextData({ format: "Text", path: "../etc/passwd", evalFraction: 0.1 }, root),
      /leaves the data mount/,
    );
    await assert.rejects(
      readTextData({ format: "Text", path: "missing.txt", evalFraction: 0.1 }, root),
      /cannot read .*missing\.txt/,
    );
  });

  it("cuts a document into paragraphs and long ones into pieces, a JSONL file into records", async () => {
    assert.deepEqual(documentParagraphs("one\ntwo\n\nthree\r\n\r\n\nfour\n\n"), [
      "one\ntwo\n\n",
      "three\r\n\r\n\n",
      "four\n\n",
    ]);
    assert.deepEqual(documentParagraphs("no blank line\n"), ["no blank line\n"]);
    const long = "x".repeat(2 * TEXT_EXAMPLE_MAX_CHARS + 5);
    await writeFile(path.join(root, "long.txt"), `short\n\n${long}`);
    const pieces = await readTextExamples({ format: "Text", path: "long.txt" }, root);
    assert.deepEqual(
      pieces.map((piece) => piece.length),
      [7, TEXT_EXAMPLE_MAX_CHARS, TEXT_EXAMPLE_MAX_CHARS, 5],
    );
    assert.deepEqual(
      await readTextExamples({ format: "JSONL", path: "doc.jsonl", evalFraction: 0.1 }, root),
      ["first record\n", "second\n"],
    );
  });

  it("holds out the end of the text and groups the training examples into regions", () => {
    const paragraphs = Array.from({ length: 10 }, (_, i) => `${"abcdefghi"[i % 9]!.repeat(9)}\n`);
    const { train, eval: held } = splitTextExamples(paragraphs, 0.25);
    // 100 characters: the first 75 train, in 8 examples (the 8th cut after 5 characters).
    assert.equal(train.tokens.length, 75);
    assert.equal(train.bounds.length, 9);
    assert.equal(held.tokens.length, 25);
    assert.equal(train.vocabulary, "\nabcdefghi");
    assert.deepEqual(Array.from(train.groups!), [0, 2, 4, 6, 8, 10, 12, 14]);
    const firstAndLast = selectExamples(train, Int32Array.from([0, 7]));
    assert.equal(firstAndLast.tokens.length, 15);
    assert.throws(() => splitTextExamples(paragraphs, 1), /evalFraction 1 must be in \(0, 1\)/);
  });

  it("reads a member's own data in the federation's vocabulary, skipping other characters", async () => {
    await writeFile(path.join(root, "own.txt"), "abc\n\nabé!\n");
    const { examples, skipped } = await readLocalExamples(
      { format: "Text", path: "own.txt" },
      "\nabc",
      root,
    );
    assert.equal(skipped, 2);
    assert.deepEqual(Array.from(examples.bounds), [0, 5, 8]);
    assert.deepEqual(Array.from(examples.tokens), [1, 2, 3, 0, 0, 1, 2, 0]);
    const bytes = await readLocalExamples(
      { format: "Text", path: "own.txt" },
      BYTE_VOCABULARY,
      root,
    );
    assert.equal(bytes.skipped, 0);
    assert.equal(bytes.examples.tokens.length, Buffer.byteLength("abc\n\nabé!\n"));
    await assert.rejects(
      readLocalExamples({ format: "Text", path: "../own.txt" }, "\nabc", root),
      /contribution\.localData\.path \.\.\/own\.txt leaves the data mount/,
    );
  });
});
