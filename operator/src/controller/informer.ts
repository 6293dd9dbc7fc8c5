// A cache of one kind of object, kept current by list + watch (one per watched namespace, or one
// for all). client-node's informer re-lists after 410 Gone but stops on any other error: this one
// restarts it with back-off, so a restarted API server or a dropped connection heals by itself.
import { setTimeout as sleep } from "node:timers/promises";
import {
  type KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
  makeInformer,
} from "@kubernetes/client-node";
import type { Logger } from "pino";

/** What changed, for the handler. */
export type InformerEvent = "add" | "update" | "delete";

/** One page of a list: at most `limit` objects, from where `_continue` says. */
export interface ListPage {
  limit: number;
  _continue?: string;
}

/** How to list and watch one kind. */
export interface InformerOptions<T extends KubernetesObject> {
  /** Kind, for logs. */
  kind: string;
  /** API path of the collection in a namespace (or across all when namespace is undefined). */
  path(namespace: string | undefined): string;
  /** Lists one page (limit and continue passed on to the API server). */
  list(namespace: string | undefined, page: ListPage): Promise<KubernetesListObject<T>>;
  /** Namespaces to watch; empty means all. */
  namespaces: string[];
  labelSelector?: string;
  /** Objects per list page; default 250. */
  pageSize?: number;
  /**
   * Trims an object before it is cached (in place), keeping only what reconciles read: the cache
   * of a thousand objects then stays small.
   */
  transform?(object: T): void;
  onEvent(event: InformerEvent, object: T): void;
}

// Objects per list page. The API server serves a long list in pages of one consistent snapshot;
// asking page by page and trimming each before the next keeps the operator from holding a whole
// list of thousands of objects as text, as parsed JSON and as client objects at once (client-go's
// informers page by 500 for the same reason).
const defaultPageSize = 250;

// Restart back-off after a failed watch: quick at first, at most half a minute.
const restartBaseMs = 500;
const restartMaxMs = 30_000;

type ListWatch<T extends KubernetesObject> = ReturnType<typeof makeInformer<T>>;

/** A watched cache of one kind. */
export class Informer<T extends KubernetesObject> {
  private readonly watches: { namespace?: string; informer: ListWatch<T>; failures: number }[] = [];
  private stopped = false;

  constructor(
    kubeConfig: KubeConfig,
    private readonly options: InformerOptions<T>,
    private readonly log: Logger,
  ) {
    const scopes = options.namespaces.length > 0 ? options.namespaces : [undefined];
    for (const namespace of scopes) {
      const informer = makeInformer<T>(
        kubeConfig,
        options.path(namespace),
        () => this.listAll(namespace),
        options.labelSelector,
      );
      const entry = { namespace, informer, failures: 0 };
      informer.on("add", (o) => options.onEvent("add", this.trim(o)));
      informer.on("update", (o) => {
        entry.failures = 0;
        options.onEvent("update", this.trim(o));
      });
      informer.on("delete", (o) => options.onEvent("delete", o));
      informer.on("error", (error) => this.restart(entry, error));
      this.watches.push(entry);
    }
  }

  /** Lists and starts watching; resolves once every cache holds a full list. */
  async start(): Promise<void> {
    await Promise.all(this.watches.map((w) => this.startOne(w)));
  }

  /** The cached object, if any. */
  get(namespace: string, name: string): T | undefined {
    for (const w of this.watches) {
      if (w.namespace !== undefined && w.namespace !== namespace) continue;
      const object = w.informer.get(name, namespace);
      if (object) return object;
    }
    return undefined;
  }

  /** Every cached object. */
  list(): T[] {
    return this.watches.flatMap((w) => w.informer.list());
  }

  /** Stops watching. */
  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.watches.map((w) => w.informer.stop()));
  }

  /** Lists every object page by page, each trimmed as its page arrives. */
  private async listAll(namespace: string | undefined): Promise<KubernetesListObject<T>> {
    const items: T[] = [];
    let page: KubernetesListObject<T> | undefined;
    let next: string | undefined;
    do {
      const limit = this.options.pageSize ?? defaultPageSize;
      page = await this.options.list(namespace, { limit, _continue: next });
      for (const item of page.items) items.push(this.trim(item));
      next = continueToken(page);
    } while (next);
    // The last page carries the snapshot's resourceVersion, where the watch starts.
    return { ...page, items };
  }

  private trim(object: T): T {
    stripManagedFields(object);
    this.options.transform?.(object);
    return object;
  }

  private async startOne(entry: (typeof this.watches)[number]): Promise<void> {
    for (;;) {
      try {
        await entry.informer.start();
        return;
      } catch (error) {
        if (this.stopped) return;
        await sleep(this.backOff(entry, error, "list failed; retrying"));
      }
    }
  }

  private restart(entry: (typeof this.watches)[number], error: unknown): void {
    if (this.stopped) return;
    setTimeout(
      () => {
        if (!this.stopped) void this.startOne(entry);
      },
      this.backOff(entry, error, "watch failed; restarting"),
    ).unref();
  }

  /** Counts a failure, logs it, and returns how long to wait before the next try. */
  private backOff(entry: (typeof this.watches)[number], error: unknown, message: string): number {
    entry.failures += 1;
    const delay = Math.min(restartMaxMs, restartBaseMs * 2 ** entry.failures);
    const { kind } = this.options;
    this.log.warn(
      { kind, namespace: entry.namespace, error: String(error), retryInMs: delay },
      message,
    );
    return delay;
  }
}

/** The token of a list's next page, if any (typed lists call it _continue, raw JSON continue). */
function continueToken(list: KubernetesListObject<KubernetesObject>): string | undefined {
  const metadata = list.metadata as { _continue?: string; continue?: string } | undefined;
  return metadata?._continue || metadata?.continue || undefined;
}

/**
 * Drops metadata.managedFields from a cached object (in place: the handlers see the cache's own
 * copy). The operator never reads them, and they are often the largest part of an object, so the
 * cache stays a fraction of the size; controller-runtime's caches do the same.
 */
function stripManagedFields<T extends KubernetesObject>(object: T): T {
  if (object.metadata?.managedFields) delete object.metadata.managedFields;
  return object;
}
