#!/usr/bin/env python3
"""PyTorch eager reference of isoclr's model, loss and optimiser (the Rust code in src/model and src/train
is the specification; this file mirrors it op for op so numbers can be compared and speed measured).

Used by `tests/python_interop.rs` (numerical agreement) and `benches/train_throughput.rs` (speed).
Needs only torch: safetensors files are read and written by hand, no numpy, no `safetensors` package.

Sub-commands
------------
  embed  --weights M --inputs I --out O      encoder in eval mode on I's `x` [n,6,L] f32 and `lengths` [n]
                                             i64; writes `embeddings` [n, D] f32 to O
  step   --weights M --inputs B --out O      one training step on batch B (see "Batch file"); writes every
                                             model tensor after the step plus `grad.NAME` (the clipped
                                             gradient of each parameter) to O; prints {"loss": ...};
                                             --float64: model, batch and loss in f64 (an exact reference)
  bench  --inputs B [--weights M] --steps S --warmup W [--threads T] [--device D] [--serve]
                                             W + S training steps on the fixed batch B; prints one JSON line
                                             {"seq_per_s", "step_ms", "loss_first", "loss_last", ...}.
                                             With --serve: one step per line read from stdin, each answered
                                             with {"step_ms", "loss", "phases_ms", "peak_bytes"} (for
                                             interleaved timing); a line "profile" also synchronises the
                                             device between phases so they can be timed on a GPU.
                                             --device cuda: model and batch on the GPU, encoder + head in
                                             bf16 autocast as isoclr's Trainer::train_step does it, the step
                                             timed between torch.cuda.synchronize() calls; peak_bytes is
                                             torch.cuda.max_memory_allocated() over the step (null on CPU)
                                             --peer plain: the architecture as users run it in PyTorch
                                             (below); --compile MODE: encoder and head through
                                             torch.compile(mode=MODE), compiled in the warm-up steps

The plain peer (`--peer plain`, bench only) is the same architecture written the way IsoCLR's and Orthrus's
PyTorch code runs it: `nn.BatchNorm1d` / `nn.GroupNorm` over every position of the padded input (one fused
kernel per norm, padding counted in the statistics), plain max-pooling, no masks inside the network; only
the final mean over positions counts real ones. It computes a slightly different function on padded inputs
(that is the difference isoclr's masks exist for), so it is a speed peer, never a numerical reference.

Every sub-command takes the model shape from `--config-json TEXT` or `--config FILE` (a JSON object).

Config JSON (flat object; unknown keys are an error; `filters`, `blocks`, `dilations`, `kernel` required)
----------------------------------------------------------------------------------------------------------
  filters         [int]   filters per stage; the stem has filters[0]           e.g. [64, 128, 128, 256]
  blocks          [int]   residual blocks per stage                              e.g. [2, 2, 2, 2]
  dilations       [int]   dilation of every conv of a stage                      e.g. [1, 2, 4, 8]
  kernel          int     kernel of every conv but the 1x1 shortcuts             e.g. 2
  norm            str     "batch" | "group" | "layer"                            default "batch"
  norm_groups     int     channel groups of group norm                           default 8
  dropout         float   dropout inside residual blocks (training only)         default 0.1
  head_hidden     int     hidden width of the projection head                    default 2048
  projection_dim  int     output width of the projection head                    default 512
  tracks          int     input tracks used (6, or 4 = sequence only)            default 6
  lr              float   learning rate of `step` / `bench` (constant)           default 0.001
  weight_decay    float   decoupled, tensors with dim >= 2 only                  default 1e-6
  beta1, beta2    float   AdamW betas                                            default 0.9, 0.999
  eps             float   AdamW epsilon                                          default 1e-8
  clip_norm       float   per-tensor gradient clipping threshold                 default 1.0
  temperature     float   DCL temperature tau                                    default 0.1
This is `isoclr`'s `[model]` section resolved through its preset, plus the `[train]` keys a step needs.

Batch file (for `step` and `bench`)
-----------------------------------
  x1 [n1,6,L1] f32, len1 [n1] i64   the first encoder pass (Rust: the first `MicroBatch`)
  x2 [n2,6,L2] f32, len2 [n2] i64   the second encoder pass; x3, len3, ... further passes, if any
  rows1 [n1] i64, rows2 [n2] i64    optional: the view-major row of each pass's sequences (Rust
                                    `MicroBatch::rows`); default: the passes' rows in order
  line1 [n1] i64, offset1 [n1] i64  optional: a packed pass (Rust `MicroBatch::placements`): x1 is then
                                    [lines,6,L] and sequence i lies in line line1[i] from offset1[i]
  weights [N] f32                   optional: positive-pair weights of the N = (n1+n2+...)/2 pairs
Rows 0..N are view 1 of each pair and rows N..2N view 2, as in `isoclr::data::StepBatch`.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import struct
import sys
import time
import warnings

# torch warns on import when numpy is absent; numpy is not needed here.
warnings.filterwarnings("ignore", message=".*NumPy.*")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import Tensor, nn  # noqa: E402

# --------------------------------------------------------------------------------------------------
# safetensors by hand: u64 little-endian header length, JSON header, then raw little-endian data.

_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
_NAMES = {v: k for k, v in _DTYPES.items()}


def read_safetensors(path: str) -> dict[str, Tensor]:
    with open(path, "rb") as f:
        data = bytearray(f.read())  # writable, so torch.frombuffer can share it without a warning
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_len])
    base = 8 + header_len
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _DTYPES[info["dtype"]]
        begin, end = info["data_offsets"]
        count = math.prod(info["shape"])
        if count == 0:
            tensors[name] = torch.empty(info["shape"], dtype=dtype)
        else:
            flat = torch.frombuffer(data, dtype=dtype, count=count, offset=base + begin)
            assert (end - begin) == count * flat.element_size(), f"{path}: {name} has a bad data range"
            tensors[name] = flat.reshape(info["shape"])
    return tensors


def write_safetensors(path: str, tensors: dict[str, Tensor]) -> None:
    header, chunks, offset = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        size = t.numel() * t.element_size()
        header[name] = {"dtype": _NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + size]}
        chunks.append(ctypes.string_at(t.data_ptr(), size) if size else b"")
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the format pads the header with spaces to 8-byte alignment
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for chunk in chunks:
            f.write(chunk)


# --------------------------------------------------------------------------------------------------
# Configuration.

_DEFAULTS = {
    "norm": "batch",
    "norm_groups": 8,
    "dropout": 0.1,
    "head_hidden": 2048,
    "projection_dim": 512,
    "tracks": 6,
    "lr": 1e-3,
    "weight_decay": 1e-6,
    "beta1": 0.9,
    "beta2": 0.999,
    "eps": 1e-8,
    "clip_norm": 1.0,
    "temperature": 0.1,
}
_REQUIRED = ("filters", "blocks", "dilations", "kernel")


def parse_config(text: str) -> dict:
    given = json.loads(text)
    unknown = set(given) - set(_DEFAULTS) - set(_REQUIRED)
    if unknown:
        raise SystemExit(f"config: unknown keys {sorted(unknown)}")
    missing = [k for k in _REQUIRED if k not in given]
    if missing:
        raise SystemExit(f"config: missing keys {missing}")
    config = {**_DEFAULTS, **given}
    if not len(config["filters"]) == len(config["blocks"]) == len(config["dilations"]):
        raise SystemExit("config: filters, blocks and dilations need one entry per stage")
    if config["norm"] not in ("batch", "group", "layer"):
        raise SystemExit(f"config: norm must be batch, group or layer, not {config['norm']!r}")
    return config


# --------------------------------------------------------------------------------------------------
# Model (src/model). Module and attribute names make `state_dict()` keys equal to isoclr's tensor names.

MOMENTUM = 0.1  # running = (1 - momentum) * running + momentum * batch statistic (PyTorch's convention)
EPS = 1e-5


class MaskedBatchNorm(nn.Module):
    """Batch norm whose statistics count only real positions (mask 1); output is zero in padding.

    x [n, C, L], mask [n, 1, L]. Training uses and records this pass's statistics (running variance
    unbiased), evaluation the running averages.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        if self.training:
            count = mask.sum().clamp_min(1.0)
            mean = (x * mask).sum(dim=(0, 2), keepdim=True) / count
            var = ((x - mean) * mask).square().sum(dim=(0, 2), keepdim=True) / count
            with torch.no_grad():
                unbiased = var * count / (count - 1.0).clamp_min(1.0)
                self.running_mean.mul_(1 - MOMENTUM).add_(mean.flatten() * MOMENTUM)
                self.running_var.mul_(1 - MOMENTUM).add_(unbiased.flatten() * MOMENTUM)
        else:
            mean, var = self.running_mean.view(1, -1, 1), self.running_var.view(1, -1, 1)
        y = (x - mean) / (var + EPS).sqrt() * self.weight.view(1, -1, 1) + self.bias.view(1, -1, 1)
        return y * mask


class MaskedGroupNorm(nn.Module):
    """Group norm per sample over real positions (groups = 1 is layer norm); output zero in padding."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.groups = groups
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        n, c, length = x.shape
        g = self.groups
        xg = x.view(n, g, c // g, length)
        m = mask.view(n, 1, 1, length)
        count = (m.sum(dim=(2, 3), keepdim=True) * (c // g)).clamp_min(1.0)
        mean = (xg * m).sum(dim=(2, 3), keepdim=True) / count
        centred = (xg - mean) * m
        var = centred.square().sum(dim=(2, 3), keepdim=True) / count
        y = (centred / (var + EPS).sqrt()).view(n, c, length) * self.weight.view(1, -1, 1) + self.bias.view(1, -1, 1)
        return y * mask


class PlainBatchNorm(nn.BatchNorm1d):
    """`nn.BatchNorm1d` as a user writes it: statistics over every position, padding included."""

    def __init__(self, channels: int):
        super().__init__(channels, eps=EPS, momentum=MOMENTUM)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return super().forward(x)


class PlainGroupNorm(nn.GroupNorm):
    """`nn.GroupNorm` (groups = 1: layer norm) over every position, padding included."""

    def __init__(self, channels: int, groups: int):
        super().__init__(groups, channels, eps=EPS)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return super().forward(x)


def make_norm(channels: int, config: dict) -> nn.Module:
    if config["plain"]:
        if config["norm"] == "batch":
            return PlainBatchNorm(channels)
        return PlainGroupNorm(channels, config["norm_groups"] if config["norm"] == "group" else 1)
    if config["norm"] == "batch":
        return MaskedBatchNorm(channels)
    return MaskedGroupNorm(channels, config["norm_groups"] if config["norm"] == "group" else 1)


class SameConv1d(nn.Conv1d):
    """Conv1d with 'same' padding for any kernel: (k-1)*d zeros in total, the floor half on the left."""

    def forward(self, x: Tensor) -> Tensor:
        total = (self.kernel_size[0] - 1) * self.dilation[0]
        if total:
            x = F.pad(x, (total // 2, total - total // 2))
        return super().forward(x)


class Stem(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        self.conv = SameConv1d(config["tracks"], config["filters"][0], config["kernel"], bias=True)
        self.norm = make_norm(config["filters"][0], config)


class Shortcut(nn.Module):
    def __init__(self, c_in: int, c_out: int, config: dict):
        super().__init__()
        self.conv = SameConv1d(c_in, c_out, 1, bias=False)
        self.norm = make_norm(c_out, config)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return self.norm(self.conv(x), mask)


class ResidualBlock(nn.Module):
    """conv1 -> norm1 -> relu -> dropout -> conv2 -> norm2, + (projected) input, -> relu."""

    def __init__(self, c_in: int, c_out: int, dilation: int, config: dict):
        super().__init__()
        k = config["kernel"]
        self.conv1 = SameConv1d(c_in, c_out, k, dilation=dilation, bias=False)
        self.norm1 = make_norm(c_out, config)
        self.conv2 = SameConv1d(c_out, c_out, k, dilation=dilation, bias=False)
        self.norm2 = make_norm(c_out, config)
        self.shortcut = Shortcut(c_in, c_out, config) if c_in != c_out else None
        self.dropout = config["dropout"]

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        h = F.dropout(F.relu(self.norm1(self.conv1(x), mask)), self.dropout, self.training)
        h = self.norm2(self.conv2(h), mask)
        residual = x if self.shortcut is None else self.shortcut(x, mask)
        return F.relu(h + residual)


def masked_max_pool(x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Max-pool by 2 where padding (-inf going in) never wins; a pooled position is real if either input was."""
    pooled = F.max_pool1d(x.masked_fill(mask < 0.5, float("-inf")), 2, 2)
    mask = F.max_pool1d(mask, 2, 2)
    return pooled.masked_fill(mask < 0.5, 0.0), mask


class Encoder(nn.Module):
    """Stem (conv, norm, pool), stages of residual blocks each followed by a pool, masked mean over positions."""

    def __init__(self, config: dict):
        super().__init__()
        self.tracks = config["tracks"]
        self.plain = config["plain"]
        self.stem = Stem(config)
        self.stages = nn.ModuleList()
        c_in = config["filters"][0]
        for c_out, count, dilation in zip(config["filters"], config["blocks"], config["dilations"]):
            stage = nn.ModuleList()
            for _ in range(count):
                stage.append(ResidualBlock(c_in, c_out, dilation, config))
                c_in = c_out
            self.stages.append(stage)
        self.out_dim = c_in

    def forward(self, x: Tensor, lengths: Tensor, packed: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """x [n, 6, L] f32 (L a multiple of 32), lengths [n] i64 -> [n, out_dim].

        A packed pass gives `packed` = (mask [lines, 1, L], owner [lines * L/32]) from `packed_layout`: x is
        then [lines, 6, L], and each sequence is pooled over its own span."""
        if packed is None:
            positions = torch.arange(x.shape[2], device=x.device)
            mask = (positions.unsqueeze(0) < lengths.to(x.device).unsqueeze(1)).unsqueeze(1).float()
        else:
            mask = packed[0]
        if self.plain:
            if packed is not None:
                raise SystemExit("the plain peer runs unpacked passes: users pad, they do not pack")
            return self.forward_plain(x[:, : self.tracks], mask)
        x = x[:, : self.tracks] * mask
        h = self.stem.norm(self.stem.conv(x), mask)
        h, mask = masked_max_pool(h, mask)
        for stage in self.stages:
            for block in stage:
                h = block(h, mask)
            h, mask = masked_max_pool(h, mask)
        if packed is None:
            return (h * mask).sum(dim=2) / mask.sum(dim=2).clamp_min(1.0)
        owner = packed[1]
        n = lengths.shape[0]
        kind = torch.float64 if h.dtype == torch.float64 else torch.float32
        flat = (h.to(kind) * mask).permute(0, 2, 1).reshape(-1, h.shape[1])
        sums = torch.zeros(n + 1, h.shape[1], device=h.device, dtype=kind).index_add(0, owner, flat)
        ones = mask.to(kind).permute(0, 2, 1).reshape(-1, 1)
        counts = torch.zeros(n + 1, 1, device=h.device, dtype=kind).index_add(0, owner, ones)
        return (sums / counts.clamp_min(1.0))[:n]


    def forward_plain(self, x: Tensor, mask: Tensor) -> Tensor:
        """The plain peer: no masks inside the network, the mean over real positions at the end."""
        h = F.max_pool1d(self.stem.norm(self.stem.conv(x), mask), 2, 2)
        for stage in self.stages:
            for block in stage:
                h = block(h, mask)
            h = F.max_pool1d(h, 2, 2)
        mask = F.max_pool1d(mask, 2 ** (1 + len(self.stages)), 2 ** (1 + len(self.stages)))
        return (h * mask).sum(dim=2) / mask.sum(dim=2).clamp_min(1.0)


def packed_layout(lines: int, length: int, line: Tensor, offset: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
    """Mask [lines, 1, length] of the sequences' positions, and the sequence owning each position of the last
    stage's output [lines * length/32] (n where none does), for sequence i at (line[i], offset[i])."""
    n = lengths.shape[0]
    mask = torch.zeros(lines, 1, length)
    owner = torch.full((lines * (length // 32),), n, dtype=torch.long)
    for i, (l, o, size) in enumerate(zip(line.tolist(), offset.tolist(), lengths.tolist())):
        mask[l, 0, o : o + size] = 1.0
        owner[l * (length // 32) + o // 32 : l * (length // 32) + (o + size + 31) // 32] = i
    return mask, owner


class ProjectionHead(nn.Module):
    """fc1 -> norm -> relu -> fc2 -> norm -> relu -> fc3 (no bias). The norms are of the encoder's kind: batch
    norm over the rows of the whole local batch, group / layer norm per row (each row one "position")."""

    def __init__(self, in_dim: int, config: dict):
        super().__init__()
        hidden = config["head_hidden"]
        self.fc1 = nn.Linear(in_dim, hidden)
        self.norm1 = make_norm(hidden, config)
        self.fc2 = nn.Linear(hidden, hidden)
        self.norm2 = make_norm(hidden, config)
        self.fc3 = nn.Linear(hidden, config["projection_dim"], bias=False)

    def forward(self, x: Tensor) -> Tensor:
        ones = torch.ones(x.shape[0], 1, 1, device=x.device)
        h = F.relu(self.norm1(self.fc1(x).unsqueeze(2), ones).squeeze(2))
        h = F.relu(self.norm2(self.fc2(h).unsqueeze(2), ones).squeeze(2))
        return self.fc3(h)


class Model(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        self.encoder = Encoder(config)
        self.head = ProjectionHead(self.encoder.out_dim, config)

    def load_named(self, tensors: dict[str, Tensor], source: str) -> None:
        """Copies every tensor by name; any missing, mis-shaped or unexpected tensor is an error naming it."""
        # nn.BatchNorm1d (the plain peer) also counts its batches; isoclr has no such tensor.
        own = {k: v for k, v in self.state_dict().items() if not k.endswith("num_batches_tracked")}
        problems = []
        for name, target in own.items():
            if name not in tensors:
                problems.append(f"no tensor {name}")
            elif tuple(tensors[name].shape) != tuple(target.shape):
                problems.append(f"{name} has shape {list(tensors[name].shape)}, the model needs {list(target.shape)}")
        problems += [f"unexpected tensor {name}" for name in sorted(set(tensors) - set(own))]
        if problems:
            raise SystemExit(f"{source}: " + "; ".join(problems))
        with torch.no_grad():
            for name, target in own.items():
                target.copy_(tensors[name].to(target.dtype))


# --------------------------------------------------------------------------------------------------
# Loss (src/model/loss.rs, `contrastive_loss` with offset 0) and optimiser (src/train/optim.rs).


def dcl_loss(z1: Tensor, z2: Tensor, tau: float, weights: Tensor | None = None) -> Tensor:
    """Symmetric decoupled contrastive loss of L2-normalised projections z1, z2 [N, P].

    Per anchor i: -w_i s(i, i')/tau + logsumexp_{j != i} s(i, j)/tau (same view)
    + logsumexp_{j != i} s(i, j')/tau (other view); the positive is in neither denominator.
    """
    own = torch.eye(z1.shape[0], dtype=torch.bool, device=z1.device)

    def direction(a: Tensor, b: Tensor) -> Tensor:
        s_same = (a @ a.T / tau).masked_fill(own, float("-inf"))
        s_other = a @ b.T / tau
        positive = s_other.diagonal()
        if weights is not None:
            positive = positive * weights
        return s_same.logsumexp(1) + s_other.masked_fill(own, float("-inf")).logsumexp(1) - positive

    return (direction(z1, z2).sum() + direction(z2, z1).sum()) / (2 * z1.shape[0])


def normalise(p: Tensor) -> Tensor:
    return p / p.norm(dim=1, keepdim=True).clamp_min(1e-12)


def make_optimizer(model: nn.Module, config: dict) -> torch.optim.AdamW:
    """torch's AdamW, with weight decay only on kernels and matrices (dim >= 2) as isoclr does.

    Left at torch's defaults otherwise: on CPU that is the per-tensor for-loop implementation (neither
    `foreach` nor `fused`), i.e. what a plain PyTorch training script gets.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(
        [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": config["weight_decay"]},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ],
        lr=config["lr"],
        betas=(config["beta1"], config["beta2"]),
        eps=config["eps"],
    )


def clip_per_tensor(model: nn.Module, max_norm: float) -> None:
    """Each gradient on its own: g *= min(1, max_norm / (||g|| + 1e-6))."""
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None:
                p.grad.mul_((max_norm / (p.grad.norm() + 1e-6)).clamp_max(1.0))


class Batch:
    """A step's two encoder passes, read from a batch file (see the module docstring), for `device`.

    The tracks stay in host memory (pinned on CUDA) and `train_step` copies them to the device every step
    without blocking, as a PyTorch loop fed by DataLoader(pin_memory=True) does: isoclr too receives every
    step's batch from the host."""

    def __init__(self, tensors: dict[str, Tensor], device: torch.device | str = "cpu", dtype=torch.float32):
        self.passes = []
        self.device = torch.device(device)
        start = 0
        k = 0
        while f"x{k + 1}" in tensors:
            k += 1
            x = tensors[f"x{k}"].to(dtype)
            if self.device.type == "cuda":
                x = x.pin_memory()
            lengths = tensors[f"len{k}"].long()
            rows = tensors.get(f"rows{k}", torch.arange(start, start + lengths.shape[0])).long().to(device)
            packed = None
            if f"line{k}" in tensors:
                packed = packed_layout(
                    x.shape[0], x.shape[2], tensors[f"line{k}"].long(), tensors[f"offset{k}"].long(), lengths
                )
                packed = (packed[0].to(dtype), packed[1])
                if self.device.type == "cuda":
                    packed = tuple(t.pin_memory() for t in packed)
            self.passes.append((x, lengths.to(device), rows, packed))
            start += lengths.shape[0]
        self.rows = start
        self.pairs = start // 2
        self.weights = tensors.get("weights")
        if self.weights is not None:
            self.weights = self.weights.to(dtype).to(device)


class Phases:
    """Wall time per phase of a step, summed over steps. CPU eager is synchronous; on a GPU, `sync=True` waits
    for the device at each lap (only when phases are being measured: each wait stalls the launch queue)."""

    def __init__(self, sync: bool = False):
        self.seconds: dict[str, float] = {}
        self.sync = sync
        self._last = time.perf_counter()

    def start(self) -> None:
        if self.sync:
            torch.cuda.synchronize()
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        if self.sync:
            torch.cuda.synchronize()
        now = time.perf_counter()
        self.seconds[name] = self.seconds.get(name, 0.0) + now - self._last
        self._last = now


def train_step(
    model: Model, optimizer: torch.optim.Optimizer, batch: Batch, config: dict, phases: Phases | None = None
) -> tuple[float, float]:
    """One step as `isoclr::train::step::Trainer::train_step` does it; returns (loss, contrastive accuracy).

    On CUDA the encoder, head and normalisation run in bf16 autocast and the loss in f32, as in isoclr (whose
    loss sees the gathered f32 projections)."""
    if phases is None:
        phases = Phases()
    phases.start()
    optimizer.zero_grad(set_to_none=False)
    device = batch.device
    n = batch.pairs
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
        pieces = [
            model.encoder(
                x.to(device, non_blocking=True),
                lengths,
                None if packed is None else tuple(t.to(device, non_blocking=True) for t in packed),
            )
            for x, lengths, _, packed in batch.passes
        ]
        # Passes hold rows in their own order (Rust sorts a pass by length): put row r of the step at r.
        order = torch.cat([rows for _, _, rows, _ in batch.passes])
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(len(order), device=order.device)
        embeddings = torch.cat(pieces).index_select(0, inverse)
        phases.lap("forward")
        projections = model.head(embeddings)
        z1, z2 = normalise(projections[:n]), normalise(projections[n:])
    # The loss in f32 (in f64 for an f64 model).
    z1, z2 = (z1, z2) if z1.dtype == torch.float64 else (z1.float(), z2.float())
    loss = dcl_loss(z1, z2, config["temperature"], batch.weights)
    phases.lap("head_loss")
    loss.backward()
    phases.lap("backward")
    clip_per_tensor(model, config["clip_norm"])
    optimizer.step()
    phases.lap("optimizer")
    with torch.no_grad():
        accuracy = ((z1 @ z2.T).argmax(1) == torch.arange(n, device=device)).float().mean().item()
    return loss.item(), accuracy


# --------------------------------------------------------------------------------------------------
# Command line.


def build_model(args: argparse.Namespace, config: dict) -> Model:
    model = Model(config)
    if args.weights:
        model.load_named(read_safetensors(args.weights), args.weights)
    return model


def cmd_embed(args: argparse.Namespace, config: dict) -> None:
    if not args.weights:
        raise SystemExit("embed needs --weights")
    model = build_model(args, config).eval()
    inputs = read_safetensors(args.inputs)
    with torch.no_grad():
        embeddings = model.encoder(inputs["x"].float(), inputs["lengths"].long())
    write_safetensors(args.out, {"embeddings": embeddings.float()})


def cmd_step(args: argparse.Namespace, config: dict) -> None:
    if not args.weights:
        raise SystemExit("step needs --weights")
    dtype = torch.float64 if args.float64 else torch.float32
    model = build_model(args, config).to(dtype).train()
    optimizer = make_optimizer(model, config)
    batch = Batch(read_safetensors(args.inputs), dtype=dtype)
    loss, accuracy = train_step(model, optimizer, batch, config)
    out = dict(model.state_dict())
    out.update({f"grad.{name}": p.grad for name, p in model.named_parameters() if p.grad is not None})
    write_safetensors(args.out, out)
    print(json.dumps({"loss": loss, "accuracy": accuracy}))


def timed_step(
    model: Model, optimizer: torch.optim.Optimizer, batch: Batch, config: dict, phases: Phases
) -> tuple[float, float, int | None]:
    """One training step; returns (seconds, loss, peak bytes allocated during it on CUDA, else None).

    On CUDA the clock starts and stops with the device idle (torch.cuda.synchronize), so the step's queued
    kernels are all counted and none of an earlier step's are."""
    cuda = batch.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    loss, _ = train_step(model, optimizer, batch, config, phases)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    return seconds, loss, torch.cuda.max_memory_allocated() if cuda else None


def cmd_bench(args: argparse.Namespace, config: dict) -> None:
    device = torch.device(args.device)
    model = build_model(args, config).to(device).train()
    optimizer = make_optimizer(model, config)
    if args.compile:
        # As a user compiles a model: the modules, after the weights are in place (the optimiser holds the
        # same parameters). The first steps compile; the caller's warm-up steps absorb them.
        model.encoder = torch.compile(model.encoder, mode=args.compile)
        model.head = torch.compile(model.head, mode=args.compile)
    batch = Batch(read_safetensors(args.inputs), device)
    if args.serve:
        # One step per line read from stdin, answered by one JSON line: the caller interleaves its own steps
        # with these, so on a shared machine both implementations see the same background load.
        for line in sys.stdin:
            phases = Phases(sync=device.type == "cuda" and line.strip() == "profile")
            seconds, loss, peak = timed_step(model, optimizer, batch, config, phases)
            phases_ms = {k: v * 1e3 for k, v in phases.seconds.items()}
            answer = {
                "step_ms": seconds * 1e3,
                "loss": loss,
                "phases_ms": phases_ms,
                "peak_bytes": peak,
                "torch": torch.__version__,
            }
            print(json.dumps(answer), flush=True)
        return
    losses, times, peaks = [], [], []
    for _ in range(args.warmup + args.steps):
        seconds, loss, peak = timed_step(model, optimizer, batch, config, Phases())
        times.append(seconds)
        losses.append(loss)
        peaks.append(peak)
    timed = times[args.warmup :]
    step_s = sum(timed) / len(timed)
    print(
        json.dumps(
            {
                "seq_per_s": batch.rows / step_s,
                "step_ms": step_s * 1e3,
                "loss_first": losses[0],
                "loss_last": losses[-1],
                "sequences_per_step": batch.rows,
                "threads": torch.get_num_threads(),
                "device": str(device),
                "peak_bytes": max(peaks[args.warmup :]) if device.type == "cuda" else None,
                "torch": torch.__version__,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("embed", "step", "bench"):
        p = sub.add_parser(name)
        p.add_argument("--config-json", help="model shape (and step settings) as a JSON object")
        p.add_argument("--config", help="a file holding that JSON object")
        p.add_argument("--weights", help="safetensors with every model tensor, named as isoclr names them")
        p.add_argument("--inputs", required=True, help="safetensors input (see the module docstring)")
        p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
        if name in ("embed", "step"):
            p.add_argument("--out", required=True, help="safetensors output")
        if name == "step":
            p.add_argument("--float64", action="store_true", help="model, batch and loss in f64")
        if name == "bench":
            p.add_argument("--steps", type=int, default=5, help="timed steps")
            p.add_argument("--warmup", type=int, default=1, help="untimed steps first")
            p.add_argument("--seed", type=int, default=0, help="seed of initialisation and dropout")
            p.add_argument("--serve", action="store_true", help="run one step per stdin line, print one JSON line each")
            p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="cuda: GPU with bf16 autocast")
            p.add_argument("--peer", choices=("masked", "plain"), default="masked", help="plain: the model as users run it")
            p.add_argument("--compile", metavar="MODE", help="torch.compile the encoder and head with this mode")
    args = parser.parse_args()
    if (args.config_json is None) == (args.config is None):
        parser.error("give exactly one of --config-json and --config")
    text = args.config_json if args.config_json is not None else open(args.config).read()
    config = parse_config(text)
    config["plain"] = getattr(args, "peer", "masked") == "plain"
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(getattr(args, "seed", 0))
    {"embed": cmd_embed, "step": cmd_step, "bench": cmd_bench}[args.command](args, config)


if __name__ == "__main__":
    main()
