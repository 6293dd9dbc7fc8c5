// The `fedtrain` command line of the protocol:
// - `fedtrain ledger verify`: reads a federation's whole ledger from NATS and verifies every link,
//   signature and checkpoint digest, and whether the model hashes the commits record agree; given
//   the manifest, it also recomputes the update scores the commits record from the stored updates.
//   Exit status 0 when everything holds, 1 when not (the first problem is the tampered commit, or
//   replicas disagreed), 2 on misuse.
// - `fedtrain control pause|resume|exclude|readmit`: publishes an organiser's signed control
//   message; `fedtrain control public-key` prints the key to list in membership.organiserKeys.
import { readFile } from "node:fs/promises";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { parse } from "yaml";
import {
  canonicalFederation,
  federationSpecHash,
  formatFieldErrors,
  roundRules,
  specHashBytes,
  type TrainingFederation,
  validateTrainingFederation,
} from "../api/index.js";
import { declaredElementCount, RoundAuditor } from "../codec/index.js";
import { isValidId } from "./envelope.js";
import { equalBytes, keyPairFromPrivate, privateKeyFromPem, toBase64, toHex } from "./identity.js";
import { type LedgerProblem, verifyFederationLedger } from "./ledger.js";
import { publishControl } from "./membership.js";
import { connectNats } from "./resources.js";

const verifyUsage = `usage: fedtrain ledger verify --nats URL --federation ID [--spec FILE] [--creds FILE] [--json]
  --nats URL        NATS server URL (nats://host:4222)
  --federation ID   the federation id (spec.federation.id)
  --spec FILE       the federation's TrainingFederation manifest (YAML or JSON): with an
                    Allowlist policy, commits must be signed by allowlisted members; and the
                    update scores the commits record are recomputed from the stored updates
                    with its aggregation rule and norm bound
  --creds FILE      NATS user credentials (.creds), when the server asks for them
  --json            print the report as JSON`;

const controlUsage = `usage: fedtrain control ACTION --nats URL --federation ID --key FILE [options]
  ACTION            pause | resume: stop or restart the closing of rounds;
                    exclude | readmit (with --member): no coordinator commits the member's
                    updates from then on, until it is readmitted
  --nats URL        NATS server URL (nats://host:4222)
  --federation ID   the federation id (spec.federation.id)
  --key FILE        the organiser's Ed25519 private key (PKCS #8 PEM); its public key must be
                    one of spec.federation.membership.organiserKeys
  --member ID       the member to exclude or readmit
  --reason TEXT     why (members see it in their logs and status)
  --creds FILE      NATS user credentials (.creds), when the server asks for them
usage: fedtrain control public-key --key FILE
                    prints the base64 public key to list in membership.organiserKeys`;

const usage = `${verifyUsage}\n${controlUsage}`;

/** Runs the CLI with these arguments; returns the exit status. */
export async function main(argv: string[], out = console.log, err = console.error) {
  const [group, command, ...rest] = argv;
  if (group === "ledger" && command === "verify") return verify(rest, out, err);
  if (group === "control" && command) return control(command, rest, out, err);
  err(usage);
  return 2;
}

async function verify(rest: string[], out: typeof console.log, err: typeof console.error) {
  const values = options(rest, ["nats", "federation", "spec", "creds"], ["json"], verifyUsage, err);
  if (!values) return 2;
  if (!values.nats || !values.federation) {
    err(verifyUsage);
    return 2;
  }
  let spec: TrainingFederation["spec"]["federation"] | undefined;
  if (values.spec) {
    // Validated and defaulted as the API server stores it: the verifier reads what members run.
    const result = validateTrainingFederation(parse(await readFile(values.spec, "utf8")));
    if (!result.valid) {
      err(`${values.spec} is not a valid TrainingFederation:\n${formatFieldErrors(result.errors)}`);
      return 2;
    }
    spec = canonicalFederation(result.object.spec.federation);
  }
  const nc = await connectNats(values.nats, "fedtrain-ledger-verify", {
    ...(values.creds ? { credentialsFile: values.creds } : {}),
  });
  try {
    let audited = false;
    const auditor = spec
      ? (payload: Uint8Array, commit: { round: number; specHash: Uint8Array }) => {
          const hash = federationSpecHash(spec);
          if (!equalBytes(specHashBytes(hash), commit.specHash)) {
            err(
              `${values.spec}: its federation spec (${hash}) is not the one round ${commit.round} was trained under (sha256:${toHex(commit.specHash)}): update scores are not recomputed`,
            );
            return undefined;
          }
          audited = true;
          return new RoundAuditor(declaredElementCount(payload), roundRules(spec));
        }
      : undefined;
    const report = await verifyFederationLedger(
      nc,
      values.federation,
      spec && auditor ? { spec, auditor } : {},
    );
    if (values.json) out(JSON.stringify(report, null, 2));
    else {
      const at = (p: LedgerProblem) =>
        `stream sequence ${p.sequence}${p.round === undefined ? "" : ` (round ${p.round})`}`;
      if (report.ok)
        out(
          `ledger of ${values.federation} is intact: ${report.rounds} rounds, head ${report.head ?? "(empty)"}, ${report.checkpointsVerified} checkpoints verified${scoresLine(report.scoresVerified, audited, spec !== undefined)}`,
        );
      else {
        const [first, ...more] = report.problems;
        out(
          `ledger of ${values.federation} is NOT intact: first problem at ${at(first!)}: ${first!.reason}`,
        );
        for (const p of more) out(`  also ${at(p)}: ${p.reason}`);
      }
      const { agreement } = report;
      if (agreement.rounds > 0 || agreement.disagreements.length > 0)
        out(
          `replicas agreed on the model after ${agreement.rounds} of the ${agreement.rounds + agreement.disagreements.length} rounds whose hashes the commits record`,
        );
      for (const d of agreement.disagreements)
        out(
          `  replicas DISAGREED after round ${d.round}: ${d.hashes.map((h) => `${h.worker} ${h.modelHash.slice(0, 16)}`).join(", ")}`,
        );
      if (report.rejected.length > 0)
        out(
          `${report.rejected.length} ledger messages rejected, as every worker rejects them (they break nothing by themselves):`,
        );
      for (const p of report.rejected) out(`  rejected ${at(p)}: ${p.reason}`);
    }
    return report.ok && report.agreement.disagreements.length === 0 ? 0 : 1;
  } finally {
    await nc.close();
  }
}

const controlActions = ["pause", "resume", "exclude", "readmit"] as const;

async function control(
  action: string,
  rest: string[],
  out: typeof console.log,
  err: typeof console.error,
) {
  const values = options(
    rest,
    ["nats", "federation", "key", "member", "reason", "creds"],
    [],
    controlUsage,
    err,
  );
  if (!values) return 2;
  if (!values.key) {
    err(`--key is required\n${controlUsage}`);
    return 2;
  }
  let privateKey: Uint8Array;
  try {
    privateKey = privateKeyFromPem(await readFile(values.key, "utf8"));
  } catch (error) {
    err(`${values.key}: not an Ed25519 private key in PKCS #8 PEM: ${(error as Error).message}`);
    return 2;
  }
  if (action === "public-key") {
    out(toBase64(keyPairFromPrivate(privateKey).publicKey));
    return 0;
  }
  const known = controlActions.find((a) => a === action);
  const aboutMember = known === "exclude" || known === "readmit";
  if (
    !known ||
    !values.nats ||
    !values.federation ||
    aboutMember !== (values.member !== undefined)
  ) {
    err(
      known && aboutMember !== (values.member !== undefined)
        ? `${known} ${aboutMember ? "needs" : "takes no"} --member\n${controlUsage}`
        : controlUsage,
    );
    return 2;
  }
  if (values.member !== undefined && !isValidId(values.member)) {
    err(`--member ${JSON.stringify(values.member)} is not a member id (a DNS label)`);
    return 2;
  }
  const nc = await connectNats(values.nats, "fedtrain-control", {
    ...(values.creds ? { credentialsFile: values.creds } : {}),
  });
  try {
    const reason = values.reason ?? "";
    await publishControl(
      nc,
      values.federation,
      known === "exclude" || known === "readmit"
        ? { action: known, memberId: values.member!, reason }
        : { action: known, reason },
      privateKey,
    );
    out(
      `${known}${values.member ? ` ${values.member}` : ""}: published to federation ${values.federation}, signed by organiser key ${toBase64(keyPairFromPrivate(privateKey).publicKey)}`,
    );
    return 0;
  } finally {
    await nc.close();
  }
}

/**
 * The command's options: string options by name, flags as "true"; undefined (after printing why
 * and the usage) when an option is unknown or lacks its value.
 */
function options(
  args: string[],
  strings: readonly string[],
  flags: readonly string[],
  usage: string,
  err: typeof console.error,
): Record<string, string | undefined> | undefined {
  try {
    const { values } = parseArgs({
      args,
      options: Object.fromEntries([
        ...strings.map((name) => [name, { type: "string" as const }]),
        ...flags.map((name) => [name, { type: "boolean" as const }]),
      ]),
    });
    return Object.fromEntries(
      Object.entries(values).map(([name, value]) => [name, value === true ? "true" : value]),
    ) as Record<string, string | undefined>;
  } catch (error) {
    err(`${(error as Error).message}\n${usage}`);
    return undefined;
  }
}

function scoresLine(verified: number | undefined, audited: boolean, asked: boolean): string {
  if (verified !== undefined)
    return `, update scores of ${verified} rounds recomputed from the stored updates and agree`;
  if (!asked) return "";
  return audited ? "" : ", update scores not recomputed";
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  process.exitCode = await main(process.argv.slice(2));
}
