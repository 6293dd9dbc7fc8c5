// A container as a local process: its image's command under setpriv + unshare, with the pod's
// volumes bind-mounted at their mountPaths in a private mount namespace, output appended to
// logs/<container>.log in the pod's folder; and stopping it with SIGTERM → grace → SIGKILL.
import { spawn } from "node:child_process";
import { closeSync, openSync, writeSync } from "node:fs";
import path from "node:path";
import { repoRoot } from "../scripts/repository.js";
import { containerArgv, localImage } from "./images.js";
import type { ContainerRun, PodContext } from "./pod-context.js";
import { expandVariables } from "./pod-spec.js";

// Where a container's mount namespace keeps the pod folder and the repository while it mounts
// volumes; the same folder serves every pod, since each sees only its own mounts there.
const stagingDir = "/run/fedtrain-testbed-staging";

/**
 * Starts a container's process and records it in `run`; `onExit` is called once it has exited
 * (run.lastExit set). Returns false, with run.waiting saying why, when it cannot start.
 */
export function startContainer(
  pod: PodContext,
  run: ContainerRun,
  volumes: Map<string, string>,
  env: Record<string, string>,
  onExit: () => void,
): boolean {
  const image = localImage(run.spec.image ?? "");
  if (!image) return false;
  const lookup = (name: string) => env[name];
  const argv = containerArgv(image, run.spec.command, run.spec.args).map((a) =>
    expandVariables(a, lookup),
  );
  if (argv.length === 0) {
    run.waiting = {
      reason: "CreateContainerError",
      message: `image ${run.spec.image} needs a command`,
    };
    return false;
  }
  // A mount can hide what later steps need (an emptyDir at /tmp hides a repository or a pod
  // folder under /tmp): the pod's folder and the repository are first bound to a staging
  // folder, volumes are mounted from there, and the repository is bound back at the end.
  const stagedPod = `${stagingDir}/pod`;
  const stagedRepo = `${stagingDir}/repo`;
  const mounts: string[] = [
    `mkdir -p ${stagedPod} ${stagedRepo}`,
    `mount --bind ${shellQuote(pod.dir)} ${stagedPod}`,
    `mount --bind ${shellQuote(repoRoot)} ${stagedRepo}`,
  ];
  for (const mount of run.spec.volumeMounts ?? []) {
    const source = volumes.get(mount.name);
    if (!source) {
      run.waiting = {
        reason: "CreateContainerConfigError",
        message: `volume ${mount.name} is not defined`,
      };
      return false;
    }
    const staged = source.startsWith(`${pod.dir}/`)
      ? `${stagedPod}/${path.relative(pod.dir, source)}`
      : source;
    mounts.push(
      mountScript(
        mount.subPath ? path.join(staged, mount.subPath) : staged,
        mount.mountPath,
        mount.readOnly ?? false,
      ),
    );
  }
  mounts.push(mountScript(stagedRepo, repoRoot, false));
  const workingDir = run.spec.workingDir ?? image.workingDir;
  const script = ["set -e", ...mounts, `cd ${shellQuote(workingDir)}`, 'exec "$@"'].join("\n");
  const logFile = path.join(pod.dir, "logs", `${run.spec.name}.log`);
  const log = openSync(logFile, "a");
  writeSync(
    log,
    `--- ${new Date().toISOString()} start ${run.spec.name} (restart ${run.restartCount}): ${argv.join(" ")}\n`,
  );
  // --pdeathsig: a node agent killed without warning takes its pods' processes with it, as a
  // failed node would. unshare: a private mount namespace, so each pod sees its own volumes.
  const child = spawn(
    "setpriv",
    [
      "--pdeathsig",
      "KILL",
      "unshare",
      "--mount",
      "--propagation",
      "private",
      "sh",
      "-c",
      script,
      "sh",
      ...argv,
    ],
    {
      detached: true,
      stdio: ["ignore", log, log],
      env: {
        PATH: `${path.dirname(process.execPath)}:${process.env.PATH ?? "/usr/bin:/bin"}`,
        HOME: process.env.HOME ?? "/root",
        HOSTNAME: pod.pod.metadata?.name ?? "",
        ...env,
      },
    },
  );
  closeSync(log);
  if (run.lastExit) run.restartCount += 1;
  run.process = child;
  run.pid = child.pid;
  run.startedAt = new Date();
  run.waiting = undefined;
  run.restartAt = undefined;
  run.ready = false;
  run.livenessFailures = 0;
  pod.node.log("container started", { pod: pod.key, container: run.spec.name, pid: child.pid });
  child.once("exit", (code, signal) => {
    const exitCode = code ?? 128 + signalNumber(signal);
    run.process = undefined;
    run.ready = false;
    for (const timer of run.probeTimers) clearTimeout(timer);
    run.probeTimers = [];
    run.lastExit = {
      exitCode,
      reason: exitCode === 0 ? "Completed" : "Error",
      startedAt: run.startedAt ?? new Date(),
      finishedAt: new Date(),
    };
    pod.node.log("container exited", { pod: pod.key, container: run.spec.name, exitCode });
    onExit();
  });
  child.once("error", (error) => {
    pod.node.log("container failed to start", {
      pod: pod.key,
      container: run.spec.name,
      error: String(error),
    });
  });
  return true;
}

/** Stops a container's process group: SIGTERM, then SIGKILL after graceMs; resolves on exit. */
export async function killContainer(run: ContainerRun, graceMs: number): Promise<void> {
  const child = run.process;
  if (!child?.pid) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  signal(child.pid, "SIGTERM");
  const timer = setTimeout(() => signal(child.pid ?? 0, "SIGKILL"), graceMs);
  await exited;
  clearTimeout(timer);
}

function mountScript(source: string, target: string, readOnly: boolean): string {
  const s = shellQuote(source);
  const t = shellQuote(target);
  const prepare = `if [ -d ${s} ]; then mkdir -p ${t}; else mkdir -p "$(dirname ${t})"; [ -e ${t} ] || touch ${t}; fi`;
  const bind = `mount --bind ${s} ${t}`;
  return readOnly ? `${prepare}; ${bind}; mount -o remount,bind,ro ${t}` : `${prepare}; ${bind}`;
}

function shellQuote(value: string): string {
  return `'${value.replaceAll("'", "'\\''")}'`;
}

function signal(pid: number, name: NodeJS.Signals): void {
  for (const target of [-pid, pid]) {
    try {
      process.kill(target, name);
    } catch {
      // Already gone.
    }
  }
}

function signalNumber(signal: NodeJS.Signals | null): number {
  const numbers: Partial<Record<NodeJS.Signals, number>> = {
    SIGKILL: 9,
    SIGTERM: 15,
    SIGINT: 2,
    SIGABRT: 6,
    SIGSEGV: 11,
  };
  return (signal && numbers[signal]) || 0;
}
