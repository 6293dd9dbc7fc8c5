// The operator's integration tests run this in place of the real trainer (image
// testbed.local/stand-in-trainer): it checks what the operator wired into the pod — the rendered
// configuration, the member key, the worker index — serves the trainer's probe endpoints on the
// pod's address, and exits 0 on SIGTERM. The real trainer is exercised end to end elsewhere.
// `leave` (the operator's leave Job) runs the real trainer's leave, which needs no TensorFlow.js.
import { readFileSync } from "node:fs";
import http from "node:http";
import { parseArgs } from "node:util";
import { pino } from "pino";
import { leaveFederation } from "../../../trainer-image/process/leave.js";
import { loadTrainerConfig } from "../../../trainer-image/process/trainer-config.js";

const { values, positionals } = parseArgs({
  options: { config: { type: "string" } },
  allowPositionals: true,
});
if (positionals[0] === "leave") {
  const log = pino({ base: { component: "stand-in-trainer", command: "leave" } });
  await leaveFederation(await loadTrainerConfig(values.config ?? ""), { timeoutMs: 30_000, log });
  process.exit(0);
}
const config = JSON.parse(readFileSync(values.config ?? "", "utf8"));
const privateKey = readFileSync(config.member.privateKeyFile, "utf8");
if (!privateKey.includes("BEGIN PRIVATE KEY") || config.member.publicKey.length !== 44) {
  console.error("stand-in trainer: the member key is not mounted as expected");
  process.exit(2);
}
const index = process.env.JOB_COMPLETION_INDEX;
const address = process.env.FEDTRAIN_METRICS_ADDRESS ?? "127.0.0.1:9090";
const colon = address.lastIndexOf(":");
const server = http.createServer((request, response) => {
  const known = request.url === "/readyz" || request.url === "/healthz";
  response.writeHead(known ? 200 : 404).end(known ? "ok\n" : "");
});
server.listen(Number(address.slice(colon + 1)), address.slice(0, colon), () => {
  console.log(
    `stand-in trainer ${index} of member ${config.member.id} (${config.federationSpecHash}) serving on ${address}`,
  );
});
process.on("SIGTERM", () => {
  console.log("stand-in trainer: SIGTERM, leaving");
  server.close();
  process.exit(0);
});
