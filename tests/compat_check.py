"""Loads kerasbert exports and calls every signature, under whatever TF runs it.

Run with the python of any runtime (the project's, or an old TF + TF-Text
venv from `make compat`); it imports only `tensorflow` and
`tensorflow_text` (and the standard library), as stock TF Serving links
only TF and the tf-text ops. Not a pytest module: tests/test_compat_runtimes.py
runs it in fresh processes.

    python tests/compat_check.py record CASES.json > EXPECTED.json
    python tests/compat_check.py check EXPECTED.json

CASES.json: `{"exports": {KIND: {"path": DIR, "inputs": {"text": [...],
"text_pair": [...]}}}}`; each signature is called with the inputs it
takes (by name; the zero-input `metadata` signature with none).

`record` prints one JSON object: CASES plus, per export, `signatures`
(`{name: {"inputs": [names], "outputs": {key: {"dtype", "shape", "value"}}}}`)
and the runtime's versions.

`check` reads such a recording (made by another TF), loads each export
again, calls every signature and compares: the same signatures, input
names and output keys, dtypes and shapes; strings and integers exactly,
floats within `--atol` (1e-4). It prints one JSON line per export:
`{"kind", "path", "ok", "error", "mismatches", "runtime"}`, then a last line
`{"runtime", "leaked_modules"}`, and exits 0 even when an export fails (the
caller reads the lines), 2 on bad usage.
"""

import argparse
import json
import math
import sys
import traceback

import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the tf-text ops, as TF Serving links them)

RUNTIME = {"tensorflow": tf.__version__, "tensorflow_text": tensorflow_text.__version__}
# Packages a load must never need (the graph is TF core + tf-text ops only).
FORBIDDEN = ("kerasbert", "keras_hub", "keras_nlp")


def _decode(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _plain(tensor):
    shape = tensor.shape.as_list()
    value = tensor.numpy()  # an ndarray, a numpy scalar or (a scalar string) bytes
    value = value.tolist() if hasattr(value, "tolist") else value
    if tensor.dtype == tf.string:
        value = _decode(value)
    elif tensor.dtype.is_floating:
        value = _floats(value)
    return {"dtype": tensor.dtype.name, "shape": shape, "value": value}


def _floats(value):
    """Floats as JSON can carry them (NaN/inf as strings)."""
    if isinstance(value, list):
        return [_floats(v) for v in value]
    if math.isnan(value) or math.isinf(value):
        return repr(value)
    return value


def _input_names(fn):
    return sorted(fn.structured_input_signature[1])


def call_all(path, inputs):
    """`{signature: {"inputs": [...], "outputs": {key: plain}}}` for every
    signature of the SavedModel at `path`."""
    model = tf.saved_model.load(path)
    results = {}
    for name in sorted(model.signatures):
        fn = model.signatures[name]
        names = _input_names(fn)
        missing = [n for n in names if n not in inputs]
        if missing:
            raise KeyError(f"signature {name!r} takes {missing}, which the cases do not give")
        args = {n: tf.constant(inputs[n], tf.string) for n in names}
        out = fn(**args)
        results[name] = {"inputs": names, "outputs": {k: _plain(v) for k, v in sorted(out.items())}}
    return results


def _compare(expected, got, atol, where, mismatches, limit=20):
    """Appends differences between two plain values to `mismatches`."""
    if len(mismatches) >= limit:
        return
    if isinstance(expected, list) or isinstance(got, list):
        if not (isinstance(expected, list) and isinstance(got, list)) or len(expected) != len(got):
            mismatches.append(f"{where}: expected {_short(expected)}, got {_short(got)}")
            return
        for i, (e, g) in enumerate(zip(expected, got)):
            _compare(e, g, atol, f"{where}[{i}]", mismatches, limit)
        return
    if isinstance(expected, float) and isinstance(got, float):
        if not abs(expected - got) <= atol:
            mismatches.append(f"{where}: expected {expected!r}, got {got!r} (|diff| > {atol})")
    elif expected != got or type(expected) is not type(got):
        mismatches.append(f"{where}: expected {_short(expected)}, got {_short(got)}")


def _short(value, width=200):
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= width else text[:width] + "..."


def compare_signatures(expected, got, atol):
    """Differences between a recording's signatures and this runtime's."""
    mismatches = []
    if sorted(expected) != sorted(got):
        mismatches.append(f"signatures: expected {sorted(expected)}, got {sorted(got)}")
    for name in sorted(set(expected) & set(got)):
        exp, out = expected[name], got[name]
        if exp["inputs"] != out["inputs"]:
            mismatches.append(f"{name} inputs: expected {exp['inputs']}, got {out['inputs']}")
        if sorted(exp["outputs"]) != sorted(out["outputs"]):
            mismatches.append(f"{name} outputs: expected {sorted(exp['outputs'])}, got {sorted(out['outputs'])}")
        for key in sorted(set(exp["outputs"]) & set(out["outputs"])):
            e, g = exp["outputs"][key], out["outputs"][key]
            where = f"{name}.{key}"
            for field in ("dtype", "shape"):
                if e[field] != g[field]:
                    mismatches.append(f"{where} {field}: expected {e[field]}, got {g[field]}")
            if e["dtype"] == g["dtype"] and e["shape"] == g["shape"]:
                _compare(e["value"], g["value"], atol, where, mismatches)
    return mismatches


def _error(exc):
    """The exception's type and message (TF's load errors are long: keep the
    head, which names the op, and the tail)."""
    text = f"{type(exc).__name__}: {exc}".strip()
    if len(text) > 4000:
        text = text[:3000] + "\n...\n" + text[-800:]
    return text


def record(cases):
    out = {"runtime": RUNTIME, "exports": {}}
    for kind, case in cases["exports"].items():
        out["exports"][kind] = {**case, "signatures": call_all(case["path"], case["inputs"])}
    return out


def check(recording, atol):
    lines = []
    for kind, case in recording["exports"].items():
        line = {"kind": kind, "path": case["path"], "ok": False, "error": None, "mismatches": [], "runtime": RUNTIME}
        try:
            got = call_all(case["path"], case["inputs"])
        except Exception as e:  # a load or call failure is this export's result
            line["error"] = _error(e)
            line["traceback"] = traceback.format_exc()[-3000:]
        else:
            line["mismatches"] = compare_signatures(case["signatures"], got, atol)
            line["ok"] = not line["mismatches"]
        lines.append(line)
    return lines


def leaked_modules():
    return sorted(m for m in sys.modules if m.split(".")[0] in FORBIDDEN)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("record", "check"))
    parser.add_argument("json_file", help="CASES.json (record) or a recording (check)")
    parser.add_argument("--atol", type=float, default=1e-4, help="float tolerance (default 1e-4)")
    args = parser.parse_args(argv)
    with open(args.json_file, encoding="utf-8") as f:
        data = json.load(f)
    if args.mode == "record":
        result = record(data)
        result["leaked_modules"] = leaked_modules()
        print(json.dumps(result, ensure_ascii=False))
    else:
        for line in check(data, args.atol):
            print(json.dumps(line, ensure_ascii=False), flush=True)
        print(json.dumps({"runtime": RUNTIME, "leaked_modules": leaked_modules()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
