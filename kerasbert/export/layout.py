"""TF Serving's on-disk layout, written atomically.

`<export_dir>/<model_name>/<integer version>/` holds one SavedModel. A new
version is first written to a hidden temporary folder beside the versions
(TF Serving only looks at all-digit folder names, so it never sees a partial
export) and then renamed into place, which is atomic on one filesystem.
"""

import json
import os
import shutil
import tempfile

METADATA_FILE = os.path.join("assets.extra", "kerasbert.json")


def versions(model_dir):
    """Sorted integer versions present under `model_dir`."""
    if not os.path.isdir(model_dir):
        return []
    return sorted(int(n) for n in os.listdir(model_dir) if n.isdigit())


def write_versioned(export_dir, model_name, write_fn, version=None, metadata=None):
    """Writes a SavedModel as the next version of `model_name`.

    Args:
        export_dir: the TF Serving base folder (holds one folder per model).
        model_name: the model's folder name (what clients ask for).
        write_fn: `write_fn(path)` writes the SavedModel into `path`.
        version: an explicit integer version (must not exist yet); default:
            one more than the newest version present.
        metadata: a JSON-able dict written to
            `assets.extra/kerasbert.json` (TF Serving ignores assets.extra).

    Returns:
        The final version folder.

    Example:

    >>> path = write_versioned("exports", "sst2", module_save_fn)  # doctest: +SKIP
    >>> path                                                        # doctest: +SKIP
    'exports/sst2/1'
    """
    if not model_name or os.sep in model_name or model_name.startswith("."):
        raise ValueError(f"--model_name must be a plain folder name, got {model_name!r}")
    model_dir = os.path.join(export_dir, model_name)
    os.makedirs(model_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp-", dir=model_dir)
    try:
        write_fn(tmp)
        if metadata is not None:
            os.makedirs(os.path.join(tmp, "assets.extra"), exist_ok=True)
            with open(os.path.join(tmp, METADATA_FILE), "w", encoding="utf-8") as f:
                json.dump(metadata, f, indent=2, ensure_ascii=False)
        while True:
            v = int(version) if version is not None else (versions(model_dir) or [0])[-1] + 1
            final = os.path.join(model_dir, str(v))
            if os.path.exists(final):
                if version is not None:
                    raise FileExistsError(f"version {v} already exists: {final}")
                continue
            try:
                os.rename(tmp, final)
                return final
            except OSError:
                if version is not None or not os.path.exists(final):
                    raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_metadata(version_dir):
    """The kerasbert metadata dict of an export (empty if absent)."""
    path = os.path.join(version_dir, METADATA_FILE)
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)
