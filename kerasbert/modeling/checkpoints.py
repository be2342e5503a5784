"""Bring your own checkpoint: load real BERT weights into our encoder.

Three on-disk formats are understood (see `detect_format`):

- "huggingface": a `transformers` BERT folder: `config.json` with
  `"model_type": "bert"`, `model.safetensors` (or a sharded
  `model.safetensors.index.json`, or `pytorch_model.bin`, which needs torch)
  and `vocab.txt`. Tensor names may carry a `bert.` prefix
  (`BertForPreTraining`, `BertForMaskedLM`, ...) or none (`BertModel`,
  sentence-transformers such as all-MiniLM-L6-v2); old `LayerNorm.gamma/beta`
  names are accepted too.
- "google_tf1": Google's original release: `bert_config.json`,
  `bert_model.ckpt.index` + `bert_model.ckpt.data-*`, `vocab.txt`, variables
  named `bert/embeddings/word_embeddings`, `bert/encoder/layer_N/...`,
  `cls/predictions/...`, `cls/seq_relationship/...`.
- "keras_hub": a keras-hub preset folder (`config.json` holding a serialised
  Keras backbone, `model.weights.h5`, `tokenizer.json` +
  `assets/tokenizer/vocabulary.txt`), or a preset name such as
  "bert_tiny_en_uncased" which keras-hub resolves (needs network).

Weight porting builds on keras-hub's own Hugging Face converter
(`keras_hub.src.utils.transformers.convert_bert`, what
`BertBackbone.from_preset(<HF folder>)` runs; it works offline on a local
folder). We feed it from our own tensor reader and add what it lacks:

- the activation: keras-hub's BertBackbone always uses the tanh GELU, HF
  "gelu" is the exact one (~1e-2 off on all-MiniLM-L6-v2); we build a
  `GeluBertBackbone` with the activation the checkpoint was trained with;
- `type_vocab_size` and dropout from the config (keras-hub drops them);
- `pytorch_model.bin`, names with any prefix, Google TF1 checkpoints;
- the pretraining heads (MLM, NSP) as numpy arrays, see `HEAD_KEYS`;
- errors that name the missing file / tensor / mismatching shape.

Example:

>>> ckpt = load_checkpoint("path/to/all-MiniLM-L6-v2")  # doctest: +SKIP
>>> ckpt.format, ckpt.lowercase, ckpt.backbone.hidden_dim  # doctest: +SKIP
('huggingface', True, 384)
"""

import dataclasses
import json
import logging
import os
import re

import numpy as np

from kerasbert.modeling.gelu_backbone import HF_HIDDEN_ACT, GeluBertBackbone

FORMATS = ("huggingface", "google_tf1", "keras_hub")
FORMAT_NAMES = {"huggingface": "Hugging Face BERT", "google_tf1": "Google TF1 BERT", "keras_hub": "keras-hub preset"}
# What `python -m kerasbert.train pretrain` writes beside its keras-hub preset.
PRETRAINING_HEADS_FILE = "pretraining_heads.weights.h5"

# Keys of `LoadedCheckpoint.heads`. Kernels are in Keras layout ([in, out]).
HEAD_KEYS = {
    "mlm_dense_kernel": "[hidden, hidden] MLM transform Dense kernel",
    "mlm_dense_bias": "[hidden] MLM transform Dense bias",
    "mlm_layer_norm_gamma": "[hidden] MLM transform LayerNorm scale (eps 1e-12)",
    "mlm_layer_norm_beta": "[hidden] MLM transform LayerNorm offset",
    "mlm_output_bias": "[vocab] bias of the logits h @ token_embeddings^T "
    "(the decoder is tied to the token embeddings)",
    "nsp_kernel": "[hidden, 2] next-sentence Dense kernel on pooled_output",
    "nsp_bias": "[2] next-sentence Dense bias (index 0 = IsNext)",
}

# Canonical (Hugging Face, prefix-free) tensor name of each head key and
# whether it is stored [out, in] (so must be transposed into Keras layout).
_HEAD_SOURCES = {
    "mlm_dense_kernel": ("cls.predictions.transform.dense.weight", True),
    "mlm_dense_bias": ("cls.predictions.transform.dense.bias", False),
    "mlm_layer_norm_gamma": ("cls.predictions.transform.LayerNorm.weight", False),
    "mlm_layer_norm_beta": ("cls.predictions.transform.LayerNorm.bias", False),
    "mlm_output_bias": ("cls.predictions.bias", False),
    "nsp_kernel": ("cls.seq_relationship.weight", True),
    "nsp_bias": ("cls.seq_relationship.bias", False),
}

_REQUIREMENTS = (
    '- huggingface: config.json with "model_type": "bert", model.safetensors '
    "(or model.safetensors.index.json, or pytorch_model.bin) and vocab.txt\n"
    "- google_tf1: bert_config.json, bert_model.ckpt.index + "
    "bert_model.ckpt.data-* and vocab.txt\n"
    "- keras_hub: config.json with a serialised keras-hub backbone "
    '("class_name"/"config"), model.weights.h5 and tokenizer.json + '
    "assets/tokenizer/vocabulary.txt"
)

_ANCHOR = "embeddings.word_embeddings.weight"
_IGNORED = re.compile(r"(^|\.)position_ids$|^cls\.predictions\.decoder\.")

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class LoadedCheckpoint:
    """A checkpoint loaded into our encoder.

    Attributes:
        backbone: a `GeluBertBackbone` (a `keras_hub.models.BertBackbone`)
            holding the checkpoint's weights, pooler included.
        vocabulary_path: path of the WordPiece vocabulary (one token a line).
        lowercase: whether the tokenizer lower-cases / strips accents (from
            the checkpoint's tokenizer config, else inferred from the vocab).
        format: "huggingface", "google_tf1" or "keras_hub".
        heads: pretraining head weights present in the checkpoint, keyed as
            in `HEAD_KEYS` (empty when there are none); see
            `assign_mlm_head` / `assign_nsp_head`.
        hidden_activation: the backbone's feed-forward activation.
        path: the folder (or preset name) it was loaded from.
        source: the weights read: a file (`model.safetensors`, the TF1
            checkpoint prefix) or, for keras-hub, the preset itself.

    Example:

    >>> ckpt = load_checkpoint("bert_folder")  # doctest: +SKIP
    >>> sorted(ckpt.heads)  # doctest: +SKIP
    ['mlm_dense_bias', 'mlm_dense_kernel', ..., 'nsp_bias', 'nsp_kernel']
    """

    backbone: object
    vocabulary_path: str
    lowercase: bool
    format: str
    heads: dict = dataclasses.field(default_factory=dict)
    hidden_activation: str = "gelu"
    path: str = ""
    source: str = ""

    @property
    def kind(self):
        """What the checkpoint is, in words: "Hugging Face BERT", "Google TF1 BERT",
        "keras-hub preset" or "kerasbert pretraining output" (a preset with MLM/NSP heads)."""
        if self.format == "keras_hub" and os.path.isfile(os.path.join(self.path, PRETRAINING_HEADS_FILE)):
            return "kerasbert pretraining output"
        return FORMAT_NAMES.get(self.format, self.format)

    def describe(self):
        """One line saying what was detected and loaded, and from where.

        >>> ckpt = LoadedCheckpoint(None, "m/vocab.txt", True, "huggingface", path="m", source="m/model.safetensors")
        >>> ckpt.describe()  # (with a backbone, its shape follows the colon: "6 layers x 384, ")
        'loaded Hugging Face BERT checkpoint from m (model.safetensors): gelu, uncased, no MLM/NSP heads'
        """
        where = self.path
        if self.source and os.path.normpath(self.source) != os.path.normpath(self.path):
            where += f" ({os.path.relpath(self.source, self.path) if self.path else self.source})"
        shape = ""
        if self.backbone is not None:
            layers = self.backbone.num_layers
            shape = f"{layers} layer{'s' if layers != 1 else ''} x {self.backbone.hidden_dim}, "
        heads = [
            name for name, prefix in (("MLM", "mlm_"), ("NSP", "nsp_")) if any(k.startswith(prefix) for k in self.heads)
        ]
        return (
            f"loaded {self.kind} checkpoint from {where}: {shape}{self.hidden_activation}, "
            f"{'uncased' if self.lowercase else 'cased'}, "
            f"{'/'.join(heads) + ' heads' if heads else 'no MLM/NSP heads'}"
        )


def _is_keras_config(config):
    return isinstance(config, dict) and "class_name" in config and "config" in config


def _read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _looks_like_preset_name(path):
    path = os.fspath(path)
    return "://" in path or (not os.path.exists(path) and re.fullmatch(r"[A-Za-z0-9_.-]+", path) is not None)


def detect_format(path):
    """Returns the checkpoint format of a folder (or a keras-hub preset name).

    Args:
        path: a checkpoint folder, or a keras-hub preset name / handle.

    Returns:
        "huggingface", "google_tf1" or "keras_hub".

    Raises:
        ValueError: if `path` matches none, with what each format needs.

    Example:

    >>> detect_format("bert_tiny_en_uncased")
    'keras_hub'
    """
    path = os.fspath(path)
    if _looks_like_preset_name(path):
        return "keras_hub"
    if not os.path.isdir(path):
        raise ValueError(f"checkpoint folder not found: {path}")

    def has(name):
        return os.path.isfile(os.path.join(path, name))

    config = None
    if has("config.json"):
        try:
            config = _read_json(os.path.join(path, "config.json"))
        except ValueError as e:
            raise ValueError(f"{path}/config.json is not valid JSON: {e}") from e
    if _is_keras_config(config) and has("model.weights.h5"):
        return "keras_hub"
    if isinstance(config, dict) and "model_type" in config:
        if config["model_type"] != "bert":
            raise ValueError(
                f"{path}/config.json has model_type {config['model_type']!r}; "
                'only BERT (model_type "bert") checkpoints can be loaded'
            )
        if _hf_weight_file(path) is None:
            raise ValueError(
                f"{path} has a BERT config.json but no weights: it needs "
                "model.safetensors, model.safetensors.index.json or "
                "pytorch_model.bin"
            )
        return "huggingface"
    if has("bert_config.json") and _tf1_prefix(path) is not None:
        return "google_tf1"
    try:
        present = sorted(os.listdir(path))
    except OSError:
        present = []
    raise ValueError(
        f"{path} is not a BERT checkpoint folder we can read (it has: "
        f"{', '.join(present) or 'nothing'}). Supported formats need:\n" + _REQUIREMENTS
    )


def _hf_weight_file(path):
    for name in ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"):
        if os.path.isfile(os.path.join(path, name)):
            return os.path.join(path, name)
    return None


def _tf1_prefix(path):
    if os.path.isfile(os.path.join(path, "bert_model.ckpt.index")):
        return os.path.join(path, "bert_model.ckpt")
    indexes = sorted(n for n in os.listdir(path) if n.endswith(".ckpt.index"))
    if len(indexes) == 1:
        return os.path.join(path, indexes[0][: -len(".index")])
    return None


# ---------------------------------------------------------------- readers


def _float32(array):
    array = np.asarray(array)
    return array.astype(np.float32) if array.dtype.kind == "f" else array.copy()


_SAFETENSORS_DTYPES = {
    "F64": "<f8",
    "F32": "<f4",
    "F16": "<f2",
    "BF16": "<u2",
    "I64": "<i8",
    "I32": "<i4",
    "I16": "<i2",
    "I8": "i1",
    "U8": "u1",
    "BOOL": "?",
}


def read_safetensors(file):
    """Reads a `.safetensors` file into numpy arrays, without the package.

    The format is an 8-byte little-endian header length, a JSON header
    `{name: {"dtype", "shape", "data_offsets": [begin, end]}}` and the raw
    little-endian data. BF16 is widened to float32.

    Example:

    >>> read_safetensors("model.safetensors")["embeddings.word_embeddings.weight"]  # doctest: +SKIP
    """
    with open(file, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError(f"{file} is not a safetensors file (too short)")
    size = int.from_bytes(data[:8], "little")
    try:
        header = json.loads(data[8 : 8 + size])
    except ValueError as e:
        raise ValueError(f"{file} is not a safetensors file: {e}") from e
    body = memoryview(data)[8 + size :]
    arrays = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in _SAFETENSORS_DTYPES:
            raise ValueError(f"{file}: tensor {name} has unsupported dtype {info['dtype']}")
        begin, end = info["data_offsets"]
        array = np.frombuffer(body[begin:end], dtype=_SAFETENSORS_DTYPES[info["dtype"]])
        if info["dtype"] == "BF16":
            array = (array.astype(np.uint32) << 16).view(np.float32)
        arrays[name] = array.reshape(info["shape"])
    return arrays


def _read_pytorch_bin(file):
    try:
        import torch
    except ImportError as e:
        raise ImportError(
            f"{file} is a PyTorch pickle; reading it needs torch (pip install "
            "torch), or convert the checkpoint to model.safetensors"
        ) from e
    state = torch.load(file, map_location="cpu", weights_only=True)
    return {k: v.detach().float().numpy() if v.is_floating_point() else v.numpy() for k, v in state.items()}


def read_hf_weights(path):
    """Reads a Hugging Face BERT folder's tensors under canonical names.

    Canonical names are the `BertModel` ones without any prefix
    (`embeddings.word_embeddings.weight`, `encoder.layer.0.attention.self.
    query.weight`, `pooler.dense.weight`) plus `cls.*` heads; `LayerNorm.gamma`
    / `.beta` become `.weight` / `.bias`. Arrays keep the PyTorch layout
    (`[out, in]` for Linear weights), cast to float32.

    Args:
        path: the checkpoint folder.

    Returns:
        A dict name -> numpy array.

    Example:

    >>> w = read_hf_weights("all-MiniLM-L6-v2")  # doctest: +SKIP
    >>> w["embeddings.word_embeddings.weight"].shape  # doctest: +SKIP
    (30522, 384)
    """
    file = _hf_weight_file(path)
    if file is None:
        raise ValueError(f"{path} has no model.safetensors, model.safetensors.index.json or pytorch_model.bin")
    if file.endswith(".index.json"):
        shards = sorted(set(_read_json(file)["weight_map"].values()))
        raw = {}
        for shard in shards:
            raw.update(read_safetensors(os.path.join(path, shard)))
    elif file.endswith(".safetensors"):
        raw = read_safetensors(file)
    else:
        raw = _read_pytorch_bin(file)
    return _canonical_hf_names(raw, file)


def _canonical_hf_names(raw, source):
    anchors = [k for k in raw if k.endswith(_ANCHOR)]
    if not anchors:
        raise ValueError(
            f"{source} has no tensor named '{_ANCHOR}' (with or without a "
            "prefix such as 'bert.'); is it a BERT checkpoint?"
        )
    prefix = min(anchors, key=len)[: -len(_ANCHOR)]
    weights = {}
    for name, value in raw.items():
        if name.startswith(prefix):
            name = name[len(prefix) :]
        name = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", name)
        name = re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", name)
        weights[name] = _float32(value)
    if "cls.predictions.bias" not in weights and "cls.predictions.decoder.bias" in weights:
        weights["cls.predictions.bias"] = weights["cls.predictions.decoder.bias"]
    return weights


def tf1_to_hf_name(name):
    """Maps a Google TF1 BERT variable name to (canonical HF name, transpose).

    `transpose` is True when the TF1 array is `[in, out]` (a `kernel`) and the
    canonical layout is `[out, in]`. `cls/seq_relationship/output_weights` is
    already `[2, hidden]`, so it is not transposed.

    Example:

    >>> tf1_to_hf_name("bert/encoder/layer_3/attention/self/query/kernel")
    ('encoder.layer.3.attention.self.query.weight', True)
    >>> tf1_to_hf_name("cls/seq_relationship/output_weights")
    ('cls.seq_relationship.weight', False)
    """
    parts = name.split("/")
    if parts[0] == "bert":
        parts = parts[1:]
    renames = {"gamma": "weight", "beta": "bias", "kernel": "weight"}
    out = []
    for part in parts:
        layer = re.fullmatch(r"layer_(\d+)", part)
        out.extend(["layer", layer.group(1)] if layer else [renames.get(part, part)])
    hf = ".".join(out)
    hf = {
        "cls.predictions.output_bias": "cls.predictions.bias",
        "cls.seq_relationship.output_weights": "cls.seq_relationship.weight",
        "cls.seq_relationship.output_bias": "cls.seq_relationship.bias",
    }.get(hf, hf)
    if hf.startswith("embeddings.") and hf.endswith("_embeddings"):
        hf += ".weight"
    return hf, parts[-1] == "kernel"


def read_tf1_weights(prefix):
    """Reads a Google TF1 BERT checkpoint under canonical (HF) names.

    Optimizer slots (`adam_m`, `adam_v`) and `global_step` are skipped.

    Args:
        prefix: the checkpoint prefix, e.g. `.../bert_model.ckpt`.

    Returns:
        A dict canonical name -> numpy array in the HF layout.

    Example:

    >>> w = read_tf1_weights("uncased_L-12_H-768_A-12/bert_model.ckpt")  # doctest: +SKIP
    """
    import tensorflow as tf

    reader = tf.train.load_checkpoint(prefix)
    weights = {}
    for name in reader.get_variable_to_shape_map():
        if re.search(r"(adam_[mv]|Adam(_\d+)?)$", name) or name == "global_step":
            continue
        if not name.startswith(("bert/", "cls/")):
            continue
        hf, transpose = tf1_to_hf_name(name)
        value = _float32(reader.get_tensor(name))
        weights[hf] = value.T if transpose else value
    if _ANCHOR not in weights:
        raise ValueError(f"{prefix} has no variable bert/embeddings/word_embeddings; is it a Google BERT checkpoint?")
    return weights


# ---------------------------------------------------------------- porting


class _ArrayLoader:
    """keras-hub `SafetensorLoader` look-alike over an in-memory dict.

    `convert_bert.convert_weights` only calls `get_tensor` and `port_weight`.
    """

    def __init__(self, weights, source):
        self.weights = weights
        self.source = source
        self.used = set()
        self.missing_pooler = False

    def get_tensor(self, key):
        if key not in self.weights:
            raise KeyError(key)
        self.used.add(key)
        return self.weights[key]

    def port_weight(self, keras_variable, hf_weight_key, hook_fn=None):
        if hf_weight_key not in self.weights:
            if hf_weight_key.startswith("pooler."):
                self.missing_pooler = True
                return
            raise ValueError(
                f"{self.source}: tensor '{hf_weight_key}' is missing (names are shown without their 'bert.' prefix)"
            )
        tensor = self.get_tensor(hf_weight_key)
        shape = list(keras_variable.shape)
        try:
            if hook_fn:
                tensor = hook_fn(tensor, shape)
            if list(np.shape(tensor)) != shape:
                raise ValueError(f"shape {list(np.shape(tensor))} != {shape}")
            keras_variable.assign(tensor)
        except ValueError as e:
            raise ValueError(
                f"{self.source}: tensor '{hf_weight_key}' of shape "
                f"{list(self.weights[hf_weight_key].shape)} does not fit "
                f"'{keras_variable.path}' of shape {shape} ({e}); does the "
                "config match the weights?"
            ) from e


def _backbone_from_config(config, hidden_activation, source):
    from keras_hub.src.utils.transformers import convert_bert

    if config.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(
            f"{source}: position_embedding_type "
            f"{config['position_embedding_type']!r} is not supported (only "
            "absolute position embeddings)"
        )
    eps = config.get("layer_norm_eps", 1e-12)
    if abs(eps - 1e-12) > 1e-15:
        logger.warning("%s: layer_norm_eps=%g but BertBackbone uses 1e-12", source, eps)
    kwargs = convert_bert.convert_backbone_config(config)
    kwargs["num_segments"] = config.get("type_vocab_size", 2)
    kwargs["dropout"] = config.get("hidden_dropout_prob", 0.1)
    return GeluBertBackbone(hidden_activation=hidden_activation, **kwargs)


def _hidden_activation(config, source, tanh_gelu):
    act = config.get("hidden_act", "gelu")
    if act not in HF_HIDDEN_ACT:
        raise ValueError(f"{source}: hidden_act {act!r} is not supported; use one of {sorted(HF_HIDDEN_ACT)}")
    act = HF_HIDDEN_ACT[act]
    # Google's TF1 `modeling.gelu` is the tanh approximation despite its name.
    return "gelu_approximate" if tanh_gelu and act == "gelu" else act


def _port(weights, config, hidden_activation, source):
    from keras_hub.src.utils.transformers import convert_bert

    vocab = weights[_ANCHOR].shape[0]
    if config.get("vocab_size", vocab) != vocab:
        raise ValueError(f"{source}: config vocab_size {config['vocab_size']} != {vocab} rows of {_ANCHOR}")
    backbone = _backbone_from_config(config, hidden_activation, source)
    loader = _ArrayLoader(weights, source)
    convert_bert.convert_weights(backbone, loader, config)
    if loader.missing_pooler:
        logger.warning("%s has no pooler weights; pooled_dense keeps its random init", source)
    unused = sorted(k for k in weights if k not in loader.used and not k.startswith("cls.") and not _IGNORED.search(k))
    if unused:
        logger.warning("%s: %d tensors not used: %s", source, len(unused), unused[:8])
    return backbone


def extract_heads(weights):
    """Pretraining head arrays (keys of `HEAD_KEYS`) from canonical weights.

    The MLM group is returned only when all of its tensors are present, the
    NSP group likewise.

    Example:

    >>> extract_heads({"cls.seq_relationship.weight": np.zeros((2, 4)),
    ...                "cls.seq_relationship.bias": np.zeros(2)})["nsp_kernel"].shape
    (4, 2)
    """
    heads = {}
    for group in ("mlm_", "nsp_"):
        keys = [k for k in _HEAD_SOURCES if k.startswith(group)]
        if all(_HEAD_SOURCES[k][0] in weights for k in keys):
            for key in keys:
                name, transpose = _HEAD_SOURCES[key]
                heads[key] = weights[name].T if transpose else weights[name]
    decoder = weights.get("cls.predictions.decoder.weight")
    if decoder is not None and "mlm_dense_kernel" in heads:
        if not np.array_equal(decoder, weights[_ANCHOR]):
            logger.warning(
                "the MLM decoder is not tied to the token embeddings; only the "
                "tied form is supported, the decoder matrix is ignored"
            )
    return heads


# ---------------------------------------------------------------- tokenizer


def infer_lowercase(vocabulary_path):
    """Guesses whether a WordPiece vocab is uncased: no token has a capital.

    Bracketed special tokens ([CLS], [unused0], ...) are not counted.

    Example:

    >>> infer_lowercase("bert-base-cased/vocab.txt")  # doctest: +SKIP
    False
    """
    with open(vocabulary_path, encoding="utf-8") as f:
        for line in f:
            token = line.strip()
            if token.startswith("[") and token.endswith("]"):
                continue
            if token != token.lower():
                return False
    return True


def _hf_lowercase(path, vocabulary_path):
    tokenizer_config = os.path.join(path, "tokenizer_config.json")
    if os.path.isfile(tokenizer_config):
        value = _read_json(tokenizer_config).get("do_lower_case")
        if value is not None:
            return bool(value)
    tokenizer_json = os.path.join(path, "tokenizer.json")
    if os.path.isfile(tokenizer_json):
        normalizer = _read_json(tokenizer_json).get("normalizer") or {}
        if normalizer.get("lowercase") is not None:
            return bool(normalizer["lowercase"])
    return infer_lowercase(vocabulary_path)


def _vocab_file(path, name="vocab.txt"):
    file = os.path.join(path, name)
    if not os.path.isfile(file):
        raise ValueError(f"{path} has no {name} (the WordPiece vocabulary)")
    return file


# ---------------------------------------------------------------- loaders


def _load_converted(path, fmt, hidden_activation):
    """HF and Google TF1 folders: both are read into canonical HF tensors."""
    tf1 = fmt == "google_tf1"
    config = _read_json(os.path.join(path, "bert_config.json" if tf1 else "config.json"))
    vocabulary_path = _vocab_file(path)
    source = _tf1_prefix(path) if tf1 else _hf_weight_file(path)
    activation = hidden_activation or _hidden_activation(config, source, tanh_gelu=tf1)
    weights = read_tf1_weights(source) if tf1 else read_hf_weights(path)
    if tf1:
        lowercase = infer_lowercase(vocabulary_path)
    else:
        lowercase = _hf_lowercase(path, vocabulary_path)
    return LoadedCheckpoint(
        backbone=_port(weights, config, activation, source),
        vocabulary_path=vocabulary_path,
        lowercase=lowercase,
        format=fmt,
        heads=extract_heads(weights),
        hidden_activation=activation,
        path=path,
        source=source or "",
    )


def _load_keras_hub(path, hidden_activation):
    import keras_hub
    from keras_hub.src.utils.preset_utils import get_file, load_json

    backbone = keras_hub.models.BertBackbone.from_preset(path)
    activation = getattr(backbone, "hidden_activation", "gelu_approximate")
    if hidden_activation and hidden_activation != activation:
        raise ValueError(
            f"{path}: a keras-hub preset keeps its own activation "
            f"({activation!r}); hidden_activation={hidden_activation!r} "
            "cannot be applied"
        )
    try:
        vocabulary_path = get_file(path, "assets/tokenizer/vocabulary.txt")
        lowercase = load_json(path, "tokenizer.json")["config"].get("lowercase")
    except (FileNotFoundError, ValueError, KeyError) as e:
        raise ValueError(
            f"{path}: keras-hub preset without a BERT tokenizer "
            "(tokenizer.json + assets/tokenizer/vocabulary.txt): " + str(e)
        ) from e
    if lowercase is None:
        lowercase = infer_lowercase(vocabulary_path)
    # `python -m kerasbert.train pretrain` writes its MLM/NSP heads beside
    # the preset (`kerasbert.tasks.pretraining.save_pretrained`).
    heads = {}
    heads_path = os.path.join(os.fspath(path), PRETRAINING_HEADS_FILE)
    if os.path.isfile(heads_path):
        from kerasbert.tasks.pretraining import load_head_weights

        heads = {k: v for k, v in load_head_weights(heads_path).items() if k in HEAD_KEYS}
    return LoadedCheckpoint(
        backbone=backbone,
        vocabulary_path=vocabulary_path,
        lowercase=bool(lowercase),
        format="keras_hub",
        heads=heads,
        hidden_activation=activation,
        path=path,
        source=path,
    )


def load_checkpoint(path, hidden_activation=None):
    """Loads a BERT checkpoint (HF, Google TF1 or keras-hub) into our encoder.

    Args:
        path: a checkpoint folder in one of `FORMATS` (see `detect_format`),
            or a keras-hub preset name.
        hidden_activation: override of the feed-forward activation ("gelu",
            "gelu_approximate", "relu"). By default it follows the checkpoint:
            HF "gelu" -> exact erf GELU; Google TF1 "gelu" -> tanh
            approximation (what Google's `modeling.py` computes); keras-hub
            presets keep theirs.

    Returns:
        A `LoadedCheckpoint`.

    Raises:
        ValueError: unknown folder layout, missing vocab, non-BERT config,
            missing tensors or shapes that do not fit the config.
        ImportError: `pytorch_model.bin` without torch installed.

    Example:

    >>> ckpt = load_checkpoint("all-MiniLM-L6-v2")  # doctest: +SKIP
    >>> pre = BertPreprocessor(ckpt.vocabulary_path, lowercase=ckpt.lowercase)  # doctest: +SKIP
    >>> ckpt.backbone(pre(tf.constant(["hello world"])))["sequence_output"]  # doctest: +SKIP
    """
    fmt = detect_format(path)
    if fmt == "keras_hub":
        return _load_keras_hub(os.fspath(path), hidden_activation)
    return _load_converted(os.fspath(path), fmt, hidden_activation)


# ---------------------------------------------------------------- heads


def assign_mlm_head(mlm_head, heads):
    """Copies MLM head arrays into a built `keras_hub.layers.MaskedLMHead`.

    The head must be tied to the backbone's token embedding
    (`token_embedding=backbone.token_embedding`), use
    `intermediate_activation="gelu"` and `layer_norm_epsilon=1e-12` to compute
    exactly what BERT's `cls/predictions` does (keras-hub's `BertMaskedLM`
    leaves the epsilon at 1e-5).

    Example:

    >>> head = keras_hub.layers.MaskedLMHead(  # doctest: +SKIP
    ...     token_embedding=ckpt.backbone.token_embedding,
    ...     intermediate_activation="gelu", layer_norm_epsilon=1e-12)
    >>> head.build((None, None, 384))  # doctest: +SKIP
    >>> assign_mlm_head(head, ckpt.heads)  # doctest: +SKIP
    """
    if "mlm_dense_kernel" not in heads:
        raise ValueError("the checkpoint has no MLM head weights")
    mlm_head._intermediate_dense.kernel.assign(heads["mlm_dense_kernel"])
    mlm_head._intermediate_dense.bias.assign(heads["mlm_dense_bias"])
    mlm_head._intermediate_layer_norm.gamma.assign(heads["mlm_layer_norm_gamma"])
    mlm_head._intermediate_layer_norm.beta.assign(heads["mlm_layer_norm_beta"])
    mlm_head._bias.assign(heads["mlm_output_bias"])


def assign_nsp_head(dense, heads):
    """Copies NSP head arrays into a built `keras.layers.Dense(2)`.

    Example:

    >>> nsp = keras.layers.Dense(2)  # doctest: +SKIP
    >>> nsp.build((None, 384)); assign_nsp_head(nsp, ckpt.heads)  # doctest: +SKIP
    """
    if "nsp_kernel" not in heads:
        raise ValueError("the checkpoint has no next-sentence head weights")
    dense.kernel.assign(heads["nsp_kernel"])
    dense.bias.assign(heads["nsp_bias"])
