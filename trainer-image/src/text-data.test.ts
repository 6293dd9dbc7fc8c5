import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { readTextData, shardText, TextDataError } from "./text-data.js";

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

  it("shards text into contiguous pieces over one vocabulary, holding out the end", () => {
    const text = "abcdefghij".repeat(10);
    const pieces = [0, 1].map((workerIndex) =>
      shardText(text, 0.2, { workerIndex, workerCount: 2, strategy: "IID", concentration: 1 }),
    );
    assert.equal(pieces[0]!.train.tokens.length, 40);
    assert.equal(pieces[1]!.eval.tokens.length, 20);
    assert.equal(pieces[0]!.train.vocabulary, "abcdefghij");
    assert.deepEqual(pieces[0]!.eval, pieces[1]!.eval);
  });
});
