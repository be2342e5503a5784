#!/usr/bin/env bash
# Serve kerasbert exports on gRPC :8500 and REST :8501.
#
#   serving/run_tf_serving.sh                 # every model in serving/models.config, from ./exports
#   serving/run_tf_serving.sh sst2            # just exports/sst2, served as model "sst2"
#
# Uses the stock tensorflow/serving image when docker is available (TF_SERVING_VERSION picks the tag),
# otherwise (or with KERASBERT_SERVE=1) the Python drop-in `python -m kerasbert.serve`, same flags.
# Environment: EXPORT_DIR (default <repo>/exports), GRPC_PORT (8500), REST_PORT (8501), PYTHON.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
export_dir="$(cd "${EXPORT_DIR:-$repo/exports}" && pwd)"
grpc_port="${GRPC_PORT:-8500}"
rest_port="${REST_PORT:-8501}"
model="${1:-}"

if [[ -z "${KERASBERT_SERVE:-}" ]] && command -v docker >/dev/null 2>&1; then
  if [[ -n "$model" ]]; then
    models=(--model_name="$model" --model_base_path="/models/$model")
  else
    models=(--model_config_file=/config/models.config)
  fi
  exec docker run --rm -p "$grpc_port:8500" -p "$rest_port:8501" \
    -v "$export_dir:/models:ro" -v "$here:/config:ro" \
    "tensorflow/serving:${TF_SERVING_VERSION:-latest}" \
    "${models[@]}" \
    --file_system_poll_wait_seconds=5 \
    --enable_batching=true --batching_parameters_file=/config/batching_parameters.txt \
    --monitoring_config_file=/config/monitoring.config
fi

python="${PYTHON:-$repo/.venv/bin/python}"
[[ -x "$python" ]] || python=python3
if [[ -n "$model" ]]; then
  models=(--model_name "$model" --model_base_path "$export_dir/$model")
else
  # models.config names container paths (/models/...): point them at the local export folder
  local_config="$(mktemp "${TMPDIR:-/tmp}/kerasbert-models.XXXXXX")"
  trap 'rm -f "$local_config"' EXIT
  sed "s#\"/models/#\"$export_dir/#" "$here/models.config" > "$local_config"
  models=(--model_config_file "$local_config")
fi
cd "$repo"
"$python" -m kerasbert.serve --port "$grpc_port" --rest_api_port "$rest_port" "${models[@]}" \
  --file_system_poll_wait_seconds 5 \
  --enable_batching --batching_parameters_file "$here/batching_parameters.txt" \
  --monitoring_config_file "$here/monitoring.config" --enable_grpc_healthcheck_service &
server=$!
trap 'kill -TERM "$server" 2>/dev/null || true' TERM INT   # graceful stop, then the EXIT trap cleans up
wait "$server" || wait "$server"
