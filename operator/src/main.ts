// The fedtrain operator: watches TrainingFederations (and the Jobs and ConfigMaps it owns),
// reconciles them while it holds the leader Lease, and serves /metrics, /healthz and /readyz.
// SIGTERM stops it gracefully: no new reconciles, those in flight finish, the Lease is released.

import { randomUUID } from "node:crypto";
import http from "node:http";
import os from "node:os";
import {
  BatchV1Api,
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  type KubernetesListObject,
  type V1ConfigMap,
  type V1Job,
} from "@kubernetes/client-node";
import { pino } from "pino";
import { group, plural, version } from "../../core/api/index.js";
import { redact } from "../../core/logging/redact.js";
import { ConfigError, type OperatorConfig, parseConfig, usage } from "./config.js";
import { Controller } from "./controller/controller.js";
import { EventRecorder } from "./controller/events.js";
import { Informer } from "./controller/informer.js";
import { PooledKubeConfig } from "./controller/kubeconfig.js";
import { LeaderElector } from "./controller/leader.js";
import { OperatorMetrics } from "./controller/metrics.js";
import { WorkQueue } from "./controller/queue.js";
import { NatsConnections } from "./nats/connections.js";
import { managedBySelector } from "./trainingfederation/desired.js";
import { FederationClient } from "./trainingfederation/federation.js";
import { FederationWatches } from "./trainingfederation/federation-watch.js";
import {
  type TrainingFederationObject,
  TrainingFederationReconciler,
} from "./trainingfederation/reconciler.js";

const controllerName = "trainingfederation";

function loadKubeConfig(config: OperatorConfig): KubeConfig {
  const kubeConfig = new PooledKubeConfig();
  if (config.kubeconfig) kubeConfig.loadFromFile(config.kubeconfig);
  else kubeConfig.loadFromCluster();
  return kubeConfig;
}

function listen(address: string, handler: http.RequestListener): Promise<http.Server> {
  const colon = address.lastIndexOf(":");
  const host = address.slice(0, colon) || undefined;
  const port = Number(address.slice(colon + 1));
  const server = http.createServer(handler);
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve(server));
  });
}

async function main(): Promise<void> {
  let config: OperatorConfig;
  try {
    if (process.argv.includes("--help") || process.argv.includes("-h")) {
      console.log(usage());
      return;
    }
    config = parseConfig(process.argv.slice(2), process.env);
  } catch (error) {
    if (
      error instanceof ConfigError ||
      (error as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")
    ) {
      console.error(`fedtrain-operator: ${(error as Error).message}\n\n${usage()}`);
      process.exit(2);
    }
    throw error;
  }
  const log = pino({ level: config.logLevel, base: { component: "fedtrain-operator" }, redact });
  const kubeConfig = loadKubeConfig(config);
  const metrics = new OperatorMetrics();
  // One identity per incarnation, as client-go's leader election makes it: a container the
  // kubelet restarts in place has the same pod name and, in its pid namespace, the same pid, and
  // must not take the Lease it held before the crash for its own.
  const identity = `${process.env.POD_NAME ?? os.hostname()}_${randomUUID().slice(0, 8)}`;
  const objects = kubeConfig.makeApiClient(CustomObjectsApi);
  const core = kubeConfig.makeApiClient(CoreV1Api);
  const batch = kubeConfig.makeApiClient(BatchV1Api);

  const queue = new WorkQueue(undefined, metrics.workQueue(controllerName));
  metrics.watchQueue(controllerName, queue);
  const nats = new NatsConnections({
    credentialsFile: config.natsCredentialsFile,
    tlsDir: config.natsTlsDir,
    name: `fedtrain-operator ${identity}`,
    log,
  });
  metrics.watchNatsMessages(() => nats.messagesSent());
  const watches = new FederationWatches({ enqueue: (key) => queue.add(key), log });
  const membership = new FederationClient(nats, config, watches);
  const enqueueOwner = (object: V1Job | V1ConfigMap) => {
    const key = TrainingFederationReconciler.ownerKey(object);
    if (key) queue.add(key);
  };
  const common = { namespaces: config.namespaces };
  const federations = new Informer<TrainingFederationObject>(
    kubeConfig,
    {
      ...common,
      kind: "TrainingFederation",
      path: (ns) => `/apis/${group}/${version}${ns ? `/namespaces/${ns}` : ""}/${plural}`,
      list: (ns, page) =>
        (ns
          ? objects.listNamespacedCustomObject({ group, version, namespace: ns, plural, ...page })
          : objects.listClusterCustomObject({ group, version, plural, ...page })) as Promise<
          KubernetesListObject<TrainingFederationObject>
        >,
      onEvent: (_event, tf) => queue.add(`${tf.metadata?.namespace}/${tf.metadata?.name}`),
    },
    log,
  );
  const jobs = new Informer<V1Job>(
    kubeConfig,
    {
      ...common,
      kind: "Job",
      path: (ns) => `/apis/batch/v1${ns ? `/namespaces/${ns}` : ""}/jobs`,
      list: (ns, page) =>
        ns
          ? batch.listNamespacedJob({ namespace: ns, labelSelector: managedBySelector, ...page })
          : batch.listJobForAllNamespaces({ labelSelector: managedBySelector, ...page }),
      labelSelector: managedBySelector,
      // Reconciles read a Job's metadata (the applied hashes) and status, never its spec.
      transform: (job) => {
        delete job.spec;
      },
      onEvent: (_event, job) => enqueueOwner(job),
    },
    log,
  );
  const configMaps = new Informer<V1ConfigMap>(
    kubeConfig,
    {
      ...common,
      kind: "ConfigMap",
      path: (ns) => `/api/v1${ns ? `/namespaces/${ns}` : ""}/configmaps`,
      list: (ns, page) =>
        ns
          ? core.listNamespacedConfigMap({
              namespace: ns,
              labelSelector: managedBySelector,
              ...page,
            })
          : core.listConfigMapForAllNamespaces({ labelSelector: managedBySelector, ...page }),
      labelSelector: managedBySelector,
      onEvent: (_event, configMap) => enqueueOwner(configMap),
    },
    log,
  );
  const reconciler = new TrainingFederationReconciler(
    kubeConfig,
    { federations, jobs, configMaps },
    config,
    membership,
    metrics,
    new EventRecorder(kubeConfig, "fedtrain.dev/operator", identity.slice(0, 128), log),
  );
  const controller = new Controller({
    name: controllerName,
    reconciler,
    queue,
    concurrency: config.maxConcurrentReconciles,
    metrics: metrics.controller(controllerName),
    log,
  });

  let cachesSynced = false;
  let shuttingDown = false;
  const probes = await listen(config.probeAddress, (request, response) => {
    const ok =
      request.url === "/healthz"
        ? !shuttingDown
        : request.url === "/readyz"
          ? cachesSynced && !shuttingDown
          : false;
    response.writeHead(
      ok ? 200 : request.url === "/healthz" || request.url === "/readyz" ? 503 : 404,
    );
    response.end(ok ? "ok\n" : "not ok\n");
  });
  const metricsServer = await listen(config.metricsAddress, async (request, response) => {
    if (request.url !== "/metrics") {
      response.writeHead(404).end();
      return;
    }
    for (const phase of ["Pending", "Training", "Suspended", "Completed", "Failed", "Invalid"]) {
      metrics.federations.set(
        { phase },
        federations.list().filter((tf) => tf.status?.phase === phase).length,
      );
    }
    response.writeHead(200, { "Content-Type": metrics.registry.contentType });
    response.end(await metrics.registry.metrics());
  });
  log.info(
    {
      metrics: config.metricsAddress,
      probes: config.probeAddress,
      namespaces: config.namespaces.length ? config.namespaces : "all",
    },
    "fedtrain operator starting",
  );

  await Promise.all([federations.start(), jobs.start(), configMaps.start()]);
  cachesSynced = true;
  log.info({ federations: federations.list().length }, "caches synced");

  let resync: NodeJS.Timeout | undefined;
  const startReconciling = () => {
    metrics.leader.set({ name: config.leaseName }, 1);
    controller.start();
    for (const tf of federations.list())
      queue.add(`${tf.metadata?.namespace}/${tf.metadata?.name}`);
    // Watches can go silent: look at every object again now and then (costs no writes).
    resync = setInterval(() => {
      for (const tf of federations.list())
        queue.add(`${tf.metadata?.namespace}/${tf.metadata?.name}`);
    }, config.resyncSeconds * 1000);
    resync.unref();
  };

  const elector = config.leaderElection
    ? new LeaderElector(
        kubeConfig,
        {
          name: config.leaseName,
          namespace: config.leaseNamespace ?? process.env.POD_NAMESPACE ?? "default",
          identity,
          onStartedLeading: startReconciling,
          onStoppedLeading: () => {
            metrics.leader.set({ name: config.leaseName }, 0);
            clearInterval(resync);
            void controller.pause();
          },
          onLeaderChange: (leader) => log.info({ leader }, "another replica leads"),
        },
        log,
      )
    : undefined;
  if (elector) {
    metrics.leader.set({ name: config.leaseName }, 0);
    elector.start();
  } else {
    startReconciling();
  }

  const shutdown = async (signal: string) => {
    if (shuttingDown) return;
    shuttingDown = true;
    log.info({ signal }, "shutting down");
    clearInterval(resync);
    await controller.stop();
    await elector?.stop();
    await watches.stop();
    await Promise.all([federations.stop(), jobs.stop(), configMaps.stop(), nats.close()]);
    probes.close();
    metricsServer.close();
    log.info("stopped");
    process.exit(0);
  };
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  process.on("SIGINT", () => void shutdown("SIGINT"));
}

main().catch((error) => {
  console.error(
    JSON.stringify({
      level: 60,
      msg: "operator failed",
      error: String(error),
      stack: (error as Error).stack,
    }),
  );
  process.exit(1);
});
