"""The notebooks run: their code cells are executed in order in a fresh process."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO
from serving_utils import free_port

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_cells_run(path, tmp_path):
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    script = tmp_path / "notebook.py"
    script.write_text(
        "\n\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code"), encoding="utf-8"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2",
           "KERASBERT_NOTEBOOK_PORT": str(free_port())}
    # cwd is a scratch folder, so runs/ and exports/ land there.
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "AVAILABLE" in proc.stdout and "'label':" in proc.stdout
    assert (tmp_path / "exports" / "notebook" / "1" / "saved_model.pb").exists()
