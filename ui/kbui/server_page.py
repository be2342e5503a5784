"""The Server page: the served models with their versions and states (a picker), the chosen model's
signatures with input/output dtypes and shapes (``GetModelMetadata``), what the export says about
itself, and live request counts and latencies from the server's Prometheus endpoint (on the REST port,
when the server runs with ``--monitoring_config_file``).
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from typing import Any

import pandas as pd
import streamlit as st

from kbui import core

PREFIX = ":tensorflow:serving:"
_SAMPLE = re.compile(r"^(?P<name>[^\s{#]+)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
MONITORING_HINT = (
    "python -m kerasbert.serve --port {port} --rest_api_port {rest_port} --model_name {model} "
    "--model_base_path exports/{model} --monitoring_config_file serving/monitoring.config"
)


def parse_prometheus(text: str) -> list[tuple[str, dict[str, str], float]]:
    """The samples of a Prometheus text exposition: ``[(name, labels, value), ...]`` (comments skipped).

    >>> parse_prometheus('# TYPE x counter\\n:tensorflow:serving:request_count{model_name="m",status="OK"} 3.0')
    [(':tensorflow:serving:request_count', {'model_name': 'm', 'status': 'OK'}, 3.0)]
    """
    samples = []
    for line in text.splitlines():
        match = _SAMPLE.match(line.strip())
        if not match:
            continue
        try:
            value = float(match["value"])
        except ValueError:
            continue
        labels = {k: v.replace('\\"', '"').replace("\\\\", "\\") for k, v in _LABEL.findall(match["labels"] or "")}
        samples.append((match["name"], labels, value))
    return samples


def metric_model_names(text: str) -> list[str]:
    """The model names the metrics count requests for (``""``, unknown models, left out)."""
    names = {labels.get("model_name", "") for name, labels, _ in parse_prometheus(text) if name.startswith(PREFIX)}
    return sorted(names - {""})


def _quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """The ``q`` quantile of a cumulative histogram ``[(upper bound, count), ...]``, interpolated in its bucket
    (Prometheus' ``histogram_quantile``)."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return buckets[-1][0]


def request_table(text: str) -> pd.DataFrame:
    """Per model: requests counted by status (``:tensorflow:serving:request_count{model_name, status}``)."""
    counts: dict[str, dict[str, float]] = defaultdict(dict)
    for name, labels, value in parse_prometheus(text):
        if name == PREFIX + "request_count":
            counts[labels.get("model_name", "")][labels.get("status", "")] = value
    rows = [
        {
            "model": model or "(not served)",
            "requests": int(sum(statuses.values())),
            "ok": int(statuses.get("OK", 0)),
            "failed": ", ".join(f"{s} {int(v)}" for s, v in sorted(statuses.items()) if s != "OK") or "-",
        }
        for model, statuses in sorted(counts.items())
    ]
    return pd.DataFrame(rows, columns=["model", "requests", "ok", "failed"])


def latency_table(text: str) -> pd.DataFrame:
    """Per model, API and entry point: the successful requests' mean, p50 and p99 latency in milliseconds.

    From the ``:tensorflow:serving:request_latency`` histogram (microseconds); p50/p99 are interpolated in
    its buckets, as Prometheus' ``histogram_quantile`` does.
    """
    latency: dict[tuple[str, str, str], dict[str, Any]] = defaultdict(lambda: {"buckets": [], "sum": 0.0, "count": 0.0})
    for name, labels, value in parse_prometheus(text):
        if not name.startswith(PREFIX + "request_latency"):
            continue
        figures = latency[(labels.get("model_name", ""), labels.get("API", ""), labels.get("entrypoint", ""))]
        if name.endswith("_bucket"):
            figures["buckets"].append((float(labels.get("le", "+Inf").replace("+Inf", "inf")), value))
        elif name.endswith("_sum"):
            figures["sum"] += value
        elif name.endswith("_count"):
            figures["count"] += value
    rows = []
    for (model, api, entrypoint), figures in sorted(latency.items()):
        if not figures["count"]:
            continue
        p50, p99 = _quantile(figures["buckets"], 0.5), _quantile(figures["buckets"], 0.99)
        rows.append(
            {
                "model": model or "(not served)",
                "API": api or "-",
                "entry point": entrypoint or "-",
                "requests": int(figures["count"]),
                "mean ms": figures["sum"] / figures["count"] / 1000.0,
                "p50 ms": None if p50 is None else p50 / 1000.0,
                "p99 ms": None if p99 is None else p99 / 1000.0,
            }
        )
    return pd.DataFrame(rows, columns=["model", "API", "entry point", "requests", "mean ms", "p50 ms", "p99 ms"])


def signature_table(signatures: dict[str, Any]) -> pd.DataFrame:
    """One row per input and output of every signature: signature, kind, name, dtype and shape."""

    def shape(value: list[int | None] | None) -> str:
        if value is None:
            return "unknown rank"
        return "[" + ", ".join("?" if d is None else str(d) for d in value) + "]"

    rows = [
        {"signature": sig, "kind": kind[:-1], "name": name, "dtype": tensor["dtype"], "shape": shape(tensor["shape"])}
        for sig, parts in sorted(signatures.items())
        if not sig.startswith("__")  # __saved_model_init_op: no signature to call
        for kind in ("inputs", "outputs")
        for name, tensor in parts[kind].items()
    ]
    return pd.DataFrame(rows, columns=["signature", "kind", "name", "dtype", "shape"])


def server_page() -> None:
    ctx = core.page_context()
    page = core.spec("server")
    core.header(page)
    settings, info = ctx.settings, ctx.info
    if info.error is not None and not isinstance(info.error, core.kb.ModelNotFound):
        core.show_connection_error(ctx)
        return
    st.caption(
        f"gRPC at {settings.server} (TF Serving protocol)" + (f", REST at {settings.rest}" if settings.rest else "")
    )

    st.subheader("Models")
    table = pd.DataFrame(
        {
            "model": [m.name for m in ctx.served],
            "task": [m.task or f"({m.problem or '?'})" for m in ctx.served],
            "versions": [m.states for m in ctx.served],
            "base path": [m.base_path or "" for m in ctx.served],
        }
    )
    st.dataframe(table, hide_index=True, width="stretch", key="server_models")
    names = [m.name for m in ctx.served if m.problem != "not served"]
    if not settings.model_config:
        st.caption(
            "TF Serving has no call that lists its models: set the server's `--model_config_file` in the sidebar "
            f"(Advanced) or `${core.MODEL_CONFIG_ENV}` to list all of them here."
        )
    if names:
        st.selectbox(
            "Use model",
            names,
            index=names.index(settings.model) if settings.model in names else None,
            key="server_pick",
            on_change=lambda: core.pick_model(st.session_state["server_pick"]),
            format_func=lambda n: next(
                f"{m.name} ({m.task or 'no task'}, {m.states})" for m in ctx.served if m.name == n
            ),
        )
    show_metrics(ctx)
    if info.error is not None:  # the chosen model is not served: the rest is about that model
        core.show_connection_error(ctx)
    else:
        st.subheader(f"Signatures of '{settings.model}'")
        st.dataframe(signature_table(info.signatures), hide_index=True, width="stretch", key="server_signatures")
        if info.export is not None:
            with st.expander(f"What '{settings.model}' says about itself (its `metadata` signature)"):
                export = info.export
                st.code(
                    json.dumps(
                        {"task": export.task, "task_config": export.task_config, "preprocessing": export.preprocessing,
                         "extra": export.extra},
                        indent=2, ensure_ascii=False, default=str,
                    ),
                    language="json",
                )  # fmt: skip


def show_metrics(ctx: core.PageContext) -> None:
    """Request counts and latencies per model from the Prometheus text (a refresh reruns the page)."""
    settings = ctx.settings
    left, right = st.columns([4, 1])
    left.subheader("Requests")
    right.button("Refresh", key="metrics_refresh")  # a click reruns the app, which reads the metrics again
    if ctx.metrics is None:
        _, rest_port = core.split_target(settings.rest) if settings.rest else ("", None)
        st.info(
            f"No metrics: {ctx.metrics_error}. Start the server with a REST port and Prometheus metrics, and "
            "set the REST address in the sidebar (Advanced):"
        )
        st.code(
            MONITORING_HINT.format(
                port=settings.port, rest_port=rest_port or int(settings.port) + 1, model=settings.model
            ),
            language="sh",
        )
        return
    requests, latency = request_table(ctx.metrics), latency_table(ctx.metrics)
    if requests.empty:
        st.caption(f"No requests counted yet at http://{settings.rest}{core.METRICS_PATH}.")
        return
    st.caption(
        f"Live from http://{settings.rest}{core.METRICS_PATH}: TF Serving's `request_count` (every request, by "
        "status) and `request_latency` (successful requests; p50/p99 interpolated in the histogram's buckets)."
    )
    st.dataframe(requests, hide_index=True, width="stretch", height=_fit(requests), key="server_requests")
    config = {c: st.column_config.NumberColumn(c, format="%.2f") for c in ("mean ms", "p50 ms", "p99 ms")}
    st.dataframe(
        latency, hide_index=True, width="stretch", height=_fit(latency), column_config=config, key="server_latency"
    )


def _fit(table: pd.DataFrame) -> int:
    """A dataframe height that shows every row (Streamlit's rows are 35 px, plus the header)."""
    return 35 * (len(table) + 1) + 3
