"""`benchmarks/bench_client.py --quick`: 300 sentences through Client.encode over gRPC (pipelined and one
request at a time), over REST and in-process, each in its own process against one real `kerasbert.serve`;
the JSON must be complete, every contender's vectors equal to the in-process ones, and the client processes
free of TensorFlow."""

import json
import subprocess
import sys

from conftest import REPO


def test_bench_client_quick_mode_writes_consistent_json(tmp_path):
    out = tmp_path / "client_quick.json"
    result = subprocess.run(
        [sys.executable, "benchmarks/bench_client.py", "--quick", "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["quick"] and data["model"] == "tiny" and data["settings"]["sentences"] == 300
    machine = data["machine"]
    assert machine["cores"] >= 1 and machine["cpu"] and isinstance(machine["flags"], list)
    assert set(data["contenders"]) == {"grpc", "grpc_sequential", "rest", "in_process"}
    for name, contender in data["contenders"].items():
        speed = contender["sentences_per_second"]
        assert 0 < speed["min"] <= speed["median"] <= speed["max"], name
        for run in contender["runs"]:
            assert run["seconds"] > 0 and all(la >= 0 for la in run["load_average"]) and isinstance(run["loaded"], bool)
    # the same vectors on every path (REST's JSON floats round-trip float32 exactly)
    assert data["max_abs_difference_to_in_process"] == {c: 0.0 for c in data["contenders"]}
    assert data["client_imported_tensorflow"] is False
    assert set(data["ratio_to_in_process"]) == {"grpc", "grpc_sequential", "rest"}
    assert isinstance(data["loaded"], bool)
