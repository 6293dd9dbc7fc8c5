// External training text: a Text document or JSONL records, from an http(s) URL or a file under
// the data mount, split into training and held-out text over a vocabulary every member derives
// the same way (the sorted distinct characters of the whole document).
import { readFile } from "node:fs/promises";
import path from "node:path";
import type { TextData } from "../../core/api/index.js";
import { encodeText, type ShardedText, type ShardSpec } from "./data.js";

/** Where contribution.dataVolumeClaim is mounted in a trainer pod. */
export const DATA_MOUNT = "/data";

/** Data that could not be read or parsed; says which source and what to fix. */
export class TextDataError extends Error {
  override name = "TextDataError";
}

/** Reads the raw text of `spec` (the URL, or `path` under `dataRoot`) and returns it as one string. */
export async function readTextData(spec: TextData, dataRoot = DATA_MOUNT): Promise<string> {
  let raw: string;
  let source: string;
  if (spec.url !== undefined && spec.path !== undefined) {
    throw new TextDataError("data.text sets both url and path: set exactly one");
  }
  if (spec.url !== undefined) {
    source = spec.url;
    if (!/^https?:\/\//.test(spec.url)) {
      throw new TextDataError(`data.text.url ${spec.url} is not an http(s) URL`);
    }
    let response: Response;
    try {
      response = await fetch(spec.url);
    } catch (error) {
      throw new TextDataError(`cannot download ${spec.url}: ${String(error)}`, { cause: error });
    }
    if (!response.ok) {
      throw new TextDataError(`downloading ${spec.url} failed: HTTP ${response.status}`);
    }
    raw = await response.text();
  } else if (spec.path !== undefined) {
    const resolved = path.resolve(dataRoot, spec.path);
    if (path.relative(dataRoot, resolved).startsWith("..")) {
      throw new TextDataError(`data.text.path ${spec.path} leaves the data mount ${dataRoot}`);
    }
    source = resolved;
    try {
      raw = await readFile(resolved, "utf8");
    } catch (error) {
      throw new TextDataError(
        `cannot read ${resolved} (data.text.path; is contribution.dataVolumeClaim mounted?): ${String(error)}`,
        { cause: error },
      );
    }
  } else {
    throw new TextDataError("data.text needs a url or a path");
  }
  return spec.format === "JSONL" ? jsonlText(raw, spec.field ?? "text", source) : raw;
}

/** Joins the `field` of every JSONL record with newlines; blank lines are skipped. */
export function jsonlText(raw: string, field: string, source: string): string {
  const parts: string[] = [];
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
    parts.push(value);
  }
  return `${parts.join("\n")}\n`;
}

/**
 * Splits text into this worker's training text and the shared held-out text: the last
 * `evalFraction` of the document is held out, the rest is cut into `workerCount` contiguous
 * pieces. (Text has no labels, so NonIID sharding is not defined for it: contiguous pieces are
 * already skewed.)
 */
export function shardText(text: string, evalFraction: number, shard: ShardSpec): ShardedText {
  if (!(evalFraction > 0 && evalFraction < 1)) {
    throw new TextDataError(`evalFraction ${evalFraction} must be in (0, 1)`);
  }
  const vocabulary = [...new Set(text.split(""))].sort().join("");
  const evalStart = Math.floor(text.length * (1 - evalFraction));
  const pieceLength = Math.floor(evalStart / shard.workerCount);
  const start = shard.workerIndex * pieceLength;
  return {
    train: encodeText(text.slice(start, start + pieceLength), vocabulary),
    eval: encodeText(text.slice(evalStart), vocabulary),
  };
}
