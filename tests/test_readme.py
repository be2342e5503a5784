"""Every command shown in README.md is run by a test, on a small slice of data.

`test_every_readme_command_is_covered` parses README.md: each ```bash block
(`\\` continuations joined, comments dropped, one command a line) and each
```python block. Every bash command must be either run by this file (`RUN`:
command prefix -> the test here that runs it) or listed in `ELSEWHERE` with the
test that runs it and why. A command in neither fails with a message saying
what to do; a key that matches no README command fails too (stale entry).

The commands run as the README writes them, from one module-scoped folder
(`work`, the current directory while they run), with only:

* path substitutions: `path/to/bert_folder`, `path/to/all-MiniLM-L6-v2` -> the
  folder `../shared/tools/minilm-checkpoint` prints; `../shared/...` -> the real
  `../shared` (dev files -> their first rows, copied into `work`); `corpus/*.txt`,
  `train.tsv`, `dev.tsv` -> files prepared in `work`; `runs/...`, `exports/...`,
  `vocab.txt` -> what earlier commands wrote there; `ui/app.py` and
  `serving/run_tf_serving.sh` run from the repo, the script with `EXPORT_DIR=work/exports`
  (and `GRPC_PORT`/`REST_PORT`, its documented variables, for the ports);
* `--port 8500` / `localhost:8500` / `--rest_api_port 8501` -> free loopback ports (the same
  to the client and to the snippets' `Client("localhost:8500", ...)`);
* small-slice flags appended (argparse keeps the last value), see `FINETUNE_SLICE`
  and `PRETRAIN_SLICE`.

train/export/client commands run in-process (`kerasbert.train.main`,
`kerasbert.export.cli.run`, `kerasbert.client.cli.main`) through
`kerasbert.cli.run`, as their `__main__` does; `kerasbert.serve` and
`streamlit run` are real subprocesses on free ports.
"""

from __future__ import annotations

import ast
import contextlib
import glob
import io
import json
import math
import os
import re
import shlex
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import REPO, minilm_checkpoint, shared_path, write_polarity_task
from serving_utils import _all_available, free_port, stop_process

README = REPO / "README.md"

# Appended to fine-tuning commands (argparse keeps the last value).
FINETUNE_SLICE = [
    "--max_train_examples",
    "64",
    "--epochs",
    "1",
    "--batch_size",
    "16",
    "--sequence_length",
    "32",
    "--max_dev_examples",  # of the DEV_ROWS rows each dev file is cut to: the flag's effect is checked below
    "24",
    "--quiet",
]
PRETRAIN_SLICE = ["--num_train_steps", "20", "--num_warmup_steps", "2", "--max_seq_length", "32", "--log_steps", "1000"]
DEV_ROWS = 40  # dev files are cut to their first rows (sentences for CoNLL/BMES)

# README bash command (exact, or a prefix of it) -> the test in this file that runs it.
RUN = {
    "make run": "test_make_run_then_export_snippet",
    "make notebook": "test_make_notebook_opens_jupyterlab_on_the_notebooks",
    "python -m kerasbert.serve --port 8500 --model_name kerasbert": "test_quick_start_serve_and_ui",
    "streamlit run ui/app.py": "test_quick_start_serve_and_ui",
    "python -m kerasbert.train --train_file ../shared/data/glue_sst2/train.tsv": "test_glue_and_serve_config",
    "python -m kerasbert.export --run_dir runs/sst2": "test_glue_and_serve_config",
    "KERASBERT_SERVE=1 serving/run_tf_serving.sh": "test_glue_and_serve_config",
    "python -m kerasbert.train --task regression": "test_glue_and_serve_config",
    "python -m kerasbert.train --no_header": "test_cola",
    "python -m kerasbert.train --task token_classification --train_file": "test_conll_serve_client_and_snippet",
    "python -m kerasbert.serve --port 8500 --model_name conll": "test_conll_serve_client_and_snippet",
    "python -m kerasbert.client --server localhost:8500 --model conll": "test_conll_serve_client_and_snippet",
    "python -m kerasbert.train --task token_classification --format bmes": "test_resume_bmes",
    "python -m kerasbert.train --task question_answering": "test_squad_serve_client_and_snippet",
    "python -m kerasbert.serve --port 8500 --model_name squad": "test_squad_serve_client_and_snippet",
    "python -m kerasbert.client --server localhost:8500 --model squad": "test_squad_serve_client_and_snippet",
    "python -m kerasbert.export --init_checkpoint": "test_embedding_export_serve_and_snippet",
    "python -m kerasbert.serve --port 8500 --model_name minilm": "test_embedding_export_serve_and_snippet",
    "python -m kerasbert.train vocab --input_files corpus/*.txt": "test_pretraining_chain_and_finetune_snippet",
    "python -m kerasbert.train pretrain --input_files corpus/*.txt": "test_pretraining_chain_and_finetune_snippet",
    "python -m kerasbert.train --init_checkpoint runs/bert/pretrained": "test_pretraining_chain_and_finetune_snippet",
    "python -m kerasbert.serve --port 8500 --rest_api_port 8501": "test_serve_rest_client_and_ui",
    "python -m kerasbert.client --server localhost:8500 --model kerasbert": "test_serve_rest_client_and_ui",
    "python -m kerasbert.client --server http://localhost:8501 --model kerasbert": "test_serve_rest_client_and_ui",
    "KERASBERT_SERVER=localhost:8500 KERASBERT_MODEL=kerasbert streamlit run": "test_serve_rest_client_and_ui",
}

# README bash command (exact, or a prefix) -> where it is run instead, and why not here.
ELSEWHERE = {
    "make test": "CI itself (.ci/run runs the same pytest); it runs this file",
}

# README python block (a line unique to it) -> the test in this file that runs it.
PYTHON_RUN = {
    "from kerasbert.training.finetune import FinetuneConfig": "test_pretraining_chain_and_finetune_snippet",
    'Client("localhost:8500", model_name="conll")': "test_conll_serve_client_and_snippet",
    'Client("localhost:8500", model_name="squad")': "test_squad_serve_client_and_snippet",
    'Client("localhost:8500", model_name="minilm")': "test_embedding_export_serve_and_snippet",
    'tf.saved_model.load("exports/kerasbert/1")': "test_make_run_then_export_snippet",
    'Client("localhost:8500", model_name="kerasbert")': "test_serve_rest_client_and_ui",
    'Client("http://localhost:8501", model_name="kerasbert"': "test_serve_rest_client_and_ui",
}


# -- README parsing ---------------------------------------------------------------------------


def readme_blocks(lang):
    """The bodies of README.md's fenced code blocks tagged `lang`."""
    text = README.read_text(encoding="utf-8")
    return [body for tag, body in re.findall(r"^```(\w*)[ \t]*\n(.*?)^```", text, re.M | re.S) if tag == lang]


def readme_commands():
    """Every bash command in README.md as a list of shell words (continuations joined, comments dropped)."""
    commands = []
    for body in readme_blocks("bash"):
        for line in re.sub(r"\\\n", " ", body).splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append(words)
    return commands


def _matches(key, words):
    text = " ".join(words)
    return text == key or text.startswith(key + " ")


def readme_command(key):
    """The one README command that `key` (a `RUN` key) names, as shell words."""
    found = [words for words in readme_commands() if _matches(key, words)]
    assert len(found) == 1, f"README.md has {len(found)} commands starting with {key!r}; update RUN in {__file__}"
    return found[0]


def readme_python(marker):
    """The one README python block containing `marker`."""
    found = [body for body in readme_blocks("python") if marker in body]
    assert len(found) == 1, f"README.md has {len(found)} python blocks with {marker!r}; update PYTHON_RUN"
    return found[0]


def test_every_readme_command_is_covered():
    uncovered, twice = [], []
    for words in readme_commands():
        keys = [k for k in (*RUN, *ELSEWHERE) if _matches(k, words)]
        if not keys:
            uncovered.append(" ".join(words))
        elif len(keys) > 1:
            twice.append(f"{' '.join(words)!r} <- {keys}")
    assert not uncovered, (
        "README.md commands that no test runs (a README command that crashes is the worst bug we can ship): "
        f"{uncovered}. Run each in tests/test_readme.py (add it to RUN and to a test that runs it as written, "
        "on a small slice), or add it to ELSEWHERE with the test that runs it and why."
    )
    assert not twice, f"README commands matched by more than one RUN/ELSEWHERE key: {twice}"
    for key in (*RUN, *ELSEWHERE):
        assert any(_matches(key, w) for w in readme_commands()), f"{key!r} matches no README.md command: remove it"
    for key, test in {**RUN, **PYTHON_RUN}.items():
        assert callable(globals().get(test)), f"{key!r} names {test}, which is not a test in this file"
    for body in readme_blocks("python"):
        markers = [m for m in PYTHON_RUN if m in body]
        assert len(markers) == 1, (
            f"README.md python block not run by a test here (add a line unique to it to PYTHON_RUN and run it):\n{body}"
        )


def test_readme_parsing():
    """Continuations are joined and trailing comments dropped."""
    commands = [" ".join(w) for w in readme_commands()]
    assert "make run" in commands and "streamlit run ui/app.py" in commands
    sst2 = readme_command("python -m kerasbert.train --train_file ../shared/data/glue_sst2/train.tsv")
    assert sst2[-2:] == ["--model_name", "sst2"] and "\\" not in sst2
    assert [
        "python",
        "-m",
        "kerasbert.client",
        "--server",
        "localhost:8500",
        "--model",
        "conll",
        "--entities",
        "Angela Merkel flew to Paris.",
    ] in readme_commands()


# -- running commands -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm():
    return str(minilm_checkpoint())


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """The folder the commands run in: corpus/*.txt, train.tsv, dev.tsv (what the README's
    pretraining section and FinetuneConfig snippet read)."""
    return _prepare(tmp_path_factory.mktemp("readme"))


def _prepare(root):
    write_polarity_task(root / "train.tsv", 64, seed=1)
    write_polarity_task(root / "dev.tsv", 32, seed=2)
    sentences = [
        line.split("\t")[0]
        for line in write_polarity_task(root / "unlabelled.tsv", 400, seed=7).read_text().splitlines()[1:]
    ]
    (root / "corpus").mkdir()
    for part in range(2):  # BERT format: one sentence a line, blank line between documents
        docs = [sentences[i : i + 5] for i in range(part * 200, part * 200 + 200, 5)]
        (root / "corpus" / f"part-{part}.txt").write_text("\n\n".join("\n".join(d) for d in docs) + "\n")
    return root


@contextlib.contextmanager
def cwd(path):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def _head(src, dst, rows):
    """The first `rows` examples of a data file: lines (+ header), or blank-line-separated sentences."""
    lines = src.read_text(encoding="utf-8").splitlines()
    if any(not line.strip() for line in lines[:200]):  # CoNLL / one char a line: cut after `rows` sentences
        out, seen = [], 0
        for line in lines:
            out.append(line)
            if not line.strip() and out[:-1] and out[-2].strip() and not out[-2].startswith("-DOCSTART-"):
                seen += 1
                if seen >= rows:
                    break
    else:
        out = lines[: rows + 1]
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text("\n".join(out) + "\n", encoding="utf-8")
    return dst


def substitute(words, work, minilm=None, ports=None):
    """The README's shell words with the path/port substitutions this file makes (see module doc)."""
    out = []
    for i, word in enumerate(words):
        previous = words[i - 1] if i else ""
        if word.startswith("path/to/"):
            assert minilm, f"{word}: this test needs the minilm fixture"
            word = minilm
        elif word.startswith("../shared/"):
            real = shared_path(*Path(word).parts[2:])
            if previous == "--dev_file" and real.suffix != ".json":  # SQuAD JSON: the test picks articles
                word = str(_head(real, work / "shared_slice" / Path(word).relative_to("../shared"), DEV_ROWS))
            else:
                word = str(real)
        elif word.startswith("serving/"):  # the repo's deployment files (commands run in `work`)
            word = str(REPO / word)
        elif "*" in word:
            expanded = sorted(glob.glob(word, root_dir=work))
            assert expanded, f"{word} matches nothing in {work}"
            out += expanded
            continue
        elif ports and previous in ("--port", "--rest_api_port", "--server") or ports and "localhost:" in word:
            for readme_port, port in ports.items():
                word = word.replace(str(readme_port), str(port))
        out.append(word)
    return out


def in_process(words, *extra):
    """Runs a `python -m kerasbert.{train,export,client}` command in-process; returns its exit code."""
    from kerasbert import cli

    assert words[:2] == ["python", "-m"], words
    argv = [str(w) for w in [*words[3:], *extra]]
    module = words[2]
    if module == "kerasbert.train":
        from kerasbert import train

        return cli.run(train.main, argv)
    if module == "kerasbert.export":
        from kerasbert.export import cli as export_cli

        return export_cli.run(argv)
    if module == "kerasbert.client":
        from kerasbert.client import cli as client_cli

        return client_cli.main(argv)
    raise AssertionError(f"not an in-process command: {words}")


def run_readme(key, work, *extra, minilm=None, ports=None):
    """The README command `key` names, substituted and run in `work` with `extra` flags appended."""
    words = substitute(readme_command(key), work, minilm=minilm, ports=ports)
    started = time.monotonic()
    with cwd(work):
        code = in_process(words, *extra)
    print(f"[{time.monotonic() - started:5.1f}s] {shlex.join(words + list(extra))}", file=sys.stderr)
    assert code == 0, f"README command failed with exit code {code}: {' '.join(readme_command(key))}"


def results(work, run):
    data = json.loads((work / "runs" / run / "results.json").read_text())
    metrics = data["dev_metrics"]
    assert metrics and all(math.isfinite(v) for v in _numbers(metrics)), metrics
    return data


def _numbers(tree):
    if isinstance(tree, dict):
        for v in tree.values():
            yield from _numbers(v)
    elif isinstance(tree, (int, float)) and not isinstance(tree, bool):
        yield float(tree)


def export_version(work, name, version):
    path = work / "exports" / name / str(version)
    assert (path / "saved_model.pb").exists(), f"no export at {path}: {sorted((work / 'exports').rglob('*'))[:20]}"
    return json.loads((path / "assets.extra" / "kerasbert.json").read_text())


def split_env(words):
    """`VAR=value ... command` -> ({VAR: value}, command words)."""
    env = {}
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
        name, value = words[0].split("=", 1)
        env[name] = value
        words = words[1:]
    return env, words


@contextlib.contextmanager
def readme_server(key, work, timeout=120):
    """Starts the README's serving command `key` (`python -m kerasbert.serve ...` in `work`, or
    `serving/run_tf_serving.sh` from the repo with EXPORT_DIR=work/exports) on free ports.

    Yields `(address, ports)`: `ports` maps the README's port numbers to the ones used, for
    `substitute(..., ports=)`.
    """
    from serving_utils import _config_model_names

    env, words = split_env(readme_command(key))
    ports = {}
    if words[0] == "serving/run_tf_serving.sh":  # gRPC 8500, REST 8501 unless GRPC_PORT/REST_PORT
        ports = {8500: free_port(), 8501: free_port()}
        env.update(EXPORT_DIR=str(work / "exports"), GRPC_PORT=str(ports[8500]), REST_PORT=str(ports[8501]))
        cmd, run_in = [str(REPO / words[0]), *words[1:]], REPO
        names = [words[1]] if len(words) > 1 else _config_model_names(REPO / "serving" / "models.config")
    else:
        assert words[:3] == ["python", "-m", "kerasbert.serve"], words
        for flag in ("--port", "--rest_api_port"):
            if flag in words:
                ports[int(words[words.index(flag) + 1])] = free_port()
        words = substitute(words, work, ports=ports)
        cmd, run_in = [sys.executable, *words[1:]], work
        names = [words[words.index("--model_name") + 1]]
    log = work / f"serve-{ports[8500]}.log"
    started = time.monotonic()
    with open(log, "w") as out:  # its own process group: the script's server child goes with it
        proc = subprocess.Popen(
            cmd,
            cwd=run_in,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
        )
    address = f"127.0.0.1:{ports[8500]}"
    try:
        import grpc

        with grpc.insecure_channel(address) as channel:
            while not _all_available(channel, names):
                assert proc.poll() is None, (
                    f"README command exited with code {proc.returncode}: {' '.join(readme_command(key))}\n"
                    f"{log.read_text()[-3000:]}"
                )
                assert time.monotonic() - started < timeout, f"not serving after {timeout}s:\n{log.read_text()[-3000:]}"
                time.sleep(0.2)
        print(f"[{time.monotonic() - started:5.1f}s] serving {names}: {env} {shlex.join(cmd)}", file=sys.stderr)
        yield address, ports
    finally:
        proc.terminate()  # run_tf_serving.sh traps TERM and stops its server gracefully
        _end_group(proc)


def _end_group(proc):
    """Waits for `proc` (started with `start_new_session=True`), then SIGKILLs whatever of its group is left."""
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait()
    with contextlib.suppress(ProcessLookupError):  # nothing of the group may outlive the test
        os.killpg(proc.pid, 0)
        time.sleep(2)
        os.killpg(proc.pid, 9)


@contextlib.contextmanager
def readme_streamlit(key, timeout=60):
    """Starts the README's `[VAR=value ...] streamlit run ui/app.py` headless on a free port
    (from the repo, env vars as shown with `ports` applied) and yields the base URL."""
    words = readme_command(key)
    return_env, words = split_env(words)
    env = {**os.environ, **return_env}
    assert words[0] == "streamlit", words
    port = free_port()
    cmd = [
        str(Path(sys.executable).with_name("streamlit")),
        *words[1:],
        "--server.headless",
        "true",
        "--server.port",
        str(port),
        "--browser.gatherUsageStats",
        "false",
    ]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    try:
        while True:
            assert proc.poll() is None, f"streamlit exited with {proc.returncode}:\n{proc.stdout.read()[-3000:]}"
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        break
            assert time.monotonic() - started < timeout, "streamlit did not answer /_stcore/health"
            time.sleep(0.3)
        print(
            f"[{time.monotonic() - started:5.1f}s] streamlit healthy: {shlex.join(cmd)} {return_env}", file=sys.stderr
        )
        yield url, return_env
    finally:
        stop_process(proc)


class _Record(ast.NodeTransformer):
    """Turns every expression statement `e` into `_values.append(e)`."""

    def visit_Expr(self, node):
        call = ast.Call(ast.Attribute(ast.Name("_values", ast.Load()), "append", ast.Load()), [node.value], [])
        return ast.copy_location(ast.Expr(call), node)


def run_snippet(marker, work, address=None, rest_address=None):
    """Runs the README python block with `marker` in `work` (`localhost:8500` -> `address`, `localhost:8501`
    -> `rest_address`); returns the values of its expression statements, in order, and its namespace."""
    code = readme_python(marker)
    if address:
        code = code.replace("localhost:8500", address)
    if rest_address:
        code = code.replace("localhost:8501", rest_address)
    tree = ast.fix_missing_locations(_Record().visit(ast.parse(code)))
    namespace = {"_values": []}
    with cwd(work):
        exec(compile(tree, "README.md", "exec"), namespace)
    return namespace["_values"], namespace


# -- the commands -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def make_run(work):
    """`make run` is `python -m kerasbert.train $(ARGS)` in the venv (the Makefile)."""
    assert "$(PY) -m kerasbert.train $(ARGS)" in (REPO / "Makefile").read_text()
    readme_command("make run")
    started = time.monotonic()
    printed = io.StringIO()
    with cwd(work), contextlib.redirect_stdout(printed):
        code = in_process(["python", "-m", "kerasbert.train"], *FINETUNE_SLICE[:2], "--epochs", "1", "--quiet")
    print(f"[{time.monotonic() - started:5.1f}s] make run (python -m kerasbert.train)", file=sys.stderr)
    assert code == 0, printed.getvalue()[-3000:]
    # The README shows what it prints last.
    shown = re.search(r"^```\n(exported SavedModel: .*?)^```", README.read_text(), re.M | re.S).group(1)
    assert printed.getvalue().rstrip().endswith(shown.rstrip()), printed.getvalue()[-500:]
    return results(work, "kerasbert")


def test_make_run_then_export_snippet(make_run, work):
    assert set(make_run["dev_metrics"]) >= {"accuracy", "f1", "mcc"}
    assert export_version(work, "kerasbert", 1)["task"] == "classification"
    import tensorflow_text  # noqa: F401

    (labels, metadata), _ = run_snippet('tf.saved_model.load("exports/kerasbert/1")', work)
    assert labels.numpy().astype(str).tolist()[0] in ("negative", "positive")
    assert (
        json.loads(metadata.numpy().item() if hasattr(metadata.numpy(), "item") else metadata.numpy())["task"]
        == "classification"
    )


def test_quick_start_serve_and_ui(make_run, work):
    from kerasbert.client import Client

    key = "python -m kerasbert.serve --port 8500 --model_name kerasbert"
    with readme_server(key, work) as (address, _):
        with Client(address, model_name="kerasbert") as client:
            assert client.task == "classification"
        with readme_streamlit("streamlit run ui/app.py") as (url, _):
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=5) as response:
                assert response.read().decode().strip() == "ok"


def _check_production_flags(address, rest_port):
    """The README's serving command turns on batching, Prometheus metrics and gRPC health: check each."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    with urllib.request.urlopen(f"http://127.0.0.1:{rest_port}/v1/health/ready", timeout=10) as response:
        assert response.status == 200
    with urllib.request.urlopen(f"http://127.0.0.1:{rest_port}/monitoring/prometheus/metrics", timeout=10) as r:
        metrics = r.read().decode()
    ok = re.search(r'^:tensorflow:serving:request_count\{model_name="kerasbert",status="OK"\} (\S+)$', metrics, re.M)
    assert ok and float(ok.group(1)) >= 2, metrics[:2000]  # the metadata call and the REST predict at least
    batches = re.search(
        r'^:tensorflow:serving:batching_session:processed_batch_size_count\{model_name="kerasbert"\} (\S+)$',
        metrics,
        re.M,
    )
    assert batches and float(batches.group(1)) >= 1, "the REST predict ran through the batcher"


def test_serve_rest_client_and_ui(make_run, work, capsys):
    from kerasbert.client import Client

    with readme_server("python -m kerasbert.serve --port 8500 --rest_api_port 8501", work) as (address, ports):
        with Client(address, model_name="kerasbert") as client:
            assert client.task == "classification"
        rest = f"http://127.0.0.1:{ports[8501]}/v1/models/kerasbert:predict"
        request = urllib.request.Request(
            rest, json.dumps({"instances": [{"text": "great film"}]}).encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert json.loads(response.read())["predictions"][0]["labels"] in ("negative", "positive")
        _check_production_flags(address, ports[8501])

        capsys.readouterr()
        run_readme("python -m kerasbert.client --server localhost:8500 --model kerasbert", work, ports=ports)
        printed = json.loads(capsys.readouterr().out)
        assert len(printed) == 1 and printed[0]["label"] in ("negative", "positive"), printed

        (classified, status, task), _ = run_snippet(
            'Client("localhost:8500", model_name="kerasbert")', work, address=f"localhost:{ports[8500]}"
        )
        assert [c["label"] in ("negative", "positive") for c in classified] == [True, True]
        assert status == [(1, "AVAILABLE")] and task == "classification"

        # over REST: the WordPieces (every export has a `tokens` signature), pipelined lists, futures
        run_readme("python -m kerasbert.client --server http://localhost:8501 --model kerasbert", work, ports=ports)
        printed = json.loads(capsys.readouterr().out)
        assert [(t["token"], t["start"], t["end"]) for t in printed[0]] == [
            ("a", 0, 1),
            ("gripping", 2, 10),
            ("film", 11, 15),
        ]
        (label, tokens), namespace = run_snippet(
            'Client("http://localhost:8501", model_name="kerasbert"', work, rest_address=f"localhost:{ports[8501]}"
        )
        with Client(address, model_name="kerasbert", max_in_flight=1) as client:  # = gRPC, one request at a time
            reference = client.classify(namespace["texts"])
        assert [r["label"] for r in namespace["labels"]] == [r["label"] for r in reference]
        got = [p for r in namespace["labels"] for p in r["probabilities"].values()]
        assert got == pytest.approx([p for r in reference for p in r["probabilities"].values()], abs=1e-5)
        assert len(namespace["labels"]) == 1000 and label in ("negative", "positive")
        assert tokens == printed[0]
        assert "rows 1,000/1,000 (100%)" in capsys.readouterr().err  # progress=True

        key = "KERASBERT_SERVER=localhost:8500 KERASBERT_MODEL=kerasbert streamlit run"
        with readme_streamlit(key) as (url, env):
            assert env == {"KERASBERT_SERVER": "localhost:8500", "KERASBERT_MODEL": "kerasbert"}
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=5) as response:
                assert response.read().decode().strip() == "ok"


def test_glue_and_serve_config(minilm, work):
    from kerasbert.client import Client

    run_readme(
        "python -m kerasbert.train --train_file ../shared/data/glue_sst2/train.tsv",
        work,
        *FINETUNE_SLICE,
        minilm=minilm,
    )
    sst2 = results(work, "sst2")
    assert sst2["class_names"] == ["negative", "positive"] and "accuracy" in sst2["dev_metrics"]
    assert sst2["dev_examples"] == 24  # --max_dev_examples 24 of the DEV_ROWS dev sentences
    assert export_version(work, "sst2", 1)["task"] == "classification"
    run_readme("python -m kerasbert.export --run_dir runs/sst2", work)
    assert export_version(work, "sst2", 2)["task"] == "classification"

    run_readme(
        "python -m kerasbert.train --task regression",
        work,
        *FINETUNE_SLICE,
        minilm=minilm,
    )
    assert set(results(work, "stsb")["dev_metrics"]) == {"pearson", "spearman", "corr"}
    assert export_version(work, "stsb", 1)["task"] == "regression"

    with readme_server("KERASBERT_SERVE=1 serving/run_tf_serving.sh", work) as (address, ports):
        with Client(address, model_name="sst2") as client:
            assert client.task == "classification"
            assert sorted(v for v, _ in client.status()) == [1, 2]  # latest { num_versions: 2 }
            assert client.classify(["a gripping, funny film"])[0]["label"] in ("negative", "positive")
        with Client(address, model_name="stsb") as client:
            assert client.task == "regression"
            assert client.regress(["A man plays."], ["A man plays."]).shape == (1,)
        # REST_PORT (8501) answers too
        with urllib.request.urlopen(f"http://127.0.0.1:{ports[8501]}/v1/models/stsb", timeout=10) as response:
            assert json.loads(response.read())["model_version_status"][0]["state"] == "AVAILABLE"


def test_cola(work):
    run_readme("python -m kerasbert.train --no_header", work, *FINETUNE_SLICE)
    assert "mcc" in results(work, "cola")["dev_metrics"]
    assert export_version(work, "cola", 1)["task"] == "classification"


def test_conll_serve_client_and_snippet(minilm, work, capsys):
    from kerasbert.client import Client

    key = "python -m kerasbert.train --task token_classification --train_file"
    run_readme(key, work, *FINETUNE_SLICE, minilm=minilm)
    assert {"precision", "recall", "f1"} <= set(_flat_keys(results(work, "conll")["dev_metrics"]))
    assert export_version(work, "conll", 1)["task"] == "token_classification"

    with readme_server("python -m kerasbert.serve --port 8500 --model_name conll", work) as (address, ports):
        with Client(address, model_name="conll") as client:
            assert client.task == "token_classification"
        capsys.readouterr()
        run_readme("python -m kerasbert.client --server localhost:8500 --model conll", work, ports=ports)
        printed = json.loads(capsys.readouterr().out)
        _check_entities(printed, "Angela Merkel flew to Paris.")

        (entities,), _ = run_snippet(
            'Client("localhost:8500", model_name="conll")', work, address=f"localhost:{ports[8500]}"
        )
        _check_entities([entities], "Angela Merkel flew to Paris.")


# One training and one dev article, 64 questions, 64-token windows: about a minute on 2 cores.
SQUAD_SLICE = [
    *FINETUNE_SLICE,
    "--train_articles",
    "0",
    "--dev_articles",
    "29",
    "--sequence_length",
    "64",
    "--max_query_length",
    "16",
    "--doc_stride",
    "32",
]


def test_squad_serve_client_and_snippet(minilm, work, capsys):
    from kerasbert.client import Client

    run_readme("python -m kerasbert.train --task question_answering", work, *SQUAD_SLICE, minilm=minilm)
    squad = results(work, "squad")
    metrics = squad["dev_metrics"]
    assert 0 <= metrics["exact_match"] <= metrics["f1"] <= 100, metrics
    assert export_version(work, "squad", 1)["task"] == "question_answering"

    with readme_server("python -m kerasbert.serve --port 8500 --model_name squad", work) as (address, ports):
        with Client(address, model_name="squad") as client:
            assert client.task == "question_answering"
        capsys.readouterr()
        key = "python -m kerasbert.client --server localhost:8500 --model squad"
        run_readme(key, work, ports=ports)
        printed = json.loads(capsys.readouterr().out)
        context = readme_command(key)[-1]
        _check_answers(printed, context)
        (answer,), _ = run_snippet(
            'Client("localhost:8500", model_name="squad")', work, address=f"localhost:{ports[8500]}"
        )
        _check_answers([answer], context)


def _check_answers(per_context, context):
    """One answer per context, cut from the raw context; its n-best too (a 4-step model may pick any span)."""
    assert isinstance(per_context, list) and len(per_context) == 1, per_context
    answer = per_context[0]
    assert set(answer) == {"answer", "start", "end", "score", "n_best"}, answer
    assert context[answer["start"] : answer["end"]] == answer["answer"] != "", answer
    assert 0 < answer["score"] <= 1 and answer["n_best"][0]["answer"] == answer["answer"], answer
    for candidate in answer["n_best"]:
        assert context[candidate["start"] : candidate["end"]] == candidate["answer"], candidate


def _flat_keys(tree):
    for k, v in tree.items():
        yield k
        if isinstance(v, dict):
            yield from _flat_keys(v)


def _check_entities(per_text, text):
    """One list of entities per text; each span is `text[start:end]` (a 1-epoch model may find none)."""
    assert isinstance(per_text, list) and len(per_text) == 1 and isinstance(per_text[0], list), per_text
    for entity in per_text[0]:
        assert set(entity) == {"label", "start", "end", "text", "score"}, entity
        assert text[entity["start"] : entity["end"]] == entity["text"], entity


def test_resume_bmes(work):
    run_readme("python -m kerasbert.train --task token_classification --format bmes", work, *FINETUNE_SLICE)
    assert "f1" in set(_flat_keys(results(work, "resume")["dev_metrics"]))
    assert export_version(work, "resume", 1)["task"] == "token_classification"


def test_embedding_export_serve_and_snippet(minilm, work):
    import numpy as np

    from kerasbert.client import Client

    run_readme("python -m kerasbert.export --init_checkpoint", work, minilm=minilm)
    assert export_version(work, "minilm", 1)["task"] == "embedding"
    with readme_server("python -m kerasbert.serve --port 8500 --model_name minilm", work) as (address, ports):
        with Client(address, model_name="minilm") as client:
            assert client.task == "embedding"
        (similarity, hits), namespace = run_snippet(
            'Client("localhost:8500", model_name="minilm")', work, address=f"localhost:{ports[8500]}"
        )
    vectors = namespace["vectors"]
    assert isinstance(vectors, np.ndarray) and vectors.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, rtol=1e-5)
    assert np.asarray(similarity).shape == (1, 1) and 0.3 < float(np.asarray(similarity).ravel()[0]) <= 1.0001
    assert "guitar" in str(hits), hits


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """Another folder like `work`, for the pretraining section: its last command, like
    `make run`, writes runs/kerasbert and exports/kerasbert."""
    return _prepare(tmp_path_factory.mktemp("readme_pretraining"))


def test_pretraining_chain_and_finetune_snippet(fresh):
    work = fresh
    run_readme("python -m kerasbert.train vocab --input_files corpus/*.txt", work)
    tokens = (work / "vocab.txt").read_text().split("\n")
    assert tokens[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] and "good" in tokens
    run_readme("python -m kerasbert.train pretrain --input_files corpus/*.txt", work, *PRETRAIN_SLICE)
    assert (work / "runs" / "bert" / "pretrained").is_dir()
    run_readme("python -m kerasbert.train --init_checkpoint runs/bert/pretrained", work, *FINETUNE_SLICE)
    assert "accuracy" in results(work, "kerasbert")["dev_metrics"]
    assert export_version(work, "kerasbert", 1)["task"] == "classification"

    (values,), _ = run_snippet("from kerasbert.training.finetune import FinetuneConfig", work)
    metrics, export = values
    assert metrics and all(math.isfinite(v) for v in _numbers(metrics)), metrics
    assert (Path(work) / export / "saved_model.pb").exists() and Path(export).parts[-2:] == ("reviews", "1")


def test_make_notebook_opens_jupyterlab_on_the_notebooks(tmp_path):
    """`make notebook` as written (the venv's install stamps taken as done: `make test` made them), on a free port
    without a browser: JupyterLab answers, lists every notebook, and its kernel is this venv's Python."""
    readme_command("make notebook")
    port, token = free_port(), "readme-test"
    cmd = ["make", "-o", ".venv/.dev", "-o", ".venv/.runtime", "notebook"]
    cmd.append(f"JUPYTER_ARGS=--no-browser --port {port} --IdentityProvider.token={token}")
    log = tmp_path / "jupyter.log"
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "config"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt")}
    with open(log, "w") as out:  # its own process group: make's jupyter child goes with it
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    base, started = f"http://127.0.0.1:{port}", time.monotonic()

    def get(path):
        with urllib.request.urlopen(f"{base}{path}{'&' if '?' in path else '?'}token={token}", timeout=10) as r:
            return r.read().decode()

    try:
        while True:
            assert proc.poll() is None, f"make notebook exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
            with contextlib.suppress(OSError):
                page = get("/lab")
                break
            assert time.monotonic() - started < 90, f"JupyterLab did not answer:\n{log.read_text()[-3000:]}"
            time.sleep(0.5)
        print(f"[{time.monotonic() - started:5.1f}s] make notebook: JupyterLab answered", file=sys.stderr)
        assert "JupyterLab" in page
        listed = {item["name"] for item in json.loads(get("/api/contents"))["content"]}
        assert {p.name for p in (REPO / "notebooks").glob("*.ipynb")} <= listed, listed
        kernels = json.loads(get("/api/kernelspecs"))
        assert kernels["default"] == "python3" and "python3" in kernels["kernelspecs"], kernels
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 15)  # make and its jupyter child
        _end_group(proc)
