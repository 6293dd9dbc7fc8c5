import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { containerArgv, imageRepository, localImage } from "./images.js";
import {
  type ContainerProgress,
  expandVariables,
  podField,
  podPhase,
  restartBackoffMs,
} from "./pod-spec.js";

describe("expandVariables", () => {
  const vars: Record<string, string> = { POD_IP: "127.1.1.2", PORT: "8080" };
  const cases: [string, string][] = [
    ["--bind=$(POD_IP):$(PORT)", "--bind=127.1.1.2:8080"],
    ["$(UNDEFINED) stays", "$(UNDEFINED) stays"],
    ["$$(POD_IP) is escaped", "$(POD_IP) is escaped"],
    ["a lone $ and $$", "a lone $ and $"],
    ["unclosed $(POD_IP", "unclosed $(POD_IP"],
    ["", ""],
  ];
  for (const [input, expected] of cases) {
    test(JSON.stringify(input), () =>
      assert.equal(
        expandVariables(input, (n) => vars[n]),
        expected,
      ),
    );
  }
});

describe("podField", () => {
  const pod = {
    metadata: {
      name: "trainer-0",
      namespace: "fedtrain",
      uid: "u-1",
      labels: { app: "trainer", tier: "gpu" },
      annotations: { "batch.kubernetes.io/job-completion-index": "3" },
    },
    spec: { nodeName: "alpine-node-1", serviceAccountName: "trainer", containers: [] },
    status: { podIP: "127.1.1.2", hostIP: "127.1.1.1" },
  };
  const cases: [string, string][] = [
    ["metadata.name", "trainer-0"],
    ["metadata.namespace", "fedtrain"],
    ["metadata.uid", "u-1"],
    ["metadata.labels['app']", "trainer"],
    ["metadata.annotations['batch.kubernetes.io/job-completion-index']", "3"],
    ["metadata.labels", 'app="trainer"\ntier="gpu"'],
    ["spec.nodeName", "alpine-node-1"],
    ["spec.serviceAccountName", "trainer"],
    ["status.podIP", "127.1.1.2"],
    ["status.hostIP", "127.1.1.1"],
  ];
  for (const [fieldPath, expected] of cases) {
    test(fieldPath, () => assert.equal(podField(pod, fieldPath), expected));
  }
  test("an unsupported path is an error", () => {
    assert.throws(() => podField(pod, "spec.containers"), /unsupported downward API field path/);
  });
});

describe("podPhase", () => {
  const running: ContainerProgress = { started: true, running: true };
  const notStarted: ContainerProgress = { started: false, running: false };
  const exited = (exitCode: number): ContainerProgress => ({
    started: true,
    running: false,
    lastExit: { exitCode },
  });
  const cases: [string, string | undefined, boolean, ContainerProgress[], string][] = [
    ["waiting for a container", "Always", false, [running, notStarted], "Pending"],
    ["all running", "Always", false, [running, running], "Running"],
    ["Never, all exited 0", "Never", false, [exited(0), exited(0)], "Succeeded"],
    ["Never, one failed", "Never", false, [exited(0), exited(1)], "Failed"],
    ["Never, one still running", "Never", false, [exited(1), running], "Running"],
    ["OnFailure, a failed one restarts", "OnFailure", false, [exited(1)], "Running"],
    ["OnFailure, exited 0", "OnFailure", false, [exited(0)], "Succeeded"],
    ["Always restarts even a success", undefined, false, [exited(0)], "Running"],
    ["a failed init container", "Never", true, [notStarted], "Failed"],
  ];
  for (const [name, policy, initFailed, containers, expected] of cases) {
    test(name, () => assert.equal(podPhase(policy, initFailed, containers), expected));
  }
});

test("restart back-off doubles and is capped", () => {
  assert.deepEqual(
    [0, 1, 2, 3, 10, 100].map(restartBackoffMs),
    [1_000, 2_000, 4_000, 8_000, 60_000, 60_000],
  );
});

describe("images", () => {
  test("tags and digests are ignored, registries are not", () => {
    assert.equal(imageRepository("ghcr.io/fedtrain/trainer:0.1.0"), "ghcr.io/fedtrain/trainer");
    assert.equal(
      imageRepository("ghcr.io/fedtrain/trainer@sha256:abc"),
      "ghcr.io/fedtrain/trainer",
    );
    assert.equal(imageRepository("localhost:5000/x"), "localhost:5000/x");
    assert.ok(localImage("ghcr.io/fedtrain/operator:latest"));
    assert.equal(localImage("docker.io/fedtrain/operator:latest"), undefined);
  });

  test("command replaces the entrypoint and args follow", () => {
    const image = { entrypoint: ["/bin/entry", "--flag"], workingDir: "/" };
    assert.deepEqual(containerArgv(image, undefined, ["a"]), ["/bin/entry", "--flag", "a"]);
    assert.deepEqual(containerArgv(image, ["sh", "-c"], ["echo"]), ["sh", "-c", "echo"]);
  });
});
