// A pod's volumes materialised as folders in the pod's folder (volumes/<name>), the way a kubelet
// fills them: emptyDir, hostPath, configMap, secret, downwardAPI and projected (with
// service-account tokens, renewed before they expire).
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import type { V1KeyToPath, V1Volume } from "@kubernetes/client-node";
import { type PodContext, WaitingError } from "./pod-context.js";

// Token lifetime asked of the TokenRequest API when the pod does not say (the kubelet's default).
const defaultTokenSeconds = 3600;

/** The pod's volumes, by name, each at the folder (or host path) that backs it. */
export async function materialiseVolumes(
  pod: PodContext,
  tokenTimers: NodeJS.Timeout[],
): Promise<Map<string, string>> {
  const volumes = new Map<string, string>();
  for (const volume of pod.pod.spec?.volumes ?? []) {
    volumes.set(volume.name, await materialise(pod, volume, tokenTimers));
  }
  return volumes;
}

async function materialise(
  pod: PodContext,
  volume: V1Volume,
  tokenTimers: NodeJS.Timeout[],
): Promise<string> {
  const dir = path.join(pod.dir, "volumes", volume.name);
  if (volume.hostPath) {
    await mkdir(volume.hostPath.path, { recursive: true });
    return volume.hostPath.path;
  }
  await mkdir(dir, { recursive: true, mode: 0o755 });
  if (volume.emptyDir) return dir;
  if (volume.configMap) {
    const data = await pod.configMapData(volume.configMap.name ?? "", volume.configMap.optional);
    await writeItems(dir, data, volume.configMap.items, volume.configMap.defaultMode);
    return dir;
  }
  if (volume.secret) {
    const data = await pod.secretData(volume.secret.secretName ?? "", volume.secret.optional);
    await writeItems(dir, data, volume.secret.items, volume.secret.defaultMode);
    return dir;
  }
  if (volume.downwardAPI) {
    for (const item of volume.downwardAPI.items ?? []) {
      if (!item.fieldRef) continue;
      await writeFileIn(dir, item.path, pod.field(item.fieldRef.fieldPath), item.mode);
    }
    return dir;
  }
  if (volume.projected) {
    for (const source of volume.projected.sources ?? []) {
      if (source.serviceAccountToken) {
        await writeToken(pod, dir, source.serviceAccountToken, tokenTimers);
      } else if (source.configMap) {
        const data = await pod.configMapData(
          source.configMap.name ?? "",
          source.configMap.optional,
        );
        await writeItems(dir, data, source.configMap.items, volume.projected.defaultMode);
      } else if (source.secret) {
        const data = await pod.secretData(source.secret.name ?? "", source.secret.optional);
        await writeItems(dir, data, source.secret.items, volume.projected.defaultMode);
      } else if (source.downwardAPI) {
        for (const item of source.downwardAPI.items ?? []) {
          if (item.fieldRef)
            await writeFileIn(dir, item.path, pod.field(item.fieldRef.fieldPath), item.mode);
        }
      }
    }
    return dir;
  }
  throw new WaitingError(
    "UnsupportedVolume",
    `volume ${volume.name}: the test bed supports emptyDir, hostPath, configMap, secret, downwardAPI and projected volumes`,
  );
}

async function writeToken(
  pod: PodContext,
  dir: string,
  source: { audience?: string; expirationSeconds?: number; path: string },
  tokenTimers: NodeJS.Timeout[],
): Promise<void> {
  const seconds = source.expirationSeconds ?? defaultTokenSeconds;
  const request = await pod.node.core.createNamespacedServiceAccountToken({
    name: pod.pod.spec?.serviceAccountName ?? "default",
    namespace: pod.pod.metadata?.namespace ?? "default",
    body: {
      spec: {
        audiences: source.audience ? [source.audience] : [],
        expirationSeconds: seconds,
        boundObjectRef: {
          apiVersion: "v1",
          kind: "Pod",
          name: pod.pod.metadata?.name,
          uid: pod.uid,
        },
      },
    },
  });
  await writeFileIn(dir, source.path, request.status?.token ?? "", 0o644);
  // Like the kubelet, renew at 80 % of the lifetime so a long-running pod never holds a stale token.
  const renew = setTimeout(() => {
    writeToken(pod, dir, source, tokenTimers).catch((error) =>
      pod.node.log("token renewal failed", { pod: pod.key, error: String(error) }),
    );
  }, seconds * 800);
  renew.unref();
  tokenTimers.push(renew);
}

async function writeItems(
  dir: string,
  data: Record<string, Buffer>,
  items: V1KeyToPath[] | undefined,
  defaultMode: number | undefined,
): Promise<void> {
  const entries = items?.length
    ? items
        .filter((i) => data[i.key] !== undefined)
        .map((i) => [i.path, data[i.key] as Buffer, i.mode] as const)
    : Object.entries(data).map(([k, v]) => [k, v, undefined] as const);
  for (const [file, content, mode] of entries)
    await writeFileIn(dir, file, content, mode ?? defaultMode);
}

async function writeFileIn(
  dir: string,
  file: string,
  content: string | Buffer,
  mode?: number,
): Promise<void> {
  const target = path.join(dir, file);
  if (!target.startsWith(`${dir}${path.sep}`))
    throw new Error(`volume item path ${file} leaves its volume`);
  await mkdir(path.dirname(target), { recursive: true });
  await writeFile(target, content, { mode: mode ?? 0o644 });
}
