// Receiving updates: one inbox per round, filled from the live subscription (core NATS delivers
// each update message as JetStream stores it) and, for rounds that began before this worker
// listened or when the live path lost a message, from the update streams.
import type { NatsConnection, QueuedIterator, Status, Subscription } from "@nats-io/transport-node";
import type { RejectReason } from "../errors.js";
import { equalBytes } from "../identity.js";
import { type MessageSource, PayloadPool, type ReceivedUpdate, RoundInbox } from "../inbox.js";
import type { Commit } from "../types.js";
import { Kind } from "../wire.js";
import type { Stoppable, WorkerContext } from "./context.js";
import { followStream } from "./follow.js";

/** What the receiver asks of the other roles (wired by the facade). */
export interface ReceiverLinks {
  appliedRound(): number;
  lastRound(): number;
  commitOf(round: number): Commit | undefined;
  /** Reads a member's record now: an update came from a member the watch has not shown yet. */
  refreshMember(memberId: string): Promise<void>;
  /** An update became complete: a commit waiting for it may be applied. */
  updateComplete(): void;
  /** An update became complete or stored: the round may close. */
  roundMayClose(): void;
}

/** One round's inbox, and its consumers on the update streams once it reads them. */
interface RoundReceiver {
  inbox: RoundInbox;
  fromStore: Stoppable[] | undefined;
}

// Bounds what one pull from an update stream may buffer; payload buffers are bounded by
// maxRoundBytes.
const storeReadBytes = 16 * 1024 * 1024;

/** The inboxes of the rounds this worker collects; see the file comment. */
export class Receiver {
  private readonly inboxes = new Map<number, RoundReceiver>();
  private readonly payloads: PayloadPool;
  private readonly loops: Stoppable[] = [];
  /**
   * Rounds from this one on are received live (core NATS) from their start; earlier rounds may
   * have been published before the live subscription was (re)established, so they are read from
   * the update streams. Infinity until the worker has joined.
   */
  private liveFrom = Number.POSITIVE_INFINITY;

  constructor(
    private readonly ctx: WorkerContext,
    private readonly links: ReceiverLinks,
  ) {
    this.payloads = new PayloadPool(ctx.settings.maxRoundBytes);
  }

  /** Rounds from `round` on are received live from their start. */
  liveFromRound(round: number): void {
    this.liveFrom = round;
  }

  /** The inbox of round, created (and read from the streams when it began earlier) on first use. */
  inboxFor(round: number): RoundInbox {
    const existing = this.inboxes.get(round);
    if (existing) return existing.inbox;
    const { ctx } = this;
    const inbox = new RoundInbox({
      round,
      maxUpdateBytes: ctx.settings.maxUpdateBytes,
      maxRoundBytes: ctx.settings.maxRoundBytes,
      admit: (memberId, key) => this.admitUpdate(round, memberId, key),
      reject: (reason, detail) => ctx.count(reason, detail),
      ...(ctx.options.model.validate
        ? { validate: (payload: Uint8Array) => ctx.options.model.validate?.(payload) }
        : {}),
      onGap: () => this.readFromStore(round),
      allocate: (size) => this.payloads.take(size),
    });
    // A newly complete or newly stored update may close the round.
    inbox.onComplete(() => this.links.roundMayClose());
    this.inboxes.set(round, { inbox, fromStore: undefined });
    if (round < this.liveFrom) this.readFromStore(round);
    return inbox;
  }

  /**
   * Whether an update of round may be taken: its member is admitted with this key, or an accepted
   * commit of that round names exactly this member and key (an update the federation agreed on,
   * e.g. of a member that has since rejoined with a new key; apply still checks its digest).
   */
  private admitUpdate(round: number, memberId: string, key: Uint8Array): RejectReason | undefined {
    const refused = this.ctx.admission.check(memberId, key);
    if (refused !== "unknown-key") return refused;
    const named = this.links
      .commitOf(round)
      ?.entries.some((e) => e.memberId === memberId && equalBytes(e.publicKey, key));
    return named ? undefined : refused;
  }

  /**
   * Takes every update message as it is published: core NATS delivers it to this subscription
   * while JetStream stores it, so the live path costs no store read. Only the next two rounds are
   * taken (a worker one round behind still collects the next); anything the live path misses is
   * read from the update streams (see readFromStore).
   */
  followLive(nc: NatsConnection): void {
    const { ctx } = this;
    const subject = `fedtrain.${ctx.options.spec.id}.update.*.*.*.*`;
    const sub: Subscription = nc.subscribe(subject, {
      callback: (error, msg) => {
        if (error) return;
        const round = Number(msg.subject.split(".")[4]);
        const applied = this.links.appliedRound();
        if (!(round > applied && round <= applied + 2)) return;
        ctx.background(this.receive(this.inboxFor(round), msg.subject, msg.data, "live"));
      },
    });
    this.loops.push({ stop: () => sub.unsubscribe() });
    // A disconnect loses live messages: every open round is then read from the streams too.
    // The client's status iterator is a QueuedIterator: stop() detaches it from the connection,
    // which outlives this worker.
    const status = nc.status() as AsyncIterable<Status> &
      Partial<Pick<QueuedIterator<Status>, "stop">>;
    this.loops.push({ stop: () => status.stop?.() });
    (async () => {
      for await (const event of status) {
        if (event.type !== "reconnect" && event.type !== "slowConsumer") continue;
        this.liveFrom = Math.max(this.links.lastRound(), this.links.appliedRound()) + 2;
        for (const round of this.inboxes.keys()) this.readFromStore(round);
      }
    })().catch((error) => ctx.logPlain(`connection status ended: ${String(error)}`));
  }

  /**
   * Reads a round from its update streams (one consumer per shard, from the start of the round):
   * for rounds that began before this worker listened live, and when the live path lost a
   * message. Copies of what already came live are dropped quietly by the inbox.
   */
  readFromStore(round: number): void {
    const receiver = this.inboxes.get(round);
    if (!receiver || receiver.fromStore || this.ctx.stopping) return;
    const { names } = this.ctx.resources;
    receiver.fromStore = names.updatesStreams.map((stream, shard) =>
      followStream(
        this.ctx,
        stream,
        names.roundUpdates(shard, round),
        storeReadBytes,
        (_, subject, data) => this.receive(receiver.inbox, subject, data, "stored"),
      ),
    );
  }

  private async receive(
    inbox: RoundInbox,
    subject: string,
    data: Uint8Array,
    source: MessageSource,
  ): Promise<void> {
    const { ctx } = this;
    const tokens = subject.split(".");
    const memberId = tokens[tokens.length - 2] ?? "";
    const before = inbox.complete.size;
    if (memberId === ctx.memberId && subject.endsWith(`.${ctx.workerId}`) && inbox.isLocal) return;
    if (!ctx.admission.members.has(memberId) && isManifest(data))
      await this.links.refreshMember(memberId);
    inbox.handle(subject, data, source);
    if (inbox.complete.size > before) this.completed(inbox);
  }

  /** Counts an update that became complete, and lets a commit waiting for it be applied. */
  completed(inbox: RoundInbox): void {
    this.ctx.counters.updatesReceived++;
    const commit = this.links.commitOf(inbox.round);
    if (commit) {
      const latest = [...inbox.complete.values()].at(-1);
      if (latest && !inCommit(commit, latest))
        this.ctx.count("late", "update after round's commit");
    }
    this.links.updateComplete();
  }

  /** Ends round: its consumers stop, and its downloaded payload buffers serve later rounds. */
  finish(round: number): void {
    const receiver = this.inboxes.get(round);
    if (!receiver) return;
    // Nothing reads this round's payloads any more (apply has returned).
    const downloaded = receiver.inbox.downloadedPayloads();
    this.stopReceiving(round);
    this.payloads.recycle(downloaded);
  }

  private stopReceiving(round: number): void {
    for (const follower of this.inboxes.get(round)?.fromStore ?? []) follower.stop();
    this.inboxes.delete(round);
  }

  /** Stops every round's consumers and the live subscription. */
  async stop(): Promise<void> {
    for (const round of [...this.inboxes.keys()]) this.stopReceiving(round);
    await Promise.allSettled(this.loops.map((loop) => loop.stop()));
  }
}

function inCommit(commit: Commit, update: ReceivedUpdate): boolean {
  return commit.entries.some(
    (e) =>
      e.memberId === update.manifest.memberId &&
      e.workerId === update.manifest.workerId &&
      equalBytes(e.digest, update.manifest.digest),
  );
}

function isManifest(data: Uint8Array): boolean {
  return data.length > 4 && data[3] === Kind.manifest;
}
