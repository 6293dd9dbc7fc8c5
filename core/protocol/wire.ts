// The protocol's messages (docs/protocol.md, "Wire format"): how each body is laid out inside
// the signed envelope (envelope.ts), and the unsigned chunks that carry update payloads.
import {
  decodeWith,
  envelope,
  Kind,
  MAGIC,
  type Reader,
  type Signed,
  WIRE_VERSION,
  Writer,
} from "./envelope.js";
import { ProtocolMessageError } from "./errors.js";
import type {
  BoundedUpdateCount,
  CheckpointRef,
  Commit,
  CommitEntry,
  ControlMessage,
  CoordinatorLease,
  MemberRecord,
  MemberScoreReport,
  RoundAgreement,
  RoundScores,
  RoundStatus,
  UpdateManifest,
  UpdateStored,
  WorkerHeartbeat,
  WorkerProgress,
} from "./types.js";

export {
  HEADER_BYTES,
  isValidId,
  Kind,
  MAGIC,
  MAX_BODY_BYTES,
  openEnvelope,
  type Signed,
  TRAILER_BYTES,
  WIRE_VERSION,
} from "./envelope.js";

/**
 * The protocol revision within wire version 1 that this implementation speaks: 1 is protocol 1.1
 * (commits with update scores and model hashes, fenced coordinators). Written in the member record;
 * members of another revision are refused (`unsupported-version`), never silently mixed.
 */
export const PROTOCOL_REVISION = 1;

/** Bytes before the data of a chunk: magic (2), version (1), kind (1), chunk index (4). */
export const CHUNK_HEADER_BYTES = 8;
/** Most chunks an update may have (a receiver keeps one byte of state per chunk). */
export const MAX_CHUNKS = 1 << 20;
/** Most entries a commit may list. */
export const MAX_COMMIT_ENTRIES = 4096;
/** Most earlier rounds a commit may score, and most update scores it may carry in all. */
export const MAX_SCORED_ROUNDS = 8;
export const MAX_COMMIT_SCORES = 4096;
/** Most members a heartbeat's bounded-update counts may list. */
export const MAX_BOUNDED_MEMBERS = 4096;

// --- member record ---------------------------------------------------------------------------

export function encodeMember(m: MemberRecord, privateKey: Uint8Array): Uint8Array {
  const w = new Writer().str(m.memberId).fixed(m.specHash, 32).u64(m.registeredAtMs);
  // Revision 0 is a 1.0 record: it has no field.
  if (m.revision > 0) w.u8(m.revision);
  return envelope(Kind.member, w.finish(), privateKey);
}

export function decodeMember(bytes: Uint8Array): Signed<MemberRecord> {
  return decodeWith(bytes, Kind.member, (r) => ({
    memberId: r.id("memberId"),
    specHash: r.fixed(32),
    registeredAtMs: r.u64(),
    revision: r.atEnd() ? 0 : r.u8(),
  }));
}

// --- worker heartbeat ------------------------------------------------------------------------

export function encodeHeartbeat(h: WorkerHeartbeat, privateKey: Uint8Array): Uint8Array {
  const w = new Writer()
    .str(h.memberId)
    .str(h.workerId)
    .fixed(h.specHash, 32)
    .u8(h.state === "active" ? 1 : 2)
    .u64(h.appliedRound)
    .fixed(h.modelHash, 32)
    .f64(h.loss ?? Number.NaN)
    .u64(h.roundsContributed)
    .u64(h.sentAtMs);
  writeBoundedUpdates(w, h.boundedUpdates, h.memberScores.length > 0 || !!h.progress);
  writeMemberScores(w, h.memberScores, !!h.progress);
  if (h.progress) w.f64(h.progress.evalLoss).u64(h.progress.bytesSent).u64(h.progress.denseBytes);
  return envelope(Kind.heartbeat, w.finish(), privateKey);
}

/**
 * The heartbeat's first optional trailing field: written only when some member has bounded
 * updates, or when the member scores after it are written, so the heartbeats of a federation
 * whose norm bound never fired and that scored nothing are byte-for-byte the older layout.
 */
function writeBoundedUpdates(
  w: Writer,
  counts: readonly BoundedUpdateCount[],
  followed: boolean,
): void {
  if (counts.length === 0 && !followed) return;
  if (counts.length > MAX_BOUNDED_MEMBERS) throw new RangeError("too many bounded-update counts");
  w.u32(counts.length);
  for (const c of counts) w.str(c.memberId).u64(c.clipped).u64(c.dropped);
}

/** Reads the optional trailing field; a body that ends before it (an older writer) has none. */
function readBoundedUpdates(r: Reader): BoundedUpdateCount[] {
  if (r.atEnd()) return [];
  const count = r.u32();
  if (count > MAX_BOUNDED_MEMBERS)
    throw new ProtocolMessageError("oversized", "heartbeat bounded-update counts");
  const counts: BoundedUpdateCount[] = [];
  for (let i = 0; i < count; i++)
    counts.push({ memberId: r.id("memberId"), clipped: r.u64(), dropped: r.u64() });
  return counts;
}

/**
 * The second optional trailing field: each member's update score, when there are any (or when
 * the progress after it is written).
 */
function writeMemberScores(
  w: Writer,
  scores: readonly MemberScoreReport[],
  followed: boolean,
): void {
  if (scores.length === 0 && !followed) return;
  if (scores.length > MAX_BOUNDED_MEMBERS) throw new RangeError("too many member scores");
  w.u32(scores.length);
  for (const s of scores) w.str(s.memberId).u64(s.rounds).f64(s.cosine).f64(s.reputation);
}

function readMemberScores(r: Reader): MemberScoreReport[] {
  if (r.atEnd()) return [];
  const count = r.u32();
  if (count > MAX_BOUNDED_MEMBERS) throw new ProtocolMessageError("oversized", "member scores");
  const scores: MemberScoreReport[] = [];
  for (let i = 0; i < count; i++) {
    const score = {
      memberId: r.id("memberId"),
      rounds: r.u64(),
      cosine: r.f64(),
      reputation: r.f64(),
    };
    if (!(Math.abs(score.cosine) <= 1 && Math.abs(score.reputation) <= 1)) {
      throw new ProtocolMessageError("malformed", "a member score outside [-1, 1]");
    }
    scores.push(score);
  }
  return scores;
}

/** The third optional trailing field: the worker's training progress (WorkerProgress). */
function readProgress(r: Reader): { progress?: WorkerProgress } {
  if (r.atEnd()) return {};
  const evalLoss = r.f64();
  const progress = { evalLoss, bytesSent: r.u64(), denseBytes: r.u64() };
  if (!(Number.isNaN(evalLoss) || (Number.isFinite(evalLoss) && evalLoss >= 0)))
    throw new ProtocolMessageError("malformed", "a negative or infinite evaluation loss");
  return { progress };
}

export function decodeHeartbeat(bytes: Uint8Array): Signed<WorkerHeartbeat> {
  return decodeWith(bytes, Kind.heartbeat, (r) => {
    const memberId = r.id("memberId");
    const workerId = r.id("workerId");
    const specHash = r.fixed(32);
    const state = r.u8();
    if (state !== 1 && state !== 2) throw new ProtocolMessageError("malformed", "bad state");
    const appliedRound = r.u64();
    const modelHash = r.fixed(32);
    const loss = r.f64();
    return {
      memberId,
      workerId,
      specHash,
      state: state === 1 ? "active" : "leaving",
      appliedRound,
      modelHash,
      loss: Number.isNaN(loss) ? undefined : loss,
      roundsContributed: r.u64(),
      sentAtMs: r.u64(),
      boundedUpdates: readBoundedUpdates(r),
      memberScores: readMemberScores(r),
      ...readProgress(r),
    };
  });
}

// --- update manifest -------------------------------------------------------------------------

export function encodeManifest(m: UpdateManifest, privateKey: Uint8Array): Uint8Array {
  const w = new Writer()
    .u64(m.round)
    .str(m.memberId)
    .str(m.workerId)
    .u64(m.size)
    .fixed(m.digest, 32)
    .u32(m.chunkSize)
    .u32(m.chunkCount);
  return envelope(Kind.manifest, w.finish(), privateKey);
}

export function decodeManifest(bytes: Uint8Array): Signed<UpdateManifest> {
  return decodeWith(bytes, Kind.manifest, (r) => {
    const m: UpdateManifest = {
      round: r.u64(),
      memberId: r.id("memberId"),
      workerId: r.id("workerId"),
      size: r.u64(),
      digest: r.fixed(32),
      chunkSize: r.u32(),
      chunkCount: r.u32(),
    };
    if (m.chunkSize === 0 || m.chunkCount !== Math.ceil(m.size / m.chunkSize))
      throw new ProtocolMessageError("malformed", "chunk count does not match size");
    if (m.chunkCount > MAX_CHUNKS) throw new ProtocolMessageError("oversized", "too many chunks");
    return m;
  });
}

// --- update stored -------------------------------------------------------------------------

export function encodeStored(m: UpdateStored, privateKey: Uint8Array): Uint8Array {
  const w = new Writer().u64(m.round).str(m.memberId).str(m.workerId).fixed(m.digest, 32);
  return envelope(Kind.stored, w.finish(), privateKey);
}

export function decodeStored(bytes: Uint8Array): Signed<UpdateStored> {
  return decodeWith(bytes, Kind.stored, (r) => ({
    round: r.u64(),
    memberId: r.id("memberId"),
    workerId: r.id("workerId"),
    digest: r.fixed(32),
  }));
}

// --- chunk (unsigned: its bytes are covered by the manifest's digest) ---------------------------

export function encodeChunkHeader(index: number): Uint8Array {
  const out = new Uint8Array(CHUNK_HEADER_BYTES);
  const view = new DataView(out.buffer);
  view.setUint16(0, MAGIC);
  view.setUint8(2, WIRE_VERSION);
  view.setUint8(3, Kind.chunk);
  view.setUint32(4, index);
  return out;
}

/** Returns the index and data of a chunk message (data is a view into bytes). */
export function decodeChunk(bytes: Uint8Array): { index: number; data: Uint8Array } {
  if (bytes.length < CHUNK_HEADER_BYTES) throw new ProtocolMessageError("truncated", "chunk");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint16(0) !== MAGIC) throw new ProtocolMessageError("malformed", "bad magic");
  if (view.getUint8(2) !== WIRE_VERSION)
    throw new ProtocolMessageError("unsupported-version", "chunk version");
  if (view.getUint8(3) !== Kind.chunk) throw new ProtocolMessageError("malformed", "not a chunk");
  return { index: view.getUint32(4), data: bytes.subarray(CHUNK_HEADER_BYTES) };
}

// --- commit ----------------------------------------------------------------------------------

const closedByCode = { "all-in": 1, deadline: 2 } as const;

function writeCheckpointRef(w: Writer, c: CheckpointRef | undefined): void {
  if (!c) {
    w.u8(0);
    return;
  }
  w.u8(1).u64(c.round).fixed(c.digest, 32).u64(c.size).str(c.objectName);
}

function readCheckpointRef(r: Reader): CheckpointRef | undefined {
  const present = r.u8();
  if (present === 0) return undefined;
  if (present !== 1) throw new ProtocolMessageError("malformed", "bad checkpoint flag");
  return { round: r.u64(), digest: r.fixed(32), size: r.u64(), objectName: r.str() };
}

export function encodeCommit(c: Commit, privateKey: Uint8Array): Uint8Array {
  if (c.entries.length > MAX_COMMIT_ENTRIES) throw new RangeError("too many commit entries");
  const w = new Writer()
    .u64(c.round)
    .u32(c.attempt)
    .fixed(c.prevHash, 32)
    .fixed(c.specHash, 32)
    .str(c.coordinator.memberId)
    .str(c.coordinator.workerId)
    .u8(closedByCode[c.closedBy])
    .u32(c.activeMembers)
    .u64(c.committedAtMs)
    .u32(c.entries.length);
  for (const e of c.entries)
    w.str(e.memberId).str(e.workerId).fixed(e.publicKey, 32).fixed(e.digest, 32).u64(e.size);
  writeCheckpointRef(w, c.checkpoint);
  writeRoundScores(w, c.scores, c.agreement !== undefined);
  writeAgreement(w, c.agreement);
  return envelope(Kind.commit, w.finish(), privateKey);
}

const boundCode = { kept: 1, clipped: 2, dropped: 3 } as const;
const boundOfCode = [undefined, "kept", "clipped", "dropped"] as const;

/**
 * The commit's optional trailing field: written only when the commit scores some round, so a
 * commit without scores is byte-for-byte the older layout.
 */
function writeRoundScores(w: Writer, scores: readonly RoundScores[], followed: boolean): void {
  if (scores.length === 0 && !followed) return;
  if (scores.length > MAX_SCORED_ROUNDS) throw new RangeError("too many scored rounds");
  if (scores.reduce((n, s) => n + s.updates.length, 0) > MAX_COMMIT_SCORES)
    throw new RangeError("too many update scores");
  w.u32(scores.length);
  for (const round of scores) {
    w.u64(round.round).u32(round.updates.length);
    for (const u of round.updates)
      w.str(u.memberId)
        .str(u.workerId)
        .u8(boundCode[u.bound])
        .f64(u.cosine)
        .f64(u.relativeDistance)
        .f64(u.relativeNorm);
  }
}

/**
 * The commit's second optional trailing field, the model hashes after the previous round; a
 * writer with it always writes the scores field before it (with 0 rounds when it has none).
 */
function writeAgreement(w: Writer, agreement: RoundAgreement | undefined): void {
  if (!agreement) return;
  if (agreement.hashes.length > MAX_COMMIT_ENTRIES + 1)
    throw new RangeError("too many agreement hashes");
  w.u64(agreement.round).u32(agreement.hashes.length);
  for (const h of agreement.hashes) w.str(h.memberId).str(h.workerId).fixed(h.modelHash, 32);
}

function readAgreement(r: Reader): RoundAgreement | undefined {
  if (r.atEnd()) return undefined;
  const round = r.u64();
  const count = r.u32();
  if (count > MAX_COMMIT_ENTRIES + 1)
    throw new ProtocolMessageError("oversized", "commit agreement hashes");
  const hashes: RoundAgreement["hashes"] = [];
  for (let i = 0; i < count; i++)
    hashes.push({ memberId: r.id("memberId"), workerId: r.id("workerId"), modelHash: r.fixed(32) });
  return { round, hashes };
}

function readRoundScores(r: Reader): RoundScores[] {
  if (r.atEnd()) return [];
  const rounds = r.u32();
  if (rounds > MAX_SCORED_ROUNDS)
    throw new ProtocolMessageError("oversized", "commit scored rounds");
  const scores: RoundScores[] = [];
  let total = 0;
  for (let i = 0; i < rounds; i++) {
    const round = r.u64();
    const count = r.u32();
    total += count;
    if (total > MAX_COMMIT_SCORES) throw new ProtocolMessageError("oversized", "commit scores");
    const updates: RoundScores["updates"] = [];
    for (let j = 0; j < count; j++) {
      const memberId = r.id("memberId");
      const workerId = r.id("workerId");
      const bound = boundOfCode[r.u8()];
      if (!bound) throw new ProtocolMessageError("malformed", "bad norm-bound action in a score");
      const score = { cosine: r.f64(), relativeDistance: r.f64(), relativeNorm: r.f64() };
      if (
        !(Math.abs(score.cosine) <= 1 + 1e-9) ||
        !(score.relativeDistance >= 0) ||
        !(score.relativeNorm >= 0)
      )
        throw new ProtocolMessageError("malformed", "an update score out of range");
      updates.push({ memberId, workerId, bound, ...score });
    }
    scores.push({ round, updates });
  }
  return scores;
}

export function decodeCommit(bytes: Uint8Array): Signed<Commit> {
  return decodeWith(bytes, Kind.commit, (r) => {
    const round = r.u64();
    const attempt = r.u32();
    const prevHash = r.fixed(32);
    const specHash = r.fixed(32);
    const coordinator = { memberId: r.id("memberId"), workerId: r.id("workerId") };
    const closed = r.u8();
    if (closed !== 1 && closed !== 2) throw new ProtocolMessageError("malformed", "bad closedBy");
    const activeMembers = r.u32();
    const committedAtMs = r.u64();
    const count = r.u32();
    if (count > MAX_COMMIT_ENTRIES) throw new ProtocolMessageError("oversized", "commit entries");
    const entries: CommitEntry[] = [];
    for (let i = 0; i < count; i++) {
      entries.push({
        memberId: r.id("memberId"),
        workerId: r.id("workerId"),
        publicKey: r.fixed(32),
        digest: r.fixed(32),
        size: r.u64(),
      });
    }
    return {
      round,
      attempt,
      prevHash,
      specHash,
      coordinator,
      closedBy: closed === 1 ? "all-in" : "deadline",
      activeMembers,
      committedAtMs,
      entries,
      checkpoint: readCheckpointRef(r),
      scores: readRoundScores(r),
      agreement: readAgreement(r),
    };
  });
}

// --- checkpoint record -----------------------------------------------------------------------

export function encodeCheckpoint(c: CheckpointRef, privateKey: Uint8Array): Uint8Array {
  const w = new Writer();
  writeCheckpointRef(w, c);
  return envelope(Kind.checkpoint, w.finish(), privateKey);
}

export function decodeCheckpoint(bytes: Uint8Array): Signed<CheckpointRef> {
  return decodeWith(bytes, Kind.checkpoint, (r) => {
    const ref = readCheckpointRef(r);
    if (!ref) throw new ProtocolMessageError("malformed", "empty checkpoint record");
    return ref;
  });
}

// --- control ---------------------------------------------------------------------------------

const controlCode = { pause: 1, resume: 2, exclude: 3, readmit: 4 } as const;
const controlOfCode = [undefined, "pause", "resume", "exclude", "readmit"] as const;

export function encodeControl(c: ControlMessage, privateKey: Uint8Array): Uint8Array {
  const aboutMember = c.action === "exclude" || c.action === "readmit";
  if (aboutMember !== (c.memberId !== ""))
    throw new RangeError(
      `a ${c.action} control message ${aboutMember ? "needs" : "takes no"} memberId`,
    );
  const w = new Writer().u8(controlCode[c.action]).u64(c.sequence).u64(c.issuedAtMs).str(c.reason);
  if (aboutMember) w.str(c.memberId);
  return envelope(Kind.control, w.finish(), privateKey);
}

export function decodeControl(bytes: Uint8Array): Signed<ControlMessage> {
  return decodeWith(bytes, Kind.control, (r) => {
    const action = controlOfCode[r.u8()];
    if (!action) throw new ProtocolMessageError("malformed", "bad action");
    const sequence = r.u64();
    const issuedAtMs = r.u64();
    const reason = r.str();
    const memberId = action === "exclude" || action === "readmit" ? r.id("memberId") : "";
    return { action, memberId, sequence, issuedAtMs, reason };
  });
}

// --- round status ----------------------------------------------------------------------------

const phaseCode = { open: 1, retrying: 2, paused: 3, completed: 4 } as const;
const phaseOf = ["", "open", "retrying", "paused", "completed"] as const;

export function encodeRoundStatus(s: RoundStatus, privateKey: Uint8Array): Uint8Array {
  const w = new Writer()
    .u64(s.round)
    .u32(s.attempt)
    .u8(phaseCode[s.phase])
    .str(s.reason)
    .str(s.coordinator.memberId)
    .str(s.coordinator.workerId)
    .u64(s.updatedAtMs);
  return envelope(Kind.roundStatus, w.finish(), privateKey);
}

export function decodeRoundStatus(bytes: Uint8Array): Signed<RoundStatus> {
  return decodeWith(bytes, Kind.roundStatus, (r) => {
    const round = r.u64();
    const attempt = r.u32();
    const phase = phaseOf[r.u8()];
    if (!phase) throw new ProtocolMessageError("malformed", "bad phase");
    return {
      round,
      attempt,
      phase,
      reason: r.str(),
      coordinator: { memberId: r.id("memberId"), workerId: r.id("workerId") },
      updatedAtMs: r.u64(),
    };
  });
}

// --- coordinator lease -----------------------------------------------------------------------

export function encodeLease(l: CoordinatorLease, privateKey: Uint8Array): Uint8Array {
  const w = new Writer().str(l.memberId).str(l.workerId).u64(l.acquiredAtMs);
  return envelope(Kind.lease, w.finish(), privateKey);
}

export function decodeLease(bytes: Uint8Array): Signed<CoordinatorLease> {
  return decodeWith(bytes, Kind.lease, (r) => ({
    memberId: r.id("memberId"),
    workerId: r.id("workerId"),
    acquiredAtMs: r.u64(),
  }));
}
