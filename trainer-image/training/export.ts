// Exports a checkpoint's global model for use outside fedtrain: as safetensors (tensor names from
// the parameter layout) and in the TensorFlow.js format (model.json + weights.bin, written by hand
// to the documented format, since tf.io's file handlers need tfjs-node). The MLP gets a Keras
// Sequential topology that tf.loadLayersModel reads (it outputs logits); the transformer has no
// Layers equivalent, so its model.json holds the weights manifest and the fedtrain model
// definition, for tf.io.decodeWeights and fedtrain's Model.
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { canonicalJson } from "../../core/api/index.js";
import type { Checkpoint } from "./checkpoint.js";
import { parameterHash } from "./diloco.js";
import { type MlpDefinition, parameterCount, parameterLayout } from "./model.js";
import { writeSafetensors } from "./safetensors.js";

/** Formats `export` writes. */
export type ExportFormat = "tfjs" | "safetensors" | "both";

/** The tfjs weights file name, next to model.json. */
export const TFJS_WEIGHTS_FILE = "weights.bin";

/** The global model as safetensors: one F32 tensor per parameter, with provenance metadata. */
export function globalSafetensors(checkpoint: Checkpoint): Uint8Array {
  const layout = parameterLayout(checkpoint.definition);
  return writeSafetensors(
    layout.map((spec) => ({
      name: spec.name,
      dtype: "F32",
      shape: spec.shape,
      data: checkpoint.global.subarray(spec.offset, spec.offset + spec.size),
    })),
    provenance(checkpoint),
  );
}

/** model.json (as an object) and weights.bin of the global model in the tfjs format. */
export function globalTfjs(checkpoint: Checkpoint): { modelJson: object; weights: Uint8Array } {
  const definition = checkpoint.definition;
  const layout = parameterLayout(definition);
  if (parameterCount(layout) !== checkpoint.global.length) {
    throw new RangeError("the checkpoint's parameters do not fit its model definition");
  }
  // The layout is the order of the flat vector, so the weights file is its bytes as they are.
  const global = checkpoint.global;
  const weights = new Uint8Array(global.buffer, global.byteOffset, global.byteLength).slice();
  const weightsManifest = [
    {
      paths: [TFJS_WEIGHTS_FILE],
      weights: layout.map((spec) => ({ name: spec.name, shape: spec.shape, dtype: "float32" })),
    },
  ];
  const userDefinedMetadata = { fedtrain: { ...provenance(checkpoint), definition } };
  const common = {
    generatedBy: "fedtrain",
    convertedBy: null,
    weightsManifest,
    userDefinedMetadata,
  };
  if (definition.kind === "mlp") {
    return {
      modelJson: { format: "layers-model", modelTopology: mlpTopology(definition), ...common },
      weights,
    };
  }
  return { modelJson: { format: "fedtrain-char-transformer", ...common }, weights };
}

/** Writes the requested formats into `directory` and returns the paths written. */
export async function exportCheckpoint(
  checkpoint: Checkpoint,
  directory: string,
  format: ExportFormat,
): Promise<string[]> {
  await mkdir(directory, { recursive: true });
  const written: string[] = [];
  if (format === "tfjs" || format === "both") {
    const { modelJson, weights } = globalTfjs(checkpoint);
    const modelPath = join(directory, "model.json");
    await writeFile(modelPath, `${JSON.stringify(modelJson, null, 2)}\n`);
    await writeFile(join(directory, TFJS_WEIGHTS_FILE), weights);
    written.push(modelPath, join(directory, TFJS_WEIGHTS_FILE));
  }
  if (format === "safetensors" || format === "both") {
    const path = join(directory, "model.safetensors");
    await writeFile(path, globalSafetensors(checkpoint));
    written.push(path);
  }
  return written;
}

function provenance(checkpoint: Checkpoint): Record<string, string> {
  return {
    format: "fedtrain-model/v1",
    federationId: checkpoint.federation.id,
    federationSpecHash: checkpoint.federationSpecHash,
    rounds: String(checkpoint.rounds),
    globalHash: parameterHash(checkpoint.global),
    definition: canonicalJson(checkpoint.definition),
  };
}

const KERAS_ACTIVATION: Record<MlpDefinition["activation"], string> = {
  ReLU: "relu",
  Tanh: "tanh",
  // fedtrain's GELU is the tanh approximation, which tfjs-layers calls gelu_new.
  GELU: "gelu_new",
};

/** A Keras Sequential of Dense layers named like the parameter layout (dense0, dense1, ...). */
function mlpTopology(definition: MlpDefinition): object {
  const widths = [...definition.hiddenLayers, definition.classes];
  return {
    class_name: "Sequential",
    keras_version: "tfjs-layers",
    backend: "tensor_flow.js",
    config: {
      name: "fedtrain_mlp",
      layers: widths.map((units, l) => ({
        class_name: "Dense",
        config: {
          name: `dense${l}`,
          units,
          activation: l + 1 < widths.length ? KERAS_ACTIVATION[definition.activation] : "linear",
          use_bias: true,
          trainable: true,
          dtype: "float32",
          kernel_initializer: { class_name: "Zeros", config: {} },
          bias_initializer: { class_name: "Zeros", config: {} },
          ...(l === 0 ? { batch_input_shape: [null, definition.inputs] } : {}),
        },
      })),
    },
  };
}
