// Certificates and keys of one test-bed cluster: its own CA (clusters are independent and share
// no trust), the API server's serving certificate, client certificates whose CN and O carry user
// and groups (how kube-apiserver's x509 authenticator reads them), and the service-account
// signing key pair. Made with the openssl CLI, since Node can verify but not issue certificates.
import { execFile } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { existsSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

/** A PEM certificate and its private key, as file paths. */
export interface CertificateFiles {
  cert: string;
  key: string;
}

/** Who a client certificate authenticates as. */
export interface ClientIdentity {
  user: string;
  groups?: string[];
}

/** The files of one cluster's PKI. */
export interface ClusterPki {
  ca: CertificateFiles;
  apiserver: CertificateFiles;
  serviceAccountKey: string;
  serviceAccountPublicKey: string;
}

// Ten years: a test bed left running must never fail on an expired certificate.
const validDays = "3650";
// openssl req arguments for a new unencrypted P-256 key, the kind every key of this PKI is.
const newP256Key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

async function openssl(args: string[]): Promise<void> {
  try {
    await run("openssl", args);
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr ?? "";
    throw new Error(`openssl ${args[0]} failed: ${stderr.trim() || String(error)}`, {
      cause: error,
    });
  }
}

function subject(identity: ClientIdentity): string {
  const quote = (s: string) => s.replaceAll("/", "\\/");
  return `/CN=${quote(identity.user)}${(identity.groups ?? []).map((g) => `/O=${quote(g)}`).join("")}`;
}

async function issue(
  ca: CertificateFiles,
  out: CertificateFiles,
  subjectName: string,
  extensions: string,
): Promise<void> {
  const csr = `${out.cert}.csr`;
  const ext = `${out.cert}.ext`;
  await writeFile(ext, extensions);
  await openssl([
    "req",
    "-new",
    ...newP256Key,
    "-keyout",
    out.key,
    "-out",
    csr,
    "-subj",
    subjectName,
  ]);
  await openssl([
    "x509",
    "-req",
    "-in",
    csr,
    "-CA",
    ca.cert,
    "-CAkey",
    ca.key,
    "-CAcreateserial",
    "-days",
    validDays,
    "-extfile",
    ext,
    "-out",
    out.cert,
  ]);
}

/** Creates (or reuses, when present) the PKI of one cluster in dir. */
/**
 * The cluster's CA, API server certificate and service-account keys in dir (made once). extraIps:
 * more addresses the API server is reached at (the test bed's host address, for real nodes).
 */
export async function ensureClusterPki(dir: string, extraIps: string[] = []): Promise<ClusterPki> {
  const pki: ClusterPki = {
    ca: { cert: path.join(dir, "ca.crt"), key: path.join(dir, "ca.key") },
    apiserver: { cert: path.join(dir, "apiserver.crt"), key: path.join(dir, "apiserver.key") },
    serviceAccountKey: path.join(dir, "sa.key"),
    serviceAccountPublicKey: path.join(dir, "sa.pub"),
  };
  if (!existsSync(pki.ca.cert)) {
    await openssl([
      "req",
      "-x509",
      ...newP256Key,
      "-keyout",
      pki.ca.key,
      "-out",
      pki.ca.cert,
      "-days",
      validDays,
      "-subj",
      `/CN=fedtrain-testbed-ca-${path.basename(path.dirname(dir))}`,
      "-addext",
      "basicConstraints=critical,CA:TRUE",
      "-addext",
      "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
    ]);
  }
  if (!existsSync(pki.apiserver.cert)) {
    await issue(
      pki.ca,
      pki.apiserver,
      "/CN=kube-apiserver",
      [
        "basicConstraints=CA:FALSE",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        "extendedKeyUsage=serverAuth",
        // The addresses a client may use: loopback (and extraIps), and the in-cluster names of the API.
        `subjectAltName=IP:127.0.0.1,IP:10.0.0.1,${extraIps.map((ip) => `IP:${ip},`).join("")}DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc`,
        "",
      ].join("\n"),
    );
  }
  if (!existsSync(pki.serviceAccountKey)) {
    const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    await writeFile(
      pki.serviceAccountKey,
      privateKey.export({ type: "pkcs8", format: "pem" }) as string,
      { mode: 0o600 },
    );
    await writeFile(
      pki.serviceAccountPublicKey,
      publicKey.export({ type: "spki", format: "pem" }) as string,
    );
  }
  return pki;
}

/** Issues (or reuses) a client certificate for identity, named file-stem in dir. */
export async function ensureClientCertificate(
  pki: ClusterPki,
  dir: string,
  stem: string,
  identity: ClientIdentity,
): Promise<CertificateFiles> {
  const files = { cert: path.join(dir, `${stem}.crt`), key: path.join(dir, `${stem}.key`) };
  if (!existsSync(files.cert)) {
    await issue(
      pki.ca,
      files,
      subject(identity),
      [
        "basicConstraints=CA:FALSE",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        "extendedKeyUsage=clientAuth",
        "",
      ].join("\n"),
    );
  }
  return files;
}

/** Reads a file as base64, for the *-data fields of a kubeconfig. */
export async function base64File(file: string): Promise<string> {
  return (await readFile(file)).toString("base64");
}
