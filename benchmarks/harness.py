"""One benchmark harness: every contender in its own process, alternating rounds, median and range.

Why a process per contender: two libraries' thread pools in one process slow each other down (torch or
ONNX Runtime spinning beside TensorFlow), and a process that ran contender A first is warmer (allocator,
caches) for B. So each measurement is a fresh `python SCRIPT --worker --contender NAME ...` that prints
one JSON line; the parent runs the contenders in alternating rounds (A B A B ...), so a busy spell on a
shared machine hits every contender instead of one, and reports per metric the median and the min-max.

Around every round the parent reads the 1-minute load average. A round whose load before or after is
above the core count is marked LOADED; a contender with a LOADED round is LOADED; and a ratio between
two contenders is printed as a speedup only when neither is LOADED (otherwise it is printed as "ratio
... measured LOADED, not a speedup"). Every report carries the machine facts: CPU model, the SIMD flags
that matter for BERT on CPU, core count, Python and library versions.

A script uses it like this:

    import harness

    def contender_ours(args):          # runs in the worker process
        ...
        return {"sequences_per_second": 118.0}

    CONTENDERS = {"ours": contender_ours, "hf": contender_hf}

    def main(argv=None):
        parser = argparse.ArgumentParser()
        harness.add_arguments(parser)  # --worker, --contender, --rounds
        parser.add_argument("--quick", action="store_true")
        args = parser.parse_args(argv)
        if args.worker:
            return harness.worker(CONTENDERS, args)
        report = harness.run(__file__, list(CONTENDERS), rounds=args.rounds, argv=harness.forwarded(argv))
        print(report.table())
        print(report.ratio_text("ours", "hf", "sequences_per_second"))

This module imports nothing heavy (no TensorFlow, no torch): the parent process stays idle while a
worker measures.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULT_MARK = "HARNESS_RESULT "  # a worker's result line; anything else it prints is passed through
SIMD_FLAGS = ["avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8", "amx_tile"]
LIBRARIES = [
    "tensorflow",
    "keras",
    "keras-hub",
    "tensorflow-text",
    "numpy",
    "torch",
    "transformers",
    "tokenizers",
    "sentence-transformers",
    "onnxruntime",
]


# --------------------------------------------------------------------------------------------
# Machine facts
# --------------------------------------------------------------------------------------------
def library_versions(names=LIBRARIES):
    """Installed versions of `names` (distribution names), read from package metadata without
    importing them; absent ones are left out."""
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


def machine():
    """CPU model, the SIMD flags that matter for BERT on CPU, cores, Python and library versions."""
    model, flags = platform.processor(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return {
        "cpu": model,
        "flags": [f for f in SIMD_FLAGS if f in flags],
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "libraries": library_versions(),
    }


def machine_line(info):
    """One line for a table's head: 'CPU (flags), N cores; tensorflow 2.21.0, torch ...'."""
    libs = ", ".join(f"{k} {v}" for k, v in info.get("libraries", {}).items())
    return f"machine: {info['cpu']} ({', '.join(info['flags']) or 'no AVX2'}), {info['cores']} cores; {libs}"


def load_average():
    """The 1-minute load average, rounded to 2 decimals."""
    return round(os.getloadavg()[0], 2)


def loaded(before, after, cores):
    """True when the machine was busier than its cores during a measurement."""
    return max(before, after) > cores


def tf_matmul_flops_per_second(n=2048, inner=10, repeats=5):
    """TensorFlow float32 FLOP/s of a chain of `inner` dependent n x n matmuls, best of `repeats`.

    Each product feeds the next (x = a @ x), so Grappler cannot merge them as common subexpressions
    (identical `a @ b` calls would run only once). Imports TensorFlow (call it in a worker)."""
    import tensorflow as tf

    a = tf.random.normal([n, n], stddev=n**-0.5)  # keeps |x| roughly constant
    x0 = tf.random.normal([n, n])

    @tf.function
    def chain(a, x):
        for _ in range(inner):
            x = tf.matmul(a, x)
        return x

    chain(a, x0).numpy()
    return 2.0 * n**3 * inner / best_seconds(lambda: chain(a, x0).numpy(), repeats)


def torch_matmul_flops_per_second(n=2048, inner=10, repeats=5):
    """The same chain in PyTorch (its own thread pool and GEMM). Imports torch (call it in a worker)."""
    import torch

    a = torch.randn(n, n) * n**-0.5
    x0 = torch.randn(n, n)

    def chain():
        x = x0
        for _ in range(inner):
            x = a @ x
        return x

    with torch.no_grad():
        chain()
        return 2.0 * n**3 * inner / best_seconds(chain, repeats)


def best_seconds(fn, repeats):
    """Best wall time of `repeats` calls of `fn` (warm it up first)."""
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


# --------------------------------------------------------------------------------------------
# Worker side
# --------------------------------------------------------------------------------------------
def add_arguments(parser, rounds=3):
    """Adds `--rounds` and the internal `--worker`/`--contender` flags to an argparse parser."""
    parser.add_argument("--rounds", type=int, default=rounds, help=f"alternating rounds (default {rounds})")
    parser.add_argument("--worker", action="store_true", help="(internal) run one contender, print one JSON line")
    parser.add_argument("--contender", default=None, help="(internal) the contender a worker runs")


def forwarded(argv):
    """`argv` (default `sys.argv[1:]`) without the harness's own flags, to pass on to the workers."""
    argv = list(sys.argv[1:] if argv is None else argv)
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in ("--rounds", "--contender"):
            skip = True
            continue
        if arg == "--worker" or arg.startswith(("--rounds=", "--contender=")):
            continue
        out.append(arg)
    return out


def emit(result):
    """Prints a worker's result (a JSON-able dict) as the one line the parent reads."""
    print(RESULT_MARK + json.dumps(result), flush=True)


def worker(contenders, args):
    """Runs `contenders[args.contender](args)` and emits its dict of metrics. Returns 0."""
    if args.contender not in contenders:
        sys.exit(f"unknown contender {args.contender!r}; choose one of {', '.join(contenders)}")
    emit(contenders[args.contender](args))
    return 0


# --------------------------------------------------------------------------------------------
# Parent side
# --------------------------------------------------------------------------------------------
def summarize(values):
    """`{"median", "min", "max", "n"}` of a list of numbers (None entries are ignored)."""
    values = [v for v in values if v is not None]
    if not values:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


@dataclasses.dataclass
class Report:
    """What `run` measured: machine facts, every round in order, and per contender per metric the
    median and min-max (`summary[contender][metric]`), with `loaded[contender]`."""

    machine: dict
    contenders: list
    rounds: list  # one dict per (round, contender) run, in the order they ran
    summary: dict
    loaded: dict

    def median(self, contender, metric):
        return self.summary[contender][metric]["median"]

    def ratio(self, a, b, metric, metric_b=None):
        """`{"ratio": median(a) / median(b), "loaded": bool}` of `metric` (of `metric_b` for b, if
        given); loaded when either side was LOADED."""
        ma, mb = self.median(a, metric), self.median(b, metric_b or metric)
        value = ma / mb if ma is not None and mb else None
        return {"ratio": value, "loaded": bool(self.loaded[a] or self.loaded[b])}

    def ratio_text(self, a, b, metric, label=None, metric_b=None):
        """'a / b (metric): 1.23x' on a quiet machine; never worded as a speedup when LOADED."""
        r = self.ratio(a, b, metric, metric_b)
        head = label or f"{a} / {b} ({metric})"
        if r["ratio"] is None:
            return f"{head}: n/a"
        if r["loaded"]:
            cores = self.machine["cores"]
            return f"{head}: ratio {r['ratio']:.2f} measured LOADED (load above {cores} cores), not a speedup"
        return f"{head}: {r['ratio']:.2f}x"

    def table(self, metrics=None, fmt="{:,.1f}"):
        """A plain-text table: per contender and metric the median [min-max], the load average of each
        round, LOADED marks; the machine line on top."""
        metrics = metrics or sorted({m for c in self.contenders for m in self.summary[c]})
        lines = [machine_line(self.machine)]
        width = max(len(c) for c in self.contenders)
        for metric in metrics:
            lines.append(f"{metric}: median [min - max] over {len(self.rounds) // len(self.contenders)} rounds")
            for c in self.contenders:
                s = self.summary[c].get(metric)
                if not s or s["median"] is None:
                    continue
                loads = " ".join(f"{r['load_before']}->{r['load_after']}" for r in self.rounds if r["contender"] == c)
                mark = "  LOADED" if self.loaded[c] else ""
                lines.append(
                    f"  {c:<{width}}  {fmt.format(s['median']):>12}  [{fmt.format(s['min'])} - {fmt.format(s['max'])}]"
                    f"  load {loads}{mark}"
                )
        return "\n".join(lines)

    def to_json(self):
        return {
            "machine": self.machine,
            "contenders": self.contenders,
            "rounds": self.rounds,
            "summary": self.summary,
            "loaded": self.loaded,
        }


def _run_worker(command, cwd, env, timeout):
    """Runs one worker; returns (its result dict, wall seconds, CPU seconds of the worker)."""
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=cwd, env=env, timeout=timeout, capture_output=True, text=True)
    wall = time.perf_counter() - start
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.stderr:
        sys.stderr.write(proc.stderr)
    results = []
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_MARK):
            results.append(json.loads(line[len(RESULT_MARK) :]))
        else:
            print(line)
    if proc.returncode != 0 or len(results) != 1:
        raise RuntimeError(
            f"worker {' '.join(command[1:])} exited {proc.returncode} with {len(results)} result lines:\n"
            f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        )
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return results[0], wall, cpu


def run(script, contenders, rounds=3, argv=(), cwd=None, env=None, timeout=None, load=load_average, info=None):
    """Runs `python script --worker --contender NAME *argv` for every contender, `rounds` times,
    alternating (A B A B ...), each in a new process.

    Args:
        script: the benchmark script (its `--worker` mode must call `worker`).
        contenders: contender names, in the order each round runs them.
        rounds: number of rounds.
        argv: arguments passed on to every worker (see `forwarded`).
        cwd, env, timeout: for `subprocess.run` (timeout per worker, seconds).
        load: the load-average probe (a function; tests pass a fake one).
        info: machine facts (default `machine()`).

    Returns:
        A `Report`. Numeric values of each worker's dict are summarised; other values are kept in
        `rounds` only.
    """
    info = info or machine()
    cores = info["cores"] or 1
    runs = []
    for round_index in range(rounds):
        for name in contenders:
            before = load()
            command = [sys.executable, str(script), "--worker", "--contender", name, *argv]
            result, wall, cpu = _run_worker(command, cwd, env, timeout)
            after = load()
            runs.append(
                {
                    "round": round_index,
                    "contender": name,
                    "load_before": before,
                    "load_after": after,
                    "loaded": loaded(before, after, cores),
                    "wall_seconds": round(wall, 3),
                    "worker_cpu_seconds": round(cpu, 3),
                    "result": result,
                }
            )
    summary, flags = {}, {}
    for name in contenders:
        mine = [r for r in runs if r["contender"] == name]
        metrics = sorted(
            {k for r in mine for k, v in r["result"].items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        )
        summary[name] = {m: summarize([r["result"].get(m) for r in mine]) for m in metrics}
        flags[name] = any(r["loaded"] for r in mine)
    return Report(machine=info, contenders=list(contenders), rounds=runs, summary=summary, loaded=flags)
