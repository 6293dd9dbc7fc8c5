import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { TrainingFederation } from "../../../core/api/index.js";
import type { FederationView, MemberView, WorkerView } from "../../../core/protocol/index.js";
import { federation } from "../../../test/fixtures/federation.js";
import {
  type FederationObservation,
  federationStatus,
  heartbeatResolutionMs,
  memberState,
  type Self,
} from "./federation-status.js";
import { assess, nextStatus, type Observation, statusChanged, statusPatch } from "./status.js";

const ours = "a".repeat(64);
const theirs = "b".repeat(64);
const key = `${"K".repeat(43)}=`;
const otherKey = `${"O".repeat(43)}=`;
const self: Self = { memberId: "alpine", publicKey: key, federationSpecHash: `sha256:${ours}` };

const member = (
  membership: Record<string, unknown> = { policy: "Open", members: [], organiserKeys: [] },
  status?: TrainingFederation["status"],
): TrainingFederation =>
  federation().id("fed").rounds(50).membership(membership).status(status).build();

const worker = (over: Partial<WorkerView> = {}): WorkerView => ({
  workerId: "w0",
  state: "Active",
  lastHeartbeat: "2026-01-01T00:00:10.000Z",
  appliedRound: 3,
  modelHash: "1".repeat(64),
  loss: 0.5,
  ...over,
});

const memberView = (over: Partial<MemberView> = {}): MemberView => ({
  memberId: "alpine",
  publicKey: key,
  specHash: ours,
  state: "Active",
  reason: "",
  lastHeartbeat: "2026-01-01T00:00:10.000Z",
  roundsContributed: 3,
  updatesClipped: 0,
  updatesDropped: 0,
  score: undefined,
  workers: [worker()],
  ...over,
});

const view = (over: Partial<FederationView> = {}): FederationView => ({
  federationId: "fed",
  round: 4,
  roundStatus: undefined,
  paused: false,
  coordinator: { memberId: "alpine", workerId: "w0" },
  lastCommit: { round: 3, hash: "c".repeat(64), entries: 2, committedAt: "2026-01-01T00:00:09Z" },
  lastCheckpoint: { round: 2, digest: "d".repeat(64), size: 10 },
  loss: 0.5,
  members: [memberView(), memberView({ memberId: "birch", publicKey: otherKey })],
  disagreements: [],
  ...over,
});

const seen = (v: FederationView): FederationObservation => ({ kind: "view", view: v });
type Found = { status: string; reason: string; message: string };
const condition = (conditions: ({ type: string } & Found)[], type: string): Found => {
  const found = conditions.find((c) => c.type === type);
  assert.ok(found, `condition ${type}`);
  return found;
};

describe("memberState", () => {
  const cases: [string, Partial<MemberView>, string, RegExp | undefined][] = [
    ["live workers", {}, "Active", undefined],
    ["refused", { state: "Refused", reason: "not allowed" }, "Refused", /not allowed/],
    ["workers leaving", { state: "Idle", workers: [worker({ state: "Leaving" })] }, "Left", /leav/],
    ["contributed, now silent", { state: "Idle", workers: [] }, "Stale", /heartbeat/],
    ["never heartbeated", { state: "Idle", workers: [], roundsContributed: 0 }, "Joining", /yet/],
  ];
  for (const [name, over, state, reason] of cases) {
    test(name, () => {
      const got = memberState(memberView(over));
      assert.equal(got.state, state);
      if (reason) assert.match(got.reason ?? "", reason);
      else assert.equal(got.reason, undefined);
    });
  }
});

describe("federationStatus", () => {
  test("a healthy view: round, progress, members, this member's loss, checkpoint", () => {
    const { fields, conditions } = federationStatus(member(), self, seen(view()));
    assert.deepEqual(fields, {
      round: 3,
      progress: "3/50",
      activeMembers: 2,
      members: [
        {
          id: "alpine",
          state: "Active",
          trainers: 1,
          lastHeartbeat: "2026-01-01T00:00:10.000Z",
          roundsContributed: 3,
          updatesClipped: 0,
          updatesDropped: 0,
        },
        {
          id: "birch",
          state: "Active",
          trainers: 1,
          lastHeartbeat: "2026-01-01T00:00:10.000Z",
          roundsContributed: 3,
          updatesClipped: 0,
          updatesDropped: 0,
        },
      ],
      loss: 0.5,
      lastCheckpoint: { round: 2, digest: "d".repeat(64) },
    });
    assert.equal(condition(conditions, "Joined").status, "True");
    assert.equal(condition(conditions, "Synced").status, "True");
    assert.equal(condition(conditions, "Degraded").status, "False");
  });

  test("this member's evaluation loss, bytes per round and compression ratio, from its workers' progress", () => {
    const own = memberView({
      workers: [
        worker({
          workerId: "w0",
          appliedRound: 3,
          progress: { evalLoss: 1.23456, bytesSent: 1000, denseBytes: 40_000 },
        }),
        worker({
          workerId: "w1",
          appliedRound: 2,
          progress: { evalLoss: 9, bytesSent: 3000, denseBytes: 40_000 },
        }),
      ],
    });
    const { fields } = federationStatus(member(), self, seen(view({ members: [own] })));
    assert.equal(fields?.evalLoss, 1.235, "the latest round's, four digits");
    assert.equal(fields?.bytesSentPerRound, 4000);
    assert.equal(fields?.compressionRatio, 20);
    // Nothing reported yet: the fields are absent, not zero.
    const { fields: none } = federationStatus(member(), self, seen(view()));
    assert.equal(none?.evalLoss, undefined);
    assert.equal(none?.bytesSentPerRound, undefined);
    // Once the workers stop reporting (the run completed), the last report stays.
    const done = member();
    done.status = { ...done.status, ...fields };
    const { fields: after } = federationStatus(done, self, seen(view()));
    assert.equal(after?.evalLoss, 1.235);
    assert.equal(after?.bytesSentPerRound, 4000);
  });

  test("each member's clipped and dropped updates, as the view counts them", () => {
    const poisoned = view({
      members: [
        memberView(),
        memberView({
          memberId: "mallory",
          publicKey: otherKey,
          updatesClipped: 7,
          updatesDropped: 2,
        }),
      ],
    });
    const members = federationStatus(member(), self, seen(poisoned)).fields?.members ?? [];
    assert.deepEqual(
      members.map((m) => [m.id, m.updatesClipped, m.updatesDropped]),
      [
        ["alpine", 0, 0],
        ["mallory", 7, 2],
      ],
    );
  });

  test("bounded-update counts stay in the status once the workers that counted them left", () => {
    const counted = view({
      members: [memberView({ memberId: "mallory", publicKey: otherKey, updatesDropped: 3 })],
    });
    const before = federationStatus(member(), self, seen(counted)).fields?.members;
    const gone = view({ members: [memberView({ memberId: "mallory", publicKey: otherKey })] });
    const after = federationStatus({ ...member(), status: { members: before } }, self, seen(gone))
      .fields?.members;
    assert.deepEqual(
      after?.map((m) => [m.id, m.updatesClipped, m.updatesDropped]),
      [["mallory", 0, 3]],
    );
  });

  test("each member's update score, rounded, and kept once the workers that scored it left", () => {
    const scored = view({
      members: [
        memberView({
          score: { memberId: "alpine", rounds: 4, cosine: 0.91234, reputation: 0.87654 },
        }),
        memberView({
          memberId: "mallory",
          publicKey: otherKey,
          score: { memberId: "mallory", rounds: 4, cosine: -0.99991, reputation: -0.6 },
        }),
      ],
    });
    const before = federationStatus(member(), self, seen(scored)).fields?.members;
    assert.deepEqual(
      before?.map((m) => [m.id, m.updateCosine, m.reputation]),
      [
        ["alpine", 0.912, 0.877],
        ["mallory", -1, -0.6],
      ],
    );
    const gone = view({ members: [memberView({ memberId: "mallory", publicKey: otherKey })] });
    const after = federationStatus({ ...member(), status: { members: before } }, self, seen(gone))
      .fields?.members;
    assert.deepEqual(
      after?.map((m) => [m.id, m.updateCosine, m.reputation]),
      [["mallory", -1, -0.6]],
    );
  });

  const joined: [string, TrainingFederation, FederationView, string, string, RegExp][] = [
    [
      "not registered",
      member(),
      view({ members: [] }),
      "False",
      "NotRegistered",
      /alpine is not registered in federation fed/,
    ],
    [
      "not in the allowlist: names the key to give the organiser",
      member({ policy: "Allowlist", members: [{ id: "birch", publicKey: otherKey }] }),
      view(),
      "False",
      "NotAdmitted",
      new RegExp(`give the organiser .*${key.replace("+", "\\+")}`),
    ],
    [
      "not in the allowlist and so never registered: the allowlist is named, not registration",
      member({ policy: "Allowlist", members: [{ id: "birch", publicKey: otherKey }] }),
      view({ members: [] }),
      "False",
      "NotAdmitted",
      /not in federation fed's allowlist/,
    ],
    [
      "allowlisted with another key",
      member({ policy: "Allowlist", members: [{ id: "alpine", publicKey: otherKey }] }),
      view(),
      "False",
      "NotAdmitted",
      /allowlist with this key/,
    ],
    [
      "member id registered with another key",
      member(),
      view({ members: [memberView({ publicKey: otherKey })] }),
      "False",
      "NotAdmitted",
      /another public key/,
    ],
    [
      "trainers registered an older spec",
      member(),
      view({ members: [memberView({ specHash: theirs })] }),
      "False",
      "SpecHashMismatch",
      /trainers registered spec hash/,
    ],
    [
      "every other member has another spec",
      member(),
      view({ members: [memberView(), memberView({ memberId: "birch", specHash: theirs })] }),
      "False",
      "SpecHashMismatch",
      /every other member \(birch\)/,
    ],
    [
      "allowlisted with this key",
      member({ policy: "Allowlist", members: [{ id: "alpine", publicKey: key }] }),
      view({ members: [memberView()] }),
      "True",
      "Admitted",
      /registered and admitted/,
    ],
  ];
  for (const [name, tf, v, status, reason, message] of joined) {
    test(`Joined: ${name}`, () => {
      const got = condition(federationStatus(tf, self, seen(v)).conditions, "Joined");
      assert.equal(got.status, status);
      assert.equal(got.reason, reason);
      assert.match(got.message, message);
    });
  }

  test("Synced: a model hash mismatch lists who", () => {
    const v = view({
      disagreements: [
        {
          round: 3,
          worker: { memberId: "birch", workerId: "w1" },
          expected: "1".repeat(64),
          reported: "2".repeat(64),
        },
      ],
    });
    const got = condition(federationStatus(member(), self, seen(v)).conditions, "Synced");
    assert.equal(got.status, "False");
    assert.equal(got.reason, "ModelHashMismatch");
    assert.match(got.message, /birch\/w1 at round 3 reports 222222222222/);
  });

  test("Synced: Unknown before any round is applied", () => {
    const v = view({ members: [memberView({ workers: [worker({ appliedRound: 0 })] })] });
    const got = condition(federationStatus(member(), self, seen(v)).conditions, "Synced");
    assert.equal(got.status, "Unknown");
  });

  const degraded: [string, Partial<FederationView>, string, string, RegExp][] = [
    [
      "retried round carries the protocol's reason",
      {
        roundStatus: {
          round: 4,
          attempt: 2,
          phase: "retrying",
          reason: "quorum not met at the deadline: updates from 1 of 2 active members, 2 required",
          coordinator: { memberId: "alpine", workerId: "w0" },
          updatedAtMs: 0,
        },
      },
      "True",
      "RoundRetried",
      /round 4 attempt 2: quorum not met/,
    ],
    ["paused", { paused: true }, "True", "Paused", /paused/],
    [
      "the run completed",
      {
        roundStatus: {
          round: 50,
          attempt: 0,
          phase: "completed",
          reason: "all 50 rounds of the run are committed",
          coordinator: { memberId: "alpine", workerId: "w0" },
          updatedAtMs: 0,
        },
      },
      "False",
      "RunCompleted",
      /every round of the run is committed \(50\)/,
    ],
    ["progressing", {}, "False", "RoundsProgressing", /close/],
  ];
  for (const [name, over, status, reason, message] of degraded) {
    test(`Degraded: ${name}`, () => {
      const got = condition(
        federationStatus(member(), self, seen(view(over))).conditions,
        "Degraded",
      );
      assert.equal(got.status, status);
      assert.equal(got.reason, reason);
      assert.match(got.message, message);
    });
  }

  test("no federation resources yet: not registered, round 0", () => {
    const { fields, conditions } = federationStatus(member(), self, { kind: "absent" });
    assert.deepEqual(fields, { round: 0, progress: "0/50", activeMembers: 0, members: [] });
    assert.equal(condition(conditions, "Joined").reason, "NotRegistered");
  });

  test("NATS unreachable: Joined Unknown, no fields (the last view stays)", () => {
    const got = federationStatus(member(), self, { kind: "unreachable", message: "no NATS" });
    assert.equal(got.fields, undefined);
    assert.deepEqual(got.conditions, [
      { type: "Joined", status: "Unknown", reason: "NatsUnreachable", message: "no NATS" },
    ]);
  });
});

describe("status with the federation's view", () => {
  const ready = { ready: 1, conditions: [] } as never;
  const observation = (federation?: FederationObservation): Observation => ({
    invalid: [],
    federationSpecHash: `sha256:${ours}`,
    publicKey: key,
    memberId: "alpine",
    job: { status: ready },
    federation,
  });

  test("Joined False makes Ready False with its reason; Unknown does not", () => {
    const notJoined = assess(member(), observation({ kind: "absent" }));
    assert.equal(condition(notJoined.conditions, "Ready").status, "False");
    assert.equal(condition(notJoined.conditions, "Ready").reason, "NotRegistered");
    const unknown = assess(member(), observation({ kind: "unreachable", message: "x" }));
    assert.equal(condition(unknown.conditions, "Ready").status, "True");
    const joined = assess(member(), observation(seen(view())));
    assert.equal(condition(joined.conditions, "Ready").status, "True");
  });

  test("a member without trainers is Ready though not registered (its trainers register it)", () => {
    const idle = member();
    idle.spec.contribution.replicas = 0;
    const assessed = assess(idle, observation({ kind: "absent" }));
    assert.equal(condition(assessed.conditions, "Joined").reason, "NotRegistered");
    assert.equal(condition(assessed.conditions, "Ready").status, "True");
  });

  test("a steady federation writes nothing; heartbeats within the resolution change nothing", () => {
    const now = new Date("2026-01-01T00:01:00Z");
    const first = nextStatus(member(), observation(seen(view())), now);
    const later = view({
      members: view().members.map((m) => ({
        ...m,
        lastHeartbeat: new Date(Date.parse(m.lastHeartbeat ?? "") + 30_000).toISOString(),
      })),
    });
    const second = nextStatus(member(undefined, first), observation(seen(later)), now);
    assert.equal(statusChanged(first, second), false);

    const muchLater = view({
      members: view().members.map((m) => ({
        ...m,
        lastHeartbeat: new Date(
          Date.parse(m.lastHeartbeat ?? "") + heartbeatResolutionMs + 1_000,
        ).toISOString(),
      })),
    });
    const third = nextStatus(member(undefined, first), observation(seen(muchLater)), now);
    assert.equal(statusChanged(first, third), true);
  });

  test("NATS unreachable keeps the last view's fields and Synced/Degraded", () => {
    const now = new Date("2026-01-01T00:01:00Z");
    const first = nextStatus(member(), observation(seen(view())), now);
    const away = nextStatus(
      member(undefined, first),
      observation({ kind: "unreachable", message: "no NATS" }),
      now,
    );
    assert.equal(away.round, 3);
    assert.equal(away.members?.length, 2);
    assert.equal(condition(away.conditions ?? [], "Joined").status, "Unknown");
    assert.equal(condition(away.conditions ?? [], "Synced").status, "True");
  });

  test("a view without this member's loss removes the old loss", () => {
    const now = new Date("2026-01-01T00:01:00Z");
    const first = nextStatus(member(), observation(seen(view())), now);
    assert.equal(first.loss, 0.5);
    const silent = view({ members: [memberView({ workers: [worker({ loss: undefined })] })] });
    const second = nextStatus(member(undefined, first), observation(seen(silent)), now);
    assert.equal(second.loss, undefined);
    // A merge patch keeps what it does not name: the removal is sent as null.
    const patch = statusPatch(first, second);
    assert.equal(patch.loss, null);
    assert.equal(patch.round, 3);
  });
});
