"""Entry point: `python -m kerasbert.serve` – a TF Serving-compatible gRPC (and REST) model server.

Example:

    python -m kerasbert.serve --port 8500 --rest_api_port 8501 \
        --model_name sst2 --model_base_path exports/sst2
"""

import sys

from kerasbert.serving.server import main

if __name__ == "__main__":
    sys.exit(main())
