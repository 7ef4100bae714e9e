"""gdmkit benchmark suite: ratios against a baseline measured side by side in the same run.

    uv run python benchmarks/run.py            # every benchmark, writes reports/benchmarks.json
    uv run python benchmarks/run.py --only bases train_step

Each group runs in its own subprocess; each record's peak memory is measured around its own calls
(RSS above the level at entry, sampled every millisecond, on CPU; allocator peak on CUDA). Records: {name, value, unit, target (where the issue names one), baseline, ratio,
device, details}. Timings are medians over interleaved repeats (candidate and baseline alternate, so
machine noise hits both). This is a script, not a timed test.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from gdmkit import bases, groupings, nets, paths, sampling, schedules  # noqa: E402


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class _Peak:
    """Peak memory above the level at entry, in MiB: CUDA allocator stats, or RSS sampled every ms."""

    def __init__(self, dev):
        self.dev, self.mb = dev, 0.0

    def __enter__(self):
        if self.dev.type == "cuda":
            torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            self.base, self.top, self.stop = _rss_mb(), _rss_mb(), threading.Event()

            def poll():
                while not self.stop.is_set():
                    self.top = max(self.top, _rss_mb()); time.sleep(0.001)
            self.thread = threading.Thread(target=poll, daemon=True); self.thread.start()
        return self

    def __exit__(self, *exc):
        if self.dev.type == "cuda":
            torch.cuda.synchronize()
            self.mb = (torch.cuda.max_memory_allocated() - self.base) / 2**20
        else:
            self.stop.set(); self.thread.join()
            self.mb = max(self.top, _rss_mb()) - self.base


MEMORY_OF: str | None = None   # set by --memory-of: run only this candidate, twice, and report its peak


class _MemoryResult(Exception):
    def __init__(self, mb):
        self.mb = mb


def _interleaved(fns: dict, repeats: int, dev) -> dict[str, float]:
    """Median seconds of each callable, calls interleaved round-robin after one warm-up each.

    In memory mode (a fresh process per candidate, see ``_memory``) only the selected candidate runs,
    twice, and its peak above the process level before its first call is raised as the result.
    """
    if MEMORY_OF is not None:
        if MEMORY_OF not in fns:
            return {}
        with _Peak(dev) as pk:
            fns[MEMORY_OF](); _sync(dev); fns[MEMORY_OF](); _sync(dev)
        raise _MemoryResult(pk.mb)
    for f in fns.values():
        f(); _sync(dev)
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t0 = time.perf_counter(); f(); _sync(dev)
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def _memory(group: str, key: str, quick: bool) -> float:
    """Peak MiB of one candidate, measured in a fresh process (allocator pools start empty)."""
    cmd = [sys.executable, __file__, "--one", group, "--memory-of", key] + (["--quick"] if quick else [])
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode:
        sys.stderr.write(res.stderr)
        raise SystemExit(f"memory run {group}:{key} failed")
    return float(json.loads(res.stdout.strip().splitlines()[-1]))


def _record(name, value, unit, dev, target=None, **extra):
    return dict(name=name, value=value, unit=unit, target=target, device=str(dev), **extra)


# ---------------------------------------------------------------------------------------- issue 2
def bench_bases(quick: bool) -> list[dict]:
    """forward + inverse of each fast basis, as a ratio to one forward pass of the laptop U-Net."""
    dev, out = _device(), []
    shapes = [(64, 3, 32, 32), (16, 3, 256, 256)] if not quick else [(16, 3, 32, 32)]
    for shape in shapes:
        B, C, H, W = shape
        g = torch.Generator().manual_seed(0)
        x = torch.randn(shape, generator=g).to(dev)
        net = nets.unet_preset("laptop", C, H).to(dev).eval()
        state, summ = torch.rand(shape, generator=g).to(dev), torch.rand(B, generator=g).to(dev)
        tag = f"{B}x{C}x{H}x{W}"
        fns = {f"unet_forward/{tag}": lambda: net(x, state, summ)}
        for name in ("dct", "blur", "fourier", "haar", "pixel"):
            kw = {"levels": 3} if name == "haar" else {}
            b = bases.make_basis(name, (C, H, W), **kw).to(dev)
            fns[f"{name}/{tag}"] = (lambda b=b: b.from_coeffs(b.to_coeffs(x)))
        with torch.no_grad():
            t = _interleaved(fns, 3 if H > 64 else 10, dev)
        if not t:
            continue
        for name in ("dct", "blur", "fourier", "haar", "pixel"):
            out.append(_record(f"basis_fwd_inv/{name}/{tag}", t[f"{name}/{tag}"] / t[f"unet_forward/{tag}"], "ratio",
                               dev, target=0.05 if name != "pixel" else None, seconds=t[f"{name}/{tag}"],
                               baseline="laptop UNet forward", baseline_seconds=t[f"unet_forward/{tag}"],
                               mem_key=f"{name}/{tag}", baseline_mem_key=f"unet_forward/{tag}"))
    return out


def _gdm_loss(basis, grouping):
    path = paths.DiagonalPath(basis, schedules.GroupwiseSchedule(grouping), target="u")
    return path.loss_fn()


def _train_step_fn(loss_fn, net, x, opt, gen):
    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn(net, x, gen).mean().backward()
        opt.step()
    return step


def _train_setup(B: int, C: int, H: int, dev):
    """Data, laptop U-Net, optimizer and the two gdmkit steps: k = 1 pixel space, k = 4 DCT bands."""
    shape = (C, H, H)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(B, *shape, generator=g).to(dev)
    net = nets.unet_preset("laptop", C, H).to(dev)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    dct = bases.DCT(shape).to(dev)
    n = H * H
    bands = groupings.frequency_bands(dct.labels()["rank"].cpu(), [n // 64, n // 16, n // 4])
    fns = {
        "pixel_k1": _train_step_fn(_gdm_loss(bases.Pixel(shape).to(dev), groupings.single(shape)), net, x, opt, g),
        "dct_k4": _train_step_fn(_gdm_loss(dct, bands), net, x, opt, g),
    }
    return g, x, net, opt, fns


def bench_train_step(quick: bool) -> list[dict]:
    """One training step: GDM path in the DCT basis, k = 4 bands, vs scalar schedule in pixel space."""
    dev = _device()
    B, C, H = (16, 3, 16) if quick else (64, 3, 32)
    *_, fns = _train_setup(B, C, H, dev)
    t = _interleaved(fns, 3 if quick else 8, dev)
    return [_record(f"train_step/gdm_dct_k4_vs_pixel_k1/{B}x{C}x{H}x{H}", t["dct_k4"] / t["pixel_k1"], "ratio",
                    dev, target=1.05, seconds=t["dct_k4"], baseline="scalar schedule, pixel space",
                    baseline_seconds=t["pixel_k1"], mem_key="dct_k4", baseline_mem_key="pixel_k1")]


def bench_bf16_cpu(quick: bool) -> list[dict]:
    """One training step of the laptop U-Net at the laptop profiles' shapes, bf16 autocast (``TrainConfig.bf16``
    on a CPU with native bfloat16) against float32, one thread; target: bf16 at most 0.8x float32's time.
    Nothing is recorded on a GPU machine or a CPU without native bf16 (there TrainConfig.bf16 trains in float32)."""
    from gdmkit.train import cpu_has_native_bf16

    dev = _device()
    if dev.type != "cpu" or not cpu_has_native_bf16():
        return []
    torch.set_num_threads(1)
    out = []
    for B, C, H in ([(16, 3, 16)] if quick else [(64, 3, 16), (64, 1, 12)]):  # 04/06 shapes; 03's digits
        g, x, net, opt, fns = _train_setup(B, C, H, dev)
        step = fns["pixel_k1"]

        def bf16_step():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                step()

        tag = f"{B}x{C}x{H}x{H}"
        t = _interleaved({f"fp32/{tag}": step, f"bf16/{tag}": bf16_step}, 3 if quick else 10, dev)
        if not t:
            continue
        out.append(_record(f"train_step/bf16_vs_fp32_cpu/{tag}", t[f"bf16/{tag}"] / t[f"fp32/{tag}"], "ratio", dev,
                           target=0.8, seconds=t[f"bf16/{tag}"], baseline="float32 step, same network and batch",
                           baseline_seconds=t[f"fp32/{tag}"], threads=1, mem_key=f"bf16/{tag}",
                           baseline_mem_key=f"fp32/{tag}"))
    return out


# ---------------------------------------------------------------------------------------- issue 4
def bench_throughput(quick: bool) -> list[dict]:
    """Training images/s of the laptop U-Net, gdmkit (k = 1 pixel; k = 4 DCT) next to torchcfm."""
    from torchcfm.conditional_flow_matching import ConditionalFlowMatcher
    dev, out = _device(), []
    sizes = [16] if quick else [16, 32]
    for H in sizes:
        B, C = (16 if quick else 64), 3
        g, x, net, opt, gdm = _train_setup(B, C, H, dev)
        cfm = ConditionalFlowMatcher(sigma=0.0)

        def cfm_step():
            opt.zero_grad(set_to_none=True)
            z = torch.randn(x.shape, generator=g).to(dev)
            t, xt, ut = cfm.sample_location_and_conditional_flow(x, z)
            state = (1 - t).view(-1, 1, 1, 1).expand_as(xt)  # same network input width as gdmkit's
            ((net(xt, state, t) - ut) ** 2).mean().backward()
            opt.step()

        fns = {"torchcfm": cfm_step, "gdmkit_k1": gdm["pixel_k1"], "gdmkit_k4_dct": gdm["dct_k4"]}
        fns = {f"{k}/{H}": f for k, f in fns.items()}
        t = _interleaved(fns, 3 if quick else 8, dev)
        if not t:
            continue
        t = {k.split("/")[0]: v for k, v in t.items()}
        for k, target in (("torchcfm", None), ("gdmkit_k1", 1.03), ("gdmkit_k4_dct", 1.08)):
            out.append(_record(f"train_throughput/{k}/{H}x{H}", B / t[k], "images/s", dev,
                               target=None if target is None else f"time ratio to torchcfm <= {target}",
                               ratio_to_torchcfm=t[k] / t["torchcfm"], mem_key=f"{k}/{H}", batch=B))
    return out


def bench_sampling(quick: bool) -> list[dict]:
    """Sampling images/s and NFE per sample, Euler and Heun, k = 1, 2, 4, 9 (right→left strips)."""
    dev, out = _device(), []
    B, C, H = (8, 3, 16) if quick else (64, 3, 16)
    shape = (C, H, H)
    net = nets.unet_preset("laptop", C, H).to(dev).eval()
    steps_total = 36
    for k in (1, 2, 4, 9):
        grp = groupings.right_to_left(shape, k)   # GDM Fig. 11's grouping
        sched = schedules.GroupwiseSchedule(grp)
        path = paths.DiagonalPath(bases.Pixel(shape).to(dev), sched.to(dev), target="u")
        ts = sched.time_grid(sampling.per_group_steps(k, steps_total))
        for solver in (sampling.euler, sampling.heun):
            model = sampling.CountingModel(path.denoiser(net))
            chi = path.prior_sample(B, generator=torch.Generator().manual_seed(0)).to(dev)
            key = f"{solver.__name__}/k{k}"
            t = _interleaved({key: lambda: solver(model, chi, ts)}, 1, dev)
            if not t:
                continue
            out.append(_record(f"sampling/{key}", B / t[key], "images/s", dev,
                               nfe_per_sample=model.nfe // 2, steps=len(ts) - 1, mem_key=key))
    return out


def bench_cuda(quick: bool) -> list[dict]:
    """CUDA only: paper-profile U-Net training images/s, fp32 vs bf16 autocast vs torch.compile."""
    dev = _device()
    if dev.type != "cuda":
        return []
    B, C, H = (32, 3, 32) if quick else (128, 3, 32)
    shape = (C, H, H)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(B, *shape, generator=g).to(dev).contiguous(memory_format=torch.channels_last)
    loss_fn = _gdm_loss(bases.Pixel(shape).to(dev), groupings.single(shape))
    fns = {}
    for name, (bf16, compiled) in {"fp32": (False, False), "bf16": (True, False), "compile": (False, True),
                                   "bf16+compile": (True, True)}.items():
        torch.manual_seed(0)
        net = nets.unet_preset("paper", C, H).to(dev).to(memory_format=torch.channels_last)
        opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
        fwd = torch.compile(net) if compiled else net

        def step(fwd=fwd, opt=opt, bf16=bf16):
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
                loss = loss_fn(fwd, x, g).mean()
            loss.backward()
            opt.step()
        fns[name] = step
    t = _interleaved(fns, 5 if quick else 20, dev)
    return [_record(f"cuda_train_throughput/paper_unet/{k}/{H}x{H}", B / v, "images/s", dev,
                    speedup_vs_fp32=t["fp32"] / v, mem_key=k, batch=B) for k, v in t.items()]


def bench_likelihood(quick: bool) -> list[dict]:
    """bits/dim through the probability-flow ODE: gdmkit vs SciPy solve_ivp (benchmarks/likelihood_bench.py)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from likelihood_bench import bench_likelihood as run

    return run(quick, _interleaved, _record)


def bench_likelihood_accuracy(quick: bool) -> list[dict]:
    """gdmkit's ODE solvers on the exact Gaussian oracle against SciPy's RK45 (benchmarks/likelihood_bench.py)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from likelihood_bench import bench_likelihood_accuracy as run
    return run(quick, _record)


BENCHES = {"bases": bench_bases, "train_step": bench_train_step, "bf16_cpu": bench_bf16_cpu,
           "throughput": bench_throughput,
           "sampling": bench_sampling, "cuda": bench_cuda, "likelihood": bench_likelihood,
           "likelihood_accuracy": bench_likelihood_accuracy}


def _run_one(name: str, quick: bool) -> list[dict]:
    torch.manual_seed(0)
    return BENCHES[name](quick)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", choices=sorted(BENCHES), help="run only these groups")
    ap.add_argument("--quick", action="store_true", help="small shapes, few repeats (a smoke run)")
    ap.add_argument("--out", default=str(ROOT / "reports" / "benchmarks.json"))
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--memory-of", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        global MEMORY_OF
        MEMORY_OF = args.memory_of
        try:
            recs = _run_one(args.one, args.quick)
        except _MemoryResult as m:
            print(json.dumps(round(m.mb, 1)))
            return
        print(json.dumps(recs))
        return
    kept, records = [], []
    groups = args.only or list(BENCHES)
    if args.only and Path(args.out).is_file():  # keep the other groups' records of the previous full run
        kept = [r for r in json.loads(Path(args.out).read_text())["records"] if r.get("group") not in groups]
    for name in groups:
        cmd = [sys.executable, __file__, "--one", name] + (["--quick"] if args.quick else [])
        res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        if res.returncode:
            sys.stderr.write(res.stderr)
            raise SystemExit(f"benchmark group {name!r} failed (exit {res.returncode})")
        recs = json.loads(res.stdout.strip().splitlines()[-1])
        for r in recs:
            r["group"] = name
            for field in ("mem_key", "baseline_mem_key"):
                if field in r:
                    r[field.replace("mem_key", "peak_memory_mb")] = _memory(name, r.pop(field), args.quick)
            extra = f"  target {r['target']}" if r.get("target") is not None else ""
            ratio = f"  (ratio to torchcfm {r['ratio_to_torchcfm']:.3f})" if "ratio_to_torchcfm" in r else ""
            mem = f"  peak {r['peak_memory_mb']:.0f} MiB" if "peak_memory_mb" in r else ""
            print(f"{r['name']:<55} {r['value']:>10.4g} {r['unit']}{ratio}{mem}{extra}")
        records += recs
    fresh = {r["name"] for r in records}  # a kept record of the same name (written before records had a group) goes
    records = [r for r in kept if r["name"] not in fresh] + records
    meta = dict(torch=torch.__version__, python=platform.python_version(), machine=platform.machine(),
                threads=torch.get_num_threads(), cuda=torch.cuda.get_device_name() if torch.cuda.is_available() else None,
                quick=args.quick)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"meta": meta, "records": records}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
