import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { test } from "node:test";
import { vectorsFile, vectorsText } from "./protocol-vectors.js";

test("this implementation reproduces every protocol conformance vector byte for byte", async () => {
  const expected = await readFile(vectorsFile, "utf8");
  const actual = await vectorsText();
  if (actual !== expected) {
    const lines = (s: string) => s.split("\n");
    const at = lines(actual).findIndex((line, i) => line !== lines(expected)[i]);
    assert.fail(
      `docs/protocol-vectors/vectors.json differs from what this implementation computes, first at line ${at + 1}:\n  file:     ${lines(expected)[at]}\n  computed: ${lines(actual)[at]}\n(a deliberate protocol change regenerates it with \`npm run vectors\` and says so in docs/protocol.md)`,
    );
  }
});

test("the vectors hold the verdicts a second implementation must reach", async () => {
  const vectors = JSON.parse(await readFile(vectorsFile, "utf8")) as {
    messages: { name: string; verdicts: Record<string, string> }[];
    ledger: { verdict: { ok: boolean; rounds: number; rejected: unknown[] } };
  };
  for (const message of vectors.messages) {
    assert.equal(message.verdicts.asIs, "valid", message.name);
    assert.equal(message.verdicts.firstBodyBitFlipped, "bad-signature", message.name);
    assert.notEqual(message.verdicts.lastByteDropped, "valid", message.name);
    assert.notEqual(message.verdicts.byteAppended, "valid", message.name);
  }
  assert.equal(vectors.ledger.verdict.ok, true);
  assert.equal(vectors.ledger.verdict.rounds, 3);
  assert.equal(vectors.ledger.verdict.rejected.length, 2);
});
