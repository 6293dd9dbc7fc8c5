// Run inside a test-bed pod: lists the pods of its namespace with the in-cluster configuration
// (its ServiceAccount token), and exits 0 when allowed, 3 when the API server says 403.
import { readFileSync } from "node:fs";
import { CoreV1Api, KubeConfig } from "@kubernetes/client-node";

const kubeConfig = new KubeConfig();
kubeConfig.loadFromCluster();
const namespace = readFileSync("/var/run/secrets/kubernetes.io/serviceaccount/namespace", "utf8");
try {
  const pods = await kubeConfig.makeApiClient(CoreV1Api).listNamespacedPod({ namespace });
  console.log(`listed ${pods.items.length} pods in ${namespace}`);
} catch (error) {
  const code = (error as { code?: number }).code;
  console.log(`listing pods failed with ${code}`);
  process.exit(code === 403 ? 3 : 1);
}
