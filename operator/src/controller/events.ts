// Kubernetes Events for what happens to an object, through the events.k8s.io API, where
// `kubectl describe` and `kubectl events` show them. Repeats aggregate as client-go's recorder
// does: the same (object, reason, note) within the series window bumps the existing Event's
// series count instead of creating another, so a condition flapping every resync costs one
// Event, not thousands. Recording never fails a reconcile: an Event that cannot be written is
// logged and dropped.
import { randomBytes } from "node:crypto";
import {
  EventsV1Api,
  type EventsV1Event,
  type KubeConfig,
  type KubernetesObject,
  PatchStrategy,
  setHeaderOptions,
} from "@kubernetes/client-node";
import type { Logger } from "pino";

/** How long a repeat still counts as the same Event (client-go uses 6 minutes for series). */
const SERIES_WINDOW_MS = 6 * 60_000;
/** Events remembered for aggregation (the oldest are forgotten first). */
const REMEMBERED = 4096;

/** An Event's type: Normal, or Warning for something a user should look at. */
export type EventType = "Normal" | "Warning";

/** One recorded Event, as the recorder remembers it for aggregation. */
interface Series {
  name: string;
  namespace: string;
  count: number;
  firstMs: number;
  lastMs: number;
}

/** Records Events about objects; see the file comment. */
export class EventRecorder {
  private readonly api: EventsV1Api;
  private readonly series = new Map<string, Series>();

  constructor(
    kubeConfig: KubeConfig,
    private readonly controller: string,
    private readonly instance: string,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {
    this.api = kubeConfig.makeApiClient(EventsV1Api);
  }

  /** Records that `reason` happened to `object` (note: a sentence for humans, ≤ 1 kB). */
  async record(
    object: KubernetesObject,
    type: EventType,
    reason: string,
    action: string,
    note: string,
  ): Promise<void> {
    const meta = object.metadata ?? {};
    const namespace = meta.namespace ?? "default";
    const text = note.length > 1024 ? `${note.slice(0, 1021)}...` : note;
    const key = `${meta.uid}\u0000${reason}\u0000${text}`;
    const now = this.now();
    const seen = this.series.get(key);
    try {
      if (seen && now - seen.lastMs < SERIES_WINDOW_MS) {
        seen.count++;
        seen.lastMs = now;
        await this.api.patchNamespacedEvent(
          {
            name: seen.name,
            namespace: seen.namespace,
            body: {
              series: { count: seen.count, lastObservedTime: microTime(now) },
            },
          },
          setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
        );
        return;
      }
      const name = `${meta.name ?? "object"}.${now.toString(16)}${randomBytes(2).toString("hex")}`;
      const body: EventsV1Event = {
        metadata: { name, namespace },
        eventTime: microTimeDate(now),
        type,
        reason,
        action,
        note: text,
        reportingController: this.controller,
        reportingInstance: this.instance,
        regarding: {
          apiVersion: object.apiVersion,
          kind: object.kind,
          name: meta.name,
          namespace,
          uid: meta.uid,
          resourceVersion: meta.resourceVersion,
        },
      };
      await this.api.createNamespacedEvent({ namespace, body });
      this.series.delete(key);
      this.series.set(key, { name, namespace, count: 1, firstMs: now, lastMs: now });
      if (this.series.size > REMEMBERED) {
        const oldest = this.series.keys().next().value;
        if (oldest !== undefined) this.series.delete(oldest);
      }
    } catch (error) {
      this.log.warn(
        { reason, object: `${namespace}/${meta.name}`, error: String(error) },
        "cannot record an Event",
      );
    }
  }
}

/**
 * A MicroTime as the API server parses it (six fractional digits): a JavaScript Date serializes
 * with three, which the events API refuses.
 */
function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");
}

/** A Date whose serialization (toISOString, toJSON) is the MicroTime the API server parses. */
function microTimeDate(ms: number): Date {
  const date = new Date(ms);
  const text = microTime(ms);
  date.toISOString = () => text;
  date.toJSON = () => text;
  return date;
}
