"""`zoo chat MODEL`: talk to a chat/instruct model in the terminal.

    zoo chat mistral-7b-instruct --system "Answer briefly." --temperature 0.7 --seed 1

The conversation is kept across turns and laid out by the model's chat template (the spec's
`tokenizer.chat`, zoo/chat.py); replies are streamed as they are decoded. Commands: `/reset`
(forget the conversation), `/system TEXT` (set the system prompt and start again; `/system`
alone clears it), `/exit` or end of input (Ctrl-D). Ctrl-C during a reply stops that reply (the
turn is dropped) and returns to the prompt; at the prompt it ends the program.
"""

from __future__ import annotations

import argparse
import secrets
import sys
from typing import Any, TextIO

from .. import api
from ..chat import chat_spec, reply_stream
from .options import add_spec_and_format

HELP = "commands: /reset, /system TEXT, /exit (or Ctrl-D); Ctrl-C stops a reply"


class Session:
    """One conversation: the history, the system prompt, the sampling arguments."""

    def __init__(self, model: Any, system: str | None, **sampling: Any) -> None:
        self.model, self.system, self.sampling = model, system or None, sampling
        self.history: list[dict[str, str]] = []

    def messages(self) -> list[dict[str, str]]:
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + self.history

    def command(self, line: str, out: TextIO) -> bool:
        """Handle a /command; False to end the session."""
        name, _, rest = line.partition(" ")
        if name in ("/exit", "/quit"):
            return False
        if name == "/reset":
            self.history = []
            out.write("(conversation reset)\n")
        elif name == "/system":
            self.system, self.history = rest.strip() or None, []
            out.write(f"(system prompt {'set' if self.system else 'cleared'}; conversation reset)\n")
        else:
            out.write(f"unknown command {name}; {HELP}\n")
        return True

    def turn(self, text: str, out: TextIO) -> None:
        """Stream the reply to `text`; on Ctrl-C the reply stops and the turn is dropped."""
        self.history.append({"role": "user", "content": text})
        pieces: list[str] = []
        stream = reply_stream(self.model, self.messages(), **self.sampling)
        try:
            for piece in stream:
                pieces.append(piece)
                out.write(piece)
                out.flush()
        except KeyboardInterrupt:
            stream.close()
            self.history.pop()
            out.write("\n(reply stopped)\n")
            return
        out.write("\n")
        self.history.append({"role": "assistant", "content": "".join(pieces)})


def repl(session: Session, inp: TextIO, out: TextIO) -> int:
    out.write(f"{HELP}\n")
    while True:
        out.write(">>> ")
        out.flush()
        try:
            line = inp.readline()
        except KeyboardInterrupt:
            out.write("\n")
            return 0
        if not line:  # end of input
            out.write("\n")
            return 0
        line = line.strip()
        if not line:
            continue
        if line.startswith("/"):
            if not session.command(line, out):
                return 0
            continue
        session.turn(line, out)


def cmd_chat(args: argparse.Namespace) -> int:
    model = api.load(args.model, args.overrides, backend=args.backend, device=args.device, dtype=args.dtype,
                     spec=args.spec, format=args.format)
    model.eval()
    model._need_tokenizer()
    chat_spec(model.spec.tokenizer, model.spec.name)  # no template: say which spec field to add, now
    seed = args.seed if args.seed is not None else secrets.randbits(63)
    session = Session(model, args.system, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                      top_k=args.top_k, top_p=args.top_p, seed=seed)
    return repl(session, sys.stdin, sys.stdout)


def register(sub: Any) -> None:
    p = sub.add_parser("chat", help="talk to a chat/instruct model (history, /reset, /system, streamed replies)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="catalog name, checkpoint folder or Hub repo id of a model with a chat template")
    p.add_argument("overrides", nargs="*", help="dotted spec overrides, e.g. arch.max_seq_len=8192")
    p.add_argument("--system", default=None, help="system prompt (change it in the session with /system TEXT)")
    p.add_argument("--max-new-tokens", type=int, default=512, help="most tokens per reply (default 512)")
    p.add_argument("--temperature", type=float, default=0.0, help="sampling temperature; 0 is greedy (default)")
    p.add_argument("--top-k", type=int, default=None, help="sample from the k most likely tokens only")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling: the smallest set of tokens whose "
                   "probability reaches p (0 < p <= 1)")
    p.add_argument("--seed", type=int, default=None, help="random seed for sampling (default: a fresh one per run)")
    p.add_argument("--backend", default=None, help="eager, sdpa, xformers, xla or auto (default: $ZOO_BACKEND or auto)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or xla")
    p.add_argument("--dtype", default=None, help="float32, bfloat16 or float16 (default: the checkpoint's)")
    add_spec_and_format(p)
    p.set_defaults(func=cmd_chat)
