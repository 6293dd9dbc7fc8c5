// The trainer's Prometheus metrics and its HTTP endpoints: /metrics, /healthz (the process
// serves) and /readyz (the model and data are loaded, training can start or is running).
import http from "node:http";
import { Counter, Gauge, Registry } from "prom-client";

/** Every metric the trainer exports, in one registry; per-worker series carry `worker`. */
export class TrainerMetrics {
  readonly registry = new Registry();
  readonly loss = this.gauge(
    "fedtrain_trainer_loss",
    "Training loss of the last inner step of the last applied round",
  );
  readonly evalLoss = this.gauge(
    "fedtrain_trainer_eval_loss",
    "Loss of the global model on the shared evaluation set after the last applied round",
  );
  readonly round = this.gauge(
    "fedtrain_trainer_round",
    "Rounds applied to the global model (the round the worker trains next)",
  );
  readonly innerStep = this.gauge(
    "fedtrain_trainer_inner_step",
    "Inner optimiser steps the worker has taken, counting those before the checkpoint it resumed",
  );
  readonly samplesPerSecond = this.gauge(
    "fedtrain_trainer_samples_per_second",
    "Training examples per second of the worker over its last round (inner steps and exchange)",
  );
  readonly compressionRatio = this.gauge(
    "fedtrain_trainer_compression_ratio",
    "Dense fp32 size of the pseudo-gradient divided by the bytes sent for it, last round",
  );
  readonly bytesSent = new Counter({
    name: "fedtrain_trainer_bytes_sent_total",
    help: "Bytes of encoded pseudo-gradients the worker published",
    labelNames: ["worker"],
    registers: [this.registry],
  });
  readonly bytesReceived = new Counter({
    name: "fedtrain_trainer_bytes_received_total",
    help: "Bytes of other workers' encoded pseudo-gradients in the commits the worker applied",
    labelNames: ["worker"],
    registers: [this.registry],
  });
  readonly updatesBounded = new Counter({
    name: "fedtrain_trainer_updates_bounded_total",
    help: "Updates of each member in the applied commits that the norm bound scaled down (clipped) or left out (dropped), counted once per process",
    labelNames: ["member", "action"],
    registers: [this.registry],
  });
  readonly roundsUnprotected = new Counter({
    name: "fedtrain_trainer_rounds_unprotected_total",
    help: "Applied rounds with too few updates for the aggregation's stated protection (sync.aggregation.tolerate, or TrimmedMean's trimFraction)",
    registers: [this.registry],
  });
  readonly memberCosine = new Gauge({
    name: "fedtrain_trainer_member_update_cosine",
    help: "Cosine between the member's update and the aggregate of the last applied round (its lowest, for a member with several workers); an attacker's is often negative",
    labelNames: ["member"],
    registers: [this.registry],
  });
  readonly memberReputation = new Gauge({
    name: "fedtrain_trainer_member_reputation",
    help: "The member's update cosine averaged over the rounds applied, exponentially (weight 0.2 on the newest round)",
    labelNames: ["member"],
    registers: [this.registry],
  });
  readonly info = new Gauge({
    name: "fedtrain_trainer_info",
    help: "The backend and device the worker computes on (value 1)",
    labelNames: ["backend", "device", "member", "worker"],
    registers: [this.registry],
  });

  private gauge(name: string, help: string): Gauge<"worker"> {
    return new Gauge({ name, help, labelNames: ["worker"], registers: [this.registry] });
  }
}

/** What /readyz reports. */
export interface Readiness {
  ready(): boolean;
}

/** Parses `host:port` (IPv6 hosts in brackets); an empty host listens on every address. */
export function parseAddress(address: string): { host: string | undefined; port: number } {
  const colon = address.lastIndexOf(":");
  const port = Number(address.slice(colon + 1));
  if (colon < 0 || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new RangeError(`metrics address ${JSON.stringify(address)} is not host:port`);
  }
  const host = address.slice(0, colon).replace(/^\[(.*)\]$/, "$1");
  return { host: host || undefined, port };
}

/** Serves /metrics, /healthz and /readyz on `address` (host:port; port 0 picks a free one). */
export function serveTrainerEndpoints(
  address: string,
  metrics: TrainerMetrics,
  readiness: Readiness,
): Promise<http.Server> {
  const { host, port } = parseAddress(address);
  const server = http.createServer((request, response) => {
    const path = (request.url ?? "/").split("?")[0];
    if (path === "/metrics") {
      metrics.registry.metrics().then(
        (text) => {
          response.writeHead(200, { "content-type": metrics.registry.contentType });
          response.end(text);
        },
        (error: unknown) => {
          response.writeHead(500, { "content-type": "text/plain" });
          response.end(`${String(error)}\n`);
        },
      );
      return;
    }
    if (path === "/healthz") {
      response.writeHead(200, { "content-type": "text/plain" });
      response.end("ok\n");
      return;
    }
    if (path === "/readyz") {
      const ready = readiness.ready();
      response.writeHead(ready ? 200 : 503, { "content-type": "text/plain" });
      response.end(ready ? "ok\n" : "loading model and data\n");
      return;
    }
    response.writeHead(404, { "content-type": "text/plain" });
    response.end("not found\n");
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve(server);
    });
  });
}
