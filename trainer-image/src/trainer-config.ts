// Loads and checks the trainer's configuration file (core/api's TrainerConfig: what the operator
// renders into /etc/fedtrain/config/trainer.json, or what a workstation user writes, in JSON or
// YAML). Every problem is a TrainerConfigError naming the field; the process exits with code 2
// for it, which the operator's Job treats as "do not retry".
import { readFile } from "node:fs/promises";
import { parse } from "yaml";
import {
  canonicalFederation,
  type FederationSpec,
  federationSpecHash,
  formatFieldErrors,
  validateTrainingFederation,
} from "../../core/api/index.js";
import { type TrainerConfig, trainerPaths } from "../../core/api/trainer-config.js";

/** Exit code of a configuration the trainer cannot run (the operator never retries it). */
export const CONFIG_ERROR_EXIT_CODE = 2;

/** A configuration problem: what is wrong, where, and what to do about it. */
export class TrainerConfigError extends Error {
  override name = "TrainerConfigError";
}

const BACKENDS = ["Auto", "CUDA", "WebGPU", "CPU"] as const;

/** Reads, validates and canonicalises a trainer configuration file. */
export async function loadTrainerConfig(path: string): Promise<TrainerConfig> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    const code = (error as { code?: string }).code;
    throw new TrainerConfigError(
      code === "ENOENT"
        ? `config file ${path} does not exist: pass --config with the path of trainer.json`
        : `cannot read config file ${path}: ${(error as Error).message}`,
      { cause: error },
    );
  }
  let value: unknown;
  try {
    value = parse(text);
  } catch (error) {
    throw new TrainerConfigError(
      `config file ${path} is neither JSON nor YAML: ${(error as Error).message}`,
      { cause: error },
    );
  }
  return checkTrainerConfig(value, path);
}

/**
 * Checks a parsed configuration: kind and apiVersion, the federation against the
 * TrainingFederation schema (defaults applied, then put in canonical form), its hash, the member
 * and the backend. Transport settings are optional until the NATS exchange is wired in.
 */
export function checkTrainerConfig(value: unknown, source = "config"): TrainerConfig {
  const fail = (field: string, message: string): never => {
    throw new TrainerConfigError(`${source}: ${field}: ${message}`);
  };
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    return fail("<root>", "must be an object (a TrainerConfig)");
  }
  const raw = value as Record<string, unknown>;
  if (raw.kind !== "TrainerConfig")
    fail("kind", `must be TrainerConfig, not ${JSON.stringify(raw.kind)}`);
  if (raw.apiVersion !== "fedtrain.dev/v1alpha1") {
    fail("apiVersion", `must be fedtrain.dev/v1alpha1, not ${JSON.stringify(raw.apiVersion)}`);
  }
  if (raw.federation === undefined) fail("federation", "Required value");
  const validation = validateTrainingFederation({
    apiVersion: "fedtrain.dev/v1alpha1",
    kind: "TrainingFederation",
    metadata: { name: "trainer" },
    spec: { federation: raw.federation },
  });
  if (!validation.valid) {
    const errors = validation.errors.map((error) => ({
      path: error.path.replace(/^spec\./, ""),
      message: error.message,
    }));
    throw new TrainerConfigError(
      `${source}: the federation spec is invalid:\n${formatFieldErrors(errors)}`,
    );
  }
  const federation: FederationSpec = canonicalFederation(validation.object.spec.federation);
  const hash = federationSpecHash(federation);
  if (raw.federationSpecHash === undefined) {
    fail("federationSpecHash", `Required value: this federation's hash is ${hash}`);
  }
  if (raw.federationSpecHash !== hash) {
    fail(
      "federationSpecHash",
      `${JSON.stringify(raw.federationSpecHash)} does not match the federation spec, whose hash is ${hash}: the file was edited by hand or written for another spec; render it again`,
    );
  }
  const member = raw.member as Record<string, unknown> | undefined;
  if (member === undefined || typeof member !== "object" || member === null) {
    fail("member", "Required value");
  }
  const memberId = member?.id;
  if (
    typeof memberId !== "string" ||
    !/^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/.test(memberId)
  ) {
    fail(
      "member.id",
      `must be a name of letters, digits, '-', '_' or '.' (the member's id), not ${JSON.stringify(memberId)}`,
    );
  }
  const backend = raw.backend ?? "Auto";
  if (!BACKENDS.includes(backend as (typeof BACKENDS)[number])) {
    fail(
      "backend",
      `Unsupported value ${JSON.stringify(backend)}: supported values: ${BACKENDS.join(", ")}`,
    );
  }
  const transport = (raw.transport ?? { natsUrls: [] }) as Record<string, unknown>;
  if (
    !Array.isArray(transport.natsUrls) ||
    !transport.natsUrls.every((url) => typeof url === "string")
  ) {
    fail("transport.natsUrls", "must be a list of NATS URLs");
  }
  const dataDir = raw.dataDir ?? trainerPaths.dataDir;
  if (typeof dataDir !== "string") fail("dataDir", "must be a path");
  return {
    ...(raw as unknown as TrainerConfig),
    federation,
    federationSpecHash: hash,
    member: {
      id: memberId as string,
      publicKey: String(member?.publicKey ?? ""),
      privateKeyFile: String(member?.privateKeyFile ?? ""),
    },
    transport: transport as unknown as TrainerConfig["transport"],
    backend: backend as TrainerConfig["backend"],
    dataDir: dataDir as string,
  };
}
