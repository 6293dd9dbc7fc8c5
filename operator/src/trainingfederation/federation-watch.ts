// Watch, don't poll: one watcher per (NATS servers, federation), shared by every
// TrainingFederation of that federation in this cluster. It follows what changes a federation's
// view (KV watches on the member, state and lease buckets, new commits and control messages on
// ordered consumers from the stream's end, and the workers' heartbeats for joins, departures and
// expiries) and, on a change, drops the cached view and puts every object of the federation in
// the work queue. A reconcile reads the view at most once per change of the federation, whatever
// the number of objects: the view is cached per federation spec hash until the next change.
// Heartbeats refresh nothing by themselves (they come every few seconds); a worker whose
// heartbeat ages out of its bucket, which NATS does not announce, is noticed by a timer set to
// the next expiry.
import { DeliverPolicy, jetstream } from "@nats-io/jetstream";
import { Kvm, KvWatchInclude } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "pino";
import { type FederationView, federationNames } from "../../../core/protocol/index.js";

/** How long a burst of changes is gathered before the objects are queued once. */
const DEBOUNCE_MS = 100;
/** Slack after a heartbeat's expiry before the timer looks (the bucket's clock is the server's). */
const EXPIRY_SLACK_MS = 250;
/**
 * How long a federation that cannot be watched (no member created it yet) is not tried again,
 * and its view (absent) is shared by all its objects.
 */
const UNWATCHED_MS = 10_000;

interface Watch {
  federationId: string;
  objects: Set<string>;
  /** Views by the federation spec hash of the objects that read them; cleared on a change. */
  views: Map<string, Promise<FederationView | undefined>>;
  /** Each live worker's last heartbeat (ms), from the workers bucket's watch. */
  heartbeats: Map<string, number>;
  ttlMs: number;
  stops: Array<() => void>;
  debounce?: NodeJS.Timeout;
  expiry?: NodeJS.Timeout;
  broken: boolean;
}

/** Options of {@link FederationWatches}. */
export interface FederationWatchesOptions {
  /** Queues an object (namespace/name) for a reconcile. */
  enqueue(key: string): void;
  log: Logger;
}

/** The operator's federation watchers; see the file comment. */
export class FederationWatches {
  private readonly watches = new Map<string, Promise<Watch>>();
  /** Which watch each object last read through, so it can be forgotten. */
  private readonly objectWatch = new Map<string, string>();
  /** Views of federations that cannot be watched yet, shared for UNWATCHED_MS. */
  private readonly unwatchedViews = new Map<
    string,
    { at: number; view: Promise<FederationView | undefined> }
  >();

  constructor(private readonly options: FederationWatchesOptions) {}

  /**
   * The federation's view for object `key`: from the cache while nothing changed since it was
   * read, else from `read` (one read per change and spec hash, however many objects ask). The
   * first call for a federation starts its watcher.
   */
  async view(
    nc: NatsConnection,
    serversKey: string,
    federationId: string,
    key: string,
    specHash: string,
    read: () => Promise<FederationView | undefined>,
    retry = true,
  ): Promise<FederationView | undefined> {
    const watchKey = `${serversKey}\u0000${federationId}`;
    const previous = this.objectWatch.get(key);
    if (previous !== undefined && previous !== watchKey) this.forget(key);
    this.objectWatch.set(key, watchKey);
    let pending = this.watches.get(watchKey);
    if (!pending) {
      pending = this.start(nc, federationId);
      this.watches.set(watchKey, pending);
      // Tried again after a while, not by every object's reconcile.
      pending.catch(() => setTimeout(() => this.watches.delete(watchKey), UNWATCHED_MS).unref());
    }
    let watch: Watch;
    try {
      watch = await pending;
    } catch {
      // The federation's buckets do not exist yet (or NATS refused): one shared read a while.
      const cacheKey = `${watchKey}\u0000${specHash}`;
      const cached = this.unwatchedViews.get(cacheKey);
      if (cached && Date.now() - cached.at < UNWATCHED_MS) return cached.view;
      const view = read();
      this.unwatchedViews.set(cacheKey, { at: Date.now(), view });
      view.catch(() => this.unwatchedViews.delete(cacheKey));
      return view;
    }
    if (watch.broken) {
      // Its iterators ended (NATS restarted, a bucket was deleted): start another for this
      // object, which the new watch then queues on changes like the rest.
      if (this.watches.get(watchKey) === pending) this.watches.delete(watchKey);
      return retry ? this.view(nc, serversKey, federationId, key, specHash, read, false) : read();
    }
    watch.objects.add(key);
    let view = watch.views.get(specHash);
    if (!view) {
      view = read();
      watch.views.set(specHash, view);
      view.catch(() => watch.views.delete(specHash));
    }
    return view;
  }

  /** Stops queueing an object (it was deleted). */
  forget(key: string): void {
    const watchKey = this.objectWatch.get(key);
    this.objectWatch.delete(key);
    if (watchKey === undefined) return;
    void this.watches
      .get(watchKey)
      ?.then((watch) => watch.objects.delete(key))
      .catch(() => {});
  }

  /** Stops every watcher. */
  async stop(): Promise<void> {
    const all = [...this.watches.values()];
    this.watches.clear();
    for (const pending of all) {
      const watch = await pending.catch(() => undefined);
      if (watch) this.close(watch);
    }
  }

  private close(watch: Watch): void {
    clearTimeout(watch.debounce);
    clearTimeout(watch.expiry);
    for (const stop of watch.stops) stop();
  }

  private async start(nc: NatsConnection, federationId: string): Promise<Watch> {
    const names = federationNames(federationId);
    const js = jetstream(nc);
    const kvm = new Kvm(js);
    const [members, workers, state, lease] = await Promise.all(
      [names.membersBucket, names.workersBucket, names.stateBucket, names.leaseBucket].map(
        (bucket) => kvm.open(bucket, { bindOnly: true }),
      ),
    );
    const ttlMs = (await workers!.status()).ttl;
    const watch: Watch = {
      federationId,
      objects: new Set(),
      views: new Map(),
      heartbeats: new Map(),
      ttlMs,
      stops: [],
      broken: false,
    };
    const follow = (what: string, iterate: () => Promise<void>) =>
      iterate().catch((error) => {
        if (watch.broken) return;
        watch.broken = true;
        this.options.log.warn(
          { federation: federationId, watch: what, error: String(error) },
          "a federation watch ended: the next reconcile starts another",
        );
        this.changed(watch);
      });
    for (const [what, kv] of [
      ["members", members!],
      ["state", state!],
      ["lease", lease!],
    ] as const) {
      const updates = await kv.watch({ include: KvWatchInclude.UpdatesOnly });
      watch.stops.push(() => updates.stop());
      void follow(what, async () => {
        for await (const _ of updates) this.changed(watch);
      });
    }
    const heartbeats = await workers!.watch({ include: KvWatchInclude.LastValue });
    watch.stops.push(() => heartbeats.stop());
    void follow("workers", async () => {
      for await (const entry of heartbeats) {
        const known = watch.heartbeats.has(entry.key);
        if (entry.operation === "PUT") {
          watch.heartbeats.set(entry.key, entry.created.getTime());
          // A worker that joined is news; its next heartbeats are not.
          if (!known && entry.isUpdate) this.changed(watch);
        } else if (known) {
          watch.heartbeats.delete(entry.key);
          this.changed(watch);
        }
        this.scheduleExpiry(watch);
      }
    });
    for (const stream of [names.ledgerStream, names.controlStream]) {
      const consumer = await js.consumers.get(stream, { deliver_policy: DeliverPolicy.New });
      const messages = await consumer.consume();
      watch.stops.push(() => void messages.close());
      void follow(stream, async () => {
        for await (const _ of messages) this.changed(watch);
      });
    }
    this.options.log.info({ federation: federationId }, "watching the federation");
    return watch;
  }

  /** A worker whose heartbeat aged out of the bucket (NATS says nothing) is a change too. */
  private scheduleExpiry(watch: Watch): void {
    clearTimeout(watch.expiry);
    let next = Number.POSITIVE_INFINITY;
    for (const at of watch.heartbeats.values()) next = Math.min(next, at + watch.ttlMs);
    if (!Number.isFinite(next)) return;
    watch.expiry = setTimeout(
      () => {
        const now = Date.now();
        let expired = false;
        for (const [key, at] of watch.heartbeats)
          if (at + watch.ttlMs <= now) {
            watch.heartbeats.delete(key);
            expired = true;
          }
        if (expired) this.changed(watch);
        this.scheduleExpiry(watch);
      },
      Math.max(0, next - Date.now()) + EXPIRY_SLACK_MS,
    );
    watch.expiry.unref();
  }

  /** The federation changed: drop its cached views and queue its objects (once per burst). */
  private changed(watch: Watch): void {
    watch.views.clear();
    if (watch.debounce) return;
    watch.debounce = setTimeout(() => {
      watch.debounce = undefined;
      // Changes during the burst cleared views read meanwhile too.
      watch.views.clear();
      for (const key of watch.objects) this.options.enqueue(key);
    }, DEBOUNCE_MS);
    watch.debounce.unref();
  }
}
