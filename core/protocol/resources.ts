// The JetStream resources of one federation (names in docs/protocol.md, "Subjects, streams,
// buckets"), their idempotent creation, and the few NATS operations the protocol builds on.

import { readFile } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import {
  DeliverPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  type JetStreamClient,
  type JetStreamManager,
  type JetStreamPublishOptions,
  jetstream,
  jetstreamManager,
  type PubAck,
  StorageType,
} from "@nats-io/jetstream";
import { type KV, Kvm } from "@nats-io/kv";
import { type ObjectStore, Objm } from "@nats-io/obj";
import { connect, credsAuthenticator, type NatsConnection } from "@nats-io/transport-node";
import { FederationNotFoundError, ProtocolTransportError } from "./errors.js";
import { isValidId } from "./wire.js";

/**
 * Each update's chunks are spread over this many streams (chunk i on shard i mod 4), so that
 * JetStream stores and delivers them in parallel: one stream is ingested by one server
 * goroutine, which was the bottleneck of a single stream. Part of the protocol: every member must
 * use the same value.
 */
export const UPDATE_SHARDS = 4;

/** Names of one federation's subjects, streams, buckets and object store. */
export interface FederationNames {
  /** The update streams, index = shard. */
  updatesStreams: string[];
  /** `fedtrain.<id>.update.<shard>.<round>.<member>.<worker>` */
  updateSubject(shard: number, round: number, memberId: string, workerId: string): string;
  /** All updates of a round in one shard. */
  roundUpdates(shard: number, round: number): string;
  ledgerStream: string;
  ledgerSubject: string;
  controlStream: string;
  controlSubject: string;
  membersBucket: string;
  workersBucket: string;
  stateBucket: string;
  leaseBucket: string;
  checkpointStore: string;
}

/**
 * How long a JetStream request (KV read or write, publish acknowledgement) waits for its answer.
 * They take milliseconds; one sent as the connection drops is never answered, and whatever waits
 * on it (the coordinator closing a round) should retry soon after the reconnect, not after the
 * client's default 5 s.
 */
export const REQUEST_TIMEOUT_MS = 2_000;

/** The names of federation id's resources. */
export function federationNames(id: string): FederationNames {
  if (!isValidId(id)) throw new RangeError(`federation id "${id}" is not a DNS label`);
  const prefix = `fedtrain.${id}`;
  const updatesStreams = Array.from(
    { length: UPDATE_SHARDS },
    (_, shard) => `FEDTRAIN_${id}_UPDATES_${shard}`,
  );
  return {
    updatesStreams,
    updateSubject: (shard, round, memberId, workerId) =>
      `${prefix}.update.${shard}.${round}.${memberId}.${workerId}`,
    roundUpdates: (shard, round) => `${prefix}.update.${shard}.${round}.>`,
    ledgerStream: `FEDTRAIN_${id}_LEDGER`,
    ledgerSubject: `${prefix}.ledger`,
    controlStream: `FEDTRAIN_${id}_CONTROL`,
    controlSubject: `${prefix}.control`,
    membersBucket: `fedtrain-${id}-members`,
    workersBucket: `fedtrain-${id}-workers`,
    stateBucket: `fedtrain-${id}-state`,
    leaseBucket: `fedtrain-${id}-lease`,
    checkpointStore: `fedtrain-${id}-checkpoints`,
  };
}

/** Opened handles on a federation's resources. */
export interface FederationResources {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  names: FederationNames;
  members: KV;
  workers: KV;
  state: KV;
  lease: KV;
  checkpoints: ObjectStore;
}

/** Timings that size the TTL buckets; the first member to create them fixes them. */
export interface ResourceTimings {
  workerTtlMs: number;
  leaseTtlMs: number;
}

/** Creates (or opens, when they exist) every stream, bucket and store of the federation. */
export async function openFederation(
  nc: NatsConnection,
  federationId: string,
  timings: ResourceTimings,
): Promise<FederationResources> {
  const names = federationNames(federationId);
  try {
    const jsm = await jetstreamManager(nc);
    const js = jetstream(nc, { timeout: REQUEST_TIMEOUT_MS });
    for (const [shard, name] of names.updatesStreams.entries())
      await ensureStream(jsm, {
        name,
        subjects: [`fedtrain.${federationId}.update.${shard}.>`],
        storage: StorageType.File,
        // Dedupe window for retried chunk publishes across a server restart.
        duplicate_window: 120 * 1e9,
      });
    await ensureStream(jsm, {
      name: names.ledgerStream,
      subjects: [names.ledgerSubject],
      storage: StorageType.File,
      duplicate_window: 120 * 1e9,
    });
    await ensureStream(jsm, {
      name: names.controlStream,
      subjects: [names.controlSubject],
      storage: StorageType.File,
      max_msgs: 10_000,
    });
    const kvm = new Kvm(js);
    const members = await kvm.create(names.membersBucket, { history: 1 });
    const workers = await kvm.create(names.workersBucket, { history: 1, ttl: timings.workerTtlMs });
    const state = await kvm.create(names.stateBucket, { history: 5 });
    const lease = await kvm.create(names.leaseBucket, { history: 1, ttl: timings.leaseTtlMs });
    const checkpoints = await new Objm(js).create(names.checkpointStore);
    return { nc, js, jsm, names, members, workers, state, lease, checkpoints };
  } catch (error) {
    throw new ProtocolTransportError(
      `cannot open the JetStream resources of federation ${federationId}: is JetStream enabled?`,
      { cause: error },
    );
  }
}

/**
 * Opens the streams, buckets and store of a federation that a member created, creating nothing:
 * for readers (the operator's view, deregistration, ledger verification), which must not fix a
 * federation's settings before its members do. Throws {@link FederationNotFoundError} when any
 * of them is missing.
 */
export async function openExistingFederation(
  nc: NatsConnection,
  federationId: string,
): Promise<FederationResources> {
  const names = federationNames(federationId);
  const buckets = [names.membersBucket, names.workersBucket, names.stateBucket, names.leaseBucket];
  let jsm: JetStreamManager;
  try {
    jsm = await jetstreamManager(nc);
  } catch (error) {
    throw new ProtocolTransportError("JetStream is not available: is it enabled?", {
      cause: error,
    });
  }
  const streams = [
    ...names.updatesStreams,
    names.ledgerStream,
    names.controlStream,
    ...buckets.map((bucket) => `KV_${bucket}`),
    `OBJ_${names.checkpointStore}`,
  ];
  await Promise.all(
    streams.map(async (stream) => {
      try {
        await jsm.streams.info(stream);
      } catch (error) {
        if (error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamNotFound)
          throw new FederationNotFoundError(
            `federation ${federationId} has no stream ${stream}: no member has joined it on this NATS yet`,
            { cause: error },
          );
        throw new ProtocolTransportError(`cannot read stream ${stream}`, { cause: error });
      }
    }),
  );
  const js = jetstream(nc, { timeout: REQUEST_TIMEOUT_MS });
  const kvm = new Kvm(js);
  const [members, workers, state, lease] = await Promise.all(buckets.map((b) => kvm.open(b)));
  return {
    nc,
    js,
    jsm,
    names,
    members: members!,
    workers: workers!,
    state: state!,
    lease: lease!,
    // Checked above: the store's stream exists.
    checkpoints: await new Objm(js).open(names.checkpointStore, false),
  };
}

async function ensureStream(
  jsm: JetStreamManager,
  config: Parameters<JetStreamManager["streams"]["add"]>[0],
): Promise<void> {
  try {
    await jsm.streams.info(config.name!);
  } catch {
    try {
      await jsm.streams.add(config);
    } catch (error) {
      // Another worker created it between our info and add.
      await jsm.streams.info(config.name!).catch(() => {
        throw error;
      });
    }
  }
}

/** How to authenticate to NATS and secure the connection (the TrainerConfig's transport). */
export interface NatsConnectOptions {
  /** A NATS user credentials file (`.creds`: the user JWT and its NKey seed). */
  credentialsFile?: string;
  /** TLS: the CA bundle to trust, and a client certificate and key for mutual TLS. */
  tls?: { caFile?: string; certFile?: string; keyFile?: string };
}

/**
 * Connects to NATS so that the connection survives server restarts (reconnects forever), with
 * user credentials and TLS when given. A credentials file that cannot be read throws its
 * file-system error (code ENOENT, EACCES) before any connection is attempted.
 */
export async function connectNats(
  servers: string | string[],
  name?: string,
  options: NatsConnectOptions = {},
): Promise<NatsConnection> {
  const credentials = options.credentialsFile ? await readFile(options.credentialsFile) : undefined;
  const tls = options.tls
    ? Object.fromEntries(Object.entries(options.tls).filter(([, file]) => file))
    : undefined;
  return connect({
    servers,
    name: name ?? "fedtrain",
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    pingInterval: 5_000,
    // Nothing in fedtrain needs its own messages back; a worker would otherwise receive every
    // update it publishes on its live subscription, only to drop it.
    noEcho: true,
    ...(credentials ? { authenticator: credsAuthenticator(new Uint8Array(credentials)) } : {}),
    ...(tls ? { tls } : {}),
  });
}

/** True when a JetStream publish failed because the expected last sequence did not match. */
export function isWrongLastSequence(error: unknown): boolean {
  return (
    error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamWrongLastSequence
  );
}

/**
 * Publishes to a stream, retrying transient failures (no responders while a server restarts,
 * timeouts, a cut network) until retryMs has passed (Infinity: for good) or `stopped` says so.
 * A msgID makes the retries idempotent.
 */
export async function publishDurable(
  js: JetStreamClient,
  subject: string,
  data: Uint8Array,
  options: Partial<JetStreamPublishOptions>,
  retryMs: number,
  stopped: () => boolean = () => false,
): Promise<PubAck> {
  const giveUp = Date.now() + retryMs;
  let delay = 50;
  for (;;) {
    try {
      return await js.publish(subject, data, { timeout: REQUEST_TIMEOUT_MS, ...options });
    } catch (error) {
      if (error instanceof JetStreamApiError || Date.now() > giveUp || stopped()) throw error;
      await sleep(delay);
      delay = Math.min(delay * 2, 1_000);
    }
  }
}

/** Every message of a stream (optionally one subject) from sequence `from` to the current end. */
export async function readStream(
  resources: Pick<FederationResources, "js" | "jsm">,
  stream: string,
  from = 1,
): Promise<{ seq: number; data: Uint8Array; storedAtMs: number }[]> {
  const info = await resources.jsm.streams.info(stream);
  const last = info.state.last_seq;
  if (info.state.messages === 0 || last < from) return [];
  const consumer = await resources.js.consumers.get(stream, {
    deliver_policy: DeliverPolicy.StartSequence,
    opt_start_seq: Math.max(from, info.state.first_seq),
  });
  const out: { seq: number; data: Uint8Array; storedAtMs: number }[] = [];
  const messages = await consumer.consume({ max_messages: 256 });
  for await (const m of messages) {
    out.push({ seq: m.seq, data: m.data, storedAtMs: m.info.timestampNanos / 1e6 });
    if (m.seq >= last || m.info.pending === 0) break;
  }
  await messages.close();
  return out;
}

/**
 * Reads every message of a stream on one subject (wildcards allowed), in stream order, with its
 * subject: e.g. one round's updates from an update stream.
 */
export async function readSubject(
  resources: Pick<FederationResources, "js" | "jsm">,
  stream: string,
  subject: string,
): Promise<{ seq: number; subject: string; data: Uint8Array }[]> {
  const info = await resources.jsm.streams.info(stream, { subjects_filter: subject });
  const expected = Object.values(info.state.subjects ?? {}).reduce((n, count) => n + count, 0);
  if (expected === 0) return [];
  const consumer = await resources.js.consumers.get(stream, { filter_subjects: subject });
  const out: { seq: number; subject: string; data: Uint8Array }[] = [];
  const messages = await consumer.consume({ max_messages: 256 });
  for await (const m of messages) {
    out.push({ seq: m.seq, subject: m.subject, data: m.data });
    if (out.length >= expected || m.info.pending === 0) break;
  }
  await messages.close();
  return out;
}

/** NATS URLs for logs: a user and password in a URL (nats://user:pass@host) are never shown. */
export function displayUrls(urls: readonly string[]): string {
  return urls.map((url) => url.replace(/\/\/[^/@]*@/, "//***@")).join(",");
}
