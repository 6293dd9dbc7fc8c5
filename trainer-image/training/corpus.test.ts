import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { describe, it } from "node:test";
import { parse } from "yaml";
import type { FederationSpec } from "../../core/api/index.js";
import { federationData } from "./config.js";
import {
  type BrownCorpusText,
  brownCorpusSet,
  detokenise,
  loadBrownCorpus,
  taggedParagraphs,
  untag,
} from "./corpus.js";
import { exampleCount, ownedByShard, type ShardSpec, selectExamples } from "./data.js";
import { BYTE_VOCABULARY, decodeTokens } from "./encoding.js";

const TAGGED = [
  "",
  "",
  "\tThe/at jury/nn said/vbd ``/`` no/at evidence/nn ''/'' ./.",
  "It/pps cost/vbd 1-1/2/cd dollars/nns (/( or/cc less/ap )/) ,/, he/pps said/vbd ;/. `/` fine/jj '/' !/.",
  "",
  "",
  "Headline/nn-hl ?/.-hl",
  "\tA/at new/jj paragraph/nn :/: yes/rb ./.",
  "",
].join("\n");

/** One worker's character-encoded training text. */
function shardOf(
  corpus: BrownCorpusText,
  shard: ShardSpec,
): { tokens: Uint8Array; vocabulary: string } {
  const set = brownCorpusSet(corpus, "Character");
  return selectExamples(set.train, ownedByShard(7, set.train, shard));
}

describe("BrownCorpus", () => {
  it("strips the tags, converts the quotes and keeps one paragraph per line", () => {
    assert.deepEqual(taggedParagraphs(TAGGED), [
      "The jury said \"no evidence\". It cost 1-1/2 dollars (or less), he said; 'fine'!",
      "Headline?",
      "A new paragraph: yes.",
    ]);
    assert.equal(untag("1/2/cd"), "1/2");
    assert.equal(untag("?/.-hl"), "?");
    assert.equal(detokenise(["``", "Go", "''", ",", "he", "said", "."]), '"Go", he said.');
    assert.equal(detokenise(["a", "1/4''", "''", "hole"]), 'a 1/4" hole');
  });

  it("holds out every 20th of the 500 samples: 475 for training, 25 held out, disjoint", async () => {
    const corpus = await loadBrownCorpus();
    assert.equal(corpus.train.files.length, 475);
    assert.equal(corpus.heldOut.files.length, 25);
    assert.deepEqual(corpus.heldOut.files.slice(0, 3), ["ca20", "ca40", "cb16"]);
    const all = [...corpus.train.files, ...corpus.heldOut.files].sort();
    assert.equal(new Set(all).size, 500);
    all.forEach((file, i) => {
      assert.equal(corpus.heldOut.files.includes(file), (i + 1) % 20 === 0, file);
    });
    assert.equal(corpus.train.genres.length, corpus.train.examples.length);
    assert.equal(corpus.genreLetters, "abcdefghjklmnpr");
    assert.ok(corpus.train.examples.length > 10_000);
    assert.ok(corpus.heldOut.text.length > 200_000);
    assert.strictEqual(await loadBrownCorpus(), corpus, "parsed once per process");
  });

  it("leaves no tags or tokeniser quotes in the plain text", async () => {
    const corpus = await loadBrownCorpus();
    const texts = [corpus.heldOut.text, ...corpus.train.examples];
    // Common tags after a word; punctuation tags are not checked (linguists write "/r/.").
    const tag = /\w\/(at|nn|nns|np|in|jj|vbd|vbz|cc|rb|cs|pps|``|'')(-tl|-hl)?(\s|$)/;
    for (const text of texts) {
      assert.doesNotMatch(text, tag);
      assert.ok(!text.includes("``") && !text.includes("''") && !text.includes("`"), text);
    }
    assert.match(corpus.train.examples[0]!, /^The Fulton County Grand Jury said Friday/);
    assert.ok(corpus.train.examples.every((example) => example !== "" && !example.includes("\n")));
  });

  it("derives the same sorted character vocabulary from the whole corpus on every worker", async () => {
    const corpus = await loadBrownCorpus();
    const expected = new Set(["\n"]);
    for (const text of [corpus.heldOut.text, ...corpus.train.examples]) {
      for (let i = 0; i < text.length; i++) expected.add(text[i]!);
    }
    assert.equal(corpus.characters, [...expected].sort().join(""));
    const shard = (workerIndex: number) =>
      shardOf(corpus, { workerIndex, workerCount: 3, strategy: "IID", concentration: 1 });
    assert.equal(shard(0).vocabulary, corpus.characters);
    assert.equal(shard(2).vocabulary, corpus.characters);
    assert.equal(brownCorpusSet(corpus, "Character").eval.vocabulary, corpus.characters);
  });

  it("deals whole paragraphs: the workers' texts are disjoint and together the training text", async () => {
    const corpus = await loadBrownCorpus();
    const set = brownCorpusSet(corpus, "Character");
    assert.equal(exampleCount(set.train), corpus.train.examples.length);
    const pieces = [0, 1].map((workerIndex) =>
      decodeTokens(
        shardOf(corpus, { workerIndex, workerCount: 2, strategy: "NonIID", concentration: 0.5 })
          .tokens,
        corpus.characters,
      ).split("\n"),
    );
    const lines = [...pieces[0]!.slice(0, -1), ...pieces[1]!.slice(0, -1)];
    assert.equal(lines.length, corpus.train.examples.length);
    assert.deepEqual(lines.sort(), [...corpus.train.examples].sort());
    assert.ok(pieces[0]!.length > 1 && pieces[1]!.length > 1);
  });

  it("encodes bytes as UTF-8 over 256 ids and decodes them back", async () => {
    const corpus = await loadBrownCorpus();
    const set = brownCorpusSet(corpus, "Byte");
    assert.equal(set.eval.vocabulary, BYTE_VOCABULARY);
    assert.equal(decodeTokens(set.eval.tokens, BYTE_VOCABULARY), corpus.heldOut.text);
    const first = set.train.tokens.subarray(set.train.bounds[0], set.train.bounds[1]);
    assert.equal(decodeTokens(first, BYTE_VOCABULARY), `${corpus.train.examples[0]}\n`);
    assert.equal(set.train.bounds.at(-1), set.train.tokens.length);
  });

  it("is the federation's data when spec.federation.data.corpus is set, sizing the model", async () => {
    const file = new URL(
      "../../../examples/federation/base/trainingfederation.yaml",
      import.meta.url,
    );
    const manifest = parse(await readFile(file, "utf8")) as {
      spec: { federation: FederationSpec };
    };
    const spec = manifest.spec.federation;
    const corpus = await loadBrownCorpus();
    for (const [encoding, size] of [
      ["Character", corpus.characters.length],
      ["Byte", 256],
    ] as const) {
      spec.data = { corpus: { preset: "BrownCorpus", encoding }, sharding: spec.data.sharding };
      const { data, definition } = await federationData(spec);
      assert.equal(definition.kind === "transformer" && definition.vocabularySize, size);
      assert.equal(
        data.eval.kind === "text" && data.eval.tokens.length,
        corpus.heldOut.text.length,
      );
    }
  });
});
