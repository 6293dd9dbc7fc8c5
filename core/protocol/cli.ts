// `fedtrain ledger verify --nats URL --federation ID [--spec FILE]`: reads a federation's whole
// ledger from NATS and verifies every link, signature and checkpoint digest. Exit status 0 when
// the chain is intact, 1 when it is not (the first problem is the tampered commit), 2 on misuse.
import { readFile } from "node:fs/promises";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { parse } from "yaml";
import type { TrainingFederation } from "../api/index.js";
import { verifyFederationLedger } from "./ledger.js";
import { connectNats } from "./resources.js";

const usage = `usage: fedtrain ledger verify --nats URL --federation ID [--spec FILE] [--json]
  --nats URL        NATS server URL (nats://host:4222)
  --federation ID   the federation id (spec.federation.id)
  --spec FILE       a TrainingFederation manifest (YAML or JSON): with an Allowlist policy,
                    commits must be signed by allowlisted members
  --json            print the report as JSON`;

/** Runs the CLI with these arguments; returns the exit status. */
export async function main(argv: string[], out = console.log, err = console.error) {
  const [group, command, ...rest] = argv;
  if (group !== "ledger" || command !== "verify") {
    err(usage);
    return 2;
  }
  let values: { nats?: string; federation?: string; spec?: string; json?: boolean };
  try {
    ({ values } = parseArgs({
      args: rest,
      options: {
        nats: { type: "string" },
        federation: { type: "string" },
        spec: { type: "string" },
        json: { type: "boolean" },
      },
    }));
  } catch (error) {
    err(`${(error as Error).message}\n${usage}`);
    return 2;
  }
  if (!values.nats || !values.federation) {
    err(usage);
    return 2;
  }
  let spec: TrainingFederation["spec"]["federation"] | undefined;
  if (values.spec) {
    const manifest = parse(await readFile(values.spec, "utf8")) as TrainingFederation;
    spec = manifest?.spec?.federation;
    if (!spec?.membership) {
      err(`${values.spec}: no spec.federation.membership in this manifest`);
      return 2;
    }
  }
  const nc = await connectNats(values.nats, "fedtrain-ledger-verify");
  try {
    const report = await verifyFederationLedger(nc, values.federation, spec ? { spec } : {});
    if (values.json) out(JSON.stringify(report, null, 2));
    else if (report.ok)
      out(
        `ledger of ${values.federation} is intact: ${report.rounds} rounds, head ${report.head ?? "(empty)"}, ${report.checkpointsVerified} checkpoints verified`,
      );
    else {
      const first = report.problems[0]!;
      out(
        `ledger of ${values.federation} is NOT intact: first bad commit at stream sequence ${first.sequence}${first.round === undefined ? "" : ` (round ${first.round})`}: ${first.reason}`,
      );
      for (const p of report.problems.slice(1))
        out(
          `  also sequence ${p.sequence}${p.round === undefined ? "" : ` (round ${p.round})`}: ${p.reason}`,
        );
    }
    return report.ok ? 0 : 1;
  } finally {
    await nc.close();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  process.exitCode = await main(process.argv.slice(2));
}
