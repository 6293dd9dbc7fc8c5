// A container's environment as a kubelet resolves it: the API server's service variables, then
// envFrom, then env in order (values may refer to variables defined before them).
import type { V1Container, V1EnvVar } from "@kubernetes/client-node";
import { type PodContext, WaitingError } from "./pod-context.js";
import { expandVariables } from "./pod-spec.js";

/** The environment of a container: the service variables, then envFrom, then env in order. */
export async function resolveEnv(
  pod: PodContext,
  container: V1Container,
): Promise<Record<string, string>> {
  const env: Record<string, string> = {
    KUBERNETES_SERVICE_HOST: "127.0.0.1",
    KUBERNETES_SERVICE_PORT: String(pod.node.apiserverPort),
    KUBERNETES_SERVICE_PORT_HTTPS: String(pod.node.apiserverPort),
  };
  for (const source of container.envFrom ?? []) {
    const data = source.configMapRef
      ? await pod.configMapData(source.configMapRef.name ?? "", source.configMapRef.optional)
      : source.secretRef
        ? await pod.secretData(source.secretRef.name ?? "", source.secretRef.optional)
        : {};
    for (const [k, v] of Object.entries(data))
      env[`${source.prefix ?? ""}${k}`] = v.toString("utf8");
  }
  for (const variable of container.env ?? []) {
    const value = await envValue(pod, variable, container, env);
    if (value !== undefined) env[variable.name] = value;
  }
  return env;
}

async function envValue(
  pod: PodContext,
  variable: V1EnvVar,
  container: V1Container,
  defined: Record<string, string>,
): Promise<string | undefined> {
  if (variable.value !== undefined) return expandVariables(variable.value, (n) => defined[n]);
  const from = variable.valueFrom;
  if (!from) return "";
  if (from.fieldRef) return pod.field(from.fieldRef.fieldPath);
  if (from.configMapKeyRef) {
    const { name, key, optional } = from.configMapKeyRef;
    const data = await pod.configMapData(name ?? "", optional);
    if (data[key] === undefined && !optional) {
      throw new WaitingError(
        "CreateContainerConfigError",
        `couldn't find key ${key} in ConfigMap ${pod.namespace}/${name}`,
      );
    }
    return data[key]?.toString("utf8");
  }
  if (from.secretKeyRef) {
    const { name, key, optional } = from.secretKeyRef;
    const data = await pod.secretData(name ?? "", optional);
    if (data[key] === undefined && !optional) {
      throw new WaitingError(
        "CreateContainerConfigError",
        `couldn't find key ${key} in Secret ${pod.namespace}/${name}`,
      );
    }
    return data[key]?.toString("utf8");
  }
  if (from.resourceFieldRef) {
    const [kind, resource] = from.resourceFieldRef.resource.split(".") as [
      "limits" | "requests",
      string,
    ];
    return String(container.resources?.[kind]?.[resource] ?? "");
  }
  return "";
}
