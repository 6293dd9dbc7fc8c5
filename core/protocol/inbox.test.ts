import assert from "node:assert/strict";
import crypto from "node:crypto";
import { describe, test } from "node:test";
import { Admission } from "./admission.js";
import { PayloadHasher, payloadDigest } from "./digest.js";
import type { RejectReason } from "./errors.js";
import { generateKeyPair, sha256, toBase64 } from "./identity.js";
import { PayloadPool, RoundInbox } from "./inbox.js";
import { encodeChunkHeader, encodeManifest, encodeStored } from "./wire.js";

const alpha = generateKeyPair();
const specHash = sha256(new Uint8Array([1]));

function admission(): Admission {
  const a = new Admission(
    {
      membership: {
        policy: "Allowlist",
        members: [{ id: "alpha", publicKey: toBase64(alpha.publicKey) }],
        organiserKeys: [],
      },
    },
    specHash,
  );
  a.observe({ memberId: "alpha", specHash, registeredAtMs: 0, revision: 1 }, alpha.publicKey);
  return a;
}

function inbox(
  options: {
    maxUpdateBytes?: number;
    maxRoundBytes?: number;
    validate?: (payload: Uint8Array) => void;
    allocate?: (size: number) => Uint8Array;
  } = {},
) {
  const drops: RejectReason[] = [];
  const gaps: number[] = [];
  const gate = admission();
  const box = new RoundInbox({
    round: 3,
    maxUpdateBytes: options.maxUpdateBytes ?? 1 << 20,
    maxRoundBytes: options.maxRoundBytes ?? 1 << 22,
    admit: (m, k) => gate.check(m, k),
    reject: (reason) => drops.push(reason),
    onGap: () => gaps.push(1),
    ...(options.validate ? { validate: options.validate } : {}),
    ...(options.allocate ? { allocate: options.allocate } : {}),
  });
  return { box, drops, gaps };
}

function stored(payload: Uint8Array, worker = "w0", signer = alpha.privateKey): Uint8Array {
  return encodeStored(
    { round: 3, memberId: "alpha", workerId: worker, digest: payloadDigest(payload) },
    signer,
  );
}

const subject = (worker = "w0", round = 3) => `fedtrain.f.update.${round}.alpha.${worker}`;

function messages(payload: Uint8Array, chunkSize: number, worker = "w0", round = 3): Uint8Array[] {
  const chunkCount = Math.ceil(payload.length / chunkSize);
  const out = [
    encodeManifest(
      {
        round,
        memberId: "alpha",
        workerId: worker,
        size: payload.length,
        digest: payloadDigest(payload),
        chunkSize,
        chunkCount,
      },
      alpha.privateKey,
    ),
  ];
  for (let i = 0; i < chunkCount; i++)
    out.push(
      new Uint8Array([
        ...encodeChunkHeader(i),
        ...payload.subarray(i * chunkSize, (i + 1) * chunkSize),
      ]),
    );
  return out;
}

describe("RoundInbox", () => {
  test("reassembles a chunked payload and verifies its digest", () => {
    const { box, drops } = inbox();
    const payload = new Uint8Array(crypto.randomBytes(10_000));
    for (const m of messages(payload, 3000)) box.handle(subject(), m);
    assert.deepEqual(drops, []);
    const update = box.complete.get("alpha.w0");
    assert.deepEqual(update?.payload, payload);
    assert.ok(box.find("alpha", "w0", payloadDigest(payload)));
  });

  test("accepts chunks in any order and the manifest's copies from other shards", () => {
    const { box, drops } = inbox();
    const payload = new Uint8Array(crypto.randomBytes(10_000));
    const [manifest, ...chunks] = messages(payload, 3000);
    for (const m of [manifest!, manifest!, ...chunks.reverse(), manifest!])
      box.handle(subject(), m);
    assert.deepEqual(drops, []);
    assert.deepEqual(box.complete.get("alpha.w0")?.payload, payload);
  });

  test("accepts an empty payload", () => {
    const { box, drops } = inbox();
    for (const m of messages(new Uint8Array(0), 3000)) box.handle(subject(), m);
    assert.deepEqual(drops, []);
    assert.equal(box.complete.get("alpha.w0")?.payload.length, 0);
  });

  const cases: [string, (ms: Uint8Array[]) => Uint8Array[], RejectReason][] = [
    ["a chunk index beyond the manifest", (ms) => [ms[0]!, setIndex(ms[1]!, 9)], "malformed"],
    ["a chunk twice", (ms) => [ms[0]!, ms[1]!, ms[1]!], "replayed"],
    ["a short chunk", (ms) => [ms[0]!, ms[1]!.subarray(0, 100)], "truncated"],
    [
      "a changed chunk",
      (ms) => [ms[0]!, ms[1]!.map((b, i) => (i === 20 ? b ^ 1 : b)), ms[2]!, ms[3]!],
      "digest-mismatch",
    ],
    [
      "a second, different manifest",
      (ms) => [...ms, messages(new Uint8Array(10).fill(9), 3000)[0]!],
      "replayed",
    ],
    ["a chunk without manifest", (ms) => [ms[1]!], "malformed"],
  ];
  for (const [name, mutate, reason] of cases) {
    test(`drops ${name} as ${reason}`, () => {
      const { box, drops } = inbox();
      for (const m of mutate(messages(new Uint8Array(9000).fill(3), 3000)))
        box.handle(subject(), m);
      assert.ok(drops.includes(reason), `${drops}`);
    });
  }

  test("drops an update of another round as a replay", () => {
    const { box, drops } = inbox();
    for (const m of messages(new Uint8Array(10), 3000, "w0", 2)) box.handle(subject("w0", 3), m);
    assert.deepEqual(drops.slice(0, 1), ["replayed"]);
  });

  test("drops an update from an unknown key", () => {
    const { box, drops } = inbox();
    const stranger = generateKeyPair();
    const m = encodeManifest(
      {
        round: 3,
        memberId: "alpha",
        workerId: "w0",
        size: 1,
        digest: payloadDigest(new Uint8Array(1)),
        chunkSize: 1,
        chunkCount: 1,
      },
      stranger.privateKey,
    );
    box.handle(subject(), m);
    assert.deepEqual(drops, ["unknown-key"]);
  });

  test("bounds memory: oversized updates and rounds are refused before buffering", () => {
    const { box, drops } = inbox({ maxUpdateBytes: 5000, maxRoundBytes: 8000 });
    for (const m of messages(new Uint8Array(6000), 3000, "w0")) box.handle(subject("w0"), m);
    assert.deepEqual(drops, ["oversized"]);
    for (const m of messages(new Uint8Array(5000), 3000, "w1")) box.handle(subject("w1"), m);
    for (const m of messages(new Uint8Array(5000), 3000, "w2")) box.handle(subject("w2"), m);
    assert.deepEqual(drops, ["oversized", "oversized"]);
    assert.equal(box.bytes, 5000);
  });
});

describe("RoundInbox, live and from the update streams", () => {
  const payload = new Uint8Array(crypto.randomBytes(9000));

  test("an update may be committed only once its stored notice is in", () => {
    const { box, drops } = inbox();
    for (const m of messages(payload, 3000)) box.handle(subject(), m, "live");
    assert.ok(box.complete.has("alpha.w0"));
    assert.equal(box.committable().size, 0);
    box.handle(subject(), stored(payload), "live");
    assert.deepEqual([...box.committable().keys()], ["alpha.w0"]);
    assert.deepEqual(drops, []);
  });

  test("the streams' copies of live messages are dropped quietly, other copies are counted", () => {
    const { box, drops } = inbox();
    const all = [...messages(payload, 3000), stored(payload)];
    for (const m of all) box.handle(subject(), m, "live");
    for (const m of all) box.handle(subject(), m, "stored");
    assert.deepEqual(drops, []);
    box.handle(subject(), all[1]!, "live");
    assert.deepEqual(drops, ["replayed"]);
  });

  test("a live chunk or notice without its manifest, or a notice before the chunks, is a gap", () => {
    const [manifest, ...chunks] = messages(payload, 3000);
    const missed = inbox();
    missed.box.handle(subject(), chunks[0]!, "live");
    missed.box.handle(subject(), stored(payload), "live");
    assert.equal(missed.gaps.length, 2);
    assert.deepEqual(missed.drops, []);
    const early = inbox();
    early.box.handle(subject(), manifest!, "live");
    early.box.handle(subject(), chunks[0]!, "live");
    early.box.handle(subject(), stored(payload), "live");
    assert.equal(early.gaps.length, 1);
    for (const m of chunks.slice(1)) early.box.handle(subject(), m, "stored");
    assert.deepEqual([...early.box.committable().keys()], ["alpha.w0"]);
    const fromStore = inbox();
    fromStore.box.handle(subject(), chunks[0]!, "stored");
    assert.deepEqual(fromStore.drops, ["malformed"]);
    assert.equal(fromStore.gaps.length, 0);
  });

  test("a stored notice for another digest or by another key is refused", () => {
    const { box, drops } = inbox();
    for (const m of messages(payload, 3000)) box.handle(subject(), m, "live");
    box.handle(subject(), stored(new Uint8Array(3)), "live");
    box.handle(subject(), stored(payload, "w0", generateKeyPair().privateKey), "live");
    assert.deepEqual(drops, ["malformed", "unknown-key"]);
    assert.equal(box.committable().size, 0);
  });

  test("a manifest another key signed on a member's subject does not take its slot", () => {
    const { box, drops } = inbox();
    // Another member (or anyone) publishes first on alpha's subject, with its own key and chunks.
    const mallory = generateKeyPair();
    const forged = messages(payload, 3000).map((m, i) =>
      i === 0
        ? encodeManifest(
            {
              round: 3,
              memberId: "alpha",
              workerId: "w0",
              size: payload.length,
              digest: payloadDigest(payload),
              chunkSize: 3000,
              chunkCount: 3,
            },
            mallory.privateKey,
          )
        : m,
    );
    for (const m of [...forged.slice(0, 2), stored(payload, "w0", mallory.privateKey)])
      box.handle(subject(), m, "live");
    assert.deepEqual(drops, ["unknown-key"], "counted once; its chunk and notice quietly");
    // Alpha's own update, sent afterwards, is taken and committable.
    for (const m of [...messages(payload, 3000), stored(payload)]) box.handle(subject(), m, "live");
    assert.deepEqual(drops, ["unknown-key"]);
    assert.deepEqual(box.find("alpha", "w0", payloadDigest(payload))?.payload, payload);
    assert.equal(box.committable().size, 1);
  });

  test("an update the model cannot use is counted and never committable", () => {
    const { box, drops } = inbox({
      validate: (p) => {
        if (p[0] === 0xff) throw new RangeError("does not decode");
      },
    });
    const bad = new Uint8Array(9000).fill(0xff);
    for (const m of [...messages(bad, 3000), stored(bad)]) box.handle(subject(), m, "live");
    assert.deepEqual(drops, ["malformed"]);
    assert.ok(box.find("alpha", "w0", payloadDigest(bad)), "kept, in case a commit names it");
    assert.equal(box.isUnusable("alpha", "w0"), true);
    assert.equal(box.committable().size, 0);
  });
});

describe("Admission.required", () => {
  const table: [{ minMembers?: number; fraction?: number }, number, number][] = [
    [{}, 5, 1],
    [{ minMembers: 2 }, 5, 2],
    [{ fraction: 0.5 }, 5, 3],
    [{ fraction: 0.5 }, 4, 2],
    [{ fraction: 1 }, 3, 3],
    [{ minMembers: 3, fraction: 0.1 }, 10, 3],
    [{ fraction: 0.3 }, 0, 1],
  ];
  for (const [quorum, active, want] of table)
    test(`${JSON.stringify(quorum)} of ${active} active needs ${want}`, () => {
      assert.equal(Admission.required(quorum, active), want);
    });
});

describe("Admission.check", () => {
  test("refuses a member whose record carries another spec hash", () => {
    const gate = admission();
    assert.equal(gate.check("alpha", alpha.publicKey), undefined);
    gate.observe(
      { memberId: "alpha", specHash: sha256(new Uint8Array([2])), registeredAtMs: 1, revision: 1 },
      alpha.publicKey,
    );
    assert.equal(gate.check("alpha", alpha.publicKey), "spec-mismatch");
  });

  test("under Open, the first key seen for a member id keeps it", () => {
    const gate = new Admission(
      { membership: { policy: "Open", members: [], organiserKeys: [] } },
      specHash,
    );
    const other = generateKeyPair();
    assert.equal(
      gate.observe({ memberId: "m", specHash, registeredAtMs: 0, revision: 1 }, alpha.publicKey),
      true,
    );
    assert.equal(
      gate.observe({ memberId: "m", specHash, registeredAtMs: 0, revision: 1 }, other.publicKey),
      false,
    );
    assert.equal(gate.check("m", other.publicKey), "unknown-key");
    assert.equal(gate.check("m", alpha.publicKey), undefined);
  });
});

function setIndex(chunk: Uint8Array, index: number): Uint8Array {
  const out = new Uint8Array(chunk);
  new DataView(out.buffer).setUint32(4, index);
  return out;
}

describe("payload digest", () => {
  // Published BLAKE3 test values: the empty input, and "abc".
  test("is BLAKE3-256", () => {
    assert.equal(
      Buffer.from(payloadDigest(new Uint8Array(0))).toString("hex"),
      "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
    );
    assert.equal(
      Buffer.from(payloadDigest(new TextEncoder().encode("abc"))).toString("hex"),
      "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85",
    );
  });

  test("fed in chunks equals the digest of the whole", () => {
    const payload = new Uint8Array(crypto.randomBytes(300_001));
    const hasher = new PayloadHasher();
    for (let at = 0; at < payload.length; at += 65_536)
      hasher.update(payload.subarray(at, at + 65_536));
    assert.deepEqual(hasher.digest(), payloadDigest(payload));
    assert.notDeepEqual(payloadDigest(payload), sha256(payload));
  });
});

describe("PayloadPool", () => {
  test("hands an applied round's buffers to the next round's downloads, stale bytes overwritten", () => {
    const pool = new PayloadPool(1 << 22);
    const first = inbox({ allocate: (size) => pool.take(size) });
    const one = new Uint8Array(crypto.randomBytes(10_000));
    for (const m of messages(one, 3000)) first.box.handle(subject(), m);
    const buffer = first.box.complete.get("alpha.w0")!.payload;
    pool.recycle(first.box.downloadedPayloads());
    assert.equal(pool.bytes, 10_000);

    const second = inbox({ allocate: (size) => pool.take(size) });
    const two = new Uint8Array(crypto.randomBytes(10_000));
    for (const m of messages(two, 3000)) second.box.handle(subject(), m);
    const update = second.box.complete.get("alpha.w0")!;
    assert.equal(update.payload.buffer, buffer.buffer, "the recycled buffer was reused");
    assert.deepEqual(update.payload, two);
    assert.deepEqual(second.drops, []);
    assert.equal(pool.bytes, 0);
  });

  test("keeps only the last recycled round, within its byte limit, and never a view", () => {
    const pool = new PayloadPool(25);
    pool.recycle([new Uint8Array(10), new Uint8Array(10)]);
    assert.equal(pool.bytes, 20);
    pool.recycle([new Uint8Array(8), new Uint8Array(10), new Uint8Array(10), new Uint8Array(10)]);
    assert.equal(pool.bytes, 18, "the earlier round's buffers are let go; the limit holds");
    pool.recycle([new Uint8Array(64).subarray(0, 10)]);
    assert.equal(pool.bytes, 0);
    const fresh = pool.take(10);
    assert.equal(fresh.length, 10);
    assert.equal(fresh.buffer.byteLength, 10);
  });

  test("never lends out the caller's own update", () => {
    const { box } = inbox();
    const payload = new Uint8Array(100);
    box.addLocal(
      {
        round: 3,
        memberId: "alpha",
        workerId: "w0",
        size: 100,
        digest: payloadDigest(payload),
        chunkSize: 100,
        chunkCount: 1,
      },
      alpha.publicKey,
      payload,
    );
    assert.deepEqual(box.downloadedPayloads(), []);
  });
});
