// Presence: who is in the federation and whether it runs. Follows the member records (the
// membership policy's input), the worker heartbeats (who is live, and whether their models agree
// with ours) and the organisers' control messages (pause, resume, exclude, readmit); writes this
// worker's heartbeat.
import { setTimeout as sleep } from "node:timers/promises";
import type { KvEntry } from "@nats-io/kv";
import { ControlState } from "../control.js";
import { ProtocolMessageError } from "../errors.js";
import { equalBytes, toHex } from "../identity.js";
import { workerKey } from "../inbox.js";
import type { ModelDisagreement, WorkerHeartbeat, WorkerProgress, WorkerRef } from "../types.js";
import { decodeHeartbeat, decodeMember, encodeHeartbeat, isValidId } from "../wire.js";
import type { Stoppable, WorkerContext } from "./context.js";
import { followStream } from "./follow.js";

/** What this worker reports in its heartbeat. */
export interface HeartbeatReport {
  appliedRound: number;
  modelHash: Uint8Array;
  loss: number | undefined;
  roundsContributed: number;
  progress?: WorkerProgress;
}

/** What presence asks of the other roles (wired by the facade). */
export interface PresenceLinks {
  /** A member deregistered: the key it held is forgotten. */
  memberForgotten(memberId: string): void;
  /** Hex of this worker's model hash after round, while it remembers it. */
  appliedHash(round: number): string | undefined;
  report(): HeartbeatReport;
}

interface LiveWorker {
  heartbeat: WorkerHeartbeat;
  receivedAt: number;
}

/** Most model disagreements kept for callers. */
const MAX_DISAGREEMENTS = 100;

/** Membership, heartbeats, model agreement and pause; see the file comment. */
export class Presence {
  private readonly live = new Map<string, LiveWorker>();
  private readonly disagreements: ModelDisagreement[] = [];
  private readonly reportedMismatch = new Set<string>();
  private readonly loops: Stoppable[] = [];
  private heartbeatWrite: Promise<void> = Promise.resolve();
  /** What the organisers' control messages decided: pause, excluded members. */
  readonly control: ControlState;

  constructor(
    private readonly ctx: WorkerContext,
    private readonly links: PresenceLinks,
  ) {
    this.control = new ControlState(ctx.admission);
  }

  /** Whether an organiser paused the federation. */
  get paused(): boolean {
    return this.control.paused;
  }

  /** Follows members (until the records present now are read, at most 5 s), workers and control. */
  async follow(): Promise<void> {
    await this.followMembers();
    await this.followWorkers();
    this.loops.push(
      followStream(
        this.ctx,
        this.ctx.resources.names.controlStream,
        undefined,
        1 << 20,
        (_, __, data, storedAtMs) => this.onControl(data, storedAtMs),
      ),
    );
  }

  private async followMembers(): Promise<void> {
    const { members } = this.ctx.resources;
    const watch = await members.watch();
    let ready: () => void = () => {};
    const initial = new Promise<void>((resolve) => {
      ready = resolve;
    });
    const pending = (await members.status()).values;
    if (pending === 0) ready();
    let seen = 0;
    this.loops.push({ stop: () => watch.stop() });
    (async () => {
      for await (const entry of watch) {
        this.onMemberEntry(entry);
        if (++seen >= pending) ready();
      }
    })().catch((error) => this.ctx.logPlain(`member watch ended: ${String(error)}`));
    await Promise.race([initial, sleep(5_000)]);
  }

  private onMemberEntry(entry: KvEntry): void {
    if (entry.operation !== "PUT") {
      // A deregistered member's key is forgotten: the member may rejoin with a new key.
      this.ctx.admission.forget(entry.key);
      this.links.memberForgotten(entry.key);
      return;
    }
    try {
      const { body, signer } = decodeMember(entry.value);
      if (body.memberId !== entry.key)
        throw new ProtocolMessageError("malformed", "member record under another key");
      if (!this.ctx.admission.observe(body, signer))
        throw new ProtocolMessageError("unknown-key", `member ${body.memberId}: key not admitted`);
    } catch (error) {
      this.ctx.drop(error);
    }
  }

  /** A member registered after our watch delivered: look it up directly once. */
  async refreshMember(memberId: string): Promise<void> {
    if (!isValidId(memberId)) return;
    const entry = await this.ctx.resources.members.get(memberId).catch(() => null);
    if (entry) this.onMemberEntry(entry);
  }

  private async followWorkers(): Promise<void> {
    const watch = await this.ctx.resources.workers.watch();
    this.loops.push({ stop: () => watch.stop() });
    (async () => {
      for await (const entry of watch) this.onWorkerEntry(entry);
    })().catch((error) => this.ctx.logPlain(`worker watch ended: ${String(error)}`));
  }

  private onWorkerEntry(entry: KvEntry): void {
    if (entry.operation !== "PUT") {
      this.live.delete(entry.key);
      return;
    }
    const { admission } = this.ctx;
    try {
      const { body, signer } = decodeHeartbeat(entry.value);
      const key = workerKey(body.memberId, body.workerId);
      if (key !== entry.key)
        throw new ProtocolMessageError("malformed", "heartbeat under another key");
      if (!admission.allows(body.memberId, signer))
        throw new ProtocolMessageError("unknown-key", `heartbeat of ${key}: key not admitted`);
      const known = admission.members.get(body.memberId);
      if (known && !equalBytes(known.publicKey, signer))
        throw new ProtocolMessageError("unknown-key", `heartbeat of ${key}: not the member key`);
      this.live.set(key, { heartbeat: body, receivedAt: Date.now() });
      this.checkAgreement(body);
    } catch (error) {
      this.ctx.drop(error);
    }
  }

  /** Compares every live worker's reported model hash with ours again (after an apply). */
  recheckAgreement(): void {
    for (const { heartbeat } of this.live.values()) this.checkAgreement(heartbeat);
  }

  private checkAgreement(hb: WorkerHeartbeat): void {
    if (!equalBytes(hb.specHash, this.ctx.options.specHash)) return;
    this.compareModelHash(hb.appliedRound, hb, hb.modelHash, "heartbeat");
  }

  /**
   * Compares a worker's model hash after round (from its heartbeat, or as a commit records it)
   * with this replica's; a difference is counted and listed once per worker and round.
   */
  compareModelHash(
    round: number,
    worker: WorkerRef,
    modelHash: Uint8Array,
    source: "heartbeat" | "commit",
  ): void {
    const { ctx } = this;
    if (worker.memberId === ctx.memberId && worker.workerId === ctx.workerId) return;
    if (round === 0) return;
    const mine = this.links.appliedHash(round);
    if (!mine) return;
    const theirs = toHex(modelHash);
    const id = `${worker.memberId}.${worker.workerId}.${round}`;
    if (theirs === mine || this.reportedMismatch.has(id)) return;
    this.reportedMismatch.add(id);
    ctx.counters.modelHashMismatches++;
    this.disagreements.push({
      round,
      worker: { memberId: worker.memberId, workerId: worker.workerId },
      expected: mine,
      reported: theirs,
    });
    if (this.disagreements.length > MAX_DISAGREEMENTS) this.disagreements.shift();
    ctx.log(`model of ${id} differs (${source}): ${theirs} != ${mine}`);
  }

  private onControl(data: Uint8Array, storedAtMs: number): void {
    try {
      const body = this.control.apply(data, storedAtMs);
      const why = body.reason ? `: ${body.reason}` : "";
      if (body.action === "pause" || body.action === "resume")
        this.ctx.log(`federation ${body.action}d${why}`);
      else if (body.memberId === this.ctx.memberId)
        this.ctx.log(
          body.action === "exclude"
            ? `this member was excluded by an organiser${why}: no coordinator commits its updates`
            : `this member was readmitted by an organiser${why}`,
        );
      else
        this.ctx.log(
          `member ${body.memberId} ${body.action === "exclude" ? "excluded" : "readmitted"} by an organiser${why}`,
        );
    } catch (error) {
      this.ctx.drop(error);
    }
  }

  /**
   * Writes this worker's record. Writes run one after the other, and once the worker is stopping
   * only the leaving record is written: an active heartbeat still in flight (from the timer or
   * after an apply) would otherwise land after stop() deleted the record and bring it back.
   */
  heartbeat(state: "active" | "leaving" = "active"): Promise<void> {
    const { ctx } = this;
    const write = this.heartbeatWrite
      .catch(() => {})
      .then(async () => {
        if (ctx.stopping && state === "active") return;
        const record = encodeHeartbeat(
          {
            memberId: ctx.memberId,
            workerId: ctx.workerId,
            specHash: ctx.options.specHash,
            state,
            ...this.links.report(),
            sentAtMs: Date.now(),
            boundedUpdates: ctx.options.boundedUpdates?.() ?? [],
            memberScores: ctx.options.memberScores?.() ?? [],
          },
          ctx.options.privateKey,
        );
        await ctx.resources.workers.put(workerKey(ctx.memberId, ctx.workerId), record);
      });
    this.heartbeatWrite = write;
    return write;
  }

  /**
   * The workers live now: heartbeating within the worker TTL, active, admitted and under this
   * spec; this worker among them once its own heartbeat has come back through the bucket.
   */
  liveWorkers(): WorkerHeartbeat[] {
    const { settings, admission, options } = this.ctx;
    const cutoff = Date.now() - settings.workerTtlMs;
    const out: WorkerHeartbeat[] = [];
    for (const [key, { heartbeat, receivedAt }] of this.live) {
      // Entries the bucket TTL removed leave no delete marker: forget them here.
      if (receivedAt < cutoff - 10 * settings.workerTtlMs) this.live.delete(key);
      if (receivedAt < cutoff || heartbeat.state !== "active") continue;
      if (!equalBytes(heartbeat.specHash, options.specHash)) continue;
      const known = admission.members.get(heartbeat.memberId);
      if (!known || admission.check(heartbeat.memberId, known.publicKey)) continue;
      out.push(heartbeat);
    }
    return out;
  }

  /** Model disagreements this worker detected (the most recent 100). */
  modelDisagreements(): ModelDisagreement[] {
    return [...this.disagreements];
  }

  /** Ends the watches and the control stream's consumer. */
  async stop(): Promise<void> {
    await Promise.allSettled(this.loops.map((loop) => loop.stop()));
  }

  /** Removes this worker's record: the next round does not wait for it. */
  async remove(): Promise<void> {
    const { ctx } = this;
    await ctx.resources.workers.delete(workerKey(ctx.memberId, ctx.workerId));
  }
}
