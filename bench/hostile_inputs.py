"""bench/hostile.py's families of hostile inputs: spec files and overrides, checkpoints,
generation arguments and images. The named inputs and the helpers come from tests/fuzz; this
module only says which entry point each one goes through, and what it must end in.

Imported by the harness after it has set up the environment (zoo and huggingface_hub read it
at import)."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, Callable

import numpy as np
import yaml
from hostile_case import Family

import zoo
from tests.fuzz.builders import (
    EXTENDS_SPEC,
    TINY,
    base_spec,
    build_meta_text,
    checkpoint_folders,
    compile_catalog,
    compile_file,
    compile_text,
    copy_folder,
    digest,
    dump_yaml,
    load_digest,
    nan_model,
    override_items,
    set_path,
    spec_with,
    tiny_code,
    tiny_model,
    tiny_vlm,
)
from tests.fuzz.checkpoint_cases import (
    CHECKPOINT_MUTATIONS,
    HEADER_BAD,
    HF_BAD,
    HF_GOOD,
    HF_REQUIRED,
    INDEX_BAD,
    MIXTRAL_BAD,
    NAN_CASES,
)
from tests.fuzz.cli import run_cli
from tests.fuzz.editors import (
    ST,
    edit_config,
    edit_json,
    edit_zoo_yaml,
    header_end,
    largest_tensor,
    move_weights_outside,
    mutate_safetensors,
    overwrite_header_bytes,
    point_tokenizer_outside,
    truncate_weights,
    write_pickle_payload,
)
from tests.fuzz.generation_cases import (
    BAD_GENERATION,
    BAD_IMAGE_OBJECTS,
    BAD_PROMPT_IDS,
    CLI_GENERATE_BAD,
    CLI_GENERATE_GOOD,
    CONTEXT,
    GOOD_GENERATION,
    VOCAB,
    gen_ids,
    gen_text,
    write_image_files,
)
from tests.fuzz.generators import (
    random_bad_generation,
    random_good_generation,
    random_text,
    random_valid_spec,
    random_value,
)
from tests.fuzz.isolation import violate
from tests.fuzz.probes import load_warnings, load_watched
from tests.fuzz.spec_cases import (
    BAD_PAIRS,
    GOOD_VALUES,
    HOSTILE_OVERRIDES,
    HOSTILE_SPEC_TEXTS,
    MALFORMED_OVERRIDES,
    TEN_MB_SPEC,
    extends_chain,
    extends_cycle,
    sparse_spec_file,
    write_spec_file,
)

SPEC_ENTRIES = ["text", "extends", "file", "override", "build-meta", "cli-compile", "cli-show"]


def _via(entry: str, field: str, value: str) -> tuple[Callable[[Path], Any], bool]:
    """A case that puts `field: value` in a spec through one entry point; whether it is the CLI."""
    if entry == "text":
        return (lambda tmp: compile_text(spec_with(field, value))), False
    if entry == "extends":
        return (lambda tmp: compile_text(spec_with(field, value, yaml.safe_load(EXTENDS_SPEC)))), False
    if entry == "file":
        return (lambda tmp: compile_file(write_spec_file(tmp / "spec.yaml", spec_with(field, value)))), False
    if entry == "build-meta":
        return (lambda tmp: build_meta_text(spec_with(field, value))), False
    if entry == "override":
        return (lambda tmp: compile_catalog("llama-2-7b", TINY + override_items(field, value))), False
    if entry == "cli-show":
        return (lambda tmp: run_cli(["show", "llama-2-7b", *TINY, *override_items(field, value)])), True
    return (lambda tmp: run_cli(["compile", str(write_spec_file(tmp / "spec.yaml", spec_with(field, value)))])), True


def spec_family(full: bool, rng: random.Random) -> Family:
    out = Family("specs")
    add = out.add
    for i, (f, v) in enumerate(BAD_PAIRS):
        for entry in ([SPEC_ENTRIES[i % 7], SPEC_ENTRIES[(i + 3) % 7]] if full else [SPEC_ENTRIES[i % 7]]):
            fn, cli = _via(entry, f, v)
            add(f"{f}: {v[:40]} [{entry}]", "bad", fn, cli=cli)
    for name, text in HOSTILE_SPEC_TEXTS.items():
        add(f"{name} [file]", "bad", lambda tmp, t=text: compile_file(write_spec_file(tmp / "hostile.yaml", t)),
            named=True)
        add(f"{name} [cli-compile]", "bad", lambda tmp, t=text: run_cli(
            ["compile", str(write_spec_file(tmp / "hostile.yaml", t))]), cli=True, named=True)
        if isinstance(text, str):
            add(f"{name} [text]", "bad", lambda tmp, t=text: compile_text(t), named=True)
    for name, item in {**HOSTILE_OVERRIDES, **{repr(m)[:50]: m for m in MALFORMED_OVERRIDES}}.items():
        add(f"override {name}", "bad", lambda tmp, it=item: compile_catalog("llama-2-7b", TINY + [it]), named=True)
        add(f"override {name} [cli-show]", "bad",
            lambda tmp, it=item: run_cli(["show", "llama-2-7b", *TINY, it]), cli=True, named=True)
    for f, v in GOOD_VALUES:
        add(f"valid {f}: {v} [text]", "good", lambda tmp, f=f, v=v: compile_text(spec_with(f, v)))
        fn, cli = _via("cli-compile", f, v)
        add(f"valid {f}: {v} [cli-compile]", "good", fn, cli=cli)
        if not (f.startswith("tokenizer.") and v not in ("null", "0")):
            fn, cli = _via("override", f, v)
            add(f"valid {f}: {v} [override]", "good", fn, cli=cli)
    for name in zoo.list():
        add(f"catalog {name} compiles", "good", lambda tmp, n=name: compile_catalog(n))
        add(f"zoo show {name}", "good", lambda tmp, n=name: run_cli(["show", n]), cli=True)
    for i in range(60 if full else 10):
        add(f"random valid spec #{i}", "good",
            lambda tmp, t=dump_yaml(random_valid_spec(rng)): (compile_text(t), build_meta_text(t)))
    for i in range(60 if full else 10):
        add(f"random text #{i}", "bad", lambda tmp, t=random_text(rng, 300): compile_text(t))
        add(f"random bytes file #{i}", "bad", lambda tmp, b=rng.randbytes(rng.randint(0, 400)): (
            compile_file(write_spec_file(tmp / "r.yaml", b))))
    for i in range(60 if full else 10):
        path = rng.choice(["name", "arch", "arch.dim", "arch.attention", "arch.attention.n_heads", "arch.ffn",
                           "arch.ffn.hidden_dim", "arch.norm.eps", "tokenizer", "tokenizer.bos_id", "arch.layers"])
        data = set_path(base_spec(), path, random_value(rng))
        try:
            text = dump_yaml(data)
        except Exception:  # noqa: BLE001 - a value yaml cannot write
            continue
        add(f"random value at {path} #{i}", "any", lambda tmp, t=text: compile_text(t))
        item = f"{random_text(rng, 20)}={random_text(rng, 40)}"
        add(f"random override #{i}", "any", lambda tmp, it=item: compile_catalog("llama-2-7b", TINY + [it]))
    add("zoo show llama-2-7b arch.n_layers=100000", "any",
        lambda tmp: run_cli(["show", "llama-2-7b", "arch.n_layers=100000"]), cli=True, named=True)
    add("zoo show llama-2-7b arch.n_layers=100000 --resolved", "any",
        lambda tmp: run_cli(["show", "llama-2-7b", "arch.n_layers=100000", "--resolved"]), cli=True, named=True)
    add("a 10 MB spec", "any", lambda tmp: compile_text(TEN_MB_SPEC), named=True)
    add("a 2 GB sparse spec file", "bad", lambda tmp: compile_file(sparse_spec_file(tmp / "huge.yaml")), named=True)

    def fifo(tmp: Path, how: str) -> Any:
        os.mkfifo(tmp / "fifo.yaml")
        if how == "file":
            return compile_file(tmp / "fifo.yaml")
        return compile_text(f"extends: {tmp / 'fifo.yaml'}\nname: x\n")
    add("a FIFO as the spec file", "bad", lambda tmp: fifo(tmp, "file"), named=True)
    add("extends: a FIFO (absolute)", "bad", lambda tmp: fifo(tmp, "extends"), named=True)
    add("an extends cycle", "bad", lambda tmp: compile_file(extends_cycle(tmp)), named=True)
    add("an extends chain of 2000 files", "any", lambda tmp: compile_file(extends_chain(tmp, 2000)), named=True,
        timeout=20)
    add("an extends chain of 20 files", "good", lambda tmp: compile_file(extends_chain(tmp, 20)), named=True)
    return out


def checkpoint_fixtures(root: Path) -> dict[str, Any]:
    m = tiny_model(seed=11)
    return {"digest": digest(m), **checkpoint_folders(m, root)}


def _warned(folder: Path) -> str:
    if not load_warnings(folder):
        violate("NaN/inf weights loaded without a warning")
    return "warned"


def checkpoint_family(full: bool, rng: random.Random, fx: dict[str, Any]) -> Family:
    out = Family("checkpoints")
    add = out.add

    def on_copy(kind: str, mutate: Callable[[Path], Any],
                then: Callable[[Path], Any] = load_digest) -> Callable[[Path], Any]:
        def fn(tmp: Path) -> Any:
            folder = copy_folder(fx[kind], tmp / "case")
            mutate(folder)
            return then(folder)
        return fn

    def set_config(key: str, value: Any) -> Callable[[Path], None]:  # as is: rope_theta stays beside rope_parameters
        return lambda f: edit_json(f / "config.json", lambda c: c.__setitem__(key, value))

    for name, (kind, mutate) in CHECKPOINT_MUTATIONS.items():
        add(f"{kind}: {name}", "bad", on_copy(kind, mutate), named=True)
    for name, (kind, mutate) in list(CHECKPOINT_MUTATIONS.items())[:: 1 if full else 4]:
        add(f"{kind}: {name} [zoo convert]", "bad", on_copy(kind, mutate, lambda f: run_cli(
            ["convert", str(f), "--to", "hf", str(f.parent / "out")])), cli=True)
    for kind in ("zoo", "hf") if full else ("zoo",):
        for name, fn in HEADER_BAD.items():
            nan = name in NAN_CASES
            add(f"{kind}: safetensors {name}", "check" if nan else "bad", lambda tmp, k=kind, f=fn, nan=nan: (
                (_warned if nan else load_digest)(mutate_safetensors(fx[k], tmp, f))), named=kind == "zoo")
    for name, mutate in INDEX_BAD.items():
        add(f"sharded: {name}", "bad", on_copy("sharded", mutate), named=True)
    for key, value in HF_BAD:
        add(f"config.json {key}: {value!r}"[:90], "bad", on_copy("hf", lambda f, k=key, v=value: edit_config(f, k, v)))
    for key, value in MIXTRAL_BAD:
        add(f"Mixtral config.json {key}: {value!r}", "bad",
            on_copy("mixtral", lambda f, k=key, v=value: edit_config(f, k, v)), named=True)
    for key, value in HF_GOOD:
        add(f"valid config.json {key}: {value!r}", "good", on_copy("hf", set_config(key, value)))
    for key in HF_REQUIRED:
        add(f"config.json without {key}", "bad", on_copy("hf", lambda f, k=key: edit_config(f, k, None, delete=True)))
    for f_, v in BAD_PAIRS[:: 3 if full else 12]:
        value = yaml.safe_load(v)
        add(f"zoo.yaml spec {f_}: {v[:30]}", "bad", on_copy("zoo", lambda folder, f_=f_, value=value: edit_zoo_yaml(
            folder, lambda d: set_path(d["spec"], f_, value))))
    for kind in ("zoo", "hf"):
        size = (fx[kind] / ST).stat().st_size
        for cut in sorted({1, 7, 8, size - 9, size - 1, *(rng.randint(1, size - 1) for _ in range(25 if full else 4))}):
            add(f"{kind}: {ST} cut by {cut} bytes", "bad", on_copy(kind, lambda f, c=cut: truncate_weights(f, c)))
    for i in range(60 if full else 8):
        flips = [(rng.random(), rng.randint(0, 255)) for _ in range(rng.randint(1, 6))]
        add(f"random header bytes #{i}", "any", on_copy(rng.choice(["zoo", "hf"]), lambda f, flips=flips: (
            overwrite_header_bytes(f, [(int(where * header_end(f)), byte) for where, byte in flips]))))
        key, value = rng.choice(["dtype", "shape", "data_offsets"]), random_value(rng)
        add(f"random header {key} #{i}", "any", lambda tmp, k=key, v=value: load_digest(mutate_safetensors(
            fx["hf"], tmp, lambda h, d: h[largest_tensor(h)].__setitem__(k, v))))
        ckey = rng.choice([k for k, _ in HF_BAD] + ["rope_scaling", "torch_dtype"])
        add(f"random config.json {ckey} #{i}", "any", on_copy("hf", set_config(ckey, random_value(rng))))

    def outside_tokenizer(tmp: Path, how: str) -> Any:
        folder = copy_folder(fx["tiny-code"], tmp / "case")
        point_tokenizer_outside(folder, tmp / "secret", how)
        seen = load_watched(folder, tmp / "secret")
        if seen["opened"]:
            violate(f"read {seen['opened'][0]} outside the checkpoint folder")
        if seen["result"] == "accepted":
            violate("a tokenizer outside the folder was accepted")
        return "refused"

    for how in ("absolute", "dotdot", "symlink"):
        add(f"tiny-code: tokenizer {how} outside the folder", "check", lambda tmp, h=how: outside_tokenizer(tmp, h),
            named=True)
    add("hf: model.safetensors symlinked outside the folder", "bad", on_copy(
        "hf", lambda f: move_weights_outside(f, f.parent / "elsewhere")), named=True)
    add("NaN/inf weights saved and loaded", "check", lambda tmp: _warned(nan_model().save(tmp / "nan")), named=True)

    def pickle_payload(tmp: Path, bare: bool) -> Any:
        folder = copy_folder(fx["meta"], tmp / "case")
        write_pickle_payload(folder / "consolidated.00.pth", tmp / "pwned", bare=bare)
        try:
            load_digest(folder)
        finally:
            if (tmp / "pwned").exists():
                violate("a pickle payload was executed")
        return "loaded"
    add("meta: a pickle payload in consolidated.00.pth", "bad", lambda tmp: pickle_payload(tmp, False), named=True)
    add("meta: a bare pickle as consolidated.00.pth", "bad", lambda tmp: pickle_payload(tmp, True), named=True)
    for kind in ("zoo", "hf", "sharded", "mixtral", "meta", "tiny-code"):
        add(f"{kind}: the unedited folder loads", "good", lambda tmp, k=kind: load_digest(fx[k]))
    add("zoo: an unrelated extra file in the folder", "good",
        on_copy("zoo", lambda f: (f / "notes.txt").write_text("hello")))
    add("zoo: zoo convert --to hf", "good", lambda tmp: run_cli(["convert", str(fx["zoo"]), "--to", "hf",
                                                                 str(tmp / "out")]), cli=True)
    return out


def generation_fixtures(root: Path) -> dict[str, Any]:
    code, vlm = tiny_code(), tiny_vlm(root / "tok")
    return {"code": code, "vlm": vlm, "vlm_dir": vlm.save(root / "vlm"), "images": write_image_files(root / "img")}


def generation_family(full: bool, rng: random.Random, fx: dict[str, Any]) -> Family:
    out = Family("generation")
    add = out.add
    code, vlm = fx["code"], fx["vlm"]

    def image_text(model: Any, prompt: Any, image: Any) -> str:
        return gen_text(model, prompt, images=[image], max_new_tokens=1)

    for kw in BAD_GENERATION:
        add(f"generate_text(**{kw!r})", "bad", lambda tmp, kw=kw: gen_text(code, **kw), named=True)
    for i in range(100 if full else 10):
        kw = random_bad_generation(rng)
        add(f"generate_text(**{kw!r})", "bad", lambda tmp, kw=kw: gen_text(code, **kw))
    for kw in GOOD_GENERATION:
        add(f"valid generate_text(**{kw!r})", "good", lambda tmp, kw=kw: gen_text(code, **kw))
    for i in range(30 if full else 4):
        kw = random_good_generation(rng)
        add(f"valid generate_text(**{kw!r})", "good", lambda tmp, kw=kw: gen_text(code, **kw))
    for name, ids in BAD_PROMPT_IDS.items():
        add(f"generate({name})", "bad", lambda tmp, ids=ids: gen_ids(code, ids), named=True)
    for i in range(40 if full else 5):
        ids = [rng.randint(0, VOCAB - 1) for _ in range(rng.randint(1, 8))]
        ids.insert(rng.randint(0, len(ids)), rng.choice([-rng.randint(1, 2**40), rng.randint(VOCAB, 2**62)]))
        add(f"generate([{ids}])"[:90], "bad", lambda tmp, ids=ids: gen_ids(code, [ids]))
    for i in range(30 if full else 4):
        add(f"random prompt #{i}", "any", lambda tmp, p=random_text(rng, 60): gen_text(code, p, max_new_tokens=1))
    add("a prompt longer than the context", "bad", lambda tmp: gen_text(code, "x = 1\n" * 2000, max_new_tokens=1),
        named=True)
    add("prompt + max_new_tokens beyond the context", "bad",
        lambda tmp: gen_text(code, "x = 1\n" * 100, max_new_tokens=CONTEXT - 5), named=True, timeout=15)
    for label, prompt in (("[]", []), ("123", 123), ("[..., None]", ["x", None])):
        add(f"generate_text({label})", "bad", lambda tmp, p=prompt: gen_text(code, p), named=True)
    add("infill on a model without infilling", "bad", lambda tmp: code.infill("def f(", "):\n"), named=True)
    add("speculative=True with temperature 0.7", "bad", lambda tmp: gen_text(code, speculative=True, temperature=0.7))
    for flags in CLI_GENERATE_BAD:
        add("zoo generate tiny-code x " + " ".join(flags), "bad", lambda tmp, f=flags: run_cli(
            ["generate", "tiny-code", "x", "--max-new-tokens", "2", *f]), cli=True, named=True)
    for flags in CLI_GENERATE_GOOD:
        add("valid zoo generate tiny-code x " + " ".join(flags), "good", lambda tmp, f=flags: run_cli(
            ["generate", "tiny-code", "x", "--max-new-tokens", "2", *f]), cli=True)
    images = fx["images"]
    for name, path in images["bad"].items():
        add(f"image: {name}", "bad", lambda tmp, p=path: image_text(vlm, "[IMG] hi", str(p)), named=True)
        add(f"zoo generate --image {name}", "bad", lambda tmp, p=path: run_cli(
            ["generate", str(fx["vlm_dir"]), "[IMG] hi", "--image", str(p), "--max-new-tokens", "1"]), cli=True)
    for name, obj in BAD_IMAGE_OBJECTS.items():
        add(f"image object: {name}", "bad", lambda tmp, o=obj: image_text(vlm, "[IMG] hi", o), named=True)
    good = str(images["good"])
    add("2 [IMG] markers, 1 image", "bad", lambda tmp: image_text(vlm, "[IMG] [IMG] hi", good))
    add("1 [IMG] marker, no image", "bad", lambda tmp: gen_text(vlm, "[IMG] hi", images=[], max_new_tokens=1))
    add("2 prompts, 1 image list", "bad", lambda tmp: gen_text(vlm, ["a", "b"], images=[[good]], max_new_tokens=1))
    add("images for a text-only model", "bad", lambda tmp: gen_text(code, "hi", images=[good]), named=True)
    for i in range(30 if full else 4):
        raw = rng.randbytes(rng.randint(0, 300))
        if rng.random() < 0.5:
            raw = b"\x89PNG\r\n\x1a\n" + raw
        add(f"random image bytes #{i}", "bad", lambda tmp, b=raw: image_text(vlm, "[IMG] hi", b))
    for i, img in enumerate([good, images["good"].read_bytes(), np.zeros((9, 30, 3), np.uint8),
                             np.zeros((5, 5), np.uint8)]):
        add(f"valid image #{i}", "good", lambda tmp, im=img: image_text(vlm, "[IMG] hi", im))
    add("valid zoo generate --image", "good", lambda tmp: run_cli(
        ["generate", str(fx["vlm_dir"]), "[IMG] hi", "--image", good, "--max-new-tokens", "1"]), cli=True)
    for i in range(20 if full else 3):
        kw = random_bad_generation(rng)
        add(f"with an image, generate_text(**{kw!r})", "bad", lambda tmp, kw=kw: gen_text(
            vlm, "[IMG] hi", images=[good], **kw))
    return out
