import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ARITHMETIC_VOCABULARY } from "./data.js";
import { BYTE_VOCABULARY, decodeTokens, encodeString, isByteVocabulary } from "./encoding.js";

describe("text encoding", () => {
  it("round-trips UTF-8 through byte ids, one id per byte", () => {
    const text = "naïve café — 日本語 🎉\n";
    const ids = encodeString(text, BYTE_VOCABULARY);
    assert.equal(ids.length, Buffer.byteLength(text, "utf8"));
    assert.deepEqual([...encodeString("é", BYTE_VOCABULARY)], [0xc3, 0xa9]);
    assert.equal(decodeTokens(ids, BYTE_VOCABULARY), text);
    assert.equal(BYTE_VOCABULARY.length, 256);
    assert.ok(isByteVocabulary(BYTE_VOCABULARY));
  });

  it("decodes an invalid byte sequence to U+FFFD instead of failing", () => {
    assert.equal(decodeTokens([0x41, 0xa9, 0x42], BYTE_VOCABULARY), "A\uFFFDB");
  });

  it("maps characters to their vocabulary index and back", () => {
    const ids = encodeString("12+7=19\n", ARITHMETIC_VOCABULARY);
    assert.deepEqual([...ids], [2, 3, 11, 8, 13, 2, 10, 0]);
    assert.equal(decodeTokens(ids, ARITHMETIC_VOCABULARY), "12+7=19\n");
    assert.ok(!isByteVocabulary(ARITHMETIC_VOCABULARY));
    assert.throws(() => encodeString("1-2", ARITHMETIC_VOCABULARY), /"-" at 1/);
    assert.throws(() => decodeTokens([14], ARITHMETIC_VOCABULARY), /token id 14/);
  });
});
