import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { chmod, mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import {
  compareVersions,
  etcdWrapperGoMod,
  formatDuration,
  goVersionOf,
  helmLdflags,
  kubernetesLdflags,
  kubernetesWrapperGoMod,
  locallyReplacedModules,
  ProvisionError,
  pauseVersion,
  provision,
  requiredVersion,
  stagingVersionOf,
} from "./provision.js";
import versions from "./versions.json" with { type: "json" };

// Shaped like k8s.io/kubernetes' go.mod: a require block, a replace block, and the odd forms.
const kubernetesGoMod = `module k8s.io/kubernetes

go 1.25.0

require (
	github.com/blang/semver/v4 v4.0.0
	k8s.io/api v0.0.0
	k8s.io/client-go v0.0.0 // indirect
)

require k8s.io/utils v0.0.0-20251002143259-bc988d571ff4

replace (
	k8s.io/api => ./staging/src/k8s.io/api
	k8s.io/client-go => ./staging/src/k8s.io/client-go // a comment
	github.com/example/fork => github.com/other/fork v1.2.3
)

replace k8s.io/kms v0.0.0 => ./staging/src/k8s.io/kms
replace example.com/sibling => ../sibling
`;

test("goVersionOf reads the version in `go version` output", () => {
  const cases: [string, string | undefined][] = [
    ["go version go1.26.8 linux/amd64", "1.26.8"],
    ["go version go1.26 linux/arm64", "1.26"],
    ["go version go1.27rc1 darwin/arm64", "1.27"],
    ["go version devel go1.27-4a5b6c7 Tue Jan 1 linux/amd64", "1.27"],
    ["bash: go: command not found", undefined],
  ];
  for (const [output, expected] of cases) assert.equal(goVersionOf(output), expected, output);
});

test("compareVersions orders dotted versions numerically", () => {
  const cases: [string, string, number][] = [
    ["1.26.8", "1.26.0", 1],
    ["1.26", "1.26.0", 0],
    ["1.9.0", "1.26.0", -1],
    ["v1.35.4", "v1.35.10", -1],
    ["2.0", "1.99.99", 1],
  ];
  for (const [a, b, expected] of cases) assert.equal(compareVersions(a, b), expected, `${a} ${b}`);
});

test("locallyReplacedModules finds every module replaced with a directory", () => {
  assert.deepEqual(locallyReplacedModules(kubernetesGoMod), [
    "k8s.io/api",
    "k8s.io/client-go",
    "k8s.io/kms",
    "example.com/sibling",
  ]);
});

test("requiredVersion finds a requirement in blocks and single lines, never in replaces", () => {
  assert.equal(requiredVersion(kubernetesGoMod, "k8s.io/client-go"), "v0.0.0");
  assert.equal(requiredVersion(kubernetesGoMod, "github.com/blang/semver/v4"), "v4.0.0");
  assert.equal(
    requiredVersion(kubernetesGoMod, "k8s.io/utils"),
    "v0.0.0-20251002143259-bc988d571ff4",
  );
  assert.equal(requiredVersion(kubernetesGoMod, "github.com/example/fork"), undefined);
  assert.equal(requiredVersion(kubernetesGoMod, "k8s.io/client"), undefined);
});

test("stagingVersionOf maps Kubernetes v1.Y.Z to v0.Y.Z", () => {
  assert.equal(stagingVersionOf("v1.35.4"), "v0.35.4");
  assert.throws(() => stagingVersionOf("v2.0.0"), ProvisionError);
  assert.throws(() => stagingVersionOf("1.35.4"), ProvisionError);
});

test("the Kubernetes wrapper requires the release and pins each staging module to v0.Y.Z", () => {
  const goMod = kubernetesWrapperGoMod("v1.35.4", "1.26.0", ["k8s.io/api", "k8s.io/kms"]);
  assert.match(goMod, /^module \S+$/m);
  assert.match(goMod, /^go 1\.26\.0$/m);
  assert.match(goMod, /^require k8s\.io\/kubernetes v1\.35\.4$/m);
  assert.match(goMod, /^\tk8s\.io\/api => k8s\.io\/api v0\.35\.4$/m);
  assert.match(goMod, /^\tk8s\.io\/kms => k8s\.io\/kms v0\.35\.4$/m);
  assert.deepEqual(locallyReplacedModules(goMod), []);
});

test("the etcd wrapper requires etcd's server module", () => {
  const goMod = etcdWrapperGoMod("v3.6.16", "1.26.0");
  assert.match(goMod, /^require go\.etcd\.io\/etcd\/server\/v3 v3\.6\.16$/m);
  assert.match(goMod, /^go 1\.26\.0$/m);
});

test("kubernetesLdflags stamps the release into component-base and client-go", () => {
  const flags = kubernetesLdflags("v1.35.4");
  for (const pkg of ["k8s.io/component-base/version", "k8s.io/client-go/pkg/version"]) {
    assert.ok(flags.includes(`-X ${pkg}.gitVersion=v1.35.4`), flags);
    assert.ok(flags.includes(`-X ${pkg}.gitMajor=1`), flags);
    assert.ok(flags.includes(`-X ${pkg}.gitMinor=35`), flags);
  }
  assert.throws(() => kubernetesLdflags("master"), ProvisionError);
});

test("helmLdflags stamps helm's version and the Kubernetes version of its client-go", () => {
  const flags = helmLdflags("v3.22.0", "v0.35.1");
  assert.ok(flags.includes("-X helm.sh/helm/v3/internal/version.version=v3.22.0"), flags);
  assert.ok(flags.includes("-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=35"), flags);
  assert.ok(flags.includes("-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1"), flags);
  assert.throws(() => helmLdflags("v3.22.0", "v1.0.0"), ProvisionError);
});

test("formatDuration", () => {
  assert.equal(formatDuration(42_400), "42s");
  assert.equal(formatDuration(187_000), "3m07s");
});

async function withCacheDir(run: (cacheDir: string) => Promise<void>): Promise<void> {
  const cacheDir = await mkdtemp(path.join(os.tmpdir(), "fedtrain-provision-test-"));
  try {
    await run(cacheDir);
  } finally {
    await rm(cacheDir, { recursive: true, force: true });
  }
}

/** A stand-in `go` command in dir: a shell script of these lines. */
async function fakeGo(dir: string, lines: string[]): Promise<string> {
  const file = path.join(dir, "go");
  await writeFile(file, `${["#!/bin/sh", ...lines].join("\n")}\n`);
  await chmod(file, 0o755);
  return file;
}

/** Asserts that provision with this go fails with a ProvisionError saying each of `says`. */
async function assertProvisionFails(
  cacheDir: string,
  goCommand: string,
  says: string[],
): Promise<void> {
  await assert.rejects(
    provision({ cacheDir, goCommand, log: () => {} }),
    (error: Error) =>
      error instanceof ProvisionError && says.every((text) => error.message.includes(text)),
  );
}

test("provision reuses cached binaries without needing Go", async () => {
  await withCacheDir(async (cacheDir) => {
    const bin = path.join(cacheDir, "bin");
    const cached: [string, string[]][] = [
      [`nats-server-${versions.natsServer}`, ["nats-server"]],
      [`etcd-${versions.etcd}`, ["etcd"]],
      [`helm-${versions.helm}`, ["helm"]],
      [
        `kubernetes-${versions.kubernetes}`,
        ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"],
      ],
      [`kubelet-${versions.kubernetes}`, ["kubelet"]],
      [`pause-${pauseVersion}`, ["pause"]],
    ];
    for (const [dir, binaries] of cached) {
      await mkdir(path.join(bin, dir), { recursive: true });
      for (const binary of binaries) await writeFile(path.join(bin, dir, binary), "");
    }
    // A scratch directory left by a killed run (no process has pid 2^22 + 1 on Linux).
    await mkdir(path.join(bin, ".building-4194305-etcd"));
    const lines: string[] = [];
    const binaries = await provision({
      cacheDir,
      goCommand: "/nonexistent/go",
      log: (line) => lines.push(line),
    });
    const kubernetesDir = path.join(bin, `kubernetes-${versions.kubernetes}`);
    assert.equal(binaries.kubeApiserver, path.join(kubernetesDir, "kube-apiserver"));
    assert.equal(binaries.kubectl, path.join(kubernetesDir, "kubectl"));
    assert.equal(binaries.etcd, path.join(bin, `etcd-${versions.etcd}`, "etcd"));
    assert.equal(
      binaries.natsServer,
      path.join(bin, `nats-server-${versions.natsServer}`, "nats-server"),
    );
    assert.equal(binaries.kubelet, path.join(bin, `kubelet-${versions.kubernetes}`, "kubelet"));
    assert.equal(lines.length, 6);
    assert.ok(
      lines.every((line) => line.endsWith(": cached")),
      lines.join("\n"),
    );
    assert.equal(existsSync(path.join(bin, ".building-4194305-etcd")), false);
  });
});

test("provision says how to install Go when there is none", async () => {
  await withCacheDir(async (cacheDir) => {
    await assertProvisionFails(cacheDir, "/nonexistent/go", [
      "no `/nonexistent/go` command",
      `Install Go ${versions.go} or newer`,
    ]);
  });
});

test("provision refuses a Go older than versions.json asks for", async () => {
  await withCacheDir(async (cacheDir) => {
    const oldGo = await fakeGo(cacheDir, ["echo go version go1.20.1 linux/amd64"]);
    await assertProvisionFails(cacheDir, oldGo, ["go1.20.1", `needs Go ${versions.go} or newer`]);
  });
});

test("a failed build shows go's error and leaves nothing behind in the cache", async () => {
  await withCacheDir(async (cacheDir) => {
    const failingGo = await fakeGo(cacheDir, [
      'if [ "$1" = version ]; then echo go version go1.99.0 linux/amd64; exit 0; fi',
      'echo partial > "$GOBIN/nats-server"',
      "echo 'main.go:1:1: something is broken' >&2",
      "exit 1",
    ]);
    await assertProvisionFails(cacheDir, failingGo, ["exited with code 1", "something is broken"]);
    assert.deepEqual(await readdir(path.join(cacheDir, "bin")), []);
  });
});
