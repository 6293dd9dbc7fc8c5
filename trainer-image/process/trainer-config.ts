// Loads and checks the trainer's configuration file (core/api's TrainerConfig: what the operator
// renders into /etc/fedtrain/config/trainer.json, or what a workstation user writes, in JSON or
// YAML). Every problem is a TrainerConfigError naming the field; the process exits with code 2
// for it, which the operator's Job treats as "do not retry".
import { createPrivateKey } from "node:crypto";
import { access, readFile } from "node:fs/promises";
import { parse } from "yaml";
import {
  canonicalFederation,
  crdDefault,
  type FederationSpec,
  federationSpecHash,
  formatFieldErrors,
  type LocalData,
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
 * and the backend. Transport settings are optional (the local exchange needs none); the NATS
 * exchange checks them with {@link checkNatsTransport}.
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
  const backend = raw.backend ?? crdDefault("spec.contribution.backend");
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
  const drill = raw.drill as Record<string, unknown> | undefined;
  if (drill !== undefined && (typeof drill !== "object" || drill === null || Array.isArray(drill)))
    fail("drill", "must be an object");
  const poisonScale = drill?.poisonScale;
  if (
    poisonScale !== undefined &&
    (typeof poisonScale !== "number" || !Number.isFinite(poisonScale))
  )
    fail("drill.poisonScale", `must be a finite number, not ${JSON.stringify(poisonScale)}`);
  const localData = checkLocalData(raw.localData, federation, fail);
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
    ...(localData ? { localData } : {}),
  };
}

const LOCAL_DATA_FORMATS = ["Text", "JSONL"] as const;

/**
 * Checks `localData` as the CRD does (contribution.localData): a Text or JSONL file at a path
 * relative to dataDir, a field only for JSONL, and text data in the federation for it to stand in
 * for.
 */
function checkLocalData(
  value: unknown,
  federation: FederationSpec,
  fail: (field: string, message: string) => never,
): LocalData | undefined {
  if (value === undefined) return undefined;
  if (value === null || typeof value !== "object" || Array.isArray(value))
    fail("localData", "must be an object (format, path, field)");
  const local = value as Record<string, unknown>;
  if (!LOCAL_DATA_FORMATS.includes(local.format as LocalData["format"]))
    fail(
      "localData.format",
      `Unsupported value ${JSON.stringify(local.format)}: supported values: ${LOCAL_DATA_FORMATS.join(", ")}`,
    );
  const path = local.path;
  if (
    typeof path !== "string" ||
    path === "" ||
    path.startsWith("/") ||
    // The CRD's rule, so that a file and a manifest are refused alike.
    path.includes("..")
  )
    fail(
      "localData.path",
      `must be a path relative to dataDir without '..', not ${JSON.stringify(path)}`,
    );
  if (local.field !== undefined && local.format !== "JSONL")
    fail("localData.field", "only applies to the JSONL format");
  if (local.field !== undefined && (typeof local.field !== "string" || local.field === ""))
    fail(
      "localData.field",
      `must be the name of a JSONL field, not ${JSON.stringify(local.field)}`,
    );
  if (federation.data.synthetic?.preset === "GaussianClusters")
    fail(
      "localData",
      "is text: it cannot stand in for the federation's GaussianClusters (classification) data",
    );
  return {
    format: local.format as LocalData["format"],
    path: path as string,
    ...(local.field !== undefined ? { field: local.field as string } : {}),
  };
}

/**
 * The member's raw 32-byte Ed25519 private key (what the protocol signs with) from
 * `member.privateKeyFile`, a PKCS #8 PEM. When `member.publicKey` is set it must be this key's.
 */
export async function readMemberPrivateKey(config: TrainerConfig): Promise<Uint8Array> {
  const file = config.member.privateKeyFile;
  if (!file) {
    throw new TrainerConfigError(
      "member.privateKeyFile: Required value: the NATS exchange signs with the member key (a PKCS #8 PEM Ed25519 key)",
    );
  }
  let pem: string;
  try {
    pem = await readFile(file, "utf8");
  } catch (error) {
    throw new TrainerConfigError(
      `member.privateKeyFile: cannot read ${file}: ${(error as Error).message}: mount the member key Secret there`,
      { cause: error },
    );
  }
  let jwk: { d?: string; x?: string };
  try {
    const key = createPrivateKey({ key: pem, format: "pem" });
    if (key.asymmetricKeyType !== "ed25519") {
      throw new Error(`it is a ${key.asymmetricKeyType ?? "symmetric"} key, not Ed25519`);
    }
    jwk = key.export({ format: "jwk" }) as { d?: string; x?: string };
  } catch (error) {
    throw new TrainerConfigError(
      `member.privateKeyFile: ${file} is not a PKCS #8 PEM Ed25519 private key: ${(error as Error).message}`,
      { cause: error },
    );
  }
  const seed = new Uint8Array(Buffer.from(jwk.d ?? "", "base64url"));
  const publicKey = Buffer.from(jwk.x ?? "", "base64url").toString("base64");
  if (config.member.publicKey && config.member.publicKey !== publicKey) {
    throw new TrainerConfigError(
      `member.publicKey ${config.member.publicKey} is not the public key of ${file} (${publicKey}): the key Secret and the config disagree`,
    );
  }
  if (seed.length !== 32) {
    throw new TrainerConfigError(`member.privateKeyFile: ${file} holds no 32-byte Ed25519 seed`);
  }
  return seed;
}

/**
 * Checks what the NATS exchange needs from `transport`: at least one URL, and readable
 * credentials and TLS files when they are named.
 */
export async function checkNatsTransport(config: TrainerConfig): Promise<void> {
  const { transport } = config;
  if (transport.natsUrls.length === 0) {
    throw new TrainerConfigError(
      "transport.natsUrls: Required value: the NATS exchange needs the federation's NATS servers (or run with --exchange local)",
    );
  }
  const files: [string, string | undefined][] = [
    ["transport.credentialsFile", transport.credentialsFile],
    ["transport.tls.caFile", transport.tls?.caFile],
    ["transport.tls.certFile", transport.tls?.certFile],
    ["transport.tls.keyFile", transport.tls?.keyFile],
  ];
  if (transport.tls && Boolean(transport.tls.certFile) !== Boolean(transport.tls.keyFile)) {
    throw new TrainerConfigError(
      "transport.tls: certFile and keyFile go together (a client certificate and its key)",
    );
  }
  for (const [field, file] of files) {
    if (!file) continue;
    try {
      await access(file);
    } catch (error) {
      throw new TrainerConfigError(`${field}: cannot read ${file}: ${(error as Error).message}`, {
        cause: error,
      });
    }
  }
}
