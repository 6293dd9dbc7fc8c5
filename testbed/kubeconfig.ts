// Kubeconfig files of the test bed, self-contained (certificates embedded) so they can be copied.
import { writeFile } from "node:fs/promises";
import { stringify } from "yaml";
import { base64File, type CertificateFiles } from "./pki.js";

/** Writes a kubeconfig for server, trusting caCert and authenticating with client. */
export async function writeKubeconfig(
  file: string,
  options: {
    cluster: string;
    server: string;
    caCert: string;
    client: CertificateFiles;
    user: string;
  },
): Promise<void> {
  const { cluster, server, user } = options;
  const context = `${user}@${cluster}`;
  const config = {
    apiVersion: "v1",
    kind: "Config",
    clusters: [
      {
        name: cluster,
        cluster: { server, "certificate-authority-data": await base64File(options.caCert) },
      },
    ],
    users: [
      {
        name: `${user}@${cluster}`,
        user: {
          "client-certificate-data": await base64File(options.client.cert),
          "client-key-data": await base64File(options.client.key),
        },
      },
    ],
    contexts: [{ name: context, context: { cluster, user: `${user}@${cluster}` } }],
    "current-context": context,
  };
  await writeFile(file, stringify(config), { mode: 0o600 });
}
