"""`zoo tokenizer train` and `zoo tokenizer swap`: train a byte-level BPE with one of the
pre-tokenization regexes Dagan et al. (2024) compare, and move a trained model to a new
tokenizer with Fast Vocabulary Transfer (docs/tokenizers.md).

    zoo tokenizer train ./corpus --vocab 4096 --regex gpt4 --out tok.json
    zoo tokenizer swap tiny-code --tokenizer tok.json --init fvt --out ./tiny-code-gpt4
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from .errors import CLIError


def cmd_train(args: argparse.Namespace) -> int:
    from ..tokenizer.train import corpus_files, train_tokenizer

    if args.vocab < 259:
        raise CLIError(f"--vocab must be at least 259 (3 specials + 256 bytes), got {args.vocab}")
    suffixes = tuple(e if e.startswith(".") else f".{e}" for e in (args.ext or [".py"]))
    files = corpus_files(args.corpus, suffixes)
    t0 = time.perf_counter()
    tok = train_tokenizer(files, args.vocab, args.regex, out=args.out, specials=args.special or (),
                          min_frequency=args.min_frequency)
    print(f"wrote {tok.source}: {tok.vocab_size} tokens, {args.regex} regex, trained on {len(files)} files in "
          f"{time.perf_counter() - t0:.1f} s")
    return 0


def cmd_swap(args: argparse.Namespace) -> int:
    from .. import api
    from ..runtime.tokenizers import BPETokenizer
    from ..tokenizer.swap import swap_tokenizer

    if not Path(args.tokenizer).exists():
        raise CLIError(f"--tokenizer {args.tokenizer}: no such file")
    new = BPETokenizer.from_file(args.tokenizer)
    model = api.load(args.model, revision=args.revision, token=args.token, dtype=args.dtype)
    out, report = swap_tokenizer(model, new, init=args.init, seed=args.seed)
    folder = out.save(args.out, overwrite=args.overwrite)
    for line in report.lines():
        print(line)
    print(f"wrote {folder}")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("tokenizer", help="train a BPE tokenizer; switch a model to a new tokenizer (FVT)",
                       description="Tokenizer tools after Dagan et al. (2024): train a byte-level BPE with the "
                                   "GPT-4, Llama-2-style or code pre-tokenization regex, and switch a trained "
                                   "model to a new tokenizer, new rows initialized with Fast Vocabulary Transfer.")
    tsub = p.add_subparsers(dest="tokenizer_command", required=True)

    t = tsub.add_parser("train", help="train a byte-level BPE tokenizer on a folder of files",
                        description="Byte-level BPE (the `tokenizers` library) on every file under CORPUS with "
                                    "the given suffixes; <s> </s> <pad> come first (ids 0, 1, 2), then the 256 "
                                    "bytes. Written atomically as tokenizer.json.")
    t.add_argument("corpus", help="a folder (searched recursively) or one file")
    t.add_argument("--vocab", type=int, required=True, help="vocabulary size, specials and bytes included")
    t.add_argument("--regex", choices=["gpt4", "llama", "code"], default="code",
                   help="pre-tokenization: gpt4 (cl100k, also Llama 3's), llama (Llama-2-style: digits split "
                        "one by one), code (zoo's: a line break with the next indentation is one piece; default)")
    t.add_argument("--out", required=True, help="a .json file, or a folder to hold tokenizer.json")
    t.add_argument("--special", action="append", metavar="TOKEN",
                   help="an extra special token, added after the vocabulary (repeatable)")
    t.add_argument("--ext", action="append", metavar="SUFFIX", help="file suffix to read (repeatable; default .py)")
    t.add_argument("--min-frequency", type=int, default=2, help="least count of a merged pair (default 2)")
    t.set_defaults(func=cmd_train)

    s = tsub.add_parser("swap", help="switch a model to a new tokenizer (FVT or random new rows)",
                        description="Rebuild every tensor with a vocabulary dimension (embedding, output, tied or "
                                    "not) for the new tokenizer: tokens in both keep their rows exactly, special "
                                    "tokens are mapped by role (bos/eos/pad/unk), each other new token gets the "
                                    "mean of the old rows of its pieces under the old tokenizer (--init fvt) or a "
                                    "random row (--init random). The result is an ordinary zoo checkpoint folder.")
    s.add_argument("model", help="a checkpoint folder, a catalog name (e.g. tiny-code) or a Hub repo")
    s.add_argument("--tokenizer", required=True, help="the new tokenizer.json (byte-level BPE)")
    s.add_argument("--init", choices=["fvt", "random"], default="fvt",
                   help="rows of tokens the old vocabulary lacks (default fvt)")
    s.add_argument("--out", required=True, help="output checkpoint folder (written atomically)")
    s.add_argument("--seed", type=int, default=0, help="seed of --init random (default 0)")
    s.add_argument("--dtype", default=None, help="float32, bfloat16 or float16 (default: the checkpoint's)")
    s.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    s.add_argument("--revision", default=None, help="Hub model: branch, tag or commit")
    s.add_argument("--token", default=None, help="Hub token (default: HF_TOKEN or the stored login)")
    s.set_defaults(func=cmd_swap)
