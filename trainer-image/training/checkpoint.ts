// Local checkpoints: one safetensors file holding every parameter tensor of the global model
// (`global/<name>`, from the model's parameter layout), the outer optimiser's serialised state
// (`outer/state`, bytes in core/codec's FORMAT.md layout), the worker-local state of each of the
// process's workers at the checkpoint's round (`worker<i>/inner/m`, `worker<i>/inner/v`,
// `worker<i>/feedback/residual`: flat vectors in the parameter layout's order) and, as metadata,
// the round, the canonical federation spec and its hash, the model definition and the workers'
// step counts. A checkpoint alone is enough to rebuild the model (`export`) or to resume the run
// that wrote it, continuing where it stopped. Version 1 files (no worker-local state) are read
// too.
import { createHash } from "node:crypto";
import { mkdir, readdir, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { FederationSpec } from "../../core/api/index.js";
import { canonicalJson } from "../../core/api/index.js";
import { parameterHash, type WorkerLocalState } from "./diloco.js";
import { type ModelDefinition, parameterCount, parameterLayout } from "./model.js";
import {
  parseSafetensors,
  readF32,
  readU8,
  type SafetensorsTensor,
  writeSafetensors,
} from "./safetensors.js";

/** The `format` metadata value of the fedtrain checkpoints this build writes. */
export const CHECKPOINT_FORMAT = "fedtrain-checkpoint/v2";

/** The format of version 1 checkpoints, still read: global model and outer optimiser only. */
export const CHECKPOINT_FORMAT_V1 = "fedtrain-checkpoint/v1";

/** One worker's own state in a checkpoint, as of the checkpoint's round. */
export interface CheckpointLocalState {
  /** The worker's index. */
  worker: number;
  /** Its state; `state.round` is the checkpoint's `rounds`. */
  state: WorkerLocalState;
}

/** How the `local` metadata entry describes one worker's state (its tensors hold the rest). */
interface LocalStateRecord {
  worker: number;
  innerStepCount: number;
  innerOptimizerSteps: number;
  errorFeedback: boolean;
  /** The residual's scale in the next round's starting point (absent in older files: 0). */
  pendingShareScale?: number;
  /** SHA-256 (hex) of the worker's local tensors' bytes, in file order. */
  sha256: string;
}

/** What a checkpoint holds. */
export interface Checkpoint {
  federation: FederationSpec;
  federationSpecHash: string;
  member: string;
  /** The worker (index) that wrote it. */
  worker: number;
  /** Rounds applied to `global`: the run resumes at this round. */
  rounds: number;
  definition: ModelDefinition;
  global: Float32Array;
  /** OuterOptimizer.serialize() of the outer optimiser. */
  outerState: Uint8Array;
  /**
   * The worker-local state of the process's workers that reached the checkpoint's round, in
   * worker order; empty in a version 1 file and in an overlap-mode run (which saves none).
   */
  local: CheckpointLocalState[];
  /** The file's format when decoded (CHECKPOINT_FORMAT or CHECKPOINT_FORMAT_V1). */
  format?: string;
}

/** A file that is not a usable fedtrain checkpoint. */
export class CheckpointError extends Error {
  override name = "CheckpointError";
}

/** Serialises a checkpoint into safetensors bytes. */
export function encodeCheckpoint(checkpoint: Checkpoint): Uint8Array {
  const layout = parameterLayout(checkpoint.definition);
  if (parameterCount(layout) !== checkpoint.global.length) {
    throw new CheckpointError(
      `${checkpoint.global.length} parameters do not fit the model definition (${parameterCount(layout)})`,
    );
  }
  const n = checkpoint.global.length;
  const tensors: SafetensorsTensor[] = [
    ...layout.map((spec) => ({
      name: `global/${spec.name}`,
      dtype: "F32" as const,
      shape: spec.shape,
      data: checkpoint.global.subarray(spec.offset, spec.offset + spec.size),
    })),
    {
      name: "outer/state",
      dtype: "U8",
      shape: [checkpoint.outerState.length],
      data: checkpoint.outerState,
    },
  ];
  const records: LocalStateRecord[] = [];
  for (const { worker, state } of checkpoint.local) {
    if (state.round !== checkpoint.rounds) {
      throw new CheckpointError(
        `worker ${worker}'s local state is of round ${state.round}, the checkpoint's is ${checkpoint.rounds}`,
      );
    }
    if (records.some((record) => record.worker === worker)) {
      throw new CheckpointError(`worker ${worker}'s local state is given twice`);
    }
    const vectors = localVectors(worker, state);
    for (const { name, data } of vectors) {
      if (data.length !== n) {
        throw new CheckpointError(`${name} holds ${data.length} values for ${n} parameters`);
      }
      tensors.push({ name, dtype: "F32", shape: [n], data });
    }
    records.push({
      worker,
      innerStepCount: state.innerStepCount,
      innerOptimizerSteps: state.inner.stepCount,
      errorFeedback: state.residual !== null,
      pendingShareScale: state.pendingShareScale,
      sha256: vectorsHash(vectors.map((vector) => vector.data)),
    });
  }
  return writeSafetensors(tensors, {
    format: CHECKPOINT_FORMAT,
    federationId: checkpoint.federation.id,
    federation: canonicalJson(checkpoint.federation),
    federationSpecHash: checkpoint.federationSpecHash,
    member: checkpoint.member,
    worker: String(checkpoint.worker),
    rounds: String(checkpoint.rounds),
    definition: canonicalJson(checkpoint.definition),
    globalHash: parameterHash(checkpoint.global),
    local: JSON.stringify(records),
  });
}

/** A worker's local tensors: their names and values, in file order. */
function localVectors(
  worker: number,
  state: WorkerLocalState,
): { name: string; data: Float32Array }[] {
  const vectors = [
    { name: `worker${worker}/inner/m`, data: state.inner.firstMoment },
    { name: `worker${worker}/inner/v`, data: state.inner.secondMoment },
  ];
  if (state.residual)
    vectors.push({ name: `worker${worker}/feedback/residual`, data: state.residual });
  return vectors;
}

function vectorsHash(vectors: readonly Float32Array[]): string {
  const hash = createHash("sha256");
  for (const v of vectors) hash.update(new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
  return hash.digest("hex");
}

/**
 * Reads checkpoint bytes back (version 2, or version 1 with no local state), checking the format
 * and the hashes of the global model and of each worker's local state.
 */
export function decodeCheckpoint(bytes: Uint8Array, source = "checkpoint"): Checkpoint {
  const file = parseSafetensors(bytes);
  const meta = file.metadata;
  const format = meta.format;
  if (format !== CHECKPOINT_FORMAT && format !== CHECKPOINT_FORMAT_V1) {
    throw new CheckpointError(
      `${source}: metadata format is ${JSON.stringify(format)}, expected ${CHECKPOINT_FORMAT} (or ${CHECKPOINT_FORMAT_V1})`,
    );
  }
  const field = (name: string): string => {
    const value = meta[name];
    if (typeof value !== "string") throw new CheckpointError(`${source}: metadata lacks ${name}`);
    return value;
  };
  const definition = JSON.parse(field("definition")) as ModelDefinition;
  const layout = parameterLayout(definition);
  const global = new Float32Array(parameterCount(layout));
  for (const spec of layout) global.set(readF32(file, `global/${spec.name}`), spec.offset);
  if (parameterHash(global) !== field("globalHash")) {
    throw new CheckpointError(`${source}: the global parameters do not match their recorded hash`);
  }
  const rounds = Number(field("rounds"));
  const local: CheckpointLocalState[] = [];
  if (format === CHECKPOINT_FORMAT) {
    const text = field("local");
    let records: LocalStateRecord[];
    try {
      records = JSON.parse(text) as LocalStateRecord[];
    } catch (error) {
      throw new CheckpointError(`${source}: metadata local is not JSON`, { cause: error });
    }
    if (!Array.isArray(records))
      throw new CheckpointError(`${source}: metadata local is not a list`);
    for (const record of records) {
      const counts = [record?.worker, record?.innerStepCount, record?.innerOptimizerSteps];
      if (
        !counts.every((count) => Number.isInteger(count) && count! >= 0) ||
        typeof record.errorFeedback !== "boolean" ||
        !(
          record.pendingShareScale === undefined ||
          (Number.isFinite(record.pendingShareScale) && record.pendingShareScale >= 0)
        ) ||
        local.some((each) => each.worker === record.worker)
      ) {
        throw new CheckpointError(
          `${source}: metadata local has an invalid entry ${JSON.stringify(record)}`,
        );
      }
      const vector = (name: string): Float32Array => {
        const data = readF32(file, name);
        if (data.length !== global.length) {
          throw new CheckpointError(
            `${source}: ${name} holds ${data.length} values for ${global.length} parameters`,
          );
        }
        return data;
      };
      const worker = record.worker;
      const state: WorkerLocalState = {
        round: rounds,
        innerStepCount: record.innerStepCount,
        inner: {
          firstMoment: vector(`worker${worker}/inner/m`),
          secondMoment: vector(`worker${worker}/inner/v`),
          stepCount: record.innerOptimizerSteps,
        },
        residual: record.errorFeedback ? vector(`worker${worker}/feedback/residual`) : null,
        pendingShareScale: record.pendingShareScale ?? 0,
      };
      const vectors = localVectors(worker, state).map((each) => each.data);
      if (vectorsHash(vectors) !== record.sha256) {
        throw new CheckpointError(
          `${source}: worker ${worker}'s local state does not match its recorded hash`,
        );
      }
      local.push({ worker, state });
    }
  }
  return {
    federation: JSON.parse(field("federation")) as FederationSpec,
    federationSpecHash: field("federationSpecHash"),
    member: field("member"),
    worker: Number(field("worker")),
    rounds,
    definition,
    global,
    outerState: readU8(file, "outer/state"),
    local,
    format,
  };
}

/** The file name of a checkpoint: federation, worker and round sort together. */
export function checkpointFileName(checkpoint: Checkpoint): string {
  return `${checkpoint.federation.id}-worker${checkpoint.worker}-round${String(checkpoint.rounds).padStart(6, "0")}.safetensors`;
}

/** Writes a checkpoint atomically (temporary file, then rename) and returns its path. */
export async function writeCheckpoint(directory: string, checkpoint: Checkpoint): Promise<string> {
  await mkdir(directory, { recursive: true });
  const path = join(directory, checkpointFileName(checkpoint));
  const temporary = `${path}.${process.pid}.tmp`;
  await writeFile(temporary, encodeCheckpoint(checkpoint));
  await rename(temporary, path);
  return path;
}

/** Reads a checkpoint file. */
export async function readCheckpoint(path: string): Promise<Checkpoint> {
  return decodeCheckpoint(new Uint8Array(await readFile(path)), path);
}

/** The newest checkpoint of `federationId` written by `worker` in `directory`, if any. */
export async function latestCheckpoint(
  directory: string,
  federationId: string,
  worker: number,
): Promise<string | null> {
  const prefix = `${federationId}-worker${worker}-round`;
  let names: string[];
  try {
    names = await readdir(directory);
  } catch {
    return null;
  }
  const matching = names
    .filter((name) => name.startsWith(prefix) && name.endsWith(".safetensors"))
    .sort();
  const newest = matching[matching.length - 1];
  return newest ? join(directory, newest) : null;
}
