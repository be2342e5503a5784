"""Model server config helpers (no TensorFlow import, so flag errors answer fast).

The layout is TF Serving's: `<base_path>/<integer version>/saved_model.pb`. Folders whose name is not an
integer (e.g. the `.tmp-*` folders exports write atomically) are ignored, as are integer folders that do not
(yet) hold a `saved_model.pb`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from tensorflow_serving.config import model_server_config_pb2

from kerasbert.serving.errors import invalid_argument


def has_saved_model(path: str) -> bool:
    """Whether `path` holds a `saved_model.pb` (or `.pbtxt`)."""
    return any(os.path.isfile(os.path.join(path, f)) for f in ("saved_model.pb", "saved_model.pbtxt"))


def list_versions(base_path: str) -> list[int]:
    """Integer version folders under `base_path` that hold a SavedModel, ascending.

    Example:

    >>> list_versions("exports/sst2")  # doctest: +SKIP
    [1, 2]
    """
    try:
        names = os.listdir(base_path)
    except OSError:
        return []
    versions = []
    for name in names:
        if name.isdigit() and has_saved_model(os.path.join(base_path, name)):
            versions.append(int(name))
    return sorted(versions)


def aspired_versions(model_config: model_server_config_pb2.ModelConfig, available: Iterable[int]) -> list[int]:
    """The versions `model_config.model_version_policy` wants served out of `available`.

    `latest {num_versions: N}` (the default, N=1), `all {}` or `specific {versions: ...}`, like TF Serving.

    Example:

    >>> from google.protobuf import text_format
    >>> cfg = text_format.Parse('name: "m" base_path: "/m" model_version_policy { latest { num_versions: 2 } }',
    ...                         model_server_config_pb2.ModelConfig())
    >>> aspired_versions(cfg, [1, 2, 3])
    [2, 3]
    """
    available = sorted(set(available))
    policy = model_config.model_version_policy
    which = policy.WhichOneof("policy_choice")
    if which == "all":
        return available
    if which == "specific":
        wanted = set(policy.specific.versions)
        return [v for v in available if v in wanted]
    n = policy.latest.num_versions if which == "latest" and policy.latest.num_versions > 0 else 1
    return available[-n:]


def single_model_config(name: str, base_path: str) -> model_server_config_pb2.ModelServerConfig:
    """The config `--model_name/--model_base_path` stand for (TF Serving's single-model mode)."""
    config = model_server_config_pb2.ModelServerConfig()
    model = config.model_config_list.config.add()
    model.name = name
    model.base_path = os.path.abspath(base_path)
    model.model_platform = "tensorflow"
    return config


def validate_config(
    config: model_server_config_pb2.ModelServerConfig, public: bool = False
) -> list[model_server_config_pb2.ModelConfig]:
    """Checks a ModelServerConfig and returns its model configs; raises INVALID_ARGUMENT naming the problem.

    Args:
        config: the config to check.
        public: the messages go to an RPC client: they never contain a base path (for the operator's own
            flags and config file, `public=False` names the path).

    Example:

    >>> cfg = single_model_config("m", "/does/not/exist")
    >>> validate_config(cfg, public=True)
    Traceback (most recent call last):
    ...
    kerasbert.serving.errors.ServingError: INVALID_ARGUMENT: model 'm': base_path does not exist
    """
    if config.WhichOneof("config") != "model_config_list":
        raise invalid_argument("only model_config_list configs are supported (custom_model_config is not)")
    models = list(config.model_config_list.config)
    seen = set()
    for model in models:
        if not model.name:
            raise invalid_argument("every model config needs a name")
        if model.name in seen:
            raise invalid_argument(f"model name '{model.name}' appears twice in the config")
        seen.add(model.name)
        if model.model_platform not in ("", "tensorflow"):
            raise invalid_argument(f"model '{model.name}': model_platform '{model.model_platform}' is not supported")
        if not model.base_path:
            raise invalid_argument(f"model '{model.name}' has no base_path")
        if not os.path.isdir(model.base_path):
            shown = "" if public else f" {model.base_path}"
            raise invalid_argument(f"model '{model.name}': base_path{shown} does not exist")
    return models


# --- reload roots (issue 11 defect 5): which base paths a ReloadConfig RPC may name
def default_roots(config: model_server_config_pb2.ModelServerConfig, extra: Iterable[str] = ()) -> list[str]:
    """The folders RPC reloads may take base paths from: each configured base path's parent, plus `extra`.

    Paths are resolved with `os.path.realpath` (symlinks and `..`), duplicates dropped, order kept.

    Example:

    >>> default_roots(single_model_config("m", "/srv/models/m"), ["/data/more/"])
    ['/srv/models', '/data/more']
    """
    roots = [os.path.dirname(os.path.realpath(m.base_path)) for m in config.model_config_list.config if m.base_path]
    roots += [os.path.realpath(r) for r in extra if r.strip()]
    return list(dict.fromkeys(roots))


NOT_ALLOWED = (
    "base_path is not an existing folder under the roots this server allows for reloads "
    "(see --allowed_model_base_path_roots)"
)


def check_under_roots(
    config: model_server_config_pb2.ModelServerConfig, roots: Iterable[str]
) -> model_server_config_pb2.ModelServerConfig:
    """A copy of `config` with every base path resolved (realpath), or INVALID_ARGUMENT for one outside `roots`.

    The error is the same whether the path exists, is a file or lies outside the roots, and never contains
    the path, so a ReloadConfig RPC cannot be used to probe the file system.

    Example:

    >>> check_under_roots(single_model_config("m", "/proc/1"), ["/srv/models"])
    Traceback (most recent call last):
    ...
    kerasbert.serving.errors.ServingError: INVALID_ARGUMENT: model 'm': base_path is not an existing \
folder under the roots this server allows for reloads (see --allowed_model_base_path_roots)
    """
    roots = [os.path.realpath(r) for r in roots]
    checked = model_server_config_pb2.ModelServerConfig()
    checked.CopyFrom(config)
    if checked.WhichOneof("config") != "model_config_list":
        return checked  # validate_config rejects it
    for model in checked.model_config_list.config:
        if not model.base_path:
            continue  # validate_config names this
        real = os.path.realpath(model.base_path)
        inside = any(real == root or real.startswith(root.rstrip(os.sep) + os.sep) for root in roots)
        if not inside or not os.path.isdir(real):
            raise invalid_argument(f"model '{model.name or '?'}': {NOT_ALLOWED}")
        model.base_path = real
    return checked
