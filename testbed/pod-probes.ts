// Readiness and liveness probes of a running container: httpGet, tcpSocket and exec (run in the
// container's mount namespace), each on its own timer until the container's process exits.
import { spawn } from "node:child_process";
import http from "node:http";
import https from "node:https";
import net from "node:net";
import type { V1Probe } from "@kubernetes/client-node";
import type { ContainerRun, PodContext } from "./pod-context.js";

/** What a container's probes report to its runner. */
export interface ProbeEvents {
  /** The readiness probe's result changed (run.ready already holds it). */
  readinessChanged(): void;
  /** The liveness probe failed failureThreshold times in a row: restart the container. */
  livenessFailed(): void;
}

/**
 * Starts a container's probes; a container without a readiness probe is ready at once. The
 * timers go to run.probeTimers, which the runner clears when the process exits.
 */
export function startProbes(pod: PodContext, run: ContainerRun, events: ProbeEvents): void {
  const readiness = run.spec.readinessProbe;
  if (!readiness) run.ready = true;
  else
    probeLoop(pod, run, readiness, (ok) => {
      if (run.ready !== ok) {
        run.ready = ok;
        events.readinessChanged();
      }
    });
  const liveness = run.spec.livenessProbe;
  if (liveness) {
    probeLoop(pod, run, liveness, (ok) => {
      run.livenessFailures = ok ? 0 : run.livenessFailures + 1;
      if (run.livenessFailures >= (liveness.failureThreshold ?? 3) && run.process) {
        pod.node.log("liveness probe failed: restarting", {
          pod: pod.key,
          container: run.spec.name,
        });
        run.livenessFailures = 0;
        events.livenessFailed();
      }
    });
  }
}

function probeLoop(
  pod: PodContext,
  run: ContainerRun,
  probe: V1Probe,
  onResult: (ok: boolean) => void,
): void {
  const period = (probe.periodSeconds ?? 10) * 1000;
  const tick = async () => {
    if (!run.process) return;
    onResult(await probeOnce(pod, run, probe));
    if (run.process) run.probeTimers.push(setTimeout(tick, period));
  };
  run.probeTimers.push(setTimeout(tick, (probe.initialDelaySeconds ?? 0) * 1000));
}

async function probeOnce(pod: PodContext, run: ContainerRun, probe: V1Probe): Promise<boolean> {
  const timeoutMs = (probe.timeoutSeconds ?? 1) * 1000;
  const port = (p: number | string | undefined) =>
    typeof p === "number"
      ? p
      : Number(run.spec.ports?.find((cp) => cp.name === p)?.containerPort ?? p);
  if (probe.httpGet) {
    const get = probe.httpGet;
    return httpProbe(
      get.scheme === "HTTPS" ? "https" : "http",
      get.host ?? pod.podIP,
      port(get.port),
      get.path ?? "/",
      timeoutMs,
    );
  }
  if (probe.tcpSocket)
    return tcpProbe(probe.tcpSocket.host ?? pod.podIP, port(probe.tcpSocket.port), timeoutMs);
  if (probe.exec?.command && run.pid) {
    return execProbe(
      ["nsenter", "-t", String(run.pid), "-m", "--", ...probe.exec.command],
      timeoutMs,
    );
  }
  return false;
}

function httpProbe(
  scheme: "http" | "https",
  host: string,
  port: number,
  urlPath: string,
  timeoutMs: number,
): Promise<boolean> {
  return new Promise((resolve) => {
    const client = scheme === "https" ? https : http;
    const request = client.get(
      { host, port, path: urlPath, timeout: timeoutMs, rejectUnauthorized: false },
      (response) => {
        response.resume();
        const code = response.statusCode ?? 0;
        resolve(code >= 200 && code < 400);
      },
    );
    request.on("error", () => resolve(false));
    request.on("timeout", () => request.destroy());
  });
}

function tcpProbe(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, host);
    socket.setTimeout(timeoutMs, () => {
      socket.destroy();
      resolve(false);
    });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

function execProbe(argv: string[], timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const [command, ...args] = argv;
    const child = spawn(command ?? "false", args, { stdio: "ignore", timeout: timeoutMs });
    child.once("exit", (code) => resolve(code === 0));
    child.once("error", () => resolve(false));
  });
}
