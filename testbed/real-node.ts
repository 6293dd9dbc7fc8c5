// A real Kubernetes node of the test bed: the kubelet with containerd (CRI) and runc, in a network
// namespace of its own joined to the host by a veth pair, so that pods get real networking (a CNI
// bridge inside the node's namespace, masqueraded towards the host) and the API server can reach
// the kubelet for `kubectl logs` and `exec`.
//
// What each node owns, and what `remove` takes away again: the network namespace (its veth, its
// bridge and its iptables rules go with it), the containerd and kubelet processes, every pod's
// shim and container, the mounts under the node's folders, and the pods' network namespaces
// (kept under containerd's state folder), and the node's cgroup (/<netns> in every hierarchy): its
// pods' containers live below it.
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { isRunning, signalGroup, startDaemon, stopDaemon, waitFor } from "./process.js";

const execFileAsync = promisify(execFile);

/** The labels a GPU node of the test bed carries, as NVIDIA's GPU feature discovery sets them. */
export const gpuLabels = {
  "nvidia.com/gpu.present": "true",
  "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
  "nvidia.com/gpu.memory": "81559",
};

/** The addresses of one node, derived from the test bed's network number and the node's place. */
export interface NodeNetwork {
  /** Network namespace (under /run/netns). */
  netns: string;
  /** The veth end in the host's namespace, and its address (the node's gateway). */
  hostVeth: string;
  hostIp: string;
  /** The veth end in the node's namespace, and its address: the node's InternalIP. */
  nodeVeth: string;
  nodeIp: string;
  /** The node's pod subnet: routed from the host; towards the host, pods are masqueraded behind nodeIp. */
  podSubnet: string;
}

/**
 * The test bed's address on the host, reachable from every node: the API servers and NATS as
 * pods and kubelets see them. The host's loopback interface holds it (a /32 on `lo`: nothing
 * outside the host routes to it), see {@link ensureHostAddress}.
 */
export function hostAddress(net: number): string {
  return `10.${net}.255.1`;
}

/** The network namespace and addresses of node `nodeIndex` (1-based) of cluster `clusterIndex`. */
export function nodeNetwork(net: number, clusterIndex: number, nodeIndex: number): NodeNetwork {
  if (nodeIndex < 1 || nodeIndex > 15 || clusterIndex < 0 || clusterIndex > 14) {
    throw new Error("the test bed has at most 15 clusters of 15 nodes");
  }
  const third = clusterIndex * 16 + nodeIndex;
  return {
    netns: `fedtrain-${net}-${third}`,
    hostVeth: `ftb${net}h${third}`,
    hostIp: `10.${net}.${third}.1`,
    nodeVeth: `ftb${net}n${third}`,
    nodeIp: `10.${net}.${third}.2`,
    podSubnet: `10.${net}.${third}.128/25`,
  };
}

/** Everything a node needs to know to start. */
export interface NodeSpec {
  /** The node's name in its cluster. */
  name: string;
  network: NodeNetwork;
  /** The test bed's network number (second octet of every address). */
  net: number;
  /** Folder of the node's configuration, data and logs. */
  dir: string;
  /** Folder of the node's sockets and runtime state (short: a socket path has 108 bytes). */
  runDir: string;
  /** The API server's port on {@link hostAddress}. */
  apiserverPort: number;
  /** The kubelet's kubeconfig, and the CA that signs the clients it accepts (the API server). */
  kubeconfig: string;
  clientCaFile: string;
  kubelet: string;
  pauseImage: string;
  labels: Record<string, string>;
}

/** Where a node keeps what. */
export function nodePaths(spec: Pick<NodeSpec, "dir" | "runDir">) {
  return {
    containerdConfig: path.join(spec.dir, "containerd.toml"),
    containerdRoot: path.join(spec.dir, "containerd"),
    containerdState: path.join(spec.runDir, "containerd"),
    socket: path.join(spec.runDir, "containerd.sock"),
    runcRoot: path.join(spec.runDir, "runc"),
    cniConfigDir: path.join(spec.dir, "cni"),
    cniDataDir: path.join(spec.dir, "cni-ipam"),
    kubeletConfig: path.join(spec.dir, "kubelet.json"),
    kubeletRoot: path.join(spec.dir, "kubelet"),
    podLogs: path.join(spec.dir, "pod-logs"),
    containerdLog: path.join(spec.dir, "containerd.log"),
    kubeletLog: path.join(spec.dir, "kubelet.log"),
  };
}

/** containerd's configuration for one node (TOML, version 2). */
export function containerdConfig(spec: Pick<NodeSpec, "dir" | "runDir" | "pauseImage">): string {
  const p = nodePaths(spec);
  const cri = `plugins."io.containerd.grpc.v1.cri"`;
  return `version = 2
root = ${JSON.stringify(p.containerdRoot)}
state = ${JSON.stringify(p.containerdState)}

[grpc]
  address = ${JSON.stringify(p.socket)}

[plugins."io.containerd.internal.v1.opt"]
  path = ${JSON.stringify(path.join(p.containerdRoot, "opt"))}

[${cri}]
  sandbox_image = ${JSON.stringify(spec.pauseImage)}
  # root without CAP_SYS_RESOURCE may not lower a process's OOM score adjustment.
  restrict_oom_score_adj = true
  # Pods' network namespaces under the node's own state folder, not the host's /run/netns.
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  tolerate_missing_hugetlb_controller = true

[${cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[${cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[${cri}.containerd.runtimes.runc.options]
  # The node's own runc state: a node that is stopped can find (and remove) exactly its containers.
  Root = ${JSON.stringify(p.runcRoot)}
  SystemdCgroup = false

[${cri}.cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = ${JSON.stringify(p.cniConfigDir)}
`;
}

/** The CNI network of a node's pods: a bridge in the node's namespace, masqueraded outwards. */
export function cniConfig(spec: Pick<NodeSpec, "dir" | "runDir" | "network">): string {
  const p = nodePaths(spec);
  const gateway = spec.network.podSubnet.replace(/\.128\/25$/, ".129");
  return `${JSON.stringify(
    {
      cniVersion: "1.0.0",
      name: "fedtrain-testbed",
      plugins: [
        {
          type: "bridge",
          bridge: "cni0",
          isGateway: true,
          ipMasq: true,
          ipam: {
            type: "host-local",
            // Each node its own lease folder: the default, /var/lib/cni, is shared by the host.
            dataDir: p.cniDataDir,
            ranges: [[{ subnet: spec.network.podSubnet, gateway }]],
            routes: [{ dst: "0.0.0.0/0" }],
          },
        },
        { type: "portmap", capabilities: { portMappings: true } },
      ],
    },
    null,
    2,
  )}\n`;
}

/** The kubelet's configuration file (KubeletConfiguration; JSON is YAML). */
export function kubeletConfig(
  spec: Pick<NodeSpec, "dir" | "runDir" | "clientCaFile" | "network">,
): string {
  const p = nodePaths(spec);
  return `${JSON.stringify(
    {
      apiVersion: "kubelet.config.k8s.io/v1beta1",
      kind: "KubeletConfiguration",
      // The API server's client certificate is signed by the cluster CA; no webhook round trip.
      authentication: {
        anonymous: { enabled: false },
        webhook: { enabled: false },
        x509: { clientCAFile: spec.clientCaFile },
      },
      authorization: { mode: "AlwaysAllow" },
      // cgroup v1 "hybrid" hosts: the kubelet refuses v1 unless told otherwise.
      failCgroupV1: false,
      cgroupDriver: "cgroupfs",
      // Several kubelets share the host's cgroup tree: each has a root of its own, or each would
      // take the others' pod cgroups under /kubepods for orphans and remove them.
      cgroupRoot: `/${spec.network.netns}`,
      failSwapOn: false,
      containerRuntimeEndpoint: `unix://${p.socket}`,
      podLogsDir: p.podLogs,
      // No rotation during a test run: the test bed's log keeper follows each file by offset.
      containerLogMaxSize: "500Mi",
      readOnlyPort: 0,
      // A test host has little disk to spare and no reason to evict.
      evictionHard: {
        "memory.available": "100Mi",
        "nodefs.available": "1%",
        "imagefs.available": "1%",
      },
      imageGCHighThresholdPercent: 100,
      imageGCLowThresholdPercent: 99,
      // Quick registration and status for tests; the defaults suit large clusters.
      nodeStatusUpdateFrequency: "5s",
      syncFrequency: "10s",
      fileCheckFrequency: "10s",
      serializeImagePulls: false,
      resolvConf: "/etc/resolv.conf",
      localStorageCapacityIsolation: false,
    },
    null,
    2,
  )}\n`;
}

/** A host that lacks a real node's prerequisites gets this, naming what is missing. */
export class RealNodeError extends Error {
  override name = "RealNodeError";
}

async function sh(command: string, args: string[]): Promise<string> {
  try {
    const { stdout } = await execFileAsync(command, args, { maxBuffer: 16 << 20 });
    return stdout;
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr?.trim();
    throw new RealNodeError(`${command} ${args.join(" ")} failed${stderr ? `: ${stderr}` : ""}`, {
      cause: error,
    });
  }
}

async function quietly(command: string, args: string[]): Promise<void> {
  await execFileAsync(command, args).catch(() => undefined);
}

/** Adds the test bed's address to the host's loopback interface (idempotent). */
export async function ensureHostAddress(net: number): Promise<void> {
  const addresses = await sh("ip", ["-o", "-4", "addr", "show", "dev", "lo"]);
  if (!addresses.includes(` ${hostAddress(net)}/32 `)) {
    await sh("ip", ["addr", "add", `${hostAddress(net)}/32`, "dev", "lo"]);
  }
}

/** Removes the test bed's address from the host's loopback interface. */
export async function removeHostAddress(net: number): Promise<void> {
  await quietly("ip", ["addr", "del", `${hostAddress(net)}/32`, "dev", "lo"]);
}

/** The network namespace of a node with its veth pair, routes and API server forwarding. */
export async function ensureNodeNetwork(spec: NodeSpec): Promise<void> {
  const n = spec.network;
  const inNode = (args: string[]) => sh("ip", ["netns", "exec", n.netns, ...args]);
  if (!existsSync(`/run/netns/${n.netns}`)) await sh("ip", ["netns", "add", n.netns]);
  if (!existsSync(`/sys/class/net/${n.hostVeth}`)) {
    await sh("ip", [
      "link",
      "add",
      n.hostVeth,
      "type",
      "veth",
      "peer",
      "name",
      n.nodeVeth,
      "netns",
      n.netns,
    ]);
    await sh("ip", ["addr", "add", `${n.hostIp}/30`, "dev", n.hostVeth]);
    await sh("ip", ["link", "set", n.hostVeth, "up"]);
    // The host reaches pods at their addresses, as a cluster's network routes pod subnets (tests
    // scrape a trainer's /metrics); the route goes with the veth.
    await inNode(["ip", "addr", "add", `${n.nodeIp}/30`, "dev", n.nodeVeth]);
    await inNode(["ip", "link", "set", n.nodeVeth, "up"]);
    await inNode(["ip", "link", "set", "lo", "up"]);
    await inNode(["ip", "route", "add", "default", "via", n.hostIp]);
    await inNode(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
    await sh("ip", ["route", "add", n.podSubnet, "via", n.nodeIp, "dev", n.hostVeth]);
    // Pods reach the API server as the kubernetes Service's ClusterIP (10.0.0.1:443), which no
    // kube-proxy serves here: the node forwards it to the API server on the host.
    await inNode([
      "iptables",
      "-t",
      "nat",
      "-A",
      "PREROUTING",
      "-d",
      "10.0.0.1/32",
      "-p",
      "tcp",
      "--dport",
      "443",
      "-j",
      "DNAT",
      "--to-destination",
      `${hostAddress(spec.net)}:${spec.apiserverPort}`,
    ]);
  }
}

/** The node's cgroup folders: /<netns> in every cgroup hierarchy mounted under /sys/fs/cgroup. */
export async function nodeCgroups(network: Pick<NodeNetwork, "netns">): Promise<string[]> {
  const root = "/sys/fs/cgroup";
  const hierarchies = await readdir(root).catch(() => [] as string[]);
  return hierarchies
    .filter((h) => existsSync(path.join(root, h, "cgroup.procs")))
    .map((h) => path.join(root, h, network.netns));
}

/** Creates the node's cgroups (the kubelet's cgroupRoot must exist). */
async function ensureNodeCgroups(network: NodeNetwork): Promise<void> {
  for (const dir of await nodeCgroups(network)) await mkdir(dir, { recursive: true });
}

/** Removes the node's cgroups, deepest first (only empty ones can go: no process is left). */
async function removeNodeCgroups(network: NodeNetwork): Promise<void> {
  for (const dir of await nodeCgroups(network)) {
    if (!existsSync(dir)) continue;
    const below = (await readdir(dir, { recursive: true, withFileTypes: true }))
      .filter((e) => e.isDirectory())
      .map((e) => path.join(e.parentPath, e.name))
      .sort((a, b) => b.length - a.length);
    for (const child of [...below, dir]) await quietly("rmdir", [child]);
  }
}

/** Writes the node's configuration files. */
export async function writeNodeConfig(spec: NodeSpec): Promise<void> {
  const p = nodePaths(spec);
  for (const dir of [
    spec.dir,
    spec.runDir,
    p.cniConfigDir,
    p.cniDataDir,
    p.kubeletRoot,
    p.podLogs,
  ]) {
    await mkdir(dir, { recursive: true });
  }
  await ensureNodeCgroups(spec.network);
  await writeFile(p.containerdConfig, containerdConfig(spec));
  await writeFile(path.join(p.cniConfigDir, "10-fedtrain-testbed.conflist"), cniConfig(spec));
  await writeFile(p.kubeletConfig, kubeletConfig(spec));
}

/** Starts the node's containerd in its namespace; returns its pid once it answers. */
export async function startContainerd(spec: NodeSpec): Promise<number> {
  const p = nodePaths(spec);
  const pid = startDaemon({
    command: "nsenter",
    args: [`--net=/run/netns/${spec.network.netns}`, "containerd", "--config", p.containerdConfig],
    logFile: p.containerdLog,
  });
  await waitFor(
    `containerd of ${spec.name}`,
    async () =>
      (await ctr(spec, ["version"]).then(
        () => true,
        () => false,
      ))
        ? true
        : undefined,
    30_000,
    100,
  );
  return pid;
}

/** Imports OCI archives into the node's containerd (the kubelet's k8s.io namespace). */
export async function importImages(spec: NodeSpec, archives: string[]): Promise<void> {
  for (const archive of archives) await ctr(spec, ["images", "import", archive]);
}

/** Starts the node's kubelet in its namespace; returns its pid. */
export function startKubelet(spec: NodeSpec): number {
  const p = nodePaths(spec);
  const labels = Object.entries(spec.labels).map(([k, v]) => `${k}=${v}`);
  return startDaemon({
    command: "nsenter",
    args: [
      `--net=/run/netns/${spec.network.netns}`,
      spec.kubelet,
      `--config=${p.kubeletConfig}`,
      `--kubeconfig=${spec.kubeconfig}`,
      `--root-dir=${p.kubeletRoot}`,
      `--hostname-override=${spec.name}`,
      `--node-ip=${spec.network.nodeIp}`,
      ...(labels.length ? [`--node-labels=${labels.join(",")}`] : []),
    ],
    logFile: p.kubeletLog,
  });
}

/** containerd's CLI against this node's containerd. */
export function ctr(spec: Pick<NodeSpec, "dir" | "runDir">, args: string[]): Promise<string> {
  return sh("ctr", ["--address", nodePaths(spec).socket, "--namespace", "k8s.io", ...args]);
}

/**
 * Stops a node as a failed machine stops: the kubelet and containerd at once, and every pod's
 * container and shim with them. With `graceMs`, pods' containers first get SIGTERM.
 */
export async function stopNode(
  spec: NodeSpec,
  pids: { kubelet?: number; containerd?: number },
  graceMs = 0,
): Promise<void> {
  await stopDaemon(pids.kubelet, spec.kubelet, 5_000);
  const p = nodePaths(spec);
  // containerd's runc shim keeps each namespace's containers under <Root>/<namespace>.
  const root = path.join(p.runcRoot, "k8s.io");
  const containers = await runcContainers(root);
  if (graceMs > 0 && containers.length > 0) {
    for (const id of containers)
      await quietly("runc", ["--root", root, "kill", "--all", id, "TERM"]);
    const deadline = Date.now() + graceMs;
    while (Date.now() < deadline && (await runningContainers(root)) > 0) await sleep(100);
  }
  for (const id of containers) await quietly("runc", ["--root", root, "kill", "--all", id, "KILL"]);
  // Whatever still runs in the node's cgroups (a container runc no longer lists) goes too.
  for (const pid of await pidsInCgroup(`/${spec.network.netns}/`)) signalGroup(pid, "SIGKILL");
  // The shims serve this node's containerd only; their command line names its socket.
  for (const pid of await pidsWithArgument(p.socket)) signalGroup(pid, "SIGKILL");
  await stopDaemon(pids.containerd, "containerd", 5_000);
  for (const id of containers) await quietly("runc", ["--root", root, "delete", "--force", id]);
  await unmountUnder([p.containerdRoot, p.containerdState, p.kubeletRoot, spec.runDir]);
}

/** Removes everything the node created on the host; its files stay for inspection unless asked. */
export async function removeNode(
  spec: NodeSpec,
  options: { keepFiles?: boolean } = {},
): Promise<void> {
  await quietly("ip", ["netns", "del", spec.network.netns]);
  await quietly("ip", ["link", "del", spec.network.hostVeth]);
  await removeNodeCgroups(spec.network);
  await rm(spec.runDir, { recursive: true, force: true });
  // The shared parent of every node's run folder goes with the last node.
  await quietly("rmdir", [path.dirname(spec.runDir)]);
  if (!options.keepFiles) await rm(spec.dir, { recursive: true, force: true });
}

/** Whether the node's processes are running. */
export async function nodeRunning(
  spec: NodeSpec,
  pids: { kubelet?: number; containerd?: number },
): Promise<{ kubelet: boolean; containerd: boolean }> {
  return {
    kubelet: await isRunning(pids.kubelet, spec.kubelet),
    containerd: await isRunning(pids.containerd, "containerd"),
  };
}

async function runcContainers(root: string): Promise<string[]> {
  if (!existsSync(root)) return [];
  const out = await sh("runc", ["--root", root, "list", "--quiet"]).catch(() => "");
  return out.split("\n").filter(Boolean);
}

async function runningContainers(root: string): Promise<number> {
  if (!existsSync(root)) return 0;
  const out = await sh("runc", ["--root", root, "list", "--format", "json"]).catch(() => "null");
  const list = (JSON.parse(out || "null") ?? []) as { status: string }[];
  return list.filter((c) => c.status === "running").length;
}

/** Pids of the processes in a cgroup whose path (in any hierarchy) starts with `prefix`. */
export async function pidsInCgroup(prefix: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const cgroups = await readFile(`/proc/${entry}/cgroup`, "utf8").catch(() => "");
    if (cgroups.split("\n").some((line) => line.split(":")[2]?.startsWith(prefix))) {
      pids.push(Number(entry));
    }
  }
  return pids;
}

/** Pids of the processes whose command line has `argument` as one of its words. */
export async function pidsWithArgument(argument: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, "utf8").catch(() => "");
    if (cmdline.split("\0").includes(argument)) pids.push(Number(entry));
  }
  return pids;
}

/** Mount points at or below any of these folders, deepest first. */
export async function mountsUnder(dirs: string[]): Promise<string[]> {
  const mounts = (await readFile("/proc/self/mounts", "utf8"))
    .split("\n")
    .map((line) => line.split(" ")[1]?.replace(/\\040/g, " "))
    .filter((point): point is string => !!point);
  return mounts
    .filter((point) => dirs.some((dir) => point === dir || point.startsWith(`${dir}/`)))
    .sort((a, b) => b.length - a.length);
}

async function unmountUnder(dirs: string[]): Promise<void> {
  for (let pass = 0; pass < 3; pass++) {
    const mounts = await mountsUnder(dirs);
    if (mounts.length === 0) return;
    for (const point of mounts) await quietly("umount", ["-l", point]);
  }
}

/**
 * What a test bed (its folder, its network number) still holds on the host: processes, network
 * namespaces, interfaces, loopback addresses, routes, mounts, cgroups and iptables rules. Empty once it
 * is down; a test asserts that.
 */
export async function hostLeftovers(dir: string, net: number): Promise<string[]> {
  const found: string[] = [];
  const prefix = `fedtrain-${net}-`;
  for (const name of (await sh("ip", ["netns", "list"])).split("\n")) {
    if (name.startsWith(prefix)) found.push(`network namespace ${name.split(" ")[0]}`);
  }
  for (const name of existsSync("/sys/class/net") ? await readdir("/sys/class/net") : []) {
    if (name.startsWith(`ftb${net}h`) || name.startsWith(`ftb${net}n`))
      found.push(`interface ${name}`);
  }
  if (
    (await sh("ip", ["-o", "-4", "addr", "show", "dev", "lo"])).includes(` ${hostAddress(net)}/`)
  ) {
    found.push(`address ${hostAddress(net)} on lo`);
  }
  for (const point of await mountsUnder([dir, "/run/fedtrain-testbed", "/run/netns"])) {
    if (point === "/run/netns") continue; // the host's, made by the first `ip netns add`
    if (!point.startsWith("/run/netns/") || point.startsWith(`/run/netns/${prefix}`)) {
      found.push(`mount ${point}`);
    }
  }
  const inNodeCgroups = new Set(await pidsInCgroup(`/${prefix}`));
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, "utf8").catch(() => "");
    if (
      cmdline.includes(dir) ||
      cmdline.includes(`/run/fedtrain-testbed/${prefix}`) ||
      inNodeCgroups.has(Number(entry))
    ) {
      found.push(`process ${entry}: ${cmdline.split("\0").join(" ").slice(0, 160)}`);
    }
  }
  for (const hierarchy of await readdir("/sys/fs/cgroup").catch(() => [] as string[])) {
    for (const name of await readdir(path.join("/sys/fs/cgroup", hierarchy)).catch(
      () => [] as string[],
    )) {
      if (name.startsWith(prefix)) found.push(`cgroup /sys/fs/cgroup/${hierarchy}/${name}`);
    }
  }
  for (const route of (await sh("ip", ["-4", "route", "show"])).split("\n")) {
    if (route.includes(`10.${net}.`)) found.push(`route ${route.trim()}`);
  }
  const rules = await sh("iptables-save", []).catch(() => "");
  for (const line of rules.split("\n")) {
    if (line.includes(`10.${net}.`)) found.push(`iptables rule ${line}`);
  }
  return found;
}
