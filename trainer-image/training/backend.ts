// Chooses and initialises the tfjs compute backend at start: CUDA (tfjs-node-gpu), WebGPU (Dawn
// through the `webgpu` package), native CPU (tfjs-node), WASM or plain JS. Optional packages are
// loaded with dynamic import, so a trainer without them still starts.
import { readdir, readFile } from "node:fs/promises";
import { cpus } from "node:os";
import * as tf from "@tensorflow/tfjs";
import type { ContributionSpec } from "../../core/api/index.js";

/** A backend the operator can ask for, plus WASM and JS for tests and benchmarks. */
export type BackendChoice = ContributionSpec["backend"] | "WASM" | "JS";

/** The backend the trainer actually runs on. */
export type BackendName = "cuda" | "webgpu" | "cpu-native" | "wasm" | "cpu-js";

/** Which backend was chosen and on which device it computes. */
export interface BackendInfo {
  backend: BackendName;
  /** The tfjs backend name (tensorflow, webgpu, wasm, cpu). */
  tfjsBackend: string;
  /** Human-readable device: the GPU or adapter name, or the CPU model. */
  device: string;
  /** Why better backends were skipped (Auto), for the log. */
  skipped: string[];
}

/** An explicitly requested backend that cannot run here. */
export class BackendUnavailableError extends Error {
  override name = "BackendUnavailableError";
  constructor(
    readonly choice: BackendChoice,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`backend ${choice} is not available: ${message}`, options);
  }
}

/** Options of `initBackend`. */
export interface BackendOptions {
  /** Accept a software (fallback) WebGPU adapter such as SwiftShader; default false. */
  allowSoftwareAdapter?: boolean;
  /** Receives one log line per decision; default console.error. */
  log?: (line: string) => void;
}

let current: BackendInfo | null = null;

/** The backend chosen by `initBackend`, or null before it ran. */
export function backendInfo(): BackendInfo | null {
  return current;
}

/**
 * Initialises the backend for `choice` and returns what was chosen. Auto takes the best that
 * loads: CUDA with a working GPU, then a hardware WebGPU adapter, then native CPU, WASM, plain JS.
 * An explicit choice that cannot load throws BackendUnavailableError naming what is missing.
 * CPU means native CPU, else WASM.
 */
export async function initBackend(
  choice: BackendChoice,
  options: BackendOptions = {},
): Promise<BackendInfo> {
  const log = options.log ?? ((line: string) => console.error(line));
  const skipped: string[] = [];
  const attempt = async (
    name: BackendName,
    load: () => Promise<Omit<BackendInfo, "skipped">>,
  ): Promise<BackendInfo | null> => {
    try {
      return chosen(await load(), skipped, log);
    } catch (error) {
      if (choice !== "Auto" && choice !== "CPU") {
        throw error instanceof BackendUnavailableError
          ? error
          : new BackendUnavailableError(choice, describe(error), { cause: error });
      }
      const reason = `${name}: ${describe(error)}`;
      skipped.push(reason);
      log(`backend: skipping ${reason}`);
      return null;
    }
  };

  switch (choice) {
    case "CUDA":
      return (await attempt("cuda", () => loadCuda(false)))!;
    case "WebGPU":
      return (await attempt("webgpu", () => loadWebGpu(options.allowSoftwareAdapter ?? false)))!;
    case "WASM":
      return (await attempt("wasm", loadWasm))!;
    case "JS":
      return (await attempt("cpu-js", loadJs))!;
    case "CPU": {
      const native = await attempt("cpu-native", loadNativeCpu);
      if (native) return native;
      const wasm = await attempt("wasm", loadWasm);
      if (wasm) return wasm;
      throw new BackendUnavailableError(choice, skipped.join("; "));
    }
    case "Auto": {
      // tfjs-node-gpu without a usable GPU runs on the CPU: keep it as the native CPU choice,
      // but a hardware WebGPU adapter beats it. (tfjs-node cannot load next to it: both
      // register the "tensorflow" backend.)
      let cudaOnCpu: Omit<BackendInfo, "skipped"> | null = null;
      try {
        const cuda = await loadCuda(true);
        if (cuda.backend === "cuda") return chosen(cuda, skipped, log);
        cudaOnCpu = cuda;
        skipped.push(`cuda: ${cuda.device}`);
        log(`backend: skipping cuda: ${cuda.device}`);
      } catch (error) {
        skipped.push(`cuda: ${describe(error)}`);
        log(`backend: skipping cuda: ${describe(error)}`);
      }
      const webgpu = await attempt("webgpu", () =>
        loadWebGpu(options.allowSoftwareAdapter ?? false),
      );
      if (webgpu) return webgpu;
      if (cudaOnCpu) {
        await tf.setBackend(cudaOnCpu.tfjsBackend);
        return chosen(cudaOnCpu, skipped, log);
      }
      return (
        (await attempt("cpu-native", loadNativeCpu)) ??
        (await attempt("wasm", loadWasm)) ??
        (await attempt("cpu-js", loadJs))!
      );
    }
  }
}

function chosen(
  info: Omit<BackendInfo, "skipped">,
  skipped: string[],
  log: (line: string) => void,
): BackendInfo {
  current = { ...info, skipped };
  log(`backend: ${info.backend} (tfjs ${info.tfjsBackend}) on ${info.device}`);
  return current;
}

function describe(error: unknown): string {
  if (error instanceof BackendUnavailableError)
    return error.message.replace(/^backend \S+ is not available: /, "");
  if (error instanceof Error) return error.message.split("\n")[0] ?? error.name;
  return String(error);
}

/** Dynamic import of an optional package; the specifier is a variable so tsc does not resolve it. */
async function importOptional(specifier: string, what: string): Promise<unknown> {
  try {
    return await import(specifier);
  } catch (error) {
    throw new Error(
      `cannot load ${specifier} (${what}): ${describe(error)}; install it (npm install ${specifier})`,
      { cause: error },
    );
  }
}

/**
 * tfjs-node-gpu falls back to the CPU silently when CUDA or cuDNN cannot be loaded, so after a
 * first op we check that TensorFlow really mapped the CUDA driver and cuDNN into the process.
 * With `acceptCpuFallback` a CPU-only tfjs-node-gpu is returned as native CPU instead of failing.
 */
async function loadCuda(acceptCpuFallback: boolean): Promise<Omit<BackendInfo, "skipped">> {
  await importOptional("@tensorflow/tfjs-node-gpu", "CUDA 11.2 + cuDNN 8.1 build of TensorFlow");
  if (!(await tf.setBackend("tensorflow"))) throw new Error("tfjs-node-gpu did not register");
  tf.tidy(() => tf.matMul(tf.ones([64, 64]), tf.ones([64, 64])).dataSync());
  const maps = await readFile("/proc/self/maps", "utf8").catch(() => "");
  const hasDriver = /libcuda\.so/.test(maps);
  const hasCudnn = /libcudnn/.test(maps);
  if (hasDriver && hasCudnn) {
    return { backend: "cuda", tfjsBackend: "tensorflow", device: await nvidiaGpuName() };
  }
  const missing = [hasDriver ? null : "the CUDA driver (libcuda.so)", hasCudnn ? null : "cuDNN 8"]
    .filter((part) => part !== null)
    .join(" and ");
  if (!acceptCpuFallback) {
    throw new Error(
      `tfjs-node-gpu loaded but TensorFlow runs on the CPU: ${missing} could not be loaded (tfjs-node-gpu 4.22 needs CUDA 11.2 and cuDNN 8.1 and an NVIDIA driver)`,
    );
  }
  return {
    backend: "cpu-native",
    tfjsBackend: "tensorflow",
    device: `${cpuModel()} (tfjs-node-gpu without ${missing})`,
  };
}

async function nvidiaGpuName(): Promise<string> {
  try {
    const root = "/proc/driver/nvidia/gpus";
    const names: string[] = [];
    for (const entry of await readdir(root)) {
      const text = await readFile(`${root}/${entry}/information`, "utf8");
      const model = /^Model:\s*(.+)$/m.exec(text)?.[1]?.trim();
      if (model) names.push(model);
    }
    if (names.length > 0) return names.join(", ");
  } catch {
    // Not every container exposes /proc/driver/nvidia.
  }
  return "NVIDIA GPU";
}

interface WebGpuModule {
  create(options: string[]): {
    requestAdapter(options?: { powerPreference?: string }): Promise<WebGpuAdapter | null>;
  };
  globals: object;
}

interface WebGpuAdapter {
  info?: { vendor?: string; architecture?: string; device?: string; description?: string };
  isFallbackAdapter?: boolean;
}

/** Dawn's node build needs a Vulkan loader (libvulkan.so.1) and a Vulkan driver for the GPU. */
async function loadWebGpu(allowSoftwareAdapter: boolean): Promise<Omit<BackendInfo, "skipped">> {
  const webgpu = (await importOptional("webgpu", "Dawn WebGPU for Node.js")) as WebGpuModule;
  Object.assign(globalThis, webgpu.globals);
  const gpu = webgpu.create([]);
  const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) {
    throw new Error(
      "no WebGPU adapter found: Dawn needs libvulkan.so.1 (Debian package libvulkan1) and a Vulkan driver for the GPU (for NVIDIA, VK_DRIVER_FILES pointing at nvidia_icd.json)",
    );
  }
  const info = adapter.info ?? {};
  const device =
    [info.description, info.device, info.vendor].find((part) => part && part.length > 0) ??
    "unknown WebGPU adapter";
  const software =
    adapter.isFallbackAdapter === true ||
    (info as { isFallbackAdapter?: boolean }).isFallbackAdapter === true ||
    /swiftshader|llvmpipe|lavapipe/i.test(`${info.description} ${info.device} ${info.vendor}`);
  if (software && !allowSoftwareAdapter) {
    throw new Error(`the only WebGPU adapter is a software renderer (${device}), not a GPU`);
  }
  const navigatorObject = (globalThis as { navigator?: object }).navigator;
  if (navigatorObject) {
    Object.defineProperty(navigatorObject, "gpu", { value: gpu, configurable: true });
  } else {
    Object.defineProperty(globalThis, "navigator", { value: { gpu }, configurable: true });
  }
  await importOptional("@tensorflow/tfjs-backend-webgpu", "tfjs WebGPU backend");
  if (!(await tf.setBackend("webgpu"))) throw new Error("tfjs could not initialise WebGPU");
  return { backend: "webgpu", tfjsBackend: "webgpu", device };
}

async function loadNativeCpu(): Promise<Omit<BackendInfo, "skipped">> {
  await importOptional("@tensorflow/tfjs-node", "native TensorFlow CPU build");
  if (!(await tf.setBackend("tensorflow"))) throw new Error("tfjs-node did not register");
  return { backend: "cpu-native", tfjsBackend: "tensorflow", device: cpuModel() };
}

async function loadWasm(): Promise<Omit<BackendInfo, "skipped">> {
  await importOptional("@tensorflow/tfjs-backend-wasm", "tfjs WASM backend");
  if (!(await tf.setBackend("wasm"))) throw new Error("tfjs could not initialise WASM");
  return { backend: "wasm", tfjsBackend: "wasm", device: cpuModel() };
}

async function loadJs(): Promise<Omit<BackendInfo, "skipped">> {
  if (!(await tf.setBackend("cpu"))) throw new Error("tfjs could not initialise its CPU backend");
  return { backend: "cpu-js", tfjsBackend: "cpu", device: cpuModel() };
}

function cpuModel(): string {
  const list = cpus();
  return `${list[0]?.model.trim() ?? "CPU"} × ${list.length}`;
}
