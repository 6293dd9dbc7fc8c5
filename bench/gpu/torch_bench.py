"""Training throughput of the trainer's model presets in PyTorch (eager, fp32, TF32 off), the
same architectures, batch sizes and optimiser as bench/gpu/throughput.ts, for comparison:

    python3 bench/gpu/torch_bench.py --out pytorch.json [--quick]
"""

import argparse
import json
import math
import sys
import time

import torch
from torch import nn
from torch.nn import functional as F

WORKLOADS = [
    {
        "name": "MLP preset (32-128-128-10, ReLU)",
        "kind": "mlp",
        "inputs": 32,
        "hidden": [128, 128],
        "classes": 10,
        "batch": 512,
    },
    {
        "name": "MLP wide (1024-1024-1024-10, ReLU)",
        "kind": "mlp",
        "inputs": 1024,
        "hidden": [1024, 1024],
        "classes": 10,
        "batch": 4096,
    },
    {
        "name": "CharTransformer preset (2 layers, width 128, 4 heads, context 64)",
        "kind": "transformer",
        "vocab": 14,
        "layers": 2,
        "width": 128,
        "heads": 4,
        "context": 64,
        "ff": 4,
        "batch": 64,
    },
]


class Mlp(nn.Module):
    def __init__(self, inputs, hidden, classes):
        super().__init__()
        widths = [inputs, *hidden, classes]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths, widths[1:]))

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i + 1 < len(self.layers):
                x = F.relu(x)
        return x


class Block(nn.Module):
    def __init__(self, width, heads, ff):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        self.ln2 = nn.LayerNorm(width)
        self.mlp_in = nn.Linear(width, ff * width)
        self.mlp_out = nn.Linear(ff * width, width)

    def forward(self, x, mask):
        b, t, d = x.shape
        hd = d // self.heads
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
        q, k, v = (z.view(b, t, self.heads, hd).transpose(1, 2) for z in (q, k, v))
        scores = q @ k.transpose(-1, -2) / math.sqrt(hd) + mask[:t, :t]
        y = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, t, d)
        x = x + self.out(y)
        return x + self.mlp_out(F.gelu(self.mlp_in(self.ln2(x)), approximate="tanh"))


class CharTransformer(nn.Module):
    """Pre-LayerNorm decoder with tied input/output embedding, as in trainer-image/training/model.ts."""

    def __init__(self, vocab, layers, width, heads, context, ff):
        super().__init__()
        self.tokens = nn.Parameter(torch.randn(vocab, width) * 0.02)
        self.positions = nn.Parameter(torch.randn(context, width) * 0.02)
        self.blocks = nn.ModuleList(Block(width, heads, ff) for _ in range(layers))
        self.ln = nn.LayerNorm(width)
        mask = torch.full((context, context), -1e9).triu(1)
        self.register_buffer("mask", mask)

    def forward(self, ids):
        x = self.tokens[ids] + self.positions[: ids.shape[1]]
        for block in self.blocks:
            x = block(x, self.mask)
        return self.ln(x) @ self.tokens.t()


def measure(workload, device, quick):
    torch.manual_seed(1)
    b = workload["batch"]
    if workload["kind"] == "mlp":
        model = Mlp(workload["inputs"], workload["hidden"], workload["classes"]).to(device)
        x = torch.randn(b, workload["inputs"], device=device)
        y = torch.randint(0, workload["classes"], (b,), device=device)

        def loss_fn():
            return F.cross_entropy(model(x), y)
    else:
        model = CharTransformer(
            workload["vocab"],
            workload["layers"],
            workload["width"],
            workload["heads"],
            workload["context"],
            workload["ff"],
        ).to(device)
        ids = torch.randint(0, workload["vocab"], (b, workload["context"]), device=device)
        targets = torch.randint(0, workload["vocab"], (b, workload["context"]), device=device)

        def loss_fn():
            logits = model(ids)
            return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        optimizer.step()
        return loss

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    warmup = 2 if quick else 10
    for _ in range(warmup):
        step()
    sync()
    start = time.perf_counter()
    step()
    sync()
    probe = time.perf_counter() - start
    budget = 1 if quick else 8
    steps = max(3, min(20000, round(budget / max(probe, 1e-5))))
    start = time.perf_counter()
    for _ in range(steps):
        loss = step()
    sync()
    seconds = time.perf_counter() - start
    samples = steps * b / seconds
    result = {
        "name": workload["name"],
        "parameters": sum(p.numel() for p in model.parameters()),
        "batchSize": b,
        "warmupSteps": warmup,
        "steps": steps,
        "seconds": seconds,
        "samplesPerSecond": samples,
        "finalLoss": float(loss),
    }
    if workload["kind"] == "transformer":
        result["tokensPerSecond"] = samples * workload["context"]
    return result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--cpu", action="store_true", help="allow running without CUDA")
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    if torch.cuda.is_available():
        device = torch.device("cuda")
        name = torch.cuda.get_device_name(0)
    elif args.cpu:
        device = torch.device("cpu")
        name = "CPU"
    else:
        print("torch_bench: PyTorch sees no CUDA GPU", file=sys.stderr)
        sys.exit(3)
    results = []
    for workload in WORKLOADS:
        result = measure(workload, device, args.quick)
        print(f"{result['name']}: {result['samplesPerSecond']:.0f} samples/s", flush=True)
        results.append(result)
    report = {
        "framework": f"pytorch {torch.__version__} (eager)",
        "device": name,
        "precision": "fp32, TF32 off",
        "results": results,
    }
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
