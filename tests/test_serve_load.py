"""A bounded load test: 32 client threads for 20 s against a real `kerasbert.serve` with batching and metrics on.

Each client sends 1-8 sentences per request (every eighth client over REST, the others over gRPC) and checks
every answer against the SavedModel called in this process. Passing means no request failed, every answer was
right, requests were merged into batches, and the metrics count exactly the requests sent. Traffic goes to
127.0.0.1 only, and the test stops itself after `LOAD_SECONDS`.
"""

from __future__ import annotations

import json
import random
import re
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from conftest import write_polarity_task
from serving_utils import REPO_ROOT, running_server

pytest.importorskip("tensorflow_text")
CLIENTS = 32
LOAD_SECONDS = 20


def _sentences(tmp_path) -> list[str]:
    lines = write_polarity_task(tmp_path / "probe.tsv", 64, seed=11).read_text().splitlines()[1:]
    return [line.split("\t")[0] for line in lines]


def _metric(text: str, name: str, **labels: str) -> float:
    """The value of sample `name` whose labels are exactly `labels` in a Prometheus text exposition."""
    for line in text.splitlines():
        match = re.fullmatch(r"([^{\s]+)\{(.*)\} (\S+)", line)
        if match and match.group(1) == name and dict(re.findall(r'(\w+)="([^"]*)"', match.group(2))) == labels:
            return float(match.group(3))
    return 0.0


def test_32_clients_for_20_seconds_without_a_failure(trained_export, tmp_path):
    sentences = _sentences(tmp_path)
    model = tf.saved_model.load(str(trained_export["export"]))
    expected = dict(
        zip(sentences, model.signatures["serving_default"](text=tf.constant(sentences))["labels"].numpy().tolist())
    )
    monitoring = tmp_path / "monitoring.config"
    monitoring.write_text('prometheus_config { enable: true path: "/metrics" }\n')
    batching = REPO_ROOT / "serving" / "batching_parameters.txt"
    name = trained_export["model_name"]
    flags = [
        "--enable_batching",
        "--batching_parameters_file",
        str(batching),
        "--monitoring_config_file",
        str(monitoring),
    ]

    with running_server(model_base_path=trained_export["base"], model_name=name, rest_api=True, extra_args=flags) as s:

        def client(index: int) -> dict:
            rng = random.Random(index)
            over_rest = index % 8 == 0
            stub = prediction_service_pb2_grpc.PredictionServiceStub(s.channel())
            stats = {"requests": 0, "rows": 0, "failures": [], "wrong": 0, "latencies": [], "rest": over_rest}
            stop = time.monotonic() + LOAD_SECONDS
            while time.monotonic() < stop:
                texts = rng.sample(sentences, rng.randint(1, 8))
                started = time.monotonic()
                try:
                    if over_rest:
                        body = json.dumps({"instances": [{"text": t} for t in texts]}).encode()
                        request = urllib.request.Request(
                            f"{s.rest_url}/v1/models/{name}:predict", body, {"Content-Type": "application/json"}
                        )
                        with urllib.request.urlopen(request, timeout=30) as response:
                            got = [p["labels"].encode() for p in json.loads(response.read())["predictions"]]
                    else:
                        request = predict_pb2.PredictRequest()
                        request.model_spec.name = name
                        request.inputs["text"].CopyFrom(tf.make_tensor_proto(np.array(texts, dtype=object)))
                        response = stub.Predict(request, timeout=30)
                        got = tf.make_ndarray(response.outputs["labels"]).tolist()
                except Exception as exc:  # counted, not raised: the test reports every failure at the end
                    stats["failures"].append(f"{type(exc).__name__}: {str(exc)[:200]}")
                    continue
                stats["latencies"].append(time.monotonic() - started)
                stats["requests"] += 1
                stats["rows"] += len(texts)
                stats["wrong"] += sum(g != expected[t] for g, t in zip(got, texts))
            return stats

        with ThreadPoolExecutor(CLIENTS) as pool:
            results = list(pool.map(client, range(CLIENTS)))
        with urllib.request.urlopen(f"{s.rest_url}/metrics", timeout=10) as response:
            metrics = response.read().decode()

    failures = [f for r in results for f in r["failures"]]
    requests = sum(r["requests"] for r in results)
    rows = sum(r["rows"] for r in results)
    latencies = sorted(x for r in results for x in r["latencies"])
    p50, p99 = latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99)]
    print(
        f"{CLIENTS} clients, {LOAD_SECONDS} s: {requests} requests ({rows} sentences, {rows / LOAD_SECONDS:.0f}/s), "
        f"p50 {p50 * 1e3:.0f} ms, p99 {p99 * 1e3:.0f} ms, failures {len(failures)}"
    )
    assert not failures, failures[:5]
    assert sum(r["wrong"] for r in results) == 0
    assert all(r["requests"] > 0 for r in results), "every client got answers"
    assert requests >= 10 * CLIENTS and p99 < 10
    # The Prometheus counts match what the clients sent, and requests were merged (fewer batches than requests).
    latency = ":tensorflow:serving:request_latency_count"
    predicts = _metric(metrics, latency, model_name=name, API="Predict", entrypoint="GRPC")
    rest = _metric(metrics, latency, model_name=name, API="predict", entrypoint="REST")
    assert predicts == sum(r["requests"] for r in results if not r["rest"])
    assert rest == sum(r["requests"] for r in results if r["rest"])
    batches = _metric(metrics, ":tensorflow:serving:batching_session:processed_batch_size_count", model_name=name)
    batched_rows = _metric(metrics, ":tensorflow:serving:batching_session:processed_batch_size_sum", model_name=name)
    assert batched_rows >= rows and 0 < batches < requests / 2, (batches, requests)
