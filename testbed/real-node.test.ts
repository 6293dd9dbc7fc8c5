import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parse } from "yaml";
import { cniConfig, containerdConfig, kubeletConfig, nodeNetwork, nodePaths } from "./real-node.js";

const spec = {
  dir: "/bed/alpine/node-1",
  runDir: "/run/fedtrain-testbed/fedtrain-7-1",
  pauseImage: "testbed.local/pause:1",
  clientCaFile: "/bed/alpine/pki/ca.crt",
  network: nodeNetwork(7, 0, 1),
};

describe("real node configuration", () => {
  it("gives every node of every cluster its own namespace, link and pod subnet", () => {
    const seen = new Set<string>();
    for (let cluster = 0; cluster < 8; cluster++) {
      for (let node = 1; node <= 15; node++) {
        const n = nodeNetwork(7, cluster, node);
        for (const value of [n.netns, n.hostVeth, n.nodeVeth, n.hostIp, n.nodeIp, n.podSubnet]) {
          assert.ok(!seen.has(value), `${value} is used twice`);
          seen.add(value);
        }
        // Linux interface names have at most 15 bytes.
        assert.ok(n.hostVeth.length <= 15 && n.nodeVeth.length <= 15);
      }
    }
    assert.deepEqual(nodeNetwork(7, 2, 1), {
      netns: "fedtrain-7-33",
      hostVeth: "ftb7h33",
      hostIp: "10.7.33.1",
      nodeVeth: "ftb7n33",
      nodeIp: "10.7.33.2",
      podSubnet: "10.7.33.128/25",
    });
    assert.throws(() => nodeNetwork(7, 0, 16), /at most 15/);
  });

  it("keeps each containerd's state, runc root, CNI leases and pods' namespaces to its node", () => {
    const toml = containerdConfig(spec);
    const p = nodePaths(spec);
    for (const own of [p.containerdRoot, p.containerdState, p.socket, p.runcRoot, p.cniConfigDir]) {
      assert.ok(toml.includes(JSON.stringify(own)), `${own} is in the config`);
    }
    assert.match(toml, /restrict_oom_score_adj = true/);
    assert.match(toml, /netns_mounts_under_state_dir = true/);
    assert.match(toml, /sandbox_image = "testbed.local\/pause:1"/);
    const cni = JSON.parse(cniConfig(spec));
    assert.equal(cni.plugins[0].ipam.dataDir, p.cniDataDir);
    assert.equal(cni.plugins[0].ipam.ranges[0][0].gateway, "10.7.1.129");
  });

  it("gives each kubelet its own cgroup root, runtime socket and pod log folder", () => {
    const config = parse(kubeletConfig(spec));
    assert.equal(config.cgroupRoot, "/fedtrain-7-1");
    assert.equal(config.containerRuntimeEndpoint, `unix://${nodePaths(spec).socket}`);
    assert.equal(config.podLogsDir, nodePaths(spec).podLogs);
    assert.equal(config.failCgroupV1, false);
    assert.equal(config.authentication.anonymous.enabled, false);
  });
});
