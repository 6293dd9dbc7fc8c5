// Provisioning step of the local test bed: builds, once per version, the real binaries the test bed
// runs (etcd, the Kubernetes control plane and kubectl, helm, nats-server) from the Go module proxy,
// because no registry reachable here ships them, and caches them by version.
// `npm run provision` runs it as a CLI; other code calls provision().
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { copyFile, mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { repoRoot } from "../scripts/repository.js";
import versions from "./versions.json" with { type: "json" };

/** Absolute paths of the binaries the test bed runs. */
export interface Binaries {
  etcd: string;
  kubeApiserver: string;
  kubeControllerManager: string;
  kubeScheduler: string;
  kubectl: string;
  /** The kubelet of the test bed's real nodes. */
  kubelet: string;
  /** The sandbox ("pause") program of the test bed's real nodes: static, sleeps until signalled. */
  pause: string;
  helm: string;
  natsServer: string;
}

/** Options of {@link provision}. */
export interface ProvisionOptions {
  /** Root of the cache; default `$FEDTRAIN_CACHE_DIR`, else `~/.cache/fedtrain`. */
  cacheDir?: string;
  /** Receives progress lines; default: standard error. */
  log?: (line: string) => void;
  /** The Go command; default `go` from PATH. */
  goCommand?: string;
}

/** A provisioning failure a user can act on: Go missing or too old, a failed build. */
export class ProvisionError extends Error {
  override name = "ProvisionError";
}

/** Runs `go` with these arguments in cwd and returns its standard output. */
type GoRun = (args: string[], cwd: string, env?: Record<string, string>) => Promise<string>;

/** A {@link GoRun} that also passes each line go writes to standard error to onLine. */
type GoRunner = (
  args: string[],
  cwd: string,
  env?: Record<string, string>,
  onLine?: (line: string) => void,
) => Promise<string>;

interface Component {
  name: ComponentName;
  binaries: string[];
  /** Shown before a build: how long the user will wait (measured cold on 2 cores). */
  firstBuildTime: string;
  /** Builds `binaries` into outDir; workDir is an empty scratch directory. */
  build(go: GoRun, workDir: string, outDir: string): Promise<void>;
}

const kubernetesCommands = [
  "kube-apiserver",
  "kube-controller-manager",
  "kube-scheduler",
  "kubectl",
] as const;

// Long enough not to flood the log, short enough that a user never wonders whether it hangs.
const heartbeatMs = 30_000;

/**
 * Returns the cached binaries, building the missing ones first (minutes per component the first
 * time; Go must then be installed).
 */
export async function provision(options: ProvisionOptions = {}): Promise<Binaries> {
  const log = options.log ?? ((line: string) => console.error(line));
  const binDir = path.join(options.cacheDir ?? defaultCacheDir(), "bin");
  await mkdir(binDir, { recursive: true });
  await removeAbandonedBuilds(binDir);
  let goReady: Promise<GoRunner> | undefined;
  const ensureGo = () => {
    goReady ??= checkedGo(options.goCommand ?? "go");
    return goReady;
  };
  for (const component of components()) {
    await provisionComponent(component, binDir, ensureGo, log);
  }
  const kubernetes = (binary: string) => componentBinary(binDir, "kubernetes", binary);
  return {
    etcd: componentBinary(binDir, "etcd", "etcd"),
    kubeApiserver: kubernetes("kube-apiserver"),
    kubeControllerManager: kubernetes("kube-controller-manager"),
    kubeScheduler: kubernetes("kube-scheduler"),
    kubectl: kubernetes("kubectl"),
    kubelet: componentBinary(binDir, "kubelet", "kubelet"),
    pause: componentBinary(binDir, "pause", "pause"),
    helm: componentBinary(binDir, "helm", "helm"),
    natsServer: componentBinary(binDir, "nats-server", "nats-server"),
  };
}

type ComponentName = "nats-server" | "etcd" | "helm" | "kubernetes" | "kubelet" | "pause";

// The pause program's source lives in testbed/pause; its cache folder is named by a hash of it.
const pauseSource = path.join(repoRoot, "testbed", "pause");
/** The pause program's version: a hash of its source. */
export const pauseVersion = createHash("sha256")
  .update(readFileSync(path.join(pauseSource, "main.go")))
  .digest("hex")
  .slice(0, 12);

const pinnedVersions: Record<ComponentName, string> = {
  "nats-server": versions.natsServer,
  etcd: versions.etcd,
  helm: versions.helm,
  kubernetes: versions.kubernetes,
  kubelet: versions.kubernetes,
  pause: pauseVersion,
};

// Versioned directories: a version bump in versions.json builds afresh next to the old binaries.
function componentDir(binDir: string, name: ComponentName): string {
  return path.join(binDir, `${name}-${pinnedVersions[name]}`);
}

function componentBinary(binDir: string, name: ComponentName, binary: string): string {
  return path.join(componentDir(binDir, name), binary);
}

function defaultCacheDir(): string {
  return process.env.FEDTRAIN_CACHE_DIR ?? path.join(os.homedir(), ".cache", "fedtrain");
}

// Ordered quickest first, so a broken Go setup shows up before the long Kubernetes build.
function components(): Component[] {
  return [
    {
      name: "nats-server",
      binaries: ["nats-server"],
      firstBuildTime: "under a minute",
      async build(go, workDir, outDir) {
        const module = `github.com/nats-io/nats-server/v2@${versions.natsServer}`;
        await go(["install", ...buildFlags("-s -w"), module], workDir, { GOBIN: outDir });
      },
    },
    {
      name: "etcd",
      binaries: ["etcd"],
      firstBuildTime: "under a minute",
      // etcd's go.mod replaces its sibling modules with local paths, so `go install` refuses it:
      // build its main package from a wrapper module instead.
      async build(go, workDir, outDir) {
        await writeFile(path.join(workDir, "go.mod"), etcdWrapperGoMod(versions.etcd, versions.go));
        const output = path.join(outDir, "etcd");
        await go(["build", "-mod=mod", ...buildFlags("-s -w"), "-o", output, etcdMain], workDir);
      },
    },
    {
      name: "helm",
      binaries: ["helm"],
      firstBuildTime: "a minute or two",
      async build(go, workDir, outDir) {
        const goMod = await downloadedGoMod(go, `helm.sh/helm/v3@${versions.helm}`, workDir);
        const clientGo = requiredVersion(goMod, "k8s.io/client-go");
        if (!clientGo) {
          throw new ProvisionError(`helm ${versions.helm} requires no k8s.io/client-go`);
        }
        const ldflags = helmLdflags(versions.helm, clientGo);
        const command = `helm.sh/helm/v3/cmd/helm@${versions.helm}`;
        await go(["install", ...buildFlags(ldflags), command], workDir, { GOBIN: outDir });
      },
    },
    {
      name: "kubernetes",
      binaries: [...kubernetesCommands],
      firstBuildTime: "about 5 minutes",
      async build(go, workDir, outDir) {
        await writeKubernetesWrapper(go, workDir);
        // One `go build` for all commands: they share most packages, which then compile once.
        const packages = kubernetesCommands.map((command) => `k8s.io/kubernetes/cmd/${command}`);
        const flags = buildFlags(kubernetesLdflags(versions.kubernetes));
        await go(["build", "-mod=mod", ...flags, "-o", `${outDir}/`, ...packages], workDir);
      },
    },
    {
      // Its own component (not one more of kubernetesCommands) so that a cache of the control
      // plane built before the real nodes is kept; it shares the Go build cache with it.
      name: "kubelet",
      binaries: ["kubelet"],
      firstBuildTime: "about 2 minutes (30 s after the control plane)",
      async build(go, workDir, outDir) {
        await writeKubernetesWrapper(go, workDir);
        const flags = buildFlags(kubernetesLdflags(versions.kubernetes));
        const output = path.join(outDir, "kubelet");
        await go(
          ["build", "-mod=mod", ...flags, "-o", output, "k8s.io/kubernetes/cmd/kubelet"],
          workDir,
        );
      },
    },
    {
      // A static program (no C library), so that its image needs no root file system.
      name: "pause",
      binaries: ["pause"],
      firstBuildTime: "seconds",
      async build(go, workDir, outDir) {
        await copyFile(path.join(pauseSource, "main.go"), path.join(workDir, "main.go"));
        await writeFile(
          path.join(workDir, "go.mod"),
          `module fedtrain.dev/testbed/pause\n\ngo 1.22\n`,
        );
        const output = path.join(outDir, "pause");
        await go(["build", ...buildFlags("-s -w"), "-o", output, "."], workDir, {
          CGO_ENABLED: "0",
        });
      },
    },
  ];
}

const etcdMain = "go.etcd.io/etcd/server/v3";

// -v lists each package as it compiles: the heartbeat counts them to show progress.
function buildFlags(ldflags: string): string[] {
  return ["-v", "-trimpath", "-ldflags", ldflags];
}

/** Writes the wrapper module that builds k8s.io/kubernetes' commands into workDir. */
async function writeKubernetesWrapper(go: GoRun, workDir: string): Promise<void> {
  const kubernetes = `k8s.io/kubernetes@${versions.kubernetes}`;
  const staging = locallyReplacedModules(await downloadedGoMod(go, kubernetes, workDir));
  const goMod = kubernetesWrapperGoMod(versions.kubernetes, versions.go, staging);
  await writeFile(path.join(workDir, "go.mod"), goMod);
}

async function downloadedGoMod(go: GoRun, module: string, cwd: string): Promise<string> {
  const info = JSON.parse(await go(["mod", "download", "-json", module], cwd)) as { GoMod: string };
  return readFile(info.GoMod, "utf8");
}

async function provisionComponent(
  component: Component,
  binDir: string,
  ensureGo: () => Promise<GoRunner>,
  log: (line: string) => void,
): Promise<void> {
  const label = `${component.name} ${pinnedVersions[component.name]}`;
  const dir = componentDir(binDir, component.name);
  const isComplete = () => component.binaries.every((binary) => existsSync(path.join(dir, binary)));
  if (isComplete()) {
    log(`[provision] ${label}: cached`);
    return;
  }
  const runGo = await ensureGo();
  const what = component.binaries.length > 1 ? `${component.binaries.join(", ")}; ` : "";
  log(`[provision] building ${label} (${what}first time: ${component.firstBuildTime}) ...`);

  // Built in a scratch directory next to the cache, then renamed into place in one step, so an
  // interrupted build never leaves a half-written binary where the next run would trust it.
  const scratch = path.join(binDir, `${scratchPrefix}${process.pid}-${component.name}`);
  const workDir = path.join(scratch, "module");
  const outDir = path.join(scratch, "out");
  await rm(scratch, { recursive: true, force: true });
  await mkdir(workDir, { recursive: true });
  await mkdir(outDir, { recursive: true });
  const started = Date.now();
  let packages = 0;
  const countPackages = (line: string) => {
    if (!line.startsWith("go: ") && !line.startsWith("#")) packages += 1;
  };
  const heartbeat = setInterval(() => {
    const elapsed = formatDuration(Date.now() - started);
    log(`[provision] still building ${label}: ${elapsed}, ${packages} packages compiled`);
  }, heartbeatMs);
  try {
    await component.build(
      (args, cwd, env) => runGo(args, cwd, env, countPackages),
      workDir,
      outDir,
    );
    await rm(dir, { recursive: true, force: true });
    await rename(outDir, dir).catch((error: NodeJS.ErrnoException) => {
      // Another provision run finished the same component first: its binaries are as good.
      if (!["ENOTEMPTY", "EEXIST"].includes(error.code ?? "") || !isComplete()) throw error;
    });
  } finally {
    clearInterval(heartbeat);
    await rm(scratch, { recursive: true, force: true });
  }
  log(`[provision] built ${label} in ${formatDuration(Date.now() - started)}`);
}

const scratchPrefix = ".building-";

// Scratch directories of runs that were killed (their process is gone) would otherwise pile up
// hundreds of megabytes; those of a run still going on are left alone.
async function removeAbandonedBuilds(binDir: string): Promise<void> {
  for (const entry of await readdir(binDir)) {
    if (!entry.startsWith(scratchPrefix)) continue;
    const pid = Number.parseInt(entry.slice(scratchPrefix.length), 10);
    if (!isRunning(pid)) await rm(path.join(binDir, entry), { recursive: true, force: true });
  }
}

function isRunning(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Checks that `goCommand` is a Go new enough for versions.json and returns a runner for it. */
async function checkedGo(goCommand: string): Promise<GoRunner> {
  const install = `Install Go ${versions.go} or newer (https://go.dev/dl/) and put it on PATH`;
  let output: string;
  try {
    output = await runGo(goCommand, ["version"], process.cwd());
  } catch (error) {
    const reason =
      (error as NodeJS.ErrnoException).code === "ENOENT"
        ? `there is no \`${goCommand}\` command`
        : `\`${goCommand} version\` failed: ${(error as Error).message}`;
    throw new ProvisionError(
      `Go is needed to build the test bed's binaries (etcd, Kubernetes, helm, nats-server), ` +
        `but ${reason}. ${install}.`,
      { cause: error },
    );
  }
  const found = goVersionOf(output);
  if (!found || compareVersions(found, versions.go) < 0) {
    throw new ProvisionError(
      `\`${goCommand} version\` printed "${output.trim()}", but building the test bed's binaries ` +
        `needs Go ${versions.go} or newer. ${install}.`,
    );
  }
  return (args, cwd, env, onLine) => runGo(goCommand, args, cwd, env, onLine);
}

// How many lines of go's output a failure shows: the error is at the end.
const failureTailLines = 40;

// CGO_ENABLED=0 gives static binaries, as the official releases are, and needs no C toolchain;
// GOTOOLCHAIN=local makes the Go that was checked the one that builds (no silent download).
function runGo(
  goCommand: string,
  args: string[],
  cwd: string,
  env: Record<string, string> = {},
  onLine: (line: string) => void = () => {},
): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(goCommand, args, {
      cwd,
      env: { ...process.env, CGO_ENABLED: "0", GOTOOLCHAIN: "local", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const stdout: Buffer[] = [];
    const tail: string[] = [];
    let partial = "";
    child.stdout.on("data", (chunk: Buffer) => stdout.push(chunk));
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (chunk: string) => {
      const lines = (partial + chunk).split("\n");
      partial = lines.pop() ?? "";
      for (const line of lines) {
        onLine(line);
        tail.push(line);
        if (tail.length > failureTailLines) tail.shift();
      }
    });
    child.on("error", reject);
    child.on("close", (code, signal) => {
      const out = Buffer.concat(stdout).toString("utf8");
      if (code === 0) return resolve(out);
      const lastLines = [...tail, partial, ...out.trim().split("\n").slice(-failureTailLines)]
        .filter((line) => line !== "")
        .join("\n");
      const status = signal ? `was killed by ${signal}` : `exited with code ${code}`;
      reject(new ProvisionError(`\`go ${args.join(" ")}\` in ${cwd} ${status}:\n${lastLines}`));
    });
  });
}

/** The Go version in `go version` output ("go version go1.26.8 linux/amd64" gives "1.26.8"). */
export function goVersionOf(output: string): string | undefined {
  return /\bgo(\d+\.\d+(?:\.\d+)?)/.exec(output)?.[1];
}

/** Compares dotted numeric versions ("1.26.0", "v1.35.4"): negative, zero or positive. */
export function compareVersions(a: string, b: string): number {
  const numbers = (version: string) => version.replace(/^v/, "").split(".").map(Number);
  const [left, right] = [numbers(a), numbers(b)];
  for (let i = 0; i < Math.max(left.length, right.length); i++) {
    const difference = (left[i] ?? 0) - (right[i] ?? 0);
    if (difference !== 0) return Math.sign(difference);
  }
  return 0;
}

/** The modules a go.mod replaces with local directories (Kubernetes' staging modules). */
export function locallyReplacedModules(goMod: string): string[] {
  const modules: string[] = [];
  let inReplaceBlock = false;
  for (const rawLine of goMod.split("\n")) {
    const line = rawLine.replace(/\/\/.*$/, "").trim();
    if (/^replace\s*\($/.test(line)) {
      inReplaceBlock = true;
      continue;
    }
    if (inReplaceBlock && line === ")") {
      inReplaceBlock = false;
      continue;
    }
    const directive = inReplaceBlock ? line : /^replace\s+(.*)$/.exec(line)?.[1];
    const match = directive ? /^(\S+)(?:\s+\S+)?\s*=>\s*(\S+)/.exec(directive) : null;
    if (match?.[1] && match[2] && /^\.\.?\//.test(match[2])) modules.push(match[1]);
  }
  return modules;
}

/** The version of `module` that a go.mod requires, if it requires it. */
export function requiredVersion(goMod: string, module: string): string | undefined {
  const escaped = module.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
  return new RegExp(`^\\s*(?:require\\s+)?${escaped}\\s+(v\\S+)`, "m").exec(goMod)?.[1];
}

/** Kubernetes publishes its staging modules as v0.Y.Z for release v1.Y.Z. */
export function stagingVersionOf(kubernetesVersion: string): string {
  const match = /^v1\.(\d+\.\d+)$/.exec(kubernetesVersion);
  if (!match) throw new ProvisionError(`not a Kubernetes 1.x release: "${kubernetesVersion}"`);
  return `v0.${match[1]}`;
}

/**
 * A module that builds k8s.io/kubernetes' commands: k8s.io/kubernetes points its staging modules
 * at directories inside its own repository, which a dependent module cannot see, so they are
 * replaced with the copies published on the module proxy.
 */
export function kubernetesWrapperGoMod(
  kubernetesVersion: string,
  goVersion: string,
  stagingModules: string[],
): string {
  const stagingVersion = stagingVersionOf(kubernetesVersion);
  const replaces = stagingModules.map((module) => `\t${module} => ${module} ${stagingVersion}\n`);
  return (
    "// Generated by fedtrain testbed/provision.ts.\n" +
    "module fedtrain.local/testbed/kubernetes\n\n" +
    `go ${goVersion}\n\n` +
    `require k8s.io/kubernetes ${kubernetesVersion}\n\n` +
    `replace (\n${replaces.join("")})\n`
  );
}

/** A module that builds etcd's main package at `etcdVersion`. */
export function etcdWrapperGoMod(etcdVersion: string, goVersion: string): string {
  return (
    "// Generated by fedtrain testbed/provision.ts.\n" +
    "module fedtrain.local/testbed/etcd\n\n" +
    `go ${goVersion}\n\n` +
    `require ${etcdMain} ${etcdVersion}\n`
  );
}

/**
 * Linker flags that stamp the release version into Kubernetes binaries, as its release build does;
 * without them they report v0.0.0, which breaks the version checks of kubectl and helm.
 */
export function kubernetesLdflags(kubernetesVersion: string): string {
  const match = /^v(\d+)\.(\d+)\.\d+$/.exec(kubernetesVersion);
  if (!match) throw new ProvisionError(`not a Kubernetes release: "${kubernetesVersion}"`);
  const variables = {
    gitVersion: kubernetesVersion,
    gitMajor: match[1],
    gitMinor: match[2],
    gitTreeState: "clean",
  };
  // client-go's copy is what kubectl reports as its client version.
  const packages = ["k8s.io/component-base/version", "k8s.io/client-go/pkg/version"];
  const stamps = packages.flatMap((pkg) =>
    Object.entries(variables).map(([name, value]) => `-X ${pkg}.${name}=${value}`),
  );
  return ["-s", "-w", ...stamps].join(" ");
}

/**
 * Linker flags of helm's release build: its version, and the Kubernetes version it assumes when it
 * talks to no cluster (`helm template`), derived from the client-go it is built with (v0.Y.Z is
 * Kubernetes 1.Y); without them helm claims to be v3.Y and assumes Kubernetes 1.20.
 */
export function helmLdflags(helmVersion: string, clientGoVersion: string): string {
  const minor = /^v0\.(\d+)\./.exec(clientGoVersion)?.[1];
  if (!minor) throw new ProvisionError(`unexpected k8s.io/client-go version "${clientGoVersion}"`);
  const helm = "helm.sh/helm/v3";
  const kubernetesDefaults = ["pkg/lint/rules", "pkg/chartutil"].flatMap((pkg) => [
    `-X ${helm}/${pkg}.k8sVersionMajor=1`,
    `-X ${helm}/${pkg}.k8sVersionMinor=${minor}`,
  ]);
  return [
    "-s -w",
    `-X ${helm}/internal/version.version=${helmVersion}`,
    `-X ${helm}/internal/version.gitTreeState=clean`,
    ...kubernetesDefaults,
  ].join(" ");
}

/** "3m07s", "42s". */
export function formatDuration(milliseconds: number): string {
  const seconds = Math.round(milliseconds / 1000);
  if (seconds < 60) return `${seconds}s`;
  return `${Math.floor(seconds / 60)}m${String(seconds % 60).padStart(2, "0")}s`;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    const binaries = await provision();
    console.log(JSON.stringify(binaries, null, 2));
  } catch (error) {
    console.error(error instanceof ProvisionError ? `[provision] ${error.message}` : error);
    process.exitCode = 1;
  }
}
