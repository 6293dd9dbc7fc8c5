// `npm run testbed -- up|status|down`: the test bed by hand.
import path from "node:path";
import { parseArgs } from "node:util";
import { defaultDir, type NodeRuntime, Testbed } from "./testbed.js";

const usage = `usage: npm run testbed -- COMMAND [options]

commands:
  up      start (or complete) the test bed and print how to use it
            --clusters N        number of clusters (default 3)
            --nodes M           nodes per cluster (default 2)
            --gpus-per-node G   nvidia.com/gpu capacity of each node (default 2)
            --runtime R         containerd (default): real nodes (kubelet + containerd,
                                fedtrain's images built as by \`npm run images\`; needs root);
                                node-agent: pods as local processes (the integration tests')
  status  show every component and whether it runs
  down    stop every process and remove the test bed's folder
            --keep-data         keep etcd data, logs and kubeconfigs

options for every command:
  --dir D   the test bed's folder (default .testbed in the repository)`;

function runtimeOf(value: string | undefined): NodeRuntime | undefined {
  if (value === undefined || value === "containerd" || value === "node-agent") return value;
  throw new Error(`--runtime must be containerd or node-agent, not ${value}`);
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      clusters: { type: "string" },
      nodes: { type: "string" },
      "gpus-per-node": { type: "string" },
      runtime: { type: "string" },
      dir: { type: "string" },
      "keep-data": { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
  const [command] = positionals;
  const dir = values.dir ? path.resolve(values.dir) : defaultDir;
  const number = (name: string, value: string | undefined) => {
    if (value === undefined) return undefined;
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive whole number`);
    return n;
  };
  switch (values.help ? "help" : command) {
    case "up": {
      const started = Date.now();
      const testbed = await Testbed.up({
        dir,
        clusters: number("clusters", values.clusters),
        nodes: number("nodes", values.nodes),
        gpusPerNode: number("gpus-per-node", values["gpus-per-node"]),
        runtime: runtimeOf(values.runtime) ?? "containerd",
      });
      console.log(
        `\ntest bed up in ${((Date.now() - started) / 1000).toFixed(1)} s: ${testbed.clusters.length} clusters, NATS at ${testbed.natsUrl}\n`,
      );
      for (const cluster of testbed.clusters) {
        console.log(
          `  ${cluster}: export KUBECONFIG=${path.relative(process.cwd(), testbed.kubeconfigPath(cluster))}`,
        );
      }
      console.log(`\n  kubectl: ${testbed.binaries.kubectl}\n  helm:    ${testbed.binaries.helm}`);
      console.log("\nstop it with: npm run testbed -- down");
      return;
    }
    case "status": {
      const testbed = await Testbed.open(dir);
      if (!testbed) {
        console.log(`no test bed in ${dir} (start one with: npm run testbed -- up)`);
        return;
      }
      for (const s of await testbed.status()) {
        const state = s.running ? "running" : "stopped";
        console.log(
          `${s.component.padEnd(32)} ${state.padEnd(8)} ${s.pid ? `pid ${s.pid}`.padEnd(11) : "".padEnd(11)} ${s.detail ?? ""}`,
        );
      }
      return;
    }
    case "down": {
      const testbed = await Testbed.open(dir);
      if (!testbed) {
        console.log(`no test bed in ${dir}`);
        return;
      }
      await testbed.down({ keepData: values["keep-data"] });
      console.log("test bed stopped");
      return;
    }
    default:
      console.log(usage);
      if (!values.help) process.exitCode = 2;
  }
}

main().catch((error) => {
  console.error(`testbed: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
