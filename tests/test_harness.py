"""`benchmarks/harness.py` with trivial contenders: each run is its own process, rounds alternate
A B A B, medians and ranges are those of the values the workers reported, and a round with the load
above the core count makes its contender LOADED, whose ratio is never worded as a speedup."""

import json
import sys

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import harness  # noqa: E402

# A benchmark script in miniature: contender "a" reports 10, 30, 20 in rounds 0, 1, 2 and "b" 5, 5, 11;
# each also reports its pid and when it started, and prints a line of its own that must pass through.
SCRIPT = """
import argparse, os, sys, time
sys.path.insert(0, {benchmarks!r})
import harness

VALUES = {{"a": [10, 30, 20], "b": [5, 5, 11]}}

def contender(name):
    def run(args):
        print("chatter from", name)
        return {{"rate": VALUES[name][args.round_index], "pid": os.getpid(), "start": time.time(), "note": "x"}}
    return run

parser = argparse.ArgumentParser()
harness.add_arguments(parser)
parser.add_argument("--round_index", type=int, default=0)
args = parser.parse_args()
sys.exit(harness.worker({{"a": contender("a"), "b": contender("b")}}, args))
"""


@pytest.fixture(scope="module")
def script(tmp_path_factory):
    path = tmp_path_factory.mktemp("harness") / "bench_trivial.py"
    path.write_text(SCRIPT.format(benchmarks=str(REPO / "benchmarks")))
    return path


def run_rounds(script, loads, monkeypatch):
    """Runs 3 rounds of a, b; round r's workers get --round_index r (through a patched worker command)
    and the parent reads the load averages `loads` in order (before and after each run)."""
    probe = iter(loads)
    real = harness._run_worker
    counter = iter(range(6))

    def with_round(command, cwd, env, timeout):
        return real(command + ["--round_index", str(next(counter) // 2)], cwd, env, timeout)

    monkeypatch.setattr(harness, "_run_worker", with_round)
    info = dict(harness.machine(), cores=2)
    return harness.run(script, ["a", "b"], rounds=3, load=lambda: next(probe), info=info)


def test_rounds_alternate_in_own_processes_with_median_and_range(script, monkeypatch, capsys):
    report = run_rounds(script, [0.5] * 12, monkeypatch)
    assert [(r["round"], r["contender"]) for r in report.rounds] == [(i, c) for i in range(3) for c in "ab"]
    starts = [r["result"]["start"] for r in report.rounds]
    assert starts == sorted(starts)  # they ran in that order, one after another
    assert len({r["result"]["pid"] for r in report.rounds}) == 6  # a fresh process each
    assert "chatter from a" in capsys.readouterr().out  # a worker's own output is passed through
    assert report.summary["a"]["rate"] == {"median": 20, "min": 10, "max": 30, "n": 3}
    assert report.summary["b"]["rate"] == {"median": 5, "min": 5, "max": 11, "n": 3}
    assert "note" not in report.summary["a"]  # only numbers are summarised
    assert report.loaded == {"a": False, "b": False}
    assert report.ratio("a", "b", "rate") == {"ratio": 4.0, "loaded": False}
    assert report.ratio_text("a", "b", "rate") == "a / b (rate): 4.00x"
    table = report.table(["rate"])
    assert "20.0" in table and "[10.0 - 30.0]" in table and "LOADED" not in table
    assert "cores" in table.splitlines()[0]
    data = json.loads(json.dumps(report.to_json()))  # the JSON a benchmark writes
    assert data["machine"]["cores"] == 2 and "python" in data["machine"] and data["machine"]["libraries"]
    assert all(r["wall_seconds"] > 0 and r["worker_cpu_seconds"] > 0 for r in data["rounds"])


def test_a_round_above_the_core_count_is_loaded_and_no_speedup_is_claimed(script, monkeypatch):
    # 2 cores; b's second round ends at load 2.5.
    loads = [0.5] * 12
    loads[7] = 2.5  # after round 1, contender b
    report = run_rounds(script, loads, monkeypatch)
    assert [r["loaded"] for r in report.rounds] == [False, False, False, True, False, False]
    assert report.loaded == {"a": False, "b": True}
    ratio = report.ratio("a", "b", "rate")
    assert ratio == {"ratio": 4.0, "loaded": True}
    text = report.ratio_text("a", "b", "rate")
    assert "LOADED" in text and "not a speedup" in text and "4.00x" not in text
    b_line = next(line for line in report.table(["rate"]).splitlines() if line.strip().startswith("b "))
    assert b_line.endswith("LOADED") and "0.5->2.5" in b_line


def test_a_failing_worker_is_an_error_with_its_output(tmp_path):
    bad = tmp_path / "bench_bad.py"
    bad.write_text("import sys\nprint('half a result')\nsys.exit(3)\n")
    with pytest.raises(RuntimeError, match="exited 3 with 0 result lines") as error:
        harness.run(bad, ["a"], rounds=1, info={"cores": 2})
    assert "half a result" in str(error.value)


def test_forwarded_drops_the_harness_flags_and_machine_reads_cpu_facts():
    argv = ["--quick", "--rounds", "5", "--worker", "--contender=x", "--json", "out.json"]
    assert harness.forwarded(argv) == ["--quick", "--json", "out.json"]
    assert harness.summarize([3, None, 1, 2]) == {"median": 2, "min": 1, "max": 3, "n": 3}
    assert harness.loaded(1.0, 2.5, 2) and not harness.loaded(1.0, 2.0, 2)
    info = harness.machine()
    assert info["cpu"] and info["cores"] >= 1 and set(info["flags"]) <= set(harness.SIMD_FLAGS)
    assert "tensorflow" in info["libraries"] and "numpy" in info["libraries"]


# A side-by-side training benchmark in miniature (bench_ner's run_sides): `--side X --json_out F` writes one
# JSON; the side's speed depends on how many times it already ran (a counter file), its accuracy does not.
SIDE_SCRIPT = """
import argparse, json, os, sys
from pathlib import Path
p = argparse.ArgumentParser()
p.add_argument("--side"); p.add_argument("--json_out"); p.add_argument("--counter")
args = p.parse_args()
counter = Path(args.counter + "." + args.side)
n = int(counter.read_text()) if counter.exists() else 0
counter.write_text(str(n + 1))
with open(args.counter + ".order", "a") as f:
    f.write(args.side + " ")
speeds = {"ours": [30.0, 10.0, 20.0], "hf": [5.0, 7.0, 6.0]}
Path(args.json_out).write_text(json.dumps({
    "train_sequences_per_second": speeds[args.side][n], "train_seconds": 100.0 / speeds[args.side][n],
    "dev_accuracy": 0.75, "steps": 4, "load_average": [0.1, 0.2] if n != 1 else [0.1, 9.0]}))
"""


def test_run_sides_alternates_rounds_and_reports_median_and_range(tmp_path):
    import bench_ner

    script = tmp_path / "bench_sides.py"
    script.write_text(SIDE_SCRIPT)
    counter = str(tmp_path / "count")
    results = bench_ner.run_sides(script, ["--counter", counter], cores=2, rounds=3)
    assert (tmp_path / "count.order").read_text().split() == ["ours", "hf"] * 3  # A B A B A B
    ours, hf = results["ours"], results["hf"]
    assert ours["train_sequences_per_second"] == 20.0 and ours["train_sequences_per_second_range"] == [10.0, 30.0]
    assert hf["train_sequences_per_second"] == 6.0 and hf["train_sequences_per_second_range"] == [5.0, 7.0]
    assert ours["train_seconds"] == 5.0 and ours["train_seconds_range"] == [100 / 30, 10.0]
    assert ours["dev_accuracy"] == 0.75 and ours["steps"] == 4  # quality and counts: the first round's
    assert len(ours["rounds"]) == 3 and [r["loaded"] for r in ours["rounds"]] == [False, True, False]
    assert ours["loaded"] and hf["loaded"]  # round 2 ran at load 9 on 2 cores: the sides' figures are LOADED
    once = bench_ner.run_sides(script, ["--counter", str(tmp_path / "once")], cores=2)
    assert once["ours"]["train_sequences_per_second"] == 30.0 and "rounds" not in once["ours"]
    assert not once["ours"]["loaded"]
