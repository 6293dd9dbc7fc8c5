// The trainer's command line: `run` (the default, as the operator starts it with only --config),
// `leave` and `export`. Parsing is pure (argv and environment in, a command out) so it is unit-tested.
import { parseArgs } from "node:util";
import type { BackendChoice } from "../training/backend.js";
import type { ExportFormat } from "../training/export.js";

/** Where checkpoints go by default: the pod's scratch volume (the root file system is read-only). */
export const DEFAULT_CHECKPOINT_DIR = "/tmp/fedtrain-checkpoints";
/** Where /metrics, /healthz and /readyz listen without FEDTRAIN_METRICS_ADDRESS. */
export const DEFAULT_METRICS_ADDRESS = "127.0.0.1:9090";

/**
 * How the process's workers exchange updates: `local` (workers 0..N-1 of this process, no NATS),
 * `nats` (one worker joins the federation over NATS), or `auto` (nats when the config names NATS
 * servers, else local; resolved once the config is read).
 */
export type ExchangeMode = "auto" | "local" | "nats";

/** `run`: train. */
export interface RunCommand {
  command: "run";
  config: string;
  /** This process's worker index (pod mode) or the first of its local workers. */
  workerIndex: number;
  /** Workers run in this process over the local exchange. */
  workers: number;
  /** `auto` only when neither --exchange nor --workers was given. */
  exchange: ExchangeMode;
  /** Overrides the config file's backend. */
  backend?: BackendChoice;
  checkpointDir: string;
  metricsAddress: string;
  /** Ignore existing checkpoints and start from the seed's initial weights. */
  fresh: boolean;
  logLevel: string;
}

/** `export`: write a checkpoint's global model in portable formats. */
export interface ExportCommand {
  command: "export";
  checkpoint: string;
  out: string;
  format: ExportFormat;
}

/** `leave`: deregister the config's member from its federation with the member key. */
export interface LeaveCommand {
  command: "leave";
  config: string;
  logLevel: string;
}

/** What the command line asks for. */
export type Command = RunCommand | LeaveCommand | ExportCommand | { command: "help" };

/** A command line the trainer cannot run. */
export class UsageError extends Error {
  override name = "UsageError";
}

const BACKENDS: readonly BackendChoice[] = ["Auto", "CUDA", "WebGPU", "CPU", "WASM", "JS"];
const FORMATS: readonly ExportFormat[] = ["tfjs", "safetensors", "both"];
const EXCHANGES: readonly ExchangeMode[] = ["auto", "local", "nats"];

/** The help text. */
export function usage(): string {
  return `Usage:
  fedtrain-trainer [run] --config FILE [options]
  fedtrain-trainer leave --config FILE [--log-level LEVEL]
  fedtrain-trainer export --checkpoint FILE --out DIR [--format tfjs|safetensors|both]

run options:
  --config FILE          TrainerConfig (JSON or YAML), as rendered by the operator
  --worker-index N       this worker's index (default: $JOB_COMPLETION_INDEX, else 0)
  --workers N            run N workers in this process over the local exchange (default 1;
                         giving it selects the local exchange)
  --exchange E           auto, local or nats (default auto: nats when the config's
                         transport.natsUrls is set and --workers is not given, else local)
  --backend B            Auto, CUDA, WebGPU, CPU, WASM or JS (default: the config's backend)
  --checkpoint-dir DIR   local checkpoints (default ${DEFAULT_CHECKPOINT_DIR})
  --metrics-address H:P  /metrics, /healthz, /readyz (default: $FEDTRAIN_METRICS_ADDRESS, else ${DEFAULT_METRICS_ADDRESS})
  --fresh                ignore existing checkpoints and start from the initial weights
  --log-level LEVEL      pino level: trace, debug, info, warn, error (default info)

leave: deregisters the config's member from its federation on NATS, signing with the member
  key (what the operator runs when a TrainingFederation is deleted); a federation or member
  record that does not exist is nothing to do.

export options:
  --checkpoint FILE      a checkpoint written by run
  --out DIR              output folder
  --format F             tfjs (model.json + weights.bin), safetensors (model.safetensors) or both (default)

Exit codes: 0 done or stopped cleanly, 1 runtime failure (leave: NATS unreachable), 2 configuration
or usage error.`;
}

/** Parses the trainer's arguments (without node and the script) and environment. */
export function parseCommand(argv: readonly string[], env: NodeJS.ProcessEnv): Command {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (error) {
    throw new UsageError((error as Error).message, { cause: error });
  }
  const { values, positionals } = parsed;
  if (values.help) return { command: "help" };
  const [subcommand = "run", ...extra] = positionals;
  if (extra.length > 0) throw new UsageError(`unexpected arguments: ${extra.join(" ")}`);
  if (subcommand === "export") {
    if (!values.checkpoint) throw new UsageError("export needs --checkpoint FILE");
    if (!values.out) throw new UsageError("export needs --out DIR");
    const format = (values.format ?? "both") as ExportFormat;
    if (!FORMATS.includes(format)) {
      throw new UsageError(`--format ${values.format}: use one of ${FORMATS.join(", ")}`);
    }
    return { command: "export", checkpoint: values.checkpoint, out: values.out, format };
  }
  if (subcommand === "leave") {
    if (!values.config) throw new UsageError("leave needs --config FILE (the TrainerConfig)");
    return { command: "leave", config: values.config, logLevel: values["log-level"] ?? "info" };
  }
  if (subcommand !== "run") {
    throw new UsageError(`unknown command ${subcommand}: use run, leave or export`);
  }
  if (!values.config) throw new UsageError("run needs --config FILE (the TrainerConfig)");
  const workers = count("--workers", values.workers ?? "1", 1);
  if (workers > 1 && values["worker-index"] !== undefined) {
    throw new UsageError(
      "--worker-index and --workers N > 1 exclude each other: local workers are 0..N-1",
    );
  }
  const exchange = (values.exchange ?? "auto").toLowerCase() as ExchangeMode;
  if (!EXCHANGES.includes(exchange)) {
    throw new UsageError(`--exchange ${values.exchange}: use one of ${EXCHANGES.join(", ")}`);
  }
  if (exchange === "nats" && workers > 1) {
    throw new UsageError(
      "--exchange nats runs one worker per process: drop --workers, start one process per worker with --worker-index",
    );
  }
  const workerIndex =
    values["worker-index"] !== undefined
      ? count("--worker-index", values["worker-index"], 0)
      : env.JOB_COMPLETION_INDEX
        ? count("JOB_COMPLETION_INDEX", env.JOB_COMPLETION_INDEX, 0)
        : 0;
  let backend: BackendChoice | undefined;
  if (values.backend !== undefined) {
    backend = BACKENDS.find((b) => b.toLowerCase() === values.backend!.toLowerCase());
    if (!backend) {
      throw new UsageError(`--backend ${values.backend}: use one of ${BACKENDS.join(", ")}`);
    }
  }
  return {
    command: "run",
    config: values.config,
    workerIndex: workers > 1 ? 0 : workerIndex,
    workers,
    exchange: exchange === "auto" && values.workers !== undefined ? "local" : exchange,
    ...(backend ? { backend } : {}),
    checkpointDir: values["checkpoint-dir"] ?? DEFAULT_CHECKPOINT_DIR,
    metricsAddress:
      values["metrics-address"] ?? (env.FEDTRAIN_METRICS_ADDRESS || DEFAULT_METRICS_ADDRESS),
    fresh: values.fresh ?? false,
    logLevel: values["log-level"] ?? "info",
  };
}

function parse(argv: readonly string[]) {
  return parseArgs({
    args: [...argv],
    allowPositionals: true,
    strict: true,
    options: {
      help: { type: "boolean", short: "h" },
      config: { type: "string" },
      "worker-index": { type: "string" },
      workers: { type: "string" },
      exchange: { type: "string" },
      backend: { type: "string" },
      "checkpoint-dir": { type: "string" },
      "metrics-address": { type: "string" },
      fresh: { type: "boolean" },
      "log-level": { type: "string" },
      checkpoint: { type: "string" },
      out: { type: "string" },
      format: { type: "string" },
    },
  });
}

function count(name: string, text: string, minimum: number): number {
  const value = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(value) || value < minimum) {
    throw new UsageError(`${name} ${JSON.stringify(text)} must be an integer ≥ ${minimum}`);
  }
  return value;
}
