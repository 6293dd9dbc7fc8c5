// The operator's pieces of the Kubernetes client against a real API server. PooledKubeConfig: API
// calls and watches share keep-alive connections (client-node's own KubeConfig opens one TLS
// connection per call), still authenticate, and a pool past its age gives way to a new one.
// Informer: lists page by page, trims what it caches, and watches on from the listed snapshot.
import assert from "node:assert/strict";
import diagnostics from "node:diagnostics_channel";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { CoreV1Api, KubeConfig, type V1ConfigMap, Watch } from "@kubernetes/client-node";
import { pino } from "pino";
import { Informer, type InformerEvent } from "../../operator/src/controller/informer.js";
import { PooledKubeConfig } from "../../operator/src/controller/kubeconfig.js";
import { waitFor } from "../../testbed/process.js";
import type { Testbed } from "../../testbed/testbed.js";
import { startTestbed } from "./support.js";

let testbed: Testbed;
let kubeconfigPath: string;

// undici (client-node's HTTP client) announces every new connection on this channel.
const connectedChannel = "undici:client:connected";

/** How many connections the client opens while `action` runs. */
async function connectionsDuring(action: () => Promise<void>): Promise<number> {
  let connections = 0;
  const onConnected = () => {
    connections += 1;
  };
  diagnostics.subscribe(connectedChannel, onConnected);
  try {
    await action();
  } finally {
    diagnostics.unsubscribe(connectedChannel, onConnected);
  }
  return connections;
}

function load<T extends KubeConfig>(config: T): T {
  config.loadFromFile(kubeconfigPath);
  return config;
}

async function readNamespaces(config: KubeConfig, times: number): Promise<void> {
  const core = config.makeApiClient(CoreV1Api);
  for (let i = 0; i < times; i++) {
    const namespace = await core.readNamespace({ name: "default" });
    assert.equal(namespace.metadata?.name, "default");
  }
}

before(async () => {
  testbed = await startTestbed({ clusters: 1, nodes: 1 });
  kubeconfigPath = testbed.kubeconfigPath(testbed.clusters[0] ?? "");
});

after(async () => {
  await testbed?.down();
});

describe("PooledKubeConfig", () => {
  test("sequential API calls share one authenticated connection", async () => {
    const calls = 20;
    const pooled = await connectionsDuring(() =>
      readNamespaces(load(new PooledKubeConfig()), calls),
    );
    assert.equal(pooled, 1);
    // What the pool is for: client-node's KubeConfig connects anew for every call. When this
    // fails, client-node reuses connections itself and PooledKubeConfig can go.
    const plain = await connectionsDuring(() => readNamespaces(load(new KubeConfig()), calls));
    assert.equal(plain, calls);
  });

  test("a watch runs through the pool and sees events", async () => {
    const config = load(new PooledKubeConfig());
    const name = "pooled-watch";
    const events: string[] = [];
    const watch = await new Watch(config).watch(
      "/api/v1/namespaces/default/configmaps",
      { fieldSelector: `metadata.name=${name}` },
      (type) => events.push(type),
      () => {},
    );
    try {
      await config
        .makeApiClient(CoreV1Api)
        .createNamespacedConfigMap({ namespace: "default", body: { metadata: { name } } });
      await waitFor(
        "the watch to see the new ConfigMap",
        async () => (events.includes("ADDED") ? true : undefined),
        10_000,
      );
    } finally {
      watch.abort();
    }
  });

  test("a pool past its age gives way to a new connection", async () => {
    const config = load(new PooledKubeConfig(500));
    const connections = await connectionsDuring(async () => {
      await readNamespaces(config, 3);
      await sleep(600);
      await readNamespaces(config, 3);
    });
    assert.equal(connections, 2);
  });
});

describe("Informer", () => {
  test("lists in pages, caches trimmed objects and watches on from the snapshot", async () => {
    const config = load(new PooledKubeConfig());
    const core = config.makeApiClient(CoreV1Api);
    const namespace = "paged";
    const labelSelector = "test=paged";
    await core.createNamespace({ body: { metadata: { name: namespace } } });
    const create = (name: string) =>
      core.createNamespacedConfigMap({
        namespace,
        body: { metadata: { name, labels: { test: "paged" } }, data: { big: "x".repeat(1000) } },
      });
    for (let i = 0; i < 5; i++) await create(`listed-${i}`);
    const pages: (string | undefined)[] = [];
    const events: [InformerEvent, string][] = [];
    const informer = new Informer<V1ConfigMap>(
      config,
      {
        kind: "ConfigMap",
        namespaces: [namespace],
        path: (ns) => `/api/v1/namespaces/${ns}/configmaps`,
        list: (ns, page) => {
          pages.push(page._continue);
          return core.listNamespacedConfigMap({ namespace: ns ?? "", labelSelector, ...page });
        },
        labelSelector,
        pageSize: 2,
        transform: (configMap) => {
          delete configMap.data;
        },
        onEvent: (event, configMap) => events.push([event, configMap.metadata?.name ?? ""]),
      },
      pino({ level: "silent" }),
    );
    try {
      await informer.start();
      assert.equal(pages.length, 3);
      assert.equal(pages[0], undefined);
      assert.ok(pages.slice(1).every((token) => token));
      const cached = informer.list();
      assert.deepEqual(cached.map((c) => c.metadata?.name).sort(), [
        "listed-0",
        "listed-1",
        "listed-2",
        "listed-3",
        "listed-4",
      ]);
      assert.ok(
        cached.every((c) => c.data === undefined && c.metadata?.managedFields === undefined),
      );

      await create("watched");
      await waitFor(
        "the informer to see the new ConfigMap",
        async () => (informer.get(namespace, "watched") ? true : undefined),
        10_000,
      );
      assert.equal(informer.get(namespace, "watched")?.data, undefined);
      // Only the new object comes as an event after the list: the watch starts at the snapshot.
      assert.deepEqual(
        events.filter(([, name]) => name === "watched"),
        [["add", "watched"]],
      );
    } finally {
      await informer.stop();
    }
  });
});
