"""TF Serving config messages that the `tensorflow-serving-api` wheel does not ship.

The wheel carries `apis/` and `config/model_server_config` but not `BatchingParameters`
(`servables/tensorflow/session_bundle_config.proto`), `MonitoringConfig` (`config/monitoring_config.proto`) or
`SSLConfig` (`config/ssl_config.proto`). `tensorflow_model_server` reads those three as text protos
(`--batching_parameters_file`, `--monitoring_config_file`, `--ssl_config_file`), so we build the same messages
here, field for field (names, numbers, types as in TF Serving's .proto files), from a descriptor in a private
pool. That avoids a protoc/grpcio-tools build step and cannot clash with a later wheel that registers them.

Example:

>>> params = parse_text("max_batch_size { value: 32 } allowed_batch_sizes: 8 allowed_batch_sizes: 32",
...                     BatchingParameters)
>>> params.max_batch_size.value, list(params.allowed_batch_sizes), params.HasField("batch_timeout_micros")
(32, [8, 32], False)
>>> parse_text('prometheus_config { enable: true path: "/metrics" }', MonitoringConfig).prometheus_config.path
'/metrics'
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format, wrappers_pb2

_F = descriptor_pb2.FieldDescriptorProto

# (message name, [(field name, number, type, type_name or None, repeated)])
_MESSAGES = [
    (
        "BatchingParameters",
        [
            ("max_batch_size", 1, _F.TYPE_MESSAGE, ".google.protobuf.Int64Value", False),
            ("batch_timeout_micros", 2, _F.TYPE_MESSAGE, ".google.protobuf.Int64Value", False),
            ("max_enqueued_batches", 3, _F.TYPE_MESSAGE, ".google.protobuf.Int64Value", False),
            ("num_batch_threads", 4, _F.TYPE_MESSAGE, ".google.protobuf.Int64Value", False),
            ("thread_pool_name", 5, _F.TYPE_MESSAGE, ".google.protobuf.StringValue", False),
            ("allowed_batch_sizes", 6, _F.TYPE_INT64, None, True),
            ("pad_variable_length_inputs", 7, _F.TYPE_BOOL, None, False),
            ("enable_large_batch_splitting", 8, _F.TYPE_MESSAGE, ".google.protobuf.BoolValue", False),
            ("max_execution_batch_size", 9, _F.TYPE_MESSAGE, ".google.protobuf.Int64Value", False),
        ],
    ),
    ("PrometheusConfig", [("enable", 1, _F.TYPE_BOOL, None, False), ("path", 2, _F.TYPE_STRING, None, False)]),
    ("MonitoringConfig", [("prometheus_config", 1, _F.TYPE_MESSAGE, ".tensorflow.serving.PrometheusConfig", False)]),
    (
        "SSLConfig",
        [
            ("server_key", 1, _F.TYPE_STRING, None, False),
            ("server_cert", 2, _F.TYPE_STRING, None, False),
            ("custom_ca", 3, _F.TYPE_STRING, None, False),
            ("client_verify", 4, _F.TYPE_BOOL, None, False),
        ],
    ),
]


def _build():
    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)
    file = descriptor_pb2.FileDescriptorProto(
        name="kerasbert/tensorflow_serving_configs.proto",
        package="tensorflow.serving",
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )
    for name, fields in _MESSAGES:
        message = file.message_type.add(name=name)
        for field_name, number, kind, type_name, repeated in fields:
            field = message.field.add(
                name=field_name,
                number=number,
                type=kind,
                label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL,
            )
            if type_name:
                field.type_name = type_name
    pool.Add(file)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"tensorflow.serving.{name}"))
        for name, _ in _MESSAGES
    }


_CLASSES = _build()
BatchingParameters = _CLASSES["BatchingParameters"]
PrometheusConfig = _CLASSES["PrometheusConfig"]
MonitoringConfig = _CLASSES["MonitoringConfig"]
SSLConfig = _CLASSES["SSLConfig"]


def parse_text(text: str, message_class):
    """Parses a text-format proto into a new `message_class`; raises `text_format.ParseError`."""
    return text_format.Parse(text, message_class())


def read_text_file(path: str, message_class):
    """Reads a text-format proto file (as `tensorflow_model_server` reads its config flags)."""
    with open(path, encoding="utf-8") as f:
        return parse_text(f.read(), message_class)


__all__ = ["BatchingParameters", "MonitoringConfig", "PrometheusConfig", "SSLConfig", "parse_text", "read_text_file"]
