// External training text: a Text document or JSONL records, from an http(s) URL or a file under
// the data mount, cut into examples (a document's paragraphs, a JSONL file's records; either cut
// into pieces of at most TEXT_EXAMPLE_MAX_CHARS) and split into training examples and held-out
// text over a vocabulary every member derives the same way (the sorted distinct characters of the
// whole data). A member's own data (contribution.localData) is read the same way.
import { readFile } from "node:fs/promises";
import path from "node:path";
import type { LocalData, TextData } from "../../core/api/index.js";
import {
  type EncodedExamples,
  encodeText,
  type TextCorpus,
  type TextExamples,
  textExamples,
} from "./data.js";
import { isByteVocabulary } from "./encoding.js";

/** Where contribution.dataVolumeClaim is mounted in a trainer pod. */
export const DATA_MOUNT = "/data";

/**
 * The longest example cut from text: a longer paragraph or record is cut into pieces of this many
 * characters, so that a document without blank lines still deals out evenly.
 */
export const TEXT_EXAMPLE_MAX_CHARS = 1024;

/**
 * A document's training examples fall into this many consecutive regions, the groups of a NonIID
 * deal: a worker's mix of regions (and so, roughly, of topics) is skewed, as labels are for
 * classification data.
 */
export const TEXT_REGIONS = 16;

/** Data that could not be read or parsed; says which source and what to fix. */
export class TextDataError extends Error {
  override name = "TextDataError";
}

/** A text source: federation.data.text, or a member's contribution.localData (a path only). */
export type TextSource = TextData | LocalData;

/**
 * Reads the examples of `spec` (the URL, or `path` under `dataRoot`): the records of a JSONL file,
 * each with a newline, or the paragraphs of a Text document (each with the blank lines after it),
 * cut to TEXT_EXAMPLE_MAX_CHARS. Joined, they are the text. `field` names the source in errors.
 */
export async function readTextExamples(
  spec: TextSource,
  dataRoot = DATA_MOUNT,
  field = "data.text",
): Promise<string[]> {
  let raw: string;
  let source: string;
  const url = "url" in spec ? spec.url : undefined;
  if (url !== undefined && spec.path !== undefined) {
    throw new TextDataError(`${field} sets both url and path: set exactly one`);
  }
  if (url !== undefined) {
    source = url;
    if (!/^https?:\/\//.test(url)) {
      throw new TextDataError(`${field}.url ${url} is not an http(s) URL`);
    }
    let response: Response;
    try {
      response = await fetch(url);
    } catch (error) {
      throw new TextDataError(`cannot download ${url}: ${String(error)}`, { cause: error });
    }
    if (!response.ok) {
      throw new TextDataError(`downloading ${url} failed: HTTP ${response.status}`);
    }
    raw = await response.text();
  } else if (spec.path !== undefined) {
    const resolved = path.resolve(dataRoot, spec.path);
    if (path.relative(dataRoot, resolved).startsWith("..")) {
      throw new TextDataError(`${field}.path ${spec.path} leaves the data mount ${dataRoot}`);
    }
    source = resolved;
    try {
      raw = await readFile(resolved, "utf8");
    } catch (error) {
      throw new TextDataError(
        `cannot read ${resolved} (${field}.path; is contribution.dataVolumeClaim mounted?): ${String(error)}`,
        { cause: error },
      );
    }
  } else {
    throw new TextDataError(`${field} needs a url or a path`);
  }
  const pieces =
    spec.format === "JSONL"
      ? jsonlRecords(raw, spec.field ?? "text", source)
      : documentParagraphs(raw);
  return pieces.flatMap(cutToLength);
}

/** Reads the raw text of `spec` (the URL, or `path` under `dataRoot`) and returns it as one string. */
export async function readTextData(spec: TextData, dataRoot = DATA_MOUNT): Promise<string> {
  return (await readTextExamples(spec, dataRoot)).join("");
}

/** Joins the `field` of every JSONL record with newlines; blank lines are skipped. */
export function jsonlText(raw: string, field: string, source: string): string {
  return jsonlRecords(raw, field, source).join("");
}

/** The `field` of every JSONL record, each followed by a newline; blank lines are skipped. */
export function jsonlRecords(raw: string, field: string, source: string): string[] {
  const records: string[] = [];
  const lines = raw.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === "") continue;
    let record: unknown;
    try {
      record = JSON.parse(line);
    } catch (error) {
      throw new TextDataError(`${source} line ${i + 1} is not valid JSON`, { cause: error });
    }
    const value = (record as Record<string, unknown> | null)?.[field];
    if (typeof value !== "string") {
      throw new TextDataError(`${source} line ${i + 1} has no string field "${field}"`);
    }
    records.push(`${value}\n`);
  }
  return records;
}

/** A document's paragraphs: each ends after the run of blank lines that follows it. */
export function documentParagraphs(text: string): string[] {
  const paragraphs: string[] = [];
  let start = 0;
  for (const match of text.matchAll(/(?:\r?\n){2,}/g)) {
    const end = match.index + match[0].length;
    if (end >= text.length) break;
    paragraphs.push(text.slice(start, end));
    start = end;
  }
  if (start < text.length) paragraphs.push(text.slice(start));
  return paragraphs;
}

function cutToLength(piece: string): string[] {
  if (piece.length <= TEXT_EXAMPLE_MAX_CHARS) return [piece];
  const pieces: string[] = [];
  for (let start = 0; start < piece.length; start += TEXT_EXAMPLE_MAX_CHARS)
    pieces.push(piece.slice(start, start + TEXT_EXAMPLE_MAX_CHARS));
  return pieces;
}

/**
 * Splits text examples into training examples and the shared held-out text: the last
 * `evalFraction` of the characters is held out (the example it starts in is cut there), and
 * the training examples are grouped into TEXT_REGIONS consecutive regions for NonIID deals.
 */
export function splitTextExamples(
  pieces: readonly string[],
  evalFraction: number,
): { train: TextExamples; eval: TextCorpus } {
  if (!(evalFraction > 0 && evalFraction < 1)) {
    throw new TextDataError(`evalFraction ${evalFraction} must be in (0, 1)`);
  }
  const text = pieces.join("");
  const vocabulary = [...new Set(text.split(""))].sort().join("");
  const evalStart = Math.floor(text.length * (1 - evalFraction));
  const train: string[] = [];
  let offset = 0;
  for (const piece of pieces) {
    if (offset >= evalStart) break;
    train.push(offset + piece.length <= evalStart ? piece : piece.slice(0, evalStart - offset));
    offset += piece.length;
  }
  const groups = new Int32Array(train.length);
  let start = 0;
  train.forEach((piece, i) => {
    groups[i] = Math.min(TEXT_REGIONS - 1, Math.floor((start * TEXT_REGIONS) / evalStart));
    start += piece.length;
  });
  return {
    train: textExamples(train, vocabulary, { groups }).examples,
    eval: encodeText(text.slice(evalStart), vocabulary),
  };
}

/**
 * A member's own data (contribution.localData) under `dataRoot`, as text examples in the
 * federation's `vocabulary`: characters outside it are skipped and counted (bytes need none).
 */
export async function readLocalExamples(
  spec: LocalData,
  vocabulary: string,
  dataRoot = DATA_MOUNT,
): Promise<EncodedExamples> {
  const pieces = await readTextExamples(spec, dataRoot, "contribution.localData");
  if (!isByteVocabulary(vocabulary)) return textExamples(pieces, vocabulary, { skipUnknown: true });
  const bounds = new Uint32Array(pieces.length + 1);
  const bytes = pieces.map((piece) => Buffer.from(piece, "utf8"));
  bytes.forEach((piece, i) => {
    bounds[i + 1] = bounds[i]! + piece.length;
  });
  return {
    examples: { kind: "text", tokens: new Uint8Array(Buffer.concat(bytes)), bounds, vocabulary },
    skipped: 0,
  };
}
