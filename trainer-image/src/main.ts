// The trainer process (the image's entry point). `run` loads the TrainerConfig, initialises the
// compute backend, serves /metrics, /healthz and /readyz, trains over an exchange transport and
// checkpoints; SIGTERM or SIGINT stops it after the current inner step with a checkpoint.
// `export` writes a checkpoint's global model as tfjs and safetensors files.
// Exit codes: 0 done or stopped cleanly, 1 runtime failure, 2 configuration or usage error (the
// operator's Job does not retry it).
import type http from "node:http";
import { type Logger, pino } from "pino";
import { BackendUnavailableError, initBackend } from "./backend.js";
import { CheckpointError, readCheckpoint } from "./checkpoint.js";
import { parseCommand, type RunCommand, UsageError, usage } from "./cli.js";
import { LocalExchange } from "./exchange.js";
import { exportCheckpoint } from "./export.js";
import { serveTrainerEndpoints, TrainerMetrics } from "./metrics.js";
import { TrainerRuntime, workerId } from "./runtime.js";
import { SafetensorsError } from "./safetensors.js";
import { CONFIG_ERROR_EXIT_CODE, loadTrainerConfig, TrainerConfigError } from "./trainer-config.js";

/** Log paths that must never show in clear: keys, credentials, tokens. */
const redact = [
  "*.privateKey",
  "*.privateKeyPem",
  "*.seed",
  "*.password",
  "*.token",
  "*.credentials",
  "*.authorization",
  "*.headers.authorization",
];

// Stop well inside the pod's 60 s termination grace period, even if a step or a write hangs.
const STOP_DEADLINE_MS = 50_000;

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
    case "run":
      return run(command);
  }
}

async function run(command: RunCommand): Promise<number> {
  let config: Awaited<ReturnType<typeof loadTrainerConfig>>;
  try {
    config = await loadTrainerConfig(command.config);
  } catch (error) {
    if (!(error instanceof TrainerConfigError)) throw error;
    console.error(`fedtrain-trainer: configuration error: ${error.message}`);
    return CONFIG_ERROR_EXIT_CODE;
  }
  const indices =
    command.workers > 1
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
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping.signal.aborted) return;
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
    return await train(command, config, indices, metrics, log, stopping.signal, (r) => {
      current.runtime = r;
    });
  } finally {
    server.closeAllConnections();
    server.close();
    current.runtime?.dispose();
  }
}

async function train(
  command: RunCommand,
  config: Awaited<ReturnType<typeof loadTrainerConfig>>,
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
  const transport = new LocalExchange(indices.map((index) => workerId(config.member.id, index)));
  if (indices.length === 1) {
    log.warn(
      "the NATS exchange (core/protocol) is not wired in yet: this worker trains alone over the local exchange",
    );
  }
  const runtime = new TrainerRuntime(
    {
      config,
      workerIndices: indices,
      workerCount: indices.length,
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
    // The data and the model preset do not fit (what the API server's CEL rules reject).
    if (error instanceof RangeError) {
      console.error(`fedtrain-trainer: configuration error: federation: ${error.message}`);
      log.error({ err: error }, "configuration error");
      return CONFIG_ERROR_EXIT_CODE;
    }
    throw error;
  }
  await runtime.run(signal);
  return 0;
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
