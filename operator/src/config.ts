// The operator's command line: every flag can also come from an environment variable, so the Helm
// chart can set either. Parsing is pure and unit-tested.
import { parseArgs } from "node:util";
import type { ContributionSpec } from "../../core/api/index.js";

/** The operator's configuration. */
export interface OperatorConfig {
  /** This cluster's id: the member id of TrainingFederations that do not set one. */
  clusterId?: string;
  /** Namespaces to watch; empty means all. */
  namespaces: string[];
  leaderElection: boolean;
  leaseName: string;
  /** Namespace of the leader-election Lease; default: the operator's own namespace. */
  leaseNamespace?: string;
  /** host:port of /metrics. */
  metricsAddress: string;
  /** host:port of /healthz and /readyz. */
  probeAddress: string;
  /** A kubeconfig file; without it, the in-cluster configuration. */
  kubeconfig?: string;
  /** Trainer image for TrainingFederations that do not name one. */
  trainerImage: string;
  /** Compute backend that replaces spec.contribution.backend Auto (the CRD's default). */
  defaultBackend: Backend;
  /** NATS URLs for TrainingFederations without spec.transport.natsUrls. */
  natsUrls: string[];
  /** Secret (in the object's namespace) with NATS credentials, when credentialsSecretRef is unset. */
  natsCredentialsSecret?: string;
  /** Secret (in the object's namespace) with NATS TLS files, for those without tlsSecretRef. */
  natsTlsSecret?: string;
  /** NATS credentials file (JWT + seed) of the operator's own connections to NATS. */
  natsCredentialsFile?: string;
  /**
   * NATS URLs the operator's own connection may use (exact URLs or "host:port"); empty: those of
   * --nats-url. A TrainingFederation naming others gets its trainers, but not the operator's
   * view: the operator's credentials go nowhere the cluster admin did not allow.
   */
  allowedNatsUrls: string[];
  /** Directory with ca.crt (and tls.crt, tls.key) for the operator's own NATS connections. */
  natsTlsDir?: string;
  /** Images TrainingFederations may name (policy.ts); empty: the trainer image's repository. */
  allowedImages: string[];
  /** ServiceAccounts trainer pods may run as besides "default". */
  allowedServiceAccounts: string[];
  /** The key=value label a PersistentVolumeClaim needs to be mounted by trainers. */
  volumeClaimLabel: string;
  /** Reconciles that may run at once. */
  maxConcurrentReconciles: number;
  /** Seconds between full resyncs of every object (watches can go silent). */
  resyncSeconds: number;
  logLevel: "debug" | "info" | "warn" | "error";
}

/** A trainer compute backend, as spec.contribution.backend names it. */
export type Backend = ContributionSpec["backend"];
const backends: readonly Backend[] = ["Auto", "CUDA", "WebGPU", "CPU"];

/** A command-line or environment value the operator cannot use. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

interface Flag {
  env: string;
  help: string;
  default?: string;
  boolean?: true;
}

/** Every flag with its environment variable, default and help text (README: "Operator flags"). */
export const flags: Record<string, Flag> = {
  "cluster-id": { env: "FEDTRAIN_CLUSTER_ID", help: "this cluster's id, the default member id" },
  namespaces: {
    env: "FEDTRAIN_NAMESPACES",
    help: "comma-separated namespaces to watch (default: all)",
    default: "",
  },
  "leader-elect": {
    env: "FEDTRAIN_LEADER_ELECT",
    help: "elect a leader among replicas through a Lease (true/false)",
    default: "true",
  },
  "leader-election-lease": {
    env: "FEDTRAIN_LEADER_ELECTION_LEASE",
    help: "name of the leader-election Lease",
    default: "fedtrain-operator",
  },
  "leader-election-namespace": {
    env: "FEDTRAIN_LEADER_ELECTION_NAMESPACE",
    help: "namespace of the Lease (default: the pod's namespace, else default)",
  },
  "metrics-bind-address": {
    env: "FEDTRAIN_METRICS_BIND_ADDRESS",
    help: "host:port of /metrics",
    default: ":8080",
  },
  "health-probe-bind-address": {
    env: "FEDTRAIN_HEALTH_PROBE_BIND_ADDRESS",
    help: "host:port of /healthz and /readyz",
    default: ":8081",
  },
  kubeconfig: { env: "KUBECONFIG", help: "kubeconfig file (default: in-cluster configuration)" },
  "trainer-image": {
    env: "FEDTRAIN_TRAINER_IMAGE",
    help: "trainer image when spec.contribution.image is not set",
    default: "ghcr.io/fedtrain/trainer:0.1.0",
  },
  "default-backend": {
    env: "FEDTRAIN_DEFAULT_BACKEND",
    help: "compute backend when spec.contribution.backend is Auto: Auto, CUDA, WebGPU or CPU (CUDA and WebGPU only for workers with GPUs)",
    default: "Auto",
  },
  "nats-url": {
    env: "FEDTRAIN_NATS_URL",
    help: "comma-separated NATS URLs when spec.transport.natsUrls is not set",
    default: "",
  },
  "nats-credentials-secret": {
    env: "FEDTRAIN_NATS_CREDENTIALS_SECRET",
    help: "Secret with key nats.creds when spec.transport.credentialsSecretRef is not set",
  },
  "nats-tls-secret": {
    env: "FEDTRAIN_NATS_TLS_SECRET",
    help: "Secret with ca.crt, tls.crt and tls.key when spec.transport.tlsSecretRef is not set",
  },
  "nats-credentials-file": {
    env: "FEDTRAIN_NATS_CREDENTIALS_FILE",
    help: "the operator's own NATS credentials file, to read federations and deregister members",
  },
  "nats-tls-dir": {
    env: "FEDTRAIN_NATS_TLS_DIR",
    help: "directory with ca.crt (and tls.crt, tls.key) for the operator's own NATS connections",
  },
  "allowed-nats-urls": {
    env: "FEDTRAIN_ALLOWED_NATS_URLS",
    help: "comma-separated NATS URLs or host:port the operator's own connection may use (default: those of --nats-url)",
    default: "",
  },
  "allowed-images": {
    env: "FEDTRAIN_ALLOWED_IMAGES",
    help: "comma-separated images (repositories), prefixes ending in '/', or '*' that spec.contribution.image may name (default: the repository of --trainer-image)",
    default: "",
  },
  "allowed-service-accounts": {
    env: "FEDTRAIN_ALLOWED_SERVICE_ACCOUNTS",
    help: "comma-separated ServiceAccounts trainer pods may run as besides default",
    default: "",
  },
  "volume-claim-label": {
    env: "FEDTRAIN_VOLUME_CLAIM_LABEL",
    help: "key=value label a PersistentVolumeClaim needs before trainers mount it",
    default: "fedtrain.dev/use=true",
  },
  "max-concurrent-reconciles": {
    env: "FEDTRAIN_MAX_CONCURRENT_RECONCILES",
    help: "reconciles that may run at once",
    default: "8",
  },
  "resync-period": {
    env: "FEDTRAIN_RESYNC_SECONDS",
    help: "seconds between full resyncs (the watches queue changes)",
    default: "36000",
  },
  "log-level": { env: "FEDTRAIN_LOG_LEVEL", help: "debug, info, warn or error", default: "info" },
};

/** The --help text. */
export function usage(): string {
  const lines = Object.entries(flags).map(([name, f]) => {
    const def = f.default ? ` (default ${JSON.stringify(f.default)})` : "";
    return `  --${name.padEnd(28)} ${f.help}${def}; env ${f.env}`;
  });
  return `usage: fedtrain-operator [flags]\n\n${lines.join("\n")}`;
}

function address(name: string, value: string): string {
  if (!/^[^:\s]*:\d{1,5}$/.test(value)) {
    throw new ConfigError(`--${name} must be host:port or :port, got ${JSON.stringify(value)}`);
  }
  return value;
}

function positive(name: string, value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) {
    throw new ConfigError(
      `--${name} must be a positive whole number, got ${JSON.stringify(value)}`,
    );
  }
  return n;
}

function list(value: string): string[] {
  return value
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
}

function labelPair(value: string): string {
  if (
    !/^([a-z0-9.-]+\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?=([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$/.test(
      value,
    )
  )
    throw new ConfigError(`--volume-claim-label must be key=value, got ${JSON.stringify(value)}`);
  return value;
}

/** Parses argv (without node and script) and env into the configuration; flags win over env. */
export function parseConfig(
  argv: string[],
  env: Record<string, string | undefined>,
): OperatorConfig {
  const { values } = parseArgs({
    args: argv,
    options: Object.fromEntries(
      Object.keys(flags).map((name) => [name, { type: "string" as const }]),
    ),
    strict: true,
  });
  const get = (name: string): string | undefined => {
    const flag = flags[name] as Flag;
    return (values[name] as string | undefined) ?? env[flag.env] ?? flag.default;
  };
  const leaderElect = get("leader-elect");
  if (leaderElect !== "true" && leaderElect !== "false") {
    throw new ConfigError(
      `--leader-elect must be true or false, got ${JSON.stringify(leaderElect)}`,
    );
  }
  const logLevel = get("log-level");
  if (!["debug", "info", "warn", "error"].includes(logLevel ?? "")) {
    throw new ConfigError(
      `--log-level must be debug, info, warn or error, got ${JSON.stringify(logLevel)}`,
    );
  }
  const clusterId = get("cluster-id");
  if (clusterId !== undefined && !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(clusterId)) {
    throw new ConfigError(
      `--cluster-id must be a DNS label (it becomes a member id), got ${JSON.stringify(clusterId)}`,
    );
  }
  const defaultBackend = get("default-backend") ?? "";
  if (!backends.includes(defaultBackend as Backend)) {
    throw new ConfigError(
      `--default-backend must be Auto, CUDA, WebGPU or CPU, got ${JSON.stringify(defaultBackend)}`,
    );
  }
  const natsUrls = list(get("nats-url") ?? "");
  for (const url of natsUrls) {
    if (!/^(nats|tls|ws|wss):\/\/\S+$/.test(url)) {
      throw new ConfigError(
        `--nats-url: ${JSON.stringify(url)} is not a nats://, tls://, ws:// or wss:// URL`,
      );
    }
  }
  return {
    clusterId,
    namespaces: list(get("namespaces") ?? ""),
    leaderElection: leaderElect === "true",
    leaseName: get("leader-election-lease") ?? "fedtrain-operator",
    leaseNamespace: get("leader-election-namespace"),
    metricsAddress: address("metrics-bind-address", get("metrics-bind-address") ?? ""),
    probeAddress: address("health-probe-bind-address", get("health-probe-bind-address") ?? ""),
    kubeconfig: get("kubeconfig"),
    trainerImage: get("trainer-image") ?? "",
    defaultBackend: defaultBackend as Backend,
    natsUrls,
    natsCredentialsSecret: get("nats-credentials-secret"),
    natsTlsSecret: get("nats-tls-secret") || undefined,
    natsCredentialsFile: get("nats-credentials-file") || undefined,
    allowedNatsUrls: list(get("allowed-nats-urls") ?? ""),
    natsTlsDir: get("nats-tls-dir") || undefined,
    allowedImages: list(get("allowed-images") ?? ""),
    allowedServiceAccounts: list(get("allowed-service-accounts") ?? ""),
    volumeClaimLabel: labelPair(get("volume-claim-label") ?? ""),
    maxConcurrentReconciles: positive(
      "max-concurrent-reconciles",
      get("max-concurrent-reconciles") ?? "",
    ),
    resyncSeconds: positive("resync-period", get("resync-period") ?? ""),
    logLevel: logLevel as OperatorConfig["logLevel"],
  };
}
