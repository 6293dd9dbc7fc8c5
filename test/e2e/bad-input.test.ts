// End-to-end scenario 5, bad input: (a) a member whose spec.federation differs from the others'
// is refused, with a clear condition in its own status and shown as Refused in the others',
// while the rest train on; (b) under the Allowlist policy, a member whose key is not the listed
// one is refused (its status says what to give the organiser) and never contributes, while the
// listed members train on.
import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { test } from "node:test";
import type { TrainingFederation } from "../../core/api/types.generated.js";
import type { FederationBed, MemberView } from "../../testbed/federation-bed.js";
import {
  condition,
  federationBedPerFile,
  memberManifest,
  members,
  waitForViews,
} from "./support.js";

const [alpine, birch, cedar] = members as [string, string, string];
// Enough rounds that the honest members are still training while the refusal is checked.
const schedule = { rounds: 6, innerSteps: 10 };
const roundsToSee = 3;

let bed: FederationBed;
// Each scenario runs in its own namespace, opted in to the operator when the chart is installed.
federationBedPerFile(
  (up) => {
    bed = up;
  },
  { namespaces: ["arith-drift", "arith-closed"] },
);

/** The demo's manifest under another name, namespace and federation id, on a short schedule. */
async function manifest(member: string, id: string): Promise<TrainingFederation> {
  const tf = await memberManifest(bed, member);
  tf.metadata = { name: id, namespace: id };
  tf.spec.federation.id = id;
  tf.spec.federation.training = { ...tf.spec.federation.training, ...schedule };
  return tf;
}

function randomPublicKey(): string {
  const der = generateKeyPairSync("ed25519").publicKey.export({ format: "der", type: "spki" });
  return der.subarray(-32).toString("base64");
}

test("a member whose spec.federation differs is refused and the others train on", async (t) => {
  const id = "arith-drift";
  for (const member of members) {
    const tf = await manifest(member, id);
    // cedar's copy of the shared base drifted: another seed.
    if (member === cedar) tf.spec.federation.training.seed = 8;
    await bed.apply(member, tf);
  }
  const views = await waitForViews(
    bed,
    t,
    "cedar refused while alpine and birch commit rounds",
    (v) => {
      const [a, b, c] = v as [MemberView, MemberView, MemberView];
      const seenByAlpine = a.status?.members?.find((m) => m.id === cedar);
      const ok =
        seenByAlpine?.state === "Refused" &&
        condition(c, "Joined")?.reason === "SpecHashMismatch" &&
        (a.status?.round ?? 0) >= roundsToSee &&
        (b.status?.round ?? 0) >= roundsToSee;
      return ok ? v : undefined;
    },
    id,
    id,
  );
  const [a, , c] = views as [MemberView, MemberView, MemberView];
  assert.match(a.status?.members?.find((m) => m.id === cedar)?.reason ?? "", /spec hash/);
  const joined = condition(c, "Joined");
  assert.equal(joined?.status, "False");
  assert.match(joined?.message ?? "", /spec\.federation|spec hash/);
  assert.equal(condition(c, "Ready")?.status, "False", "cedar is not Ready");
  // No commit includes an update of the refused member.
  assert.equal(a.status?.members?.find((m) => m.id === cedar)?.roundsContributed ?? 0, 0);
  for (const m of [alpine, birch])
    assert.ok((a.status?.members?.find((x) => x.id === m)?.roundsContributed ?? 0) > 0, m);

  for (const member of members) await bed.delete(member, id, id);
});

test("under the Allowlist policy a member with an unlisted key is refused", async (t) => {
  const id = "arith-closed";
  // Each member's operator creates its key pair on the first reconcile; 0 replicas start nothing.
  for (const member of members) {
    const tf = await manifest(member, id);
    tf.spec.contribution.replicas = 0;
    await bed.apply(member, tf);
  }
  const keys = await waitForViews(
    bed,
    t,
    "every member's public key in status",
    (views) =>
      views.every((v) => v.status?.publicKey)
        ? new Map(views.map((v) => [v.member, v.status?.publicKey ?? ""]))
        : undefined,
    id,
    id,
  );
  // The organiser lists alpine and birch by their keys, and cedar by a key that is not cedar's
  // (a stale or mistyped entry, or an impostor using the id).
  const allowlist = [
    { id: alpine, publicKey: keys.get(alpine)! },
    { id: birch, publicKey: keys.get(birch)! },
    { id: cedar, publicKey: randomPublicKey() },
  ];
  for (const member of members) {
    const tf = await manifest(member, id);
    tf.spec.federation.membership = { policy: "Allowlist", members: allowlist, organiserKeys: [] };
    await bed.apply(member, tf);
  }
  // cedar's operator sees its own key is not the listed one: it runs no trainer and says why.
  const views = await waitForViews(
    bed,
    t,
    "cedar refused while alpine and birch commit",
    (v) => {
      const [a, b, c] = v as [MemberView, MemberView, MemberView];
      const ok =
        condition(c, "Ready")?.status === "False" &&
        (a.status?.round ?? 0) >= roundsToSee &&
        (b.status?.round ?? 0) >= roundsToSee;
      return ok ? v : undefined;
    },
    id,
    id,
  );
  const [a, , c] = views as [MemberView, MemberView, MemberView];
  const ready = condition(c, "Ready");
  assert.match(ready?.message ?? "", /public key/);
  assert.ok(
    ready?.message.includes(keys.get(cedar)!),
    `the message gives cedar's key: ${ready?.message}`,
  );
  assert.equal(c.status?.trainers?.ready ?? 0, 0, "cedar runs no trainer");
  assert.equal(a.status?.members?.find((m) => m.id === cedar)?.roundsContributed ?? 0, 0);
  const ledger = await bed.verifyLedger(id);
  assert.equal(ledger.code, 0, ledger.output);
});
