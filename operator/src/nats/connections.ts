// The operator's NATS connections: one per distinct set of server URLs, opened on first use,
// reused by every reconcile and closed on shutdown. A connection keeps reconnecting forever in the
// background; callers ask for a *connected* one and get none, at once, while NATS is away, so a
// NATS outage never holds up the Kubernetes side of a reconcile.
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { connect, credsAuthenticator, type NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "pino";
import { displayUrls } from "../../../core/protocol/resources.js";

/** Options of {@link NatsConnections}. */
export interface NatsConnectionsOptions {
  /** A NATS credentials file (JWT + NKey seed) the operator authenticates with; read per connect. */
  credentialsFile?: string;
  /**
   * A directory with ca.crt (and tls.crt, tls.key for mutual TLS) for the operator's own
   * connections: the same files a TrainingFederation's tlsSecretRef gives its trainers.
   */
  tlsDir?: string;
  /** The client name NATS shows for the operator's connections. */
  name: string;
  log: Logger;
}

// A new connection gets this long to come up before callers are told NATS is unreachable.
const connectGraceMs = 2_000;
const pollMs = 50;

interface Entry {
  urls: string[];
  createdAt: number;
  connection?: NatsConnection;
  /** True while the connection is up (between connect/reconnect and disconnect). */
  up: boolean;
  closed: boolean;
}

/** A pool of NATS connections keyed by their server URL set. */
export class NatsConnections {
  private readonly entries = new Map<string, Entry>();
  /** Messages published by connections already closed. */
  private closedSent = 0;

  constructor(private readonly options: NatsConnectionsOptions) {}

  /** Messages every connection opened so far has published (closed ones included). */
  messagesSent(): number {
    let sent = this.closedSent;
    for (const entry of this.entries.values()) sent += entry.connection?.stats().outMsgs ?? 0;
    return sent;
  }

  /** The key of a URL set: order and duplicates do not make another connection. */
  static key(urls: readonly string[]): string {
    return [...new Set(urls)].sort().join(",");
  }

  /**
   * A connected connection to these servers, waiting at most waitMs for one (by default only
   * within the grace period of a connection just opened); undefined when NATS is not reachable.
   */
  async connected(urls: readonly string[], waitMs?: number): Promise<NatsConnection | undefined> {
    const entry = this.entry(urls);
    const deadline =
      Date.now() + (waitMs ?? Math.max(0, entry.createdAt + connectGraceMs - Date.now()));
    for (;;) {
      if (entry.closed) return undefined;
      if (entry.up && entry.connection && !entry.connection.isClosed()) return entry.connection;
      if (Date.now() >= deadline) return undefined;
      await sleep(pollMs);
    }
  }

  /** Closes every connection (connections still trying to come up are abandoned). */
  async close(): Promise<void> {
    const entries = [...this.entries.values()];
    this.entries.clear();
    await Promise.all(
      entries.map(async (entry) => {
        entry.closed = true;
        await entry.connection?.close().catch(() => {});
      }),
    );
  }

  private entry(urls: readonly string[]): Entry {
    const key = NatsConnections.key(urls);
    let entry = this.entries.get(key);
    if (entry) return entry;
    entry = { urls: [...new Set(urls)].sort(), createdAt: Date.now(), up: false, closed: false };
    this.entries.set(key, entry);
    void this.open(entry);
    return entry;
  }

  private async open(entry: Entry): Promise<void> {
    const { credentialsFile, name, log } = this.options;
    const servers = displayUrls(entry.urls);
    try {
      const connection = await connect({
        servers: entry.urls,
        name,
        // Keep trying: the first connect too (NATS may start after the operator).
        waitOnFirstConnect: true,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 1_000,
        pingInterval: 5_000,
        ...(credentialsFile
          ? { authenticator: credsAuthenticator(() => readFileSync(credentialsFile)) }
          : {}),
        ...(this.options.tlsDir ? { tls: tlsFiles(this.options.tlsDir) } : {}),
      });
      if (entry.closed) {
        await connection.close().catch(() => {});
        return;
      }
      entry.connection = connection;
      entry.up = true;
      log.info({ servers }, "connected to NATS");
      void connection.closed().then(() => {
        entry.up = false;
        this.closedSent += connection.stats().outMsgs;
        if (entry.connection === connection) entry.connection = undefined;
      });
      for await (const status of connection.status()) {
        if (status.type === "disconnect") {
          entry.up = false;
          log.warn({ servers }, "disconnected from NATS; reconnecting");
        } else if (status.type === "reconnect") {
          entry.up = true;
          log.info({ servers }, "reconnected to NATS");
        }
      }
    } catch (error) {
      // Only a configuration error ends the retries (a bad URL, an unreadable credentials file):
      // drop the entry so the next caller tries again.
      log.error({ servers, error: String(error) }, "cannot connect to NATS");
      if (this.entries.get(NatsConnections.key(entry.urls)) === entry)
        this.entries.delete(NatsConnections.key(entry.urls));
    }
  }
}

/** The TLS options of a directory with ca.crt and, for mutual TLS, tls.crt and tls.key. */
function tlsFiles(dir: string): { caFile: string; certFile?: string; keyFile?: string } {
  const file = (name: string) => path.join(dir, name);
  return {
    caFile: file("ca.crt"),
    ...(existsSync(file("tls.crt")) && existsSync(file("tls.key"))
      ? { certFile: file("tls.crt"), keyFile: file("tls.key") }
      : {}),
  };
}
