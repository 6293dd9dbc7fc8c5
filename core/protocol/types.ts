// Types of the federation protocol: wire messages, the caller's model, options, counters and the
// federation view the operator reads.
import type { Membership, Quorum } from "../api/index.js";
import type { RejectReason } from "./errors.js";

/** The part of the shared FederationSpec the protocol needs. */
export interface ProtocolSpec {
  id: string;
  sync: {
    quorum: Quorum;
    /** May be fractional (tests use 1–3 s). */
    roundDeadlineSeconds: number;
    checkpointEveryRounds: number;
  };
  membership: Membership;
  /**
   * The run's length, when it has one: once round `rounds` is committed the coordinator writes
   * the round status `completed` and closes no further round.
   */
  training?: { rounds: number };
}

/** A member's registration, signed by the member key; KV `members`, key `<memberId>`. */
export interface MemberRecord {
  memberId: string;
  /** SHA-256 of the member's canonical FederationSpec. */
  specHash: Uint8Array;
  registeredAtMs: number;
  /**
   * The protocol revision the member's workers speak (PROTOCOL_REVISION; 0: a record without the
   * field, written by a release of protocol 1.0). Members of another revision are refused.
   */
  revision: number;
}

/** A worker's liveness record, signed by its member's key; KV `workers`, key `<member>.<worker>`. */
export interface WorkerHeartbeat {
  memberId: string;
  workerId: string;
  specHash: Uint8Array;
  state: "active" | "leaving";
  /** The last round this worker applied (0: none). */
  appliedRound: number;
  /** SHA-256 of its global model after appliedRound (zeros when none). */
  modelHash: Uint8Array;
  /** Latest training loss the worker reported, if any. */
  loss: number | undefined;
  /** Commits that included this worker's update since it started. */
  roundsContributed: number;
  sentAtMs: number;
  /**
   * Per member, its updates this worker's norm bound clipped or dropped in the rounds it applied
   * since it started; members with none are left out (and so is the field on the wire when empty).
   */
  boundedUpdates: BoundedUpdateCount[];
  /**
   * Per member, how its updates related to the aggregates of the rounds this worker applied since
   * it started (see scoreUpdates in core/codec); empty (and absent on the wire) before any.
   */
  memberScores: MemberScoreReport[];
  /** What the worker's training showed after its last round, once it reported any. */
  progress?: WorkerProgress;
}

/** A worker's training progress, as its heartbeats report it for the operator's status. */
export interface WorkerProgress {
  /** Evaluation loss of the global model after the last round (NaN: not evaluated). */
  evalLoss: number;
  /** Bytes of the update this worker sent in its last round. */
  bytesSent: number;
  /** Dense fp32 size of one update (4 × parameters), for the compression ratio. */
  denseBytes: number;
}

/** One member's update score as a worker reports it. */
export interface MemberScoreReport {
  memberId: string;
  /** Rounds in which the worker scored the member's updates. */
  rounds: number;
  /** The member's lowest update cosine to the aggregate in the last of those rounds. */
  cosine: number;
  /** Those cosines averaged over the rounds, exponentially. */
  reputation: number;
}

/** How many of one member's updates a worker's norm bound clipped and dropped. */
export interface BoundedUpdateCount {
  memberId: string;
  clipped: number;
  dropped: number;
}

/** First message of an update: what the chunks that follow add up to. */
export interface UpdateManifest {
  round: number;
  memberId: string;
  workerId: string;
  size: number;
  /** BLAKE3-256 of the whole payload (payloadDigest). */
  digest: Uint8Array;
  chunkSize: number;
  chunkCount: number;
}

/**
 * The sender's word that every chunk of its update was acknowledged by the update streams: only
 * such an update may be committed, so a commit never names an update the store could lose.
 */
export interface UpdateStored {
  round: number;
  memberId: string;
  workerId: string;
  /** The manifest's digest. */
  digest: Uint8Array;
}

/** One update included in a commit. */
export interface CommitEntry {
  memberId: string;
  workerId: string;
  publicKey: Uint8Array;
  digest: Uint8Array;
  size: number;
}

/** A checkpoint in the object store, referenced by digest. */
export interface CheckpointRef {
  /** The round after whose apply the snapshot was taken. */
  round: number;
  digest: Uint8Array;
  size: number;
  objectName: string;
}

/** Identifies one worker. */
export interface WorkerRef {
  memberId: string;
  workerId: string;
}

/** The coordinator's decision for one round; one ledger entry. */
export interface Commit {
  round: number;
  /** 0 for the first deadline, +1 for each retry. */
  attempt: number;
  /** SHA-256 of the previous commit message (zeros for round 1). */
  prevHash: Uint8Array;
  /** The federation spec hash the round was trained under. */
  specHash: Uint8Array;
  coordinator: WorkerRef;
  closedBy: "all-in" | "deadline";
  activeMembers: number;
  committedAtMs: number;
  /** Sorted by memberId, then workerId: the order every worker applies them in. */
  entries: CommitEntry[];
  /** The latest checkpoint not referenced by an earlier commit. */
  checkpoint: CheckpointRef | undefined;
  /**
   * How earlier rounds' updates related to their aggregates, as the coordinator's replica
   * computed them: the rounds it applied after the last round an earlier commit scored, oldest
   * first, each before this commit's round (usually just the previous round). Empty when the
   * replica scores nothing or has applied no new round.
   */
  scores: RoundScores[];
  /**
   * The model hashes after the previous round (`round − 1`): the coordinator's own, and those the
   * live workers whose updates this commit includes reported in their heartbeats for that round,
   * in canonical order. Undefined for round 1 or when the coordinator had not applied the
   * previous round. Every worker compares them with its own hash; the verifier shows whether
   * replicas agreed.
   */
  agreement: RoundAgreement | undefined;
}

/** Model hashes that workers held after one round. */
export interface RoundAgreement {
  round: number;
  hashes: { memberId: string; workerId: string; modelHash: Uint8Array }[];
}

/** What a replica's aggregation made of one applied update (see ReplicaModel.apply). */
export interface UpdateAssessment {
  /** What the norm bound did: nothing ("kept"), scaled it down, or left it out. */
  bound: "kept" | "clipped" | "dropped";
  /** cos(update, aggregate). */
  cosine: number;
  /** ‖update − aggregate‖ / ‖aggregate‖. */
  relativeDistance: number;
  /** ‖update‖ / ‖aggregate‖. */
  relativeNorm: number;
}

/** One applied update's assessment, named by its sender. */
export interface UpdateScoreRecord extends UpdateAssessment {
  memberId: string;
  workerId: string;
}

/** A round's assessments: one per applied update, in the round's commit order. */
export interface RoundScores {
  round: number;
  updates: UpdateScoreRecord[];
}

/**
 * An organiser's signed order: pause or resume the whole federation, or exclude a member (no
 * coordinator commits its updates from then on) or readmit it.
 */
export interface ControlMessage {
  action: "pause" | "resume" | "exclude" | "readmit";
  /** The member excluded or readmitted; "" for pause and resume. */
  memberId: string;
  /** Strictly increasing per federation; a lower or equal one is a replay. */
  sequence: number;
  issuedAtMs: number;
  reason: string;
}

/** Where the open round stands; KV `state`, key `round`, written by the coordinator. */
export interface RoundStatus {
  round: number;
  attempt: number;
  phase: "open" | "retrying" | "paused" | "completed";
  /** Why the round was retried or paused ("" when open). */
  reason: string;
  coordinator: WorkerRef;
  updatedAtMs: number;
}

/** The coordinator lease value; KV `lease`, key `coordinator`. */
export interface CoordinatorLease {
  memberId: string;
  workerId: string;
  acquiredAtMs: number;
}

/** An update as applied: the committed entry and its payload. */
export interface CommittedUpdate extends CommitEntry {
  payload: Uint8Array;
}

/**
 * The caller's replica of the global model. The protocol calls it in round order, never
 * concurrently; the same commits in the same order must give bit-identical state everywhere.
 */
export interface ReplicaModel {
  /**
   * Applies round `commit.round`'s updates, given in the commit's canonical order. The payloads
   * are lent: once apply has returned (or its promise resolved) the protocol reuses their buffers
   * for later rounds' downloads, so apply must copy whatever it keeps. A replica that scores
   * updates returns one assessment per update, in their order (or none when nothing was
   * aggregated): every replica computes the same, and the coordinator records them in a later
   * commit, where `fedtrain ledger verify` can recompute them from the stored updates.
   */
  apply(
    commit: Commit,
    updates: readonly CommittedUpdate[],
    // biome-ignore lint/suspicious/noConfusingVoidType: a replica that scores nothing returns nothing
  ): void | readonly UpdateAssessment[] | Promise<void | readonly UpdateAssessment[]>;
  /** SHA-256 (32 bytes) of the model state after the last apply. */
  hash(): Uint8Array | Promise<Uint8Array>;
  /** Global model + outer optimiser state as opaque bytes, for a checkpoint. */
  snapshot(): Uint8Array | Promise<Uint8Array>;
  /**
   * Replaces the state with a checkpoint's bytes: while joining, and between two applies when
   * the ledger shows this replica diverged (the protocol then replays the commits after it).
   */
  restore(snapshot: Uint8Array): void | Promise<void>;
  /**
   * Throws when `apply` could not use this payload (it does not decode for this model). Such an
   * update is dropped and counted as `malformed`: no coordinator commits it, and a replica
   * leaves it out if a commit names it anyway; every replica judges the same bytes alike, so
   * they stay identical. Must be deterministic and must not change the model.
   */
  validate?(payload: Uint8Array): void;
}

/** Protocol timings and limits; defaults in docs/protocol.md ("Timeouts and limits"). */
export interface ProtocolSettings {
  heartbeatIntervalMs: number;
  /** A worker not heard from for this long is not live (and its KV entry expires). */
  workerTtlMs: number;
  /** The coordinator lease expires this long after its last refresh. */
  leaseTtlMs: number;
  /** Bytes of payload per chunk message. */
  chunkBytes: number;
  /** Largest update payload accepted. */
  maxUpdateBytes: number;
  /** Most payload bytes buffered for one round across all senders. */
  maxRoundBytes: number;
  /** How long a JetStream publish is retried (e.g. while the server restarts). */
  publishRetryMs: number;
}

/** The per-worker counters: drops by reason, and the protocol's own events. */
export interface ProtocolCounters {
  dropped: Record<RejectReason, number>;
  updatesSent: number;
  bytesSent: number;
  updatesReceived: number;
  roundsApplied: number;
  commitsPublished: number;
  /**
   * Commits this worker built and did not publish, or whose publish the ledger refused or found
   * already stored: the round was committed by another coordinator meanwhile, or the lease lost.
   */
  commitsAbandoned: number;
  roundsRetried: number;
  coordinatorTerms: number;
  modelHashMismatches: number;
  /** Times a commit showed this replica to hold another model than most workers. */
  replicaDivergences: number;
  /** Times this diverged replica restored a checkpoint by itself (and replayed the rounds after). */
  replicaRestores: number;
}

/** Two workers that applied the same round hold different models. */
export interface ModelDisagreement {
  round: number;
  worker: WorkerRef;
  expected: string;
  reported: string;
}

/** What a round did for this worker. */
export interface RoundResult {
  round: number;
  /** Whether this worker's update was in the commit. */
  included: boolean;
  commit: Commit;
  /** Hex SHA-256 of the model after applying the round. */
  modelHash: string;
}

/** A worker as the operator shows it. */
export interface WorkerView {
  workerId: string;
  state: "Active" | "Leaving";
  lastHeartbeat: string;
  appliedRound: number;
  modelHash: string;
  loss: number | undefined;
  /** From its heartbeats, once reported (WorkerHeartbeat.progress). */
  progress?: WorkerProgress;
}

/** A member as the operator shows it. */
export interface MemberView {
  memberId: string;
  publicKey: string;
  specHash: string;
  /**
   * Active: live workers; Idle: registered, none live; Refused: see reason; Excluded: by an
   * organiser, with the organiser's reason.
   */
  state: "Active" | "Idle" | "Refused" | "Excluded";
  reason: string;
  lastHeartbeat: string | undefined;
  roundsContributed: number;
  /**
   * This member's updates that the norm bound scaled down, and left out, of the aggregate: the
   * highest count any admitted worker's heartbeat reports (each counts since it started).
   */
  updatesClipped: number;
  updatesDropped: number;
  /**
   * How this member's updates relate to the rounds' aggregates: from the admitted worker that
   * scored it over the most rounds; absent before any worker did.
   */
  score: MemberScoreReport | undefined;
  workers: WorkerView[];
}

/** The federation as seen from NATS, for a member's status. */
export interface FederationView {
  federationId: string;
  /** The round now open (last committed + 1). */
  round: number;
  roundStatus: RoundStatus | undefined;
  paused: boolean;
  coordinator: WorkerRef | undefined;
  lastCommit: { round: number; hash: string; entries: number; committedAt: string } | undefined;
  lastCheckpoint: { round: number; digest: string; size: number } | undefined;
  /** Mean of the live workers' reported losses. */
  loss: number | undefined;
  members: MemberView[];
  /** Live workers at the same round with different model hashes. */
  disagreements: ModelDisagreement[];
}
