"""Request batching (`--enable_batching`): the `Batcher` merging concurrent Predict calls, and a real server.

Unit tests drive `kerasbert.serving.batching.Batcher` with a scripted servable (real `SignatureDef` protos, a
call log, a gate to hold the batch thread) and with a real tiny kerasbert NER export; one real
`python -m kerasbert.serve --enable_batching --batching_parameters_file` answers concurrent gRPC requests; the
quick mode of `benchmarks/bench_serving.py` runs once and its JSON is checked.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from kerasbert import contract
from kerasbert.serving.batching import Batcher, BatchingOptions
from kerasbert.serving.errors import ServingError, invalid_argument
from kerasbert.serving.metrics import Metrics
from serving_utils import REPO_ROOT, running_server

pytest.importorskip("tensorflow_text")


# ------------------------------------------------------------------------------------------ helpers
def signature(inputs=("text",), outputs=(("length", [-1]), ("upper", [-1]))):
    sig = meta_graph_pb2.SignatureDef()
    for name in inputs:
        info = sig.inputs[name]
        info.dtype = tf.string.as_datatype_enum
        info.tensor_shape.dim.add().size = -1
    for name, dims in outputs:
        info = sig.outputs[name]
        info.dtype = tf.int64.as_datatype_enum
        for d in dims:
            info.tensor_shape.dim.add().size = d
    return sig


class ScriptedServable:
    """`serving_default(text) -> length, upper`; `count(text) -> n` (no batch dim); `nothing() -> x`.

    Every call is logged (rows seen); `gate` (if set) holds each call until released; a text "boom" makes
    the model reject the whole call, as a failing assertion in a graph would.
    """

    name = "scripted"
    version = 1

    def __init__(self, delay=0.0):
        self.delay = delay
        self.calls: list[list[str]] = []
        self.gate: threading.Event | None = None
        self.started = threading.Event()
        self.signatures = {
            "serving_default": signature(),
            "count": signature(outputs=(("n", [1]),)),
            "nothing": signature(inputs=(), outputs=(("x", []),)),
        }

    def signature_def(self, name):
        if name not in self.signatures:
            raise ServingError(grpc.StatusCode.NOT_FOUND, f"no signature {name}")
        return self.signatures[name]

    def predict(self, name, inputs, output_filter=()):
        texts = [t.decode() for t in inputs["text"].numpy()] if "text" in inputs else []
        self.calls.append(texts)
        self.started.set()
        if self.gate is not None:
            assert self.gate.wait(10)
        if self.delay:
            time.sleep(self.delay)
        if "boom" in texts:
            raise invalid_argument("model rejected the value boom")
        if name == "count":
            return {"n": np.array([len(texts)], np.int64)}
        if name == "nothing":
            return {"x": np.array(7, np.int64)}
        out = {"length": np.array([len(t) for t in texts], np.int64), "upper": np.array([t.upper() for t in texts])}
        return {k: v for k, v in out.items() if not output_filter or k in output_filter}


def texts_in(out):
    return [u.decode() if isinstance(u, bytes) else str(u) for u in out["upper"]]


def request(batcher, servable, texts, **kwargs):
    return batcher.predict(servable, "serving_default", {"text": tf.constant(texts)}, **kwargs)


@pytest.fixture
def batcher_factory():
    made = []

    def make(**options):
        metrics = options.pop("metrics", None)
        batcher = Batcher(BatchingOptions(**options), metrics=metrics)
        made.append(batcher)
        return batcher

    yield make
    for batcher in made:
        batcher.close()


def hold_the_thread(batcher, servable):
    """Blocks the (single) batch thread in a call of ["hold"]; returns (gate, future) of that request."""
    servable.gate = threading.Event()
    pool = ThreadPoolExecutor(1)
    future = pool.submit(request, batcher, servable, ["hold"])
    assert servable.started.wait(10)
    pool.shutdown(wait=False)
    return servable.gate, future


# ----------------------------------------------------------------------------------------- options
def test_options_defaults_and_tf_serving_checks(tmp_path):
    from kerasbert.serving import protos

    defaults = BatchingOptions.from_proto(protos.BatchingParameters())
    assert (defaults.max_batch_size, defaults.batch_timeout_micros, defaults.max_enqueued_batches) == (1000, 0, 10)
    assert defaults.enable_large_batch_splitting is False and defaults.max_execution_batch_size == 1000
    with pytest.raises(ValueError, match="Last entry in allowed_batch_sizes must match max_batch_size"):
        BatchingOptions(max_batch_size=8, allowed_batch_sizes=(2, 4))
    with pytest.raises(ValueError, match="increasing"):
        BatchingOptions(max_batch_size=8, allowed_batch_sizes=(4, 2, 8))
    with pytest.raises(ValueError, match="num_batch_threads"):
        BatchingOptions(num_batch_threads=0)
    text = "max_batch_size { value: 64 } enable_large_batch_splitting { value: true }"
    split = BatchingOptions.from_proto(protos.parse_text(text, protos.BatchingParameters))
    assert split.max_execution_batch_size == 64  # unset: max_batch_size, as bundle_factory_util.h


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "kerasbert.serve", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    "text, needle",
    [
        ("max_batch_size { value: 8 } allowed_batch_sizes: 4", "Last entry in allowed_batch_sizes"),
        ("max_batch_size: 8", "is not a text-format BatchingParameters"),
        ("num_batch_threads { value: 0 }", "num_batch_threads must be positive"),
    ],
)
def test_bad_batching_file_is_a_one_line_flag_error(tmp_path, text, needle):
    path = tmp_path / "batching.txt"
    path.write_text(text)
    result = run_cli("--model_base_path", str(tmp_path), "--enable_batching", "--batching_parameters_file", str(path))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--batching_parameters_file" in lines[0] and needle in lines[0], lines


def test_batching_file_without_enable_batching_is_refused(tmp_path):
    path = tmp_path / "batching.txt"
    path.write_text("max_batch_size { value: 8 }")
    result = run_cli("--model_base_path", str(tmp_path), "--batching_parameters_file", str(path))
    assert result.returncode == 2 and "without --enable_batching" in result.stderr


# ------------------------------------------------------------------------------------ the batcher
def test_concurrent_requests_are_merged_and_split_back(batcher_factory):
    metrics = Metrics()
    batcher = batcher_factory(max_batch_size=32, batch_timeout_micros=30_000, num_batch_threads=1, metrics=metrics)
    servable = ScriptedServable(delay=0.02)
    groups = [[f"t{i}-{j}" for j in range(1 + i % 4)] for i in range(24)]
    barrier = threading.Barrier(len(groups))

    def one(texts):
        barrier.wait(10)
        return request(batcher, servable, texts)

    with ThreadPoolExecutor(len(groups)) as pool:
        outs = list(pool.map(one, groups))
    for texts, out in zip(groups, outs):
        assert texts_in(out) == [t.upper() for t in texts]
        assert out["length"].tolist() == [len(t) for t in texts]
    sizes = [len(c) for c in servable.calls]
    assert sum(sizes) == sum(map(len, groups)) and max(sizes) <= 32
    assert len(servable.calls) <= len(groups) // 3, sizes  # merged: far fewer calls than requests
    text = metrics.exposition().decode()
    assert f'processed_batch_size_count{{model_name="scripted"}} {float(len(sizes))}' in text
    assert f'processed_batch_size_sum{{model_name="scripted"}} {float(sum(sizes))}' in text
    assert 'queuing_latency_count{model_name="scripted"} 24.0' in text


def test_output_filter_and_input_layout_split_queues(batcher_factory):
    batcher = batcher_factory(max_batch_size=8, batch_timeout_micros=50_000, num_batch_threads=1)
    servable = ScriptedServable()
    with ThreadPoolExecutor(2) as pool:
        a = pool.submit(request, batcher, servable, ["a"], output_filter=["length"])
        b = pool.submit(request, batcher, servable, ["bb"])
        assert list(a.result(10)) == ["length"] and a.result()["length"].tolist() == [1]
        assert texts_in(b.result(10)) == ["BB"]
    assert sorted(servable.calls) == [["a"], ["bb"]]  # different output filters never share a call


def test_queue_full_is_unavailable_at_once(batcher_factory):
    batcher = batcher_factory(max_batch_size=2, max_enqueued_batches=1, num_batch_threads=1)
    servable = ScriptedServable()
    gate, held = hold_the_thread(batcher, servable)
    with ThreadPoolExecutor(1) as pool:
        queued = pool.submit(request, batcher, servable, ["q1", "q2"])  # fills the one allowed batch
        time.sleep(0.1)
        start = time.monotonic()
        with pytest.raises(ServingError) as info:
            request(batcher, servable, ["late"])
        assert info.value.code == grpc.StatusCode.UNAVAILABLE and "queue" in info.value.message
        assert time.monotonic() - start < 0.5
        gate.set()
        assert texts_in(queued.result(10)) == ["Q1", "Q2"] and texts_in(held.result(10)) == ["HOLD"]
    assert ["late"] not in servable.calls
    assert texts_in(request(batcher, servable, ["after"])) == ["AFTER"]  # still serving


def test_allowed_batch_sizes_pad_and_padding_rows_are_dropped(batcher_factory):
    batcher = batcher_factory(max_batch_size=8, allowed_batch_sizes=(4, 8), num_batch_threads=1)
    servable = ScriptedServable()
    out = request(batcher, servable, ["a", "bb", "ccc"])
    assert servable.calls[-1] == ["a", "bb", "ccc", "a"]  # padded to 4 with a copy of a row
    assert texts_in(out) == ["A", "BB", "CCC"] and out["length"].tolist() == [1, 2, 3]
    out = request(batcher, servable, ["x"] * 5)
    assert len(servable.calls[-1]) == 8 and len(out["length"]) == 5


def test_large_requests_split_or_invalid_argument(batcher_factory):
    plain = batcher_factory(max_batch_size=4, num_batch_threads=1)
    servable = ScriptedServable()
    with pytest.raises(ServingError) as info:
        request(plain, servable, list("abcde"))
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.message == "Task size 5 is larger than maximum input batch size 4"
    assert servable.calls == []

    split = batcher_factory(
        max_batch_size=10, enable_large_batch_splitting=True, max_execution_batch_size=4, num_batch_threads=1
    )
    texts = [c * (i + 1) for i, c in enumerate("abcdefghij")]
    out = request(split, servable, texts)
    assert texts_in(out) == [t.upper() for t in texts] and out["length"].tolist() == list(range(1, 11))
    assert [len(c) for c in servable.calls] == [4, 4, 2]
    with pytest.raises(ServingError) as info:
        request(split, servable, ["x"] * 11)
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_expired_deadline_is_answered_and_not_run(batcher_factory):
    batcher = batcher_factory(max_batch_size=8, num_batch_threads=1)
    servable = ScriptedServable()
    with pytest.raises(ServingError) as info:
        request(batcher, servable, ["past"], deadline=time.monotonic() - 1)
    assert info.value.code == grpc.StatusCode.DEADLINE_EXCEEDED and servable.calls == []
    gate, held = hold_the_thread(batcher, servable)
    start = time.monotonic()
    with pytest.raises(ServingError) as info:
        request(batcher, servable, ["expires"], deadline=time.monotonic() + 0.2)
    assert info.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert 0.15 < time.monotonic() - start < 1.0  # answered at its deadline, not when the thread frees
    gate.set()
    assert texts_in(held.result(10)) == ["HOLD"]
    assert texts_in(request(batcher, servable, ["next"])) == ["NEXT"]
    assert not any("expires" in c for c in servable.calls)  # never run


def test_one_bad_request_does_not_fail_its_batch(batcher_factory):
    batcher = batcher_factory(max_batch_size=8, batch_timeout_micros=50_000, num_batch_threads=1)
    servable = ScriptedServable()
    barrier = threading.Barrier(3)

    def one(texts):
        barrier.wait(10)
        try:
            return texts_in(request(batcher, servable, texts))
        except ServingError as exc:
            return exc.code

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(one, [["ok1"], ["boom"], ["ok2"]]))
    assert results == [["OK1"], grpc.StatusCode.INVALID_ARGUMENT, ["OK2"]]


def test_signatures_without_a_batch_dimension_bypass(batcher_factory):
    batcher = batcher_factory(max_batch_size=8, batch_timeout_micros=50_000, num_batch_threads=1)
    servable = ScriptedServable()
    assert batcher.predict(servable, "nothing", {})["x"].tolist() == 7
    with ThreadPoolExecutor(2) as pool:
        counts = list(
            pool.map(lambda t: batcher.predict(servable, "count", {"text": tf.constant(t)}), [["a"], ["b", "c"]])
        )
    assert [c["n"].tolist() for c in counts] == [[1], [2]]  # each its own call
    assert sorted(servable.calls) == [[], ["a"], ["b", "c"]]
    with pytest.raises(ServingError) as info:
        batcher.predict(servable, "nah", {"text": tf.constant(["a"])})
    assert info.value.code == grpc.StatusCode.NOT_FOUND


# ---------------------------------------------------------------- a real kerasbert NER export
@pytest.fixture(scope="module")
def ner_export(tmp_path_factory):
    """A tiny real-encoder kerasbert NER export (serving_default = entities, tokens = per-WordPiece tags)."""
    from test_tagging_export import CASES, export, fake_tagger

    base = tmp_path_factory.mktemp("ner") / "ner"
    export(base / "1", fake_tagger())
    texts = [text for text, _ in CASES.values()] + ["", "the the the", "John Smith went to Paris and New York"]
    return base, texts


def assert_same(got, alone):
    assert sorted(got) == sorted(alone)
    for key in alone:
        assert got[key].shape == alone[key].shape, key
        if alone[key].dtype.kind == "f":
            np.testing.assert_allclose(got[key], alone[key], atol=1e-6, err_msg=key)
        else:
            assert got[key].tolist() == alone[key].tolist(), key


def test_merged_ner_outputs_equal_running_alone(ner_export, batcher_factory):
    from kerasbert.serving.servable import Servable

    base, texts = ner_export
    servable = Servable.load("ner", 1, str(base / "1"))
    groups = [texts[i : i + 1 + i % 3] for i in range(len(texts))]
    metrics = Metrics()
    batcher = batcher_factory(max_batch_size=64, batch_timeout_micros=50_000, num_batch_threads=1, metrics=metrics)
    for name in (contract.SERVING_DEFAULT, contract.TOKENS_SIGNATURE):
        alone = [servable.predict(name, {"text": tf.constant(g)}) for g in groups]
        if name == contract.SERVING_DEFAULT:
            assert sum(len(w[contract.ENTITY_LABELS][0]) for w in alone) > 3  # the texts do have entities
        barrier = threading.Barrier(len(groups))

        def one(group, name=name, barrier=barrier):
            barrier.wait(10)
            return batcher.predict(servable, name, {"text": tf.constant(group)})

        with ThreadPoolExecutor(len(groups)) as pool:
            merged = list(pool.map(one, groups))
        for got, want in zip(merged, alone):
            assert_same(got, want)
    text = metrics.exposition().decode()
    count = float(text.split('processed_batch_size_count{model_name="ner"} ')[1].split()[0])
    assert count <= len(groups)  # two signatures x len(groups) requests, merged into at most half as many calls


def test_real_server_batches_concurrent_grpc_requests(ner_export, tmp_path):
    from kerasbert.serving.servable import Servable

    base, texts = ner_export
    params = tmp_path / "batching.txt"
    params.write_text(
        "max_batch_size { value: 16 } batch_timeout_micros { value: 20000 } max_enqueued_batches { value: 50 }\n"
        "num_batch_threads { value: 1 } allowed_batch_sizes: 8 allowed_batch_sizes: 16\n"
    )
    servable = Servable.load("ner", 1, str(base / "1"))
    groups = [texts[i : i + 1 + i % 4] for i in range(len(texts))] * 3
    alone = [servable.predict("serving_default", {"text": tf.constant(g)}) for g in groups]
    with running_server(
        model_base_path=base,
        model_name="ner",
        extra_args=["--enable_batching", "--batching_parameters_file", str(params), "--grpc_max_threads", "16"],
    ) as server:
        with server.channel() as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)

            def one(group):
                req = predict_pb2.PredictRequest()
                req.model_spec.name = "ner"
                req.inputs["text"].CopyFrom(tf.make_tensor_proto(group))
                response = stub.Predict(req, timeout=30)
                return {k: tf.make_ndarray(v) for k, v in response.outputs.items()}

            with ThreadPoolExecutor(12) as pool:
                got = list(pool.map(one, groups))
            big = predict_pb2.PredictRequest()
            big.model_spec.name = "ner"
            big.inputs["text"].CopyFrom(tf.make_tensor_proto(["a"] * 17))
            with pytest.raises(grpc.RpcError) as info:
                stub.Predict(big, timeout=30)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "larger than maximum input batch size 16" in info.value.details()
        for g, w in zip(got, alone):
            assert_same(g, w)
        assert "Batching enabled: max_batch_size=16" in server.log()
        assert server.proc.poll() is None


# ------------------------------------------------------------------------------------- benchmark
def test_bench_serving_quick_mode_writes_plausible_json(tmp_path):
    out = tmp_path / "serving_quick.json"
    png = tmp_path / "latency.png"
    result = subprocess.run(
        [sys.executable, "benchmarks/bench_serving.py", "--quick", "--seconds", "0.6", "--json", str(out)]
        + ["--plot", str(png)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    data = json.loads(out.read_text())
    machine = data["machine"]
    assert machine["cores"] >= 1 and machine["cpu"] and isinstance(machine["flags"], list)
    assert "load_before" in data and "load_after" in data and isinstance(data["loaded"], bool)
    model = data["models"]["tiny"]
    assert model["in_process"]["sentences_per_second"]["median"] > 0
    for mode in ("batching", "no_batching"):
        for level in data["concurrency"]:
            row = model["served"][mode][str(level)]
            assert row["sentences_per_second"]["median"] > 0 and row["errors"] == 0
            p50, p95, p99 = (row["latency_ms"][p]["median"] for p in ("p50", "p95", "p99"))
            assert 0 < p50 <= p95 <= p99 < 30_000
    for swap in (model["hot_swap"], model["hot_swap_no_batching"]):
        assert swap["p99_ms_baseline"] > 0 and swap["p99_ms_during_swaps"] > 0 and swap["errors"] == 0
        assert swap["rss_mb_before"] > 0 and swap["rss_mb_after"] > 0 and swap["swaps"] >= 1
    assert png.stat().st_size > 1000
