import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { commitEntry, signedCommits } from "../../test/fixtures/commits.js";
import { Admission } from "./admission.js";
import { generateKeyPair, type KeyPair, toBase64 } from "./identity.js";
import { verifyLedger } from "./ledger.js";
import type { CommitEntry } from "./types.js";
import { PROTOCOL_REVISION } from "./wire.js";

const specHash = new Uint8Array(32).fill(7);
const open = {
  membership: { policy: "Open" as const, members: [], organiserKeys: [] },
};
const record = (memberId: string, revision = PROTOCOL_REVISION) => ({
  memberId,
  specHash,
  registeredAtMs: 1,
  revision,
});

describe("admission by protocol revision", () => {
  test("a member whose record has no revision (protocol 1.0) is refused, never mixed in", () => {
    const admission = new Admission(open, specHash);
    const key = generateKeyPair().publicKey;
    admission.observe(record("elder", 0), key);
    assert.equal(admission.check("elder", key), "unsupported-version");
    assert.match(
      admission.refusal("elder", key, specHash, 0) ?? "",
      /its trainers speak protocol 1\.0, this member 1\.1/,
    );
    admission.observe(record("elder"), key);
    assert.equal(admission.check("elder", key), undefined);
  });
});

describe("admission of a member that leaves and rejoins with a new key", () => {
  const oldKey = generateKeyPair().publicKey;
  const newKey = generateKeyPair().publicKey;

  test("Open: the first key seen keeps the member id while its record stands", () => {
    const admission = new Admission(open, specHash);
    assert.equal(admission.observe(record("cedar"), oldKey), true);
    assert.equal(admission.observe(record("cedar"), newKey), false);
    assert.equal(admission.check("cedar", newKey), "unknown-key");
  });

  test("Open: after its record was deregistered, the member id is admitted with a new key", () => {
    const admission = new Admission(open, specHash);
    admission.observe(record("cedar"), oldKey);
    admission.forget("cedar");
    assert.equal(admission.observe(record("cedar"), newKey), true);
    assert.equal(admission.check("cedar", newKey), undefined);
    assert.equal(admission.check("cedar", oldKey), "unknown-key");
  });

  test("Allowlist: a new key is refused until the organiser lists it", () => {
    const listed = (key: Uint8Array) =>
      new Admission(
        {
          membership: {
            policy: "Allowlist",
            members: [{ id: "cedar", publicKey: toBase64(key) }],
            organiserKeys: [],
          },
        },
        specHash,
      );
    const before = listed(oldKey);
    before.observe(record("cedar"), oldKey);
    before.forget("cedar");
    assert.equal(before.observe(record("cedar"), newKey), false);
    assert.equal(listed(newKey).observe(record("cedar"), newKey), true);
  });
});

describe("ledger verification across a member's key change", () => {
  const alpine = generateKeyPair();
  const cedarOld = generateKeyPair();
  const cedarNew = generateKeyPair();
  const entry = commitEntry;

  /** A chain of commits, one per round, each with these entries and signed by its coordinator. */
  const chain = (rounds: [signer: KeyPair, coordinator: string, entries: CommitEntry[]][]) =>
    signedCommits(
      rounds.map(([signer, coordinator, entries]) => ({ signer, coordinator, entries })),
    );

  const memberKeys = new Map([
    ["alpine", alpine.publicKey],
    ["cedar", cedarNew.publicKey],
  ]);

  test("earlier rounds signed and contributed with the member's earlier key are intact", async () => {
    const records = chain([
      [cedarOld, "cedar", [entry("alpine", alpine.publicKey), entry("cedar", cedarOld.publicKey)]],
      [alpine, "alpine", [entry("alpine", alpine.publicKey)]],
      [alpine, "alpine", [entry("alpine", alpine.publicKey), entry("cedar", cedarNew.publicKey)]],
      [cedarNew, "cedar", [entry("alpine", alpine.publicKey), entry("cedar", cedarNew.publicKey)]],
    ]);
    const report = await verifyLedger(records, { memberKeys });
    assert.deepEqual(report.problems, []);
    assert.equal(report.rounds, 4);
  });

  test("another key after the registered key took over is refused", async () => {
    const records = chain([
      [alpine, "alpine", [entry("cedar", cedarNew.publicKey)]],
      [alpine, "alpine", [entry("cedar", cedarOld.publicKey)]],
    ]);
    const report = await verifyLedger(records, { memberKeys });
    assert.equal(report.problems[0]?.round, 2);
    assert.match(report.problems[0]?.reason ?? "", /cedar.w0 carries an unknown key/);
  });

  test("a coordinator signing with another key after its registered key signed is refused", async () => {
    const records = chain([
      [cedarNew, "cedar", [entry("cedar", cedarNew.publicKey)]],
      [cedarOld, "cedar", [entry("alpine", alpine.publicKey)]],
    ]);
    const report = await verifyLedger(records, { memberKeys });
    // Rejected as the workers reject it; signed by no key cedar may sign with, it breaks nothing.
    assert.equal(report.rounds, 1);
    assert.match(report.rejected[0]?.reason ?? "", /not member cedar's registered key/);
    assert.deepEqual(report.problems, []);
  });
});
