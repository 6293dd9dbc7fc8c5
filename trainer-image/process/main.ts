// The trainer process (the image's entry point). `run` loads the TrainerConfig, initialises the
// compute backend, serves /metrics, /healthz and /readyz, trains over an exchange transport and
// checkpoints; SIGTERM or SIGINT stops it after the current inner step with a checkpoint.
// The exchange is local (workers 0..N-1 of this process) or nats (this one worker joins the
// federation over core/protocol, and leaves it gracefully when it stops): see cli.ts's
// ExchangeMode and resolveExchange below.
// `leave` deregisters the member from its federation (leave.ts), `export` writes a checkpoint's
// global model as tfjs and safetensors files.
// Exit codes: 0 the run's last round is done, 1 runtime failure, 2 configuration or usage error
// (the operator's Job does not retry it), 128 + the signal's number (143 for SIGTERM, 130 for
// SIGINT) when a signal stopped it cleanly before the last round: a Job must not count a trainer
// that a liveness probe, an eviction or a node drain stopped as having completed the run.
import type http from "node:http";
import { constants } from "node:os";
import type { NatsConnection } from "@nats-io/transport-node";
import { type Logger, pino } from "pino";
import { specHashBytes } from "../../core/api/index.js";
import { redact } from "../../core/logging/redact.js";
import { AdmissionError, connectNats, displayUrls } from "../../core/protocol/index.js";
import { isValidId } from "../../core/protocol/wire.js";
import { BackendUnavailableError, initBackend } from "../training/backend.js";
import { CheckpointError, readCheckpoint } from "../training/checkpoint.js";
import { exportCheckpoint } from "../training/export.js";
import { federationWorkerId } from "../training/roster.js";
import { SafetensorsError } from "../training/safetensors.js";
import { type LeaveCommand, parseCommand, type RunCommand, UsageError, usage } from "./cli.js";
import { type ExchangeTransport, LocalExchange } from "./exchange.js";
import { leaveFederation } from "./leave.js";
import { serveTrainerEndpoints, TrainerMetrics } from "./metrics.js";
import { NatsExchange } from "./nats-exchange.js";
import { TrainerRuntime, workerId } from "./runtime.js";
import {
  CONFIG_ERROR_EXIT_CODE,
  checkNatsTransport,
  loadTrainerConfig,
  readMemberPrivateKey,
  TrainerConfigError,
} from "./trainer-config.js";

type TrainerConfig = Awaited<ReturnType<typeof loadTrainerConfig>>;

/** What the NATS exchange needs beyond the config, checked before anything starts. */
interface NatsSetup {
  privateKey: Uint8Array;
  specHash: Uint8Array;
}

// Stop well inside the pod's 60 s termination grace period, even if a step or a write hangs.
const STOP_DEADLINE_MS = 50_000;
// Leaving is a few NATS requests; one that waits longer is a NATS problem, for the Job's retry.
const LEAVE_TIMEOUT_MS = 30_000;

async function main(): Promise<number> {
  let command: ReturnType<typeof parseCommand>;
  try {
    command = parseCommand(process.argv.slice(2), process.env);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(`fedtrain-trainer: ${error.message}\n\n${usage()}`);
    return CONFIG_ERROR_EXIT_CODE;
  }
  switch (command.command) {
    case "help":
      console.log(usage());
      return 0;
    case "export":
      try {
        const checkpoint = await readCheckpoint(command.checkpoint);
        const written = await exportCheckpoint(checkpoint, command.out, command.format);
        console.log(JSON.stringify({ exported: written, rounds: checkpoint.rounds }));
        return 0;
      } catch (error) {
        const code = (error as { code?: string }).code;
        if (
          error instanceof CheckpointError ||
          error instanceof SafetensorsError ||
          code === "ENOENT"
        ) {
          console.error(`fedtrain-trainer export: ${(error as Error).message}`);
          return CONFIG_ERROR_EXIT_CODE;
        }
        throw error;
      }
    case "leave":
      return leave(command);
    case "run":
      return run(command);
  }
}

async function leave(command: LeaveCommand): Promise<number> {
  let config: TrainerConfig;
  try {
    config = await loadTrainerConfig(command.config);
  } catch (error) {
    if (!(error instanceof TrainerConfigError)) throw error;
    console.error(`fedtrain-trainer leave: configuration error: ${error.message}`);
    return CONFIG_ERROR_EXIT_CODE;
  }
  const log = pino({
    level: command.logLevel,
    base: {
      component: "fedtrain-trainer",
      command: "leave",
      federation: config.federation.id,
      member: config.member.id,
      pod: process.env.POD_NAME,
    },
    redact,
  });
  try {
    await leaveFederation(config, { timeoutMs: LEAVE_TIMEOUT_MS, log });
    return 0;
  } catch (error) {
    if (error instanceof TrainerConfigError) {
      log.error({ err: error }, "configuration error");
      return CONFIG_ERROR_EXIT_CODE;
    }
    log.error({ err: error }, "could not deregister the member");
    return 1;
  }
}

async function run(command: RunCommand): Promise<number> {
  let config: TrainerConfig;
  let nats: NatsSetup | null;
  try {
    config = await loadTrainerConfig(command.config);
    nats = resolveExchange(command, config) === "nats" ? await natsSetup(config) : null;
  } catch (error) {
    if (!(error instanceof TrainerConfigError)) throw error;
    console.error(`fedtrain-trainer: configuration error: ${error.message}`);
    return CONFIG_ERROR_EXIT_CODE;
  }
  const indices =
    command.workers > 1 && !nats
      ? Array.from({ length: command.workers }, (_, i) => i)
      : [command.workerIndex];
  const log = pino({
    level: command.logLevel,
    base: {
      component: "fedtrain-trainer",
      federation: config.federation.id,
      member: config.member.id,
      pod: process.env.POD_NAME,
    },
    redact,
  });
  const stopping = new AbortController();
  let stoppedBy: NodeJS.Signals | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping.signal.aborted) return;
    stoppedBy = signal;
    log.info({ signal }, "stopping after the current inner step");
    stopping.abort();
    setTimeout(() => {
      log.error({ deadlineMs: STOP_DEADLINE_MS }, "did not stop in time; exiting");
      process.exit(1);
    }, STOP_DEADLINE_MS).unref();
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);

  const metrics = new TrainerMetrics();
  const current: { runtime: TrainerRuntime | null } = { runtime: null };
  let server: http.Server;
  try {
    server = await serveTrainerEndpoints(command.metricsAddress, metrics, {
      ready: () => current.runtime?.ready() ?? false,
    });
  } catch (error) {
    log.error({ err: error, address: command.metricsAddress }, "cannot serve metrics");
    return error instanceof RangeError ? CONFIG_ERROR_EXIT_CODE : 1;
  }
  log.info({ address: server.address() }, "serving /metrics, /healthz and /readyz");
  try {
    const code = await train(command, config, nats, indices, metrics, log, stopping.signal, (r) => {
      current.runtime = r;
    });
    return code === STOPPED ? 128 + constants.signals[stoppedBy ?? "SIGTERM"] : code;
  } finally {
    server.closeAllConnections();
    server.close();
    current.runtime?.dispose();
  }
}

/** `auto` is nats when the config names NATS servers (what the operator renders), else local. */
function resolveExchange(command: RunCommand, config: TrainerConfig): "local" | "nats" {
  if (command.exchange !== "auto") return command.exchange;
  return config.transport.natsUrls.length > 0 ? "nats" : "local";
}

async function natsSetup(config: TrainerConfig): Promise<NatsSetup> {
  await checkNatsTransport(config);
  if (!isValidId(config.member.id)) {
    throw new TrainerConfigError(
      `member.id: "${config.member.id}" must be a DNS label (lower-case letters, digits and '-') to take part in a federation over NATS`,
    );
  }
  let specHash: Uint8Array;
  try {
    specHash = specHashBytes(config.federationSpecHash);
  } catch (error) {
    throw new TrainerConfigError(`federationSpecHash: ${(error as Error).message}`, {
      cause: error,
    });
  }
  return { privateKey: await readMemberPrivateKey(config), specHash };
}

/** What train() returns when a signal stopped it before the run's last round. */
const STOPPED = -1;

async function train(
  command: RunCommand,
  config: TrainerConfig,
  nats: NatsSetup | null,
  indices: number[],
  metrics: TrainerMetrics,
  log: Logger,
  signal: AbortSignal,
  publish: (runtime: TrainerRuntime) => void,
): Promise<number> {
  const choice = command.backend ?? config.backend;
  let backend: Awaited<ReturnType<typeof initBackend>>;
  try {
    backend = await initBackend(choice, { log: (line) => log.debug(line) });
  } catch (error) {
    if (!(error instanceof BackendUnavailableError)) throw error;
    log.error({ choice }, error.message);
    return 1;
  }
  log.info(
    {
      requested: choice,
      backend: backend.backend,
      tfjsBackend: backend.tfjsBackend,
      device: backend.device,
      skipped: backend.skipped,
    },
    `computing on ${backend.backend} (${backend.device})`,
  );
  let nc: NatsConnection | undefined;
  let transport: ExchangeTransport;
  if (nats) {
    const index = indices[0]!;
    // A worker on its member's own data is named so (local-w<index>) for every member to see in
    // the commits, and to leave it out of the shared data's deal (roster.ts).
    const federationWorker = federationWorkerId(index, config.localData !== undefined);
    const { natsUrls, credentialsFile, tls } = config.transport;
    try {
      nc = await connectNats(natsUrls, `${config.member.id}-${federationWorker}`, {
        ...(credentialsFile ? { credentialsFile } : {}),
        ...(tls ? { tls } : {}),
      });
    } catch (error) {
      log.error({ err: error, servers: displayUrls(natsUrls) }, "cannot connect to NATS");
      return 1;
    }
    const protocolLog = log.child({ exchange: "nats", worker: String(index) });
    transport = new NatsExchange({
      nc,
      spec: config.federation,
      specHash: nats.specHash,
      memberId: config.member.id,
      workerId: federationWorker,
      privateKey: nats.privateKey,
      log: (line) => protocolLog.info(line),
    });
    log.info(
      { servers: displayUrls(natsUrls), worker: federationWorker },
      "joining the federation over NATS",
    );
  } else {
    transport = new LocalExchange(indices.map((index) => workerId(config.member.id, index)));
  }
  // A stop while joining closes the connection, so that a join waiting on NATS gives up.
  const stopJoining = () => {
    void transport.close();
    nc?.close().catch(() => {});
  };
  signal.addEventListener("abort", stopJoining, { once: true });
  try {
    const runtime = new TrainerRuntime(
      {
        config,
        workerIndices: indices,
        checkpointDir: command.checkpointDir,
        resume: !command.fresh,
      },
      transport,
      metrics,
      log,
    );
    publish(runtime);
    try {
      await runtime.load(backend);
    } catch (error) {
      if (signal.aborted) {
        log.info("stopped before joining the federation");
        return STOPPED;
      }
      // The data and the model preset do not fit (what the API server's CEL rules reject), or
      // the federation does not admit this member.
      if (error instanceof RangeError || error instanceof AdmissionError) {
        console.error(`fedtrain-trainer: configuration error: federation: ${error.message}`);
        log.error({ err: error }, "configuration error");
        return CONFIG_ERROR_EXIT_CODE;
      }
      throw error;
    }
    signal.removeEventListener("abort", stopJoining);
    const outcome = await runtime.run(signal);
    return outcome.status === "completed" ? 0 : STOPPED;
  } finally {
    signal.removeEventListener("abort", stopJoining);
    // Leaves the federation gracefully (idempotent after the runtime's own close).
    await transport.close();
    await nc?.close().catch(() => {});
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(
      JSON.stringify({
        level: 60,
        msg: "trainer failed",
        error: String(error),
        stack: (error as Error).stack,
      }),
    );
    process.exit(1);
  },
);
