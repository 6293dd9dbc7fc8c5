import assert from "node:assert/strict";
import crypto from "node:crypto";
import { describe, test } from "node:test";
import { ProtocolMessageError } from "./errors.js";
import { generateKeyPair, sha256 } from "./identity.js";
import type { Commit, ControlMessage, WorkerHeartbeat } from "./types.js";
import * as wire from "./wire.js";

const keys = generateKeyPair();
const digest = sha256(new Uint8Array([1, 2, 3]));

const commit: Commit = {
  round: 7,
  attempt: 1,
  prevHash: sha256(new Uint8Array([9])),
  specHash: sha256(new Uint8Array([8])),
  coordinator: { memberId: "alpha", workerId: "w0" },
  closedBy: "deadline",
  activeMembers: 3,
  committedAtMs: 1_700_000_000_000,
  entries: [
    { memberId: "alpha", workerId: "w0", publicKey: keys.publicKey, digest, size: 10 },
    { memberId: "beta", workerId: "w1", publicKey: keys.publicKey, digest, size: 20 },
  ],
  checkpoint: { round: 6, digest, size: 99, objectName: "round-6" },
  agreement: {
    round: 6,
    hashes: [
      { memberId: "alpha", workerId: "w0", modelHash: digest },
      { memberId: "beta", workerId: "w1", modelHash: digest },
    ],
  },
  scores: [
    {
      round: 5,
      updates: [
        {
          memberId: "alpha",
          workerId: "w0",
          bound: "kept",
          cosine: 0.75,
          relativeDistance: 0.5,
          relativeNorm: 1.25,
        },
        {
          memberId: "mallory",
          workerId: "w0",
          bound: "dropped",
          cosine: -1,
          relativeDistance: Number.POSITIVE_INFINITY,
          relativeNorm: Number.POSITIVE_INFINITY,
        },
      ],
    },
    { round: 6, updates: [] },
  ],
};

/** A message of one kind: value encoded and signed, with the decoder that must give it back. */
function sample<T>(
  name: string,
  encode: (value: T, privateKey: Uint8Array) => Uint8Array,
  decode: (bytes: Uint8Array) => wire.Signed<T>,
  value: T,
) {
  return { name, bytes: encode(value, keys.privateKey), decode, value };
}

const heartbeat: WorkerHeartbeat = {
  memberId: "alpha",
  workerId: "w0",
  specHash: digest,
  state: "active",
  appliedRound: 4,
  modelHash: digest,
  loss: 0.25,
  roundsContributed: 3,
  sentAtMs: 6,
  boundedUpdates: [],
  memberScores: [],
};

/** Every message kind, encoded, with its decoder and the value it must decode to. */
const samples = [
  sample("member", wire.encodeMember, wire.decodeMember, {
    memberId: "alpha",
    specHash: digest,
    registeredAtMs: 5,
    revision: 1,
  }),
  sample("heartbeat", wire.encodeHeartbeat, wire.decodeHeartbeat, heartbeat),
  sample("heartbeat with bounded-update counts", wire.encodeHeartbeat, wire.decodeHeartbeat, {
    ...heartbeat,
    state: "leaving",
    loss: undefined,
    boundedUpdates: [
      { memberId: "alpha", clipped: 0, dropped: 2 },
      { memberId: "mallory", clipped: 4, dropped: 1 },
    ],
  }),
  sample("heartbeat with training progress only", wire.encodeHeartbeat, wire.decodeHeartbeat, {
    ...heartbeat,
    progress: { evalLoss: 1.75, bytesSent: 123_456, denseBytes: 4_000_000 },
  }),
  sample("heartbeat with progress not yet evaluated", wire.encodeHeartbeat, wire.decodeHeartbeat, {
    ...heartbeat,
    memberScores: [{ memberId: "alpha", rounds: 1, cosine: 0.5, reputation: 0.25 }],
    progress: { evalLoss: Number.NaN, bytesSent: 10, denseBytes: 40 },
  }),
  sample("heartbeat with member scores", wire.encodeHeartbeat, wire.decodeHeartbeat, {
    ...heartbeat,
    memberScores: [
      { memberId: "alpha", rounds: 7, cosine: 0.75, reputation: 0.5 },
      { memberId: "mallory", rounds: 7, cosine: -1, reputation: -0.875 },
    ],
  }),
  sample(
    "heartbeat with bounded-update counts and member scores",
    wire.encodeHeartbeat,
    wire.decodeHeartbeat,
    {
      ...heartbeat,
      boundedUpdates: [{ memberId: "mallory", clipped: 0, dropped: 7 }],
      memberScores: [{ memberId: "mallory", rounds: 7, cosine: -1, reputation: -0.875 }],
    },
  ),
  sample("manifest", wire.encodeManifest, wire.decodeManifest, {
    round: 3,
    memberId: "alpha",
    workerId: "w0",
    size: 10,
    digest,
    chunkSize: 4,
    chunkCount: 3,
  }),
  sample("commit", wire.encodeCommit, wire.decodeCommit, commit),
  sample("checkpoint", wire.encodeCheckpoint, wire.decodeCheckpoint, commit.checkpoint!),
  sample("control", wire.encodeControl, wire.decodeControl, {
    action: "pause",
    memberId: "",
    sequence: 2,
    issuedAtMs: 3,
    reason: "maintenance",
  }),
  sample("control (exclude)", wire.encodeControl, wire.decodeControl, {
    action: "exclude",
    memberId: "mallory",
    sequence: 3,
    issuedAtMs: 4,
    reason: "updates point away from every aggregate",
  }),
  sample("round status", wire.encodeRoundStatus, wire.decodeRoundStatus, {
    round: 2,
    attempt: 1,
    phase: "retrying",
    reason: "quorum",
    coordinator: { memberId: "alpha", workerId: "w0" },
    updatedAtMs: 4,
  }),
  sample("lease", wire.encodeLease, wire.decodeLease, {
    memberId: "alpha",
    workerId: "w0",
    acquiredAtMs: 1,
  }),
  sample("update stored", wire.encodeStored, wire.decodeStored, {
    round: 3,
    memberId: "alpha",
    workerId: "w0",
    digest,
  }),
];

const commitSample = samples.find((s) => s.name === "commit")!;

describe("wire format", () => {
  for (const sample of samples) {
    test(`${sample.name} round-trips with its signer`, () => {
      const decoded = (sample.decode as (b: Uint8Array) => wire.Signed<unknown>)(sample.bytes);
      assert.deepEqual(decoded.body, sample.value);
      assert.deepEqual(decoded.signer, keys.publicKey);
    });
  }

  test("the header layout is magic, version, kind, body length; then key and signature", () => {
    const bytes = samples[0]!.bytes;
    const view = new DataView(bytes.buffer, bytes.byteOffset);
    assert.equal(view.getUint16(0), 0x4654);
    assert.equal(view.getUint8(2), wire.WIRE_VERSION);
    assert.equal(view.getUint8(3), wire.Kind.member);
    const length = view.getUint32(4);
    assert.equal(bytes.length, wire.HEADER_BYTES + length + wire.TRAILER_BYTES);
    assert.deepEqual(bytes.subarray(8 + length, 8 + length + 32), keys.publicKey);
  });

  const rejects: [string, (b: Uint8Array) => Uint8Array, string][] = [
    ["a flipped body bit", (b) => flip(b, 12), "bad-signature"],
    ["a flipped signature bit", (b) => flip(b, b.length - 1), "bad-signature"],
    ["another signer's key", (b) => withKey(b, generateKeyPair().publicKey), "bad-signature"],
    ["a truncated message", (b) => b.subarray(0, b.length - 1), "truncated"],
    ["trailing bytes", (b) => new Uint8Array([...b, 0]), "malformed"],
    ["another version", (b) => set(b, 2, 2), "unsupported-version"],
    ["bad magic", (b) => set(b, 0, 0), "malformed"],
    ["a huge declared body", (b) => setU32(b, 4, 0xffffffff), "oversized"],
  ];
  for (const [name, mutate, reason] of rejects) {
    test(`rejects ${name} as ${reason}`, () => {
      assert.throws(
        () => wire.decodeCommit(mutate(commitSample.bytes)),
        (e: unknown) => e instanceof ProtocolMessageError && e.reason === reason,
      );
    });
  }

  test("a heartbeat in the layout before bounded-update counts still decodes, with none", () => {
    const name = (s: string) => [0, s.length, ...Buffer.from(s)];
    const u64 = (v: number) => [0, 0, 0, 0, 0, 0, 0, v];
    const loss = Buffer.alloc(8);
    loss.writeDoubleBE(0.5);
    const body = new Uint8Array([
      ...name("alpha"),
      ...name("w0"),
      ...digest,
      1,
      ...u64(4),
      ...digest,
      ...loss,
      ...u64(3),
      ...u64(6),
    ]);
    const decoded = wire.decodeHeartbeat(resign(wire.Kind.heartbeat, body)).body;
    assert.deepEqual(decoded.boundedUpdates, []);
    assert.deepEqual(decoded.memberScores, []);
    assert.equal(decoded.sentAtMs, 6);
    // Without counts the encoder writes exactly that older layout.
    const encoded = wire.encodeHeartbeat(decoded, keys.privateKey);
    assert.deepEqual(encoded.subarray(wire.HEADER_BYTES, wire.HEADER_BYTES + body.length), body);
    assert.equal(encoded.length, wire.HEADER_BYTES + body.length + wire.TRAILER_BYTES);
  });

  test("a commit with model hashes and no scores round-trips", () => {
    const hashesOnly = { ...commit, scores: [] };
    assert.deepEqual(
      wire.decodeCommit(wire.encodeCommit(hashesOnly, keys.privateKey)).body,
      hashesOnly,
    );
  });

  test("a commit without scores is the layout before scores, and decodes with none", () => {
    const bare = { ...commit, scores: [], agreement: undefined };
    const bytes = wire.encodeCommit(bare, keys.privateKey);
    const withScores = wire.encodeCommit({ ...commit, agreement: undefined }, keys.privateKey);
    // The scores are a trailing field: the bytes before it are the same.
    const bodyLength = bytes.length - wire.HEADER_BYTES - wire.TRAILER_BYTES;
    assert.deepEqual(
      withScores.subarray(wire.HEADER_BYTES, wire.HEADER_BYTES + bodyLength),
      bytes.subarray(wire.HEADER_BYTES, wire.HEADER_BYTES + bodyLength),
    );
    assert.deepEqual(wire.decodeCommit(bytes).body, bare);
  });

  test("rejects a commit whose update score is out of range", () => {
    for (const change of [
      { cosine: 1.5 },
      { relativeNorm: -1 },
      { relativeDistance: Number.NaN },
    ]) {
      const round = {
        ...commit.scores[0]!,
        updates: [{ ...commit.scores[0]!.updates[0]!, ...change }],
      };
      const bytes = wire.encodeCommit({ ...commit, scores: [round] }, keys.privateKey);
      assert.throws(
        () => wire.decodeCommit(bytes),
        (e: unknown) => e instanceof ProtocolMessageError && e.reason === "malformed",
      );
    }
  });

  test("an exclusion names its member; a pause names none", () => {
    const control: ControlMessage = {
      action: "exclude",
      memberId: "",
      sequence: 1,
      issuedAtMs: 1,
      reason: "",
    };
    assert.throws(() => wire.encodeControl(control, keys.privateKey), /needs memberId/);
    assert.throws(
      () => wire.encodeControl({ ...control, action: "pause", memberId: "x" }, keys.privateKey),
      /takes no memberId/,
    );
  });

  test("rejects a heartbeat with a member score outside [-1, 1]", () => {
    const bytes = wire.encodeHeartbeat(
      {
        ...heartbeat,
        memberScores: [{ memberId: "mallory", rounds: 1, cosine: -1, reputation: 3 }],
      },
      keys.privateKey,
    );
    assert.throws(
      () => wire.decodeHeartbeat(bytes),
      (e: unknown) => e instanceof ProtocolMessageError && e.reason === "malformed",
    );
  });

  test("rejects a heartbeat whose bounded-update counts are cut short", () => {
    const full = samples.find((s) => s.name === "heartbeat with bounded-update counts")!.bytes;
    const length = new DataView(full.buffer, full.byteOffset).getUint32(4);
    const body = full.subarray(wire.HEADER_BYTES, wire.HEADER_BYTES + length - 1);
    assert.throws(
      () => wire.decodeHeartbeat(resign(wire.Kind.heartbeat, body)),
      (e: unknown) => e instanceof ProtocolMessageError && e.reason === "truncated",
    );
  });

  test("rejects a message of another kind", () => {
    assert.throws(() => wire.decodeCommit(samples[0]!.bytes), ProtocolMessageError);
  });

  test("chunks carry their index", () => {
    const data = new Uint8Array([...wire.encodeChunkHeader(5), 1, 2, 3]);
    const chunk = wire.decodeChunk(data);
    assert.equal(chunk.index, 5);
    assert.deepEqual([...chunk.data], [1, 2, 3]);
    assert.throws(() => wire.decodeChunk(data.subarray(0, 4)), ProtocolMessageError);
  });

  test("ids must be DNS labels (they become subject tokens and KV keys)", () => {
    for (const ok of ["a", "alpha-1", "w0"]) assert.equal(wire.isValidId(ok), true, ok);
    for (const bad of ["", "A", "a.b", "a*", "-a", "a-", "x".repeat(64)])
      assert.equal(wire.isValidId(bad), false, bad);
  });

  test("fuzz: 12,000 mutated messages never crash a decoder nor grow memory unboundedly", () => {
    const decoders = samples.map((s) => s.decode as (b: Uint8Array) => unknown);
    const random = seeded(42);
    const heapBefore = process.memoryUsage().heapUsed;
    let accepted = 0;
    for (let i = 0; i < 12_000; i++) {
      const base = samples[i % samples.length]!.bytes;
      const bytes = mutate(base, random);
      for (const decode of [...decoders, wire.decodeChunk]) {
        try {
          decode(bytes);
          accepted++;
        } catch (error) {
          assert.ok(error instanceof ProtocolMessageError, `unexpected ${String(error)}`);
        }
      }
    }
    // Only mutations that left the signed bytes intact may decode (e.g. chunk parses).
    assert.ok(accepted < 12_000 * 2);
    global.gc?.();
    assert.ok(process.memoryUsage().heapUsed - heapBefore < 200 * 1024 * 1024);
  });
});

function flip(b: Uint8Array, at: number): Uint8Array {
  const out = new Uint8Array(b);
  out[at]! ^= 1;
  return out;
}

function set(b: Uint8Array, at: number, value: number): Uint8Array {
  const out = new Uint8Array(b);
  out[at] = value;
  return out;
}

function setU32(b: Uint8Array, at: number, value: number): Uint8Array {
  const out = new Uint8Array(b);
  new DataView(out.buffer).setUint32(at, value);
  return out;
}

function withKey(b: Uint8Array, key: Uint8Array): Uint8Array {
  const out = new Uint8Array(b);
  out.set(key, out.length - 96);
  return out;
}

function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** Bit flips, byte overwrites, truncations, extensions, length-field lies and random bytes. */
function mutate(base: Uint8Array, random: () => number): Uint8Array {
  const choice = Math.floor(random() * 7);
  const at = Math.floor(random() * base.length);
  switch (choice) {
    case 0:
      return flip(base, at);
    case 1:
      return set(base, at, Math.floor(random() * 256));
    case 2:
      return base.subarray(0, at);
    case 3:
      return new Uint8Array([...base, ...crypto.randomBytes(Math.floor(random() * 64))]);
    case 4:
      return setU32(base, 4, Math.floor(random() * 2 ** 32));
    case 5:
      return new Uint8Array(crypto.randomBytes(Math.floor(random() * 512)));
    default: {
      // A structurally valid, freshly signed message whose body is random: exercises the
      // field decoders behind a good signature.
      const body = crypto.randomBytes(Math.floor(random() * 300));
      const kind = [1, 2, 3, 4, 5, 6, 7, 8][Math.floor(random() * 8)]!;
      return resign(kind, body);
    }
  }
}

function resign(kind: number, body: Uint8Array): Uint8Array {
  const signed = new Uint8Array(8 + body.length + 32);
  const view = new DataView(signed.buffer);
  view.setUint16(0, wire.MAGIC);
  view.setUint8(2, wire.WIRE_VERSION);
  view.setUint8(3, kind);
  view.setUint32(4, body.length);
  signed.set(body, 8);
  signed.set(keys.publicKey, 8 + body.length);
  const privateKey = crypto.createPrivateKey({
    key: Buffer.concat([Buffer.from("302e020100300506032b657004220420", "hex"), keys.privateKey]),
    format: "der",
    type: "pkcs8",
  });
  const signature = crypto.sign(null, signed, privateKey);
  return new Uint8Array([...signed, ...signature]);
}
