// Conformance vectors for a second implementation of the federation protocol
// (docs/protocol-vectors/): fixed keys, spec hashes, one signed message of every kind with the
// verdicts of its broken copies, encoded updates, one round applied to a model, and a short
// ledger with a stray entry, each with what this implementation computes from it. Every input is
// fixed and Ed25519 signatures are deterministic, so the file is byte-for-byte reproducible:
// `npm run vectors` writes it, and vectors.test.ts proves this implementation still reproduces it.
import { createHash } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { canonicalFederation, canonicalJson, federationSpecHash } from "../core/api/index.js";
import type { FederationSpec } from "../core/api/types.generated.js";
import {
  aggregateRound,
  type CodecParams,
  decodeUpdate,
  encodeUpdate,
  OuterOptimizer,
  type RoundRules,
} from "../core/codec/index.js";
import { payloadDigest } from "../core/protocol/digest.js";
import { ProtocolMessageError } from "../core/protocol/errors.js";
import { keyPairFromPrivate, sha256, toBase64, toHex } from "../core/protocol/identity.js";
import { verifyLedger } from "../core/protocol/ledger.js";
import type { Commit } from "../core/protocol/types.js";
import * as wire from "../core/protocol/wire.js";
import { repoRoot } from "./repository.js";

/** Where the vectors live. */
export const vectorsFile = path.join(repoRoot, "docs", "protocol-vectors", "vectors.json");

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex");

/** A key pair from a fixed seed: the raw 32-byte private key is SHA-256 of the label. */
function fixedKey(label: string) {
  const seed = new Uint8Array(createHash("sha256").update(`fedtrain vectors ${label}`).digest());
  const { publicKey } = keyPairFromPrivate(seed);
  return { label, privateKey: seed, publicKey };
}

const alpha = fixedKey("alpha");
const beta = fixedKey("beta");
const organiser = fixedKey("organiser");
const stranger = fixedKey("stranger");

/** spec.federation bases whose canonical form and hash are given. */
function specVariants(): { name: string; federation: FederationSpec }[] {
  const base = {
    id: "vectors",
    model: { preset: "MLP" },
    data: { synthetic: { preset: "GaussianClusters" } },
  };
  const variant = (name: string, sync: Record<string, unknown>) => ({
    name,
    federation: { ...base, sync } as unknown as FederationSpec,
  });
  return [
    { name: "defaults", federation: base as unknown as FederationSpec },
    variant("topk-trimmed-mean", {
      compression: { method: "TopK", topK: { density: 0.05, valueBits: 4 } },
      aggregation: { rule: "TrimmedMean", tolerate: 1 },
    }),
    variant("int8-median-norm-bound", {
      compression: { method: "Int8" },
      aggregation: {
        rule: "Median",
        normBound: { action: "Drop", maxMedianMultiple: 3 },
      },
    }),
    variant("centred-clip", {
      aggregation: { rule: "CentredClip", centredClip: { radiusMedianMultiple: 2, iterations: 3 } },
    }),
  ];
}

/** A message's bytes, and how its broken copies are judged. */
function messageVector<T>(
  name: string,
  body: T,
  encode: (value: T, privateKey: Uint8Array) => Uint8Array,
  decode: (bytes: Uint8Array) => wire.Signed<T>,
) {
  const bytes = encode(body, alpha.privateKey);
  const verdict = (broken: Uint8Array): string => {
    try {
      decode(broken);
      return "valid";
    } catch (error) {
      return error instanceof ProtocolMessageError ? error.reason : `error: ${String(error)}`;
    }
  };
  const flipped = new Uint8Array(bytes);
  flipped[wire.HEADER_BYTES] = flipped[wire.HEADER_BYTES]! ^ 1;
  return {
    name,
    kind: bytes[3],
    signer: toBase64(alpha.publicKey),
    body: JSON.parse(JSON.stringify(body, jsonBytes)) as unknown,
    hex: hex(bytes),
    verdicts: {
      asIs: verdict(bytes),
      firstBodyBitFlipped: verdict(flipped),
      lastByteDropped: verdict(bytes.subarray(0, bytes.length - 1)),
      byteAppended: verdict(new Uint8Array([...bytes, 0])),
    },
  };
}

/** JSON for bytes (hex), Infinity and NaN (as strings). */
function jsonBytes(_: string, value: unknown): unknown {
  if (value instanceof Uint8Array) return { hex: hex(value) };
  if (typeof value === "number" && !Number.isFinite(value)) return String(value);
  return value;
}

const digest = sha256(new Uint8Array([1, 2, 3]));
const specHash = sha256(new TextEncoder().encode("vectors spec"));

function messages() {
  const commit: Commit = {
    round: 7,
    attempt: 1,
    prevHash: sha256(new Uint8Array([6])),
    specHash,
    coordinator: { memberId: "alpha", workerId: "w0" },
    closedBy: "deadline",
    activeMembers: 2,
    committedAtMs: 1_800_000_000_000,
    entries: [
      { memberId: "alpha", workerId: "w0", publicKey: alpha.publicKey, digest, size: 99 },
      { memberId: "beta", workerId: "w0", publicKey: beta.publicKey, digest, size: 99 },
    ],
    checkpoint: { round: 6, digest, size: 4096, objectName: "round-6" },
    agreement: {
      round: 6,
      hashes: [
        { memberId: "alpha", workerId: "w0", modelHash: sha256(new Uint8Array([6, 1])) },
        { memberId: "beta", workerId: "w0", modelHash: sha256(new Uint8Array([6, 1])) },
      ],
    },
    scores: [
      {
        round: 6,
        updates: [
          {
            memberId: "alpha",
            workerId: "w0",
            bound: "kept",
            cosine: 0.875,
            relativeDistance: 0.5,
            relativeNorm: 1.25,
          },
          {
            memberId: "beta",
            workerId: "w0",
            bound: "dropped",
            cosine: -1,
            relativeDistance: Number.POSITIVE_INFINITY,
            relativeNorm: Number.POSITIVE_INFINITY,
          },
        ],
      },
    ],
  };
  return [
    messageVector(
      "member record",
      { memberId: "alpha", specHash, registeredAtMs: 1_800_000_000_000, revision: 1 },
      wire.encodeMember,
      wire.decodeMember,
    ),
    messageVector(
      "worker heartbeat",
      {
        memberId: "alpha",
        workerId: "w0",
        specHash,
        state: "active" as const,
        appliedRound: 6,
        modelHash: digest,
        loss: 0.5,
        roundsContributed: 5,
        sentAtMs: 1_800_000_000_000,
        boundedUpdates: [{ memberId: "beta", clipped: 0, dropped: 2 }],
        memberScores: [{ memberId: "beta", rounds: 3, cosine: -0.5, reputation: -0.25 }],
      },
      wire.encodeHeartbeat,
      wire.decodeHeartbeat,
    ),
    messageVector(
      "update manifest",
      {
        round: 7,
        memberId: "alpha",
        workerId: "w0",
        size: 99,
        digest,
        chunkSize: 64,
        chunkCount: 2,
      },
      wire.encodeManifest,
      wire.decodeManifest,
    ),
    messageVector("commit", commit, wire.encodeCommit, wire.decodeCommit),
    messageVector(
      "commit with model hashes but no scores",
      { ...commit, scores: [] },
      wire.encodeCommit,
      wire.decodeCommit,
    ),
    messageVector(
      "commit without scores or model hashes (the layout before them)",
      { ...commit, scores: [], agreement: undefined },
      wire.encodeCommit,
      wire.decodeCommit,
    ),
    messageVector(
      "checkpoint record",
      commit.checkpoint!,
      wire.encodeCheckpoint,
      wire.decodeCheckpoint,
    ),
    messageVector(
      "control: pause",
      { action: "pause" as const, memberId: "", sequence: 1, issuedAtMs: 2, reason: "maintenance" },
      wire.encodeControl,
      wire.decodeControl,
    ),
    messageVector(
      "control: exclude",
      {
        action: "exclude" as const,
        memberId: "beta",
        sequence: 3,
        issuedAtMs: 4,
        reason: "updates point away from every aggregate",
      },
      wire.encodeControl,
      wire.decodeControl,
    ),
    messageVector(
      "round status",
      {
        round: 7,
        attempt: 1,
        phase: "retrying" as const,
        reason: "quorum not met at the deadline",
        coordinator: { memberId: "alpha", workerId: "w0" },
        updatedAtMs: 1_800_000_000_000,
      },
      wire.encodeRoundStatus,
      wire.decodeRoundStatus,
    ),
    messageVector(
      "coordinator lease",
      { memberId: "alpha", workerId: "w0", acquiredAtMs: 1_800_000_000_000 },
      wire.encodeLease,
      wire.decodeLease,
    ),
    messageVector(
      "update stored",
      { round: 7, memberId: "alpha", workerId: "w0", digest },
      wire.encodeStored,
      wire.decodeStored,
    ),
  ];
}

/** A fixed pseudo-gradient: values of both signs and several magnitudes. */
function pseudoGradient(length: number, phase: number): Float32Array {
  return Float32Array.from({ length }, (_, i) =>
    Math.fround(Math.sin(i * 0.7 + phase) * (1 + (i % 5))),
  );
}

function updates() {
  const values = pseudoGradient(40, 0);
  const codecs: [string, CodecParams][] = [
    ["none", { method: "none" }],
    ["int8, chunks of 16", { method: "int8", chunkSize: 16 }],
    ["top-k 25 %, 4-bit, groups of 4", { method: "topk", density: 0.25, bits: 4, groupSize: 4 }],
  ];
  return {
    pseudoGradient: [...values],
    encoded: codecs.map(([name, params]) => {
      const message = encodeUpdate(values, params);
      return {
        name,
        params,
        hex: hex(message),
        blake3: hex(payloadDigest(message)),
        decoded: [...decodeUpdate(message, values.length)],
      };
    }),
  };
}

/** One round applied: decode, norm bound, aggregate, outer Nesterov step, then the model hash. */
function applyVector() {
  const length = 12;
  const parameters = Float32Array.from({ length }, (_, i) => Math.fround(0.1 * (i - 6)));
  const before = hex(sha256(new Uint8Array(parameters.buffer)));
  const messages = [0, 1, 2].map((phase) =>
    encodeUpdate(pseudoGradient(length, phase), { method: "int8", chunkSize: 4 }),
  );
  // The third sender is an outlier: ten times the others, pointing the other way.
  messages.push(
    encodeUpdate(
      pseudoGradient(length, 0).map((v) => -10 * v),
      { method: "int8", chunkSize: 4 },
    ),
  );
  const rules: RoundRules = {
    aggregation: { kind: "trimmedMean", tolerate: 1 },
    normBound: { action: "drop", medianMultiple: 3 },
  };
  const outer = { learningRate: 0.7, momentum: 0.9, nesterov: true };
  const optimizer = new OuterOptimizer(length, outer);
  const decoded = messages.map((m) => decodeUpdate(m, length));
  const round = aggregateRound(decoded, rules, null);
  const after = Float32Array.from(parameters);
  if (round.aggregated) optimizer.step(after, round.aggregated);
  return {
    parameters: [...parameters],
    parametersSha256: before,
    updates: messages.map(hex),
    rules,
    outer,
    aggregate: [...(round.aggregated ?? [])],
    assessments: round.assessments,
    after: [...after],
    modelHash: hex(sha256(new Uint8Array(after.buffer))),
  };
}

/** Three commits and a stray copy of the second signed by a stranger: intact, one rejected. */
async function ledgerVector() {
  let prevHash: Uint8Array = new Uint8Array(32);
  const records: { sequence: number; data: Uint8Array }[] = [];
  const commits: Uint8Array[] = [];
  for (let round = 1; round <= 3; round++) {
    const commit: Commit = {
      round,
      attempt: 0,
      prevHash,
      specHash,
      coordinator: { memberId: "alpha", workerId: "w0" },
      closedBy: "all-in",
      activeMembers: 1,
      committedAtMs: 1_800_000_000_000 + round,
      entries: [
        { memberId: "alpha", workerId: "w0", publicKey: alpha.publicKey, digest, size: 99 },
      ],
      checkpoint: undefined,
      scores: [],
      agreement: undefined,
    };
    const data = wire.encodeCommit(commit, alpha.privateKey);
    commits.push(data);
    prevHash = sha256(data);
  }
  const stray = wire.encodeCommit(
    { ...wire.decodeCommit(commits[1]!).body, round: 4, prevHash },
    stranger.privateKey,
  );
  for (const data of [commits[0]!, commits[1]!, stray, commits[2]!, commits[1]!])
    records.push({ sequence: records.length + 1, data });
  const keys = new Map([["alpha", alpha.publicKey]]);
  const report = await verifyLedger(records, { memberKeys: keys });
  return {
    memberKeys: { alpha: toBase64(alpha.publicKey) },
    records: records.map((r) => ({ sequence: r.sequence, hex: hex(r.data) })),
    verdict: {
      ok: report.ok,
      rounds: report.rounds,
      head: report.head,
      rejected: report.rejected,
      problems: report.problems,
    },
  };
}

/** Every vector, as the file holds them. */
export async function buildVectors(): Promise<unknown> {
  return {
    about:
      "fedtrain protocol conformance vectors; docs/protocol-vectors/README.md says how to read them",
    keys: [alpha, beta, organiser, stranger].map((k) => ({
      label: k.label,
      privateKeyHex: hex(k.privateKey),
      publicKeyBase64: toBase64(k.publicKey),
    })),
    specHashes: specVariants().map(({ name, federation }) => ({
      name,
      federation,
      canonical: canonicalJson(canonicalFederation(federation)),
      hash: federationSpecHash(federation),
    })),
    messages: messages(),
    updates: updates(),
    apply: applyVector(),
    ledger: await ledgerVector(),
    payloadDigest: { input: "616263", blake3: hex(payloadDigest(new TextEncoder().encode("abc"))) },
    modelHashOfZeros: toHex(sha256(new Uint8Array(16))),
  };
}

/** The file's text: two-space JSON with a final newline. */
export async function vectorsText(): Promise<string> {
  return `${JSON.stringify(await buildVectors(), jsonBytes, 2)}\n`;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  await mkdir(path.dirname(vectorsFile), { recursive: true });
  await writeFile(vectorsFile, await vectorsText());
  console.log(`wrote ${path.relative(repoRoot, vectorsFile)}`);
}
