"""``python -m kerasbert.client``: classify, score or embed texts, or show a model's status and signatures."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from kerasbert import contract
from kerasbert.client.api import Client
from kerasbert.client.errors import KerasBertClientError
from kerasbert.client.transport import (
    DEFAULT_MODEL,
    DEFAULT_SERVER,
    MODEL_ENV,
    SERVER_ENV,
    default_model,
    default_server,
)

DESCRIPTION = (
    "Send texts to a served kerasbert model (TF Serving's gRPC API, or its REST API for an http:// --server: "
    "stock tensorflow_model_server or python -m kerasbert.serve) and print the answer as JSON: class "
    "probabilities by default, --regress scores, --encode embeddings, --entities named entities with character "
    "offsets, --question the answer each text (a context) gives to a question, --tokens the WordPieces the model "
    "sees; --status and --metadata describe the model."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m kerasbert.client", description=DESCRIPTION)
    parser.add_argument("texts", nargs="*", help="texts to classify (one result per text)")
    parser.add_argument(
        "--server",
        default=default_server(),
        help=f"host:port for gRPC, or http://host:port for the REST API (--rest_api_port of the server) "
        f"(default ${SERVER_ENV} or {DEFAULT_SERVER})",
    )
    parser.add_argument(
        "--model", default=default_model(), help=f"model name (default ${MODEL_ENV} or {DEFAULT_MODEL})"
    )
    parser.add_argument("--signature", default=contract.SERVING_DEFAULT)
    parser.add_argument("--pair", action="append", help="second text of a pair task (repeat once per text)")
    parser.add_argument("--regress", action="store_true", help="print the 'score' output (regression exports)")
    parser.add_argument("--encode", action="store_true", help="print the texts' embeddings (embedding exports)")
    parser.add_argument(
        "--entities", action="store_true", help="print each text's entities with offsets (token-classification exports)"
    )
    parser.add_argument(
        "--question",
        action="append",
        help="ask this question of each text (the contexts) and print the answers with their character offsets "
        "(question-answering exports); repeat once per text to ask each its own",
    )
    parser.add_argument(
        "--tokens", action="store_true", help="print each text's WordPieces with their offsets (every export kind)"
    )
    parser.add_argument("--status", action="store_true", help="print the served versions and their states")
    parser.add_argument("--metadata", action="store_true", help="print the signature's inputs and outputs")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each request")
    parser.add_argument("--batch-size", type=int, default=64, help="texts per request")
    parser.add_argument("--max-in-flight", type=int, default=4, help="requests on their way at once (pipelined)")
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="a progress line on stderr (default: only when stderr is a terminal)",
    )
    tls = parser.add_argument_group("TLS (a server started with --ssl_config_file)")
    tls.add_argument("--tls", action="store_true", help="connect over TLS, verifying the server with the system's CAs")
    tls.add_argument("--ca-cert", help="PEM file of the CA that signed the server certificate (implies --tls)")
    tls.add_argument("--client-cert", help="PEM client certificate, for servers with client_verify (with --client-key)")
    tls.add_argument("--client-key", help="PEM private key of --client-cert")
    return parser


def _dumps(value: Any, indent: int | None = None) -> str:
    """JSON; non-ASCII text stays readable when stdout takes UTF-8."""
    utf8 = (getattr(sys.stdout, "encoding", None) or "").lower().replace("-", "") == "utf8"
    return json.dumps(value, indent=indent, ensure_ascii=not utf8)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status (1 after a failed call)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not (args.texts or args.status or args.metadata):
        parser.error("give texts to classify, or --status / --metadata")
    if (args.client_cert is None) != (args.client_key is None):
        parser.error("--client-cert and --client-key go together")
    try:
        client = Client(
            target=args.server,
            model_name=args.model,
            signature_name=args.signature,
            timeout=args.timeout,
            batch_size=args.batch_size,
            max_in_flight=args.max_in_flight,
            progress=args.progress,
            tls=args.tls,
            ca_cert=args.ca_cert,
            client_cert=args.client_cert,
            client_key=args.client_key,
        )
    except ValueError as err:  # an unreadable certificate file, a bad --batch-size
        print(f"error: {err}", file=sys.stderr)
        return 1
    with client:
        try:
            if args.status:
                print(_dumps({"model": client.model_name, "versions": client.status()}))
            if args.metadata:
                print(_dumps(client.metadata(), indent=2))
            if args.texts and args.tokens:
                print(_dumps(client.tokens(args.texts), indent=2))
            elif args.texts and args.encode:
                print(_dumps(client.encode(args.texts).tolist()))
            elif args.texts and args.question:
                questions = args.question[0] if len(args.question) == 1 else args.question
                print(_dumps(client.answer(questions, args.texts), indent=2))
            elif args.texts and args.entities:
                print(_dumps(client.entities(args.texts), indent=2))
            elif args.texts and args.regress:
                print(_dumps(client.regress(args.texts, args.pair).tolist()))
            elif args.texts:
                print(_dumps(client.classify(args.texts, args.pair), indent=2))
        except (KerasBertClientError, ValueError, TypeError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
    return 0
