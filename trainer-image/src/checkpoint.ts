// Local checkpoints of the global model: one safetensors file holding every parameter tensor
// (`global/<name>`, from the model's parameter layout), the outer optimiser's serialised state
// (`outer/state`, bytes in core/codec's FORMAT.md layout) and, as metadata, the round, the
// canonical federation spec and its hash, and the model definition. A checkpoint alone is enough
// to rebuild the model (`export`) or to resume the run that wrote it.
import { mkdir, readdir, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { FederationSpec } from "../../core/api/index.js";
import { canonicalJson } from "../../core/api/index.js";
import { parameterHash } from "./diloco.js";
import { type ModelDefinition, parameterCount, parameterLayout } from "./model.js";
import { parseSafetensors, readF32, readU8, writeSafetensors } from "./safetensors.js";

/** The `format` metadata value of a fedtrain checkpoint. */
export const CHECKPOINT_FORMAT = "fedtrain-checkpoint/v1";

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
  return writeSafetensors(
    [
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
    ],
    {
      format: CHECKPOINT_FORMAT,
      federationId: checkpoint.federation.id,
      federation: canonicalJson(checkpoint.federation),
      federationSpecHash: checkpoint.federationSpecHash,
      member: checkpoint.member,
      worker: String(checkpoint.worker),
      rounds: String(checkpoint.rounds),
      definition: canonicalJson(checkpoint.definition),
      globalHash: parameterHash(checkpoint.global),
    },
  );
}

/** Reads checkpoint bytes back, checking the format and the global model's hash. */
export function decodeCheckpoint(bytes: Uint8Array, source = "checkpoint"): Checkpoint {
  const file = parseSafetensors(bytes);
  const meta = file.metadata;
  if (meta.format !== CHECKPOINT_FORMAT) {
    throw new CheckpointError(
      `${source}: metadata format is ${JSON.stringify(meta.format)}, expected ${CHECKPOINT_FORMAT}`,
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
  return {
    federation: JSON.parse(field("federation")) as FederationSpec,
    federationSpecHash: field("federationSpecHash"),
    member: field("member"),
    worker: Number(field("worker")),
    rounds: Number(field("rounds")),
    definition,
    global,
    outerState: readU8(file, "outer/state"),
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
