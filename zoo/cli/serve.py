"""`zoo serve MODEL`: an OpenAI-compatible HTTP API over a model, with continuous batching."""

from __future__ import annotations

import argparse
from typing import Any

from .. import api
from .options import add_spec_and_format


def cmd_serve(args: argparse.Namespace) -> int:
    from ..serve.server import check_args, check_bind, serve  # fastapi and uvicorn only when serving

    check_args(args.host, args.port, args.max_batch)  # before the (slow) load
    check_bind(args.host, args.port)
    model = api.load(args.model, args.overrides, backend=args.backend, device=args.device, dtype=args.dtype,
                     spec=args.spec, format=args.format)
    model.eval()
    serve(model, args.name or args.model, host=args.host, port=args.port, max_batch=args.max_batch,
          log_level=args.log_level)
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("serve", help="an OpenAI-compatible HTTP API (/v1/completions, /v1/chat/completions)",
                       description="Serve a model over OpenAI's HTTP API: GET /v1/models, POST /v1/completions and "
                                   "/v1/chat/completions (stream: true as server-sent events). Concurrent requests "
                                   "share decode steps (continuous batching). Loopback only unless --host says "
                                   "otherwise: the API has no authentication.",
                       epilog="example:\n  zoo serve tiny-code --port 8000\n  # then: openai.OpenAI(base_url="
                              '"http://127.0.0.1:8000/v1", api_key="x")',
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="checkpoint folder, catalog name or Hub repo")
    p.add_argument("overrides", nargs="*", help="dotted spec overrides, e.g. tokenizer.chat.template=llama-2")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1, this machine "
                                                       "only; anything else warns)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    p.add_argument("--max-batch", type=int, default=16, help="most sequences decoded together (default 16); more "
                                                             "requests wait their turn")
    p.add_argument("--name", default=None, help="the model name clients send (default: MODEL as given; the "
                                                "spec's name is accepted too)")
    p.add_argument("--dtype", default=None, help="float32, bfloat16 or float16 (default: the checkpoint's)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                   help="uvicorn's log level (default info)")
    add_spec_and_format(p)
    p.add_argument("--backend", default=None, help="eager, sdpa, xformers or auto (default: $ZOO_BACKEND or auto)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    p.set_defaults(func=cmd_serve)
