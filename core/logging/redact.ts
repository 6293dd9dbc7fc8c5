// What a log line must never show in clear, shared by the operator and the trainer: pino's redact
// paths for every key below, at the top level and at every depth up to REDACT_DEPTH (a Kubernetes
// client error nests the request's headers three levels down: err.response.headers.authorization).

/** Keys whose values are secrets wherever they appear in a logged object. */
export const SECRET_KEYS = [
  "token",
  "password",
  "privateKey",
  "privateKeyPem",
  "seed",
  "credentials",
  "creds",
  "secret",
  "apiKey",
  "clientKey",
  "stringData",
  "data",
  "authorization",
  "cookie",
] as const;

/** How deep below the logged object's top level a secret key is still found. */
export const REDACT_DEPTH = 5;

/** pino `redact` paths: every secret key at depths 0..REDACT_DEPTH. */
export function redactPaths(keys: readonly string[] = SECRET_KEYS, depth = REDACT_DEPTH): string[] {
  const paths: string[] = [];
  for (let level = 0; level <= depth; level++)
    for (const key of keys) paths.push(`${"*.".repeat(level)}${key}`);
  return paths;
}

/** pino's redact option for fedtrain's programs. */
export const redact = { paths: redactPaths(), censor: "[redacted]" };
