"""``xlt translate``: a file of sentences (one per line) into another language, through the cache.

Everything that can be wrong with the request (languages, files, the lexicon's word lists, a model
that has no tag for a language) is checked before any weights load; the output is written atomically.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from xlt.cli.options import add_option
from xlt.data.formats.lines import read_lines
from xlt.errors import XltError

LEXICON = "lexicon"


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("translate", help="translate a file line by line (NLLB/M2M100/OPUS-MT, CTranslate2, "
                                                "or the NusaX lexicons), with a shared translation cache")
    add_option(p, "--model", required=True, help="an HF seq2seq checkpoint (id or folder), tiny-random/m2m100, "
                                                  "a CTranslate2 folder, or 'lexicon' (NusaX word lists)")
    add_option(p, "--from", dest="source_lang", required=True, help="source language (code or name)")
    add_option(p, "--to", dest="target_lang", required=True, help="target language (code or name)")
    add_option(p, "--input", required=True, help="UTF-8 text file, one sentence per line")
    add_option(p, "--output", required=True, help="where the translations go, one per line")
    add_option(p, "--batch-size", type=int, default=16, help="sentences per generate call")
    add_option(p, "--beams", type=int, default=1, help="beam size (1: greedy)")
    add_option(p, "--max-new-tokens", type=int, default=128, help="longest translation in tokens")
    cache = p.add_mutually_exclusive_group()
    add_option(cache, "--cache-file", help="sqlite file of cached translations",
               shown="translations.sqlite in $XLT_CACHE_DIR, else ~/.cache/xlt")
    add_option(cache, "--no-cache", action="store_true", help="translate everything, store nothing")
    add_option(p, "--data-dir", help="data set folder (for --model lexicon)",
               shown="$XLT_DATA_DIR, else ../shared/datasets")
    return p


def _check_writable_file(path: Path, what: str, others: dict[str, Path]) -> None:
    if path.is_dir():
        raise XltError(f"{what} {path} is a folder")
    for other_what, other in others.items():
        if path.resolve() == other.resolve():
            raise XltError(f"{what} {path} is the same file as {other_what}")
    from xlt.runs.preflight import check_output_dir

    check_output_dir(path.parent, f"{what} {path}: the folder")
    if path.exists() and not os.access(path, os.W_OK):
        raise XltError(f"{what} {path}: no permission to write it")


def _nllb_style(model: str) -> bool:
    """Whether the model's tags are FLORES-200 codes, judged without loading it."""
    if model == "tiny-random/m2m100" or "nllb" in model.lower():
        return True
    config = Path(model) / "tokenizer_config.json"
    try:
        return str(json.loads(config.read_text()).get("tokenizer_class", "")).startswith("Nllb")
    except (OSError, ValueError, AttributeError):
        return False


def check(args: argparse.Namespace) -> list[str]:
    """Everything checkable before a model loads; returns the input sentences."""
    from xlt.languages import canonical_code

    src, tgt = canonical_code(args.source_lang), canonical_code(args.target_lang)
    if src == tgt:
        raise XltError(f"--from and --to are the same language ({src})")
    for flag, value in (("--batch-size", args.batch_size), ("--beams", args.beams),
                        ("--max-new-tokens", args.max_new_tokens)):
        if value < 1:
            raise XltError(f"{flag} must be at least 1, got {value}")
    source, output = Path(args.input), Path(args.output)
    lines = read_lines(source, "--input")
    _check_writable_file(output, "--output", {"--input": source})
    if args.cache_file:
        _check_writable_file(Path(args.cache_file), "--cache-file", {"--input": source, "--output": output})
    if args.model == LEXICON:
        from xlt.mt.lexicon import LexiconTranslator

        LexiconTranslator(args.data_dir).check_pair(src, tgt)
        return lines
    from xlt.mt.factory import is_ctranslate2_folder

    if is_ctranslate2_folder(args.model):
        from xlt.mt.ct2 import require_ctranslate2

        require_ctranslate2()
    elif args.model.startswith(("/", "./", "../", "~")) and not Path(args.model).expanduser().exists():
        raise XltError(f"model folder {args.model} does not exist")
    if _nllb_style(args.model):
        from xlt.languages.flores import flores_code

        for code in (src, tgt):
            try:
                flores_code(code)
            except XltError as err:
                raise XltError(f"model {args.model} cannot translate: {err}") from None
    return lines


def run(args: argparse.Namespace) -> int:
    lines = check(args)
    from xlt.io import write_text_atomic
    from xlt.mt.cache import TranslationCache, translate_cached
    from xlt.mt.factory import load_translator

    settings = {} if args.model == LEXICON else {
        "batch_size": args.batch_size, "num_beams": args.beams, "max_new_tokens": args.max_new_tokens}
    translator = load_translator(args.model, data_dir=args.data_dir, **settings)
    translator.check_pair(args.source_lang, args.target_lang)  # on the tokenizer, before the weights load
    translator.show_progress = True
    cache = None if args.no_cache else TranslationCache(args.cache_file)
    wanted = [line for line in lines if line.strip()]
    result = translate_cached(translator, wanted, args.source_lang, args.target_lang, cache)
    done = iter(result.translations)
    out = [next(done).replace("\n", " ") if line.strip() else "" for line in lines]
    write_text_atomic(args.output, "".join(line + "\n" for line in out))
    cached = "no cache" if cache is None else f"{result.hits} from the cache {cache.path}"
    print(f"translated {len(lines)} lines ({result.translated} sent to the translator, {cached}) -> {args.output}",
          file=sys.stderr)
    return 0
