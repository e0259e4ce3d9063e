"""The translation layer: FLORES tags, the seq2seq and lexicon translators, the cache, chrF, ``xlt translate``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from xlt.cli import main
from xlt.errors import XltError
from xlt.languages.flores import FLORES200, flores_code
from xlt.mt.cache import TranslationCache, translate_cached
from xlt.mt.chrf import corpus_chrf
from xlt.mt.factory import load_translator
from xlt.mt.lexicon import LexiconTranslator
from xlt.mt.seq2seq import Seq2SeqTranslator
from xlt.mt.tags import plan_tags

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets"
if not (DATA / "nusax" / "lexicon").is_dir():
    DATA = Path("/work/shared/datasets")
HAVE_LEXICONS = (DATA / "nusax" / "lexicon" / "acehnese.csv").is_file()
SRC = str(Path(__file__).resolve().parents[1] / "src")

TEXTS = ["Lon galak that keu hotel nyoe, bereh", "ab", "Nyo beutoi, jih teungoh jaga warong.", "x y", "hotel"]


# --- FLORES-200 ----------------------------------------------------------------------------------

def test_flores_codes_of_the_nusax_and_xnli_languages():
    assert {c: FLORES200[c] for c in ("ace", "ban", "bjn", "bug", "en", "id", "jv", "mad", "min", "nij", "su",
                                      "bbc")} == {
        "ace": "ace_Latn", "ban": "ban_Latn", "bjn": "bjn_Latn", "bug": "bug_Latn", "en": "eng_Latn",
        "id": "ind_Latn", "jv": "jav_Latn", "mad": None, "min": "min_Latn", "nij": None, "su": "sun_Latn",
        "bbc": None}
    assert {c: FLORES200[c] for c in ("ar", "bg", "de", "el", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur",
                                      "vi", "zh")} == {
        "ar": "arb_Arab", "bg": "bul_Cyrl", "de": "deu_Latn", "el": "ell_Grek", "es": "spa_Latn",
        "fr": "fra_Latn", "hi": "hin_Deva", "ru": "rus_Cyrl", "sw": "swh_Latn", "th": "tha_Thai",
        "tr": "tur_Latn", "ur": "urd_Arab", "vi": "vie_Latn", "zh": "zho_Hans"}


def test_every_flores_code_is_an_nllb_200_tag():
    from transformers.models.nllb.tokenization_nllb import FAIRSEQ_LANGUAGE_CODES

    assert {c for c in FLORES200.values() if c} <= set(FAIRSEQ_LANGUAGE_CODES)


@pytest.mark.parametrize("lang, name", [("mad", "Madurese"), ("ngaju", "Ngaju"), ("Toba Batak", "Toba Batak")])
def test_languages_flores_lacks_are_refused_by_name(lang, name):
    with pytest.raises(XltError, match=f"{name} .* is not a FLORES-200 language"):
        flores_code(lang)


# --- the seq2seq backend on tiny-random/m2m100 -----------------------------------------------------

@pytest.fixture(scope="module")
def m2m():
    return Seq2SeqTranslator("tiny-random/m2m100", batch_size=2, max_new_tokens=6)


def _record_generate(translator) -> list:
    """Wrap the model's generate: each call appends (input_ids, output ids, generate's other arguments)."""
    calls = []
    generate = translator.model.generate

    def wrapped(**kwargs):
        out = generate(**kwargs)
        calls.append((kwargs["input_ids"], out, kwargs))
        return out

    translator.model.generate = wrapped
    return calls


def test_language_tags_reach_the_model(m2m):
    tok = m2m.tokenizer
    encoder_inputs = []
    hook = m2m.model.get_encoder().register_forward_pre_hook(
        lambda module, args, kwargs: encoder_inputs.append(kwargs["input_ids"]), with_kwargs=True)
    calls = _record_generate(m2m)
    try:
        m2m.translate(TEXTS[:3], "acehnese", "en")
    finally:
        hook.remove()
        del m2m.model.generate
    ace, eng = tok.convert_tokens_to_ids("ace_Latn"), tok.convert_tokens_to_ids("eng_Latn")
    assert encoder_inputs and all((ids[:, 0] == ace).all() for ids in encoder_inputs)
    # the decoder starts from </s> (as NLLB), then the forced target tag
    assert all((out[:, 0] == tok.eos_token_id).all() and (out[:, 1] == eng).all() for _, out, _ in calls)


def test_unsupported_language_is_refused_with_its_name(m2m):
    with pytest.raises(XltError, match=r"tiny-random/m2m100 cannot translate Madurese \(mad\)"):
        m2m.translate(["x"], "mad", "en")
    with pytest.raises(XltError, match="unknown language 'klingon'"):
        m2m.check_pair("en", "klingon")


def test_a_tag_the_tokenizer_lacks_is_refused_naming_language_and_model():
    from transformers import NllbTokenizer

    tok = NllbTokenizer(vocab={"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "\u2581": 4},
                        extra_special_tokens=["eng_Latn", "ind_Latn"])
    assert plan_tags(tok, "small-nllb", "id", "en").forced_bos_token_id == tok.convert_tokens_to_ids("eng_Latn")
    with pytest.raises(XltError, match=r"model small-nllb has no language tag for Acehnese \(ace\): .*'ace_Latn'"):
        plan_tags(tok, "small-nllb", "ace", "en")
    # a tokenizer without src_lang gets the source tag in front of the text
    from transformers import PreTrainedTokenizerFast

    generic = PreTrainedTokenizerFast(tokenizer_object=tok._tokenizer,
                                      additional_special_tokens=["eng_Latn", "ind_Latn"])
    plan = plan_tags(generic, "generic", "id", "en")
    eng = generic.convert_tokens_to_ids("eng_Latn")
    assert (plan.src_lang, plan.prefix, plan.forced_bos_token_id) == (None, "ind_Latn ", eng)


def test_marian_pair_model_translates_its_declared_pair_only():
    marian = load_translator("tiny-random/marian", max_new_tokens=4)
    assert len(marian.translate(["apa kabar"], "id", "en")) == 1
    with pytest.raises(XltError, match=r"translates source language Indonesian \(id\) only, not Acehnese \(ace\)"):
        marian.check_pair("ace", "en")
    with pytest.raises(XltError, match=r"target language English \(en\) only, not French \(fr\)"):
        marian.check_pair("id", "fr")


def test_length_batches_come_back_in_input_order_and_equal_one_by_one(m2m):
    calls = _record_generate(m2m)
    try:
        batched = m2m.translate(TEXTS, "ace", "en")
    finally:
        del m2m.model.generate
    single = [m2m.translate([text], "ace", "en")[0] for text in TEXTS]
    assert batched == single
    assert len(set(batched)) > 2  # the tiny model's output depends on its input, so order is checked
    lengths = [int(ids.ne(m2m.tokenizer.pad_token_id).sum(1).max()) for ids, _, _ in calls]
    assert len(calls) == 3 and lengths == sorted(lengths, reverse=True)  # longest batch first


def test_decoding_ignores_the_checkpoints_sampling_defaults_and_honours_beams():
    greedy = Seq2SeqTranslator("tiny-random/m2m100", max_new_tokens=6)
    first = greedy.translate(TEXTS, "ace", "en")
    greedy.model.generation_config.update(do_sample=True, temperature=5.0, num_beams=4)  # a checkpoint's defaults
    assert greedy.translate(TEXTS, "ace", "en") == first
    beams = Seq2SeqTranslator("tiny-random/m2m100", max_new_tokens=6, num_beams=3)
    calls = _record_generate(beams)
    beams.translate(TEXTS[:1], "ace", "en")
    assert [(c["num_beams"], c["do_sample"], c["max_new_tokens"]) for _, _, c in calls] == [(3, False, 6)]
    assert beams.fingerprint["num_beams"] == 3 and beams.fingerprint != greedy.fingerprint


# --- the cache -----------------------------------------------------------------------------------

class Counting:
    """A translator that records how often it is asked."""

    def __init__(self, inner):
        self.inner, self.calls, self.texts = inner, 0, []

    @property
    def fingerprint(self):
        return self.inner.fingerprint

    def translate(self, texts, src, tgt):
        self.calls += 1
        self.texts += texts
        return self.inner.translate(texts, src, tgt)


def test_cache_is_hit_on_a_second_run_and_survives_a_new_process(m2m, tmp_path):
    path = tmp_path / "t.sqlite"
    counting = Counting(m2m)
    first = translate_cached(counting, TEXTS + TEXTS[:1], "ace", "en", TranslationCache(path))
    assert (first.hits, first.misses, first.translated, counting.calls) == (0, 6, 5, 1)
    assert first.translations == m2m.translate(TEXTS, "ace", "en") + first.translations[:1]
    second = translate_cached(counting, TEXTS, "acehnese", "english", TranslationCache(path))
    assert (second.hits, second.misses, counting.calls) == (5, 0, 1)
    assert second.translations == first.translations[:5]
    # another decoding setting is another translation
    other = Counting(Seq2SeqTranslator("tiny-random/m2m100", max_new_tokens=5))
    assert translate_cached(other, TEXTS[:2], "ace", "en", TranslationCache(path)).misses == 2
    # a new process reads the same entries without calling its model
    script = (
        "import json, sys\n"
        "from xlt.mt.cache import TranslationCache, translate_cached\n"
        "from xlt.mt.seq2seq import Seq2SeqTranslator\n"
        "t = Seq2SeqTranslator('tiny-random/m2m100', batch_size=2, max_new_tokens=6)\n"
        "t.translate = lambda *a: sys.exit('the model was called')\n"
        f"r = translate_cached(t, json.loads(sys.argv[1]), 'ace', 'en', TranslationCache({str(path)!r}))\n"
        "print(json.dumps([r.hits, r.translations]))\n")
    env = dict(os.environ, PYTHONPATH=SRC)
    done = subprocess.run([sys.executable, "-c", script, json.dumps(TEXTS)], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [5, first.translations[:5]]


def test_cache_writes_from_two_processes_all_land(tmp_path):
    path = tmp_path / "c.sqlite"
    script = (
        "import sys\n"
        "from xlt.mt.cache import TranslationCache\n"
        "c = TranslationCache(sys.argv[1])\n"
        "for i in range(50):\n"
        "    c.put_many({f'{sys.argv[2]}{i}-{j}': 'x' for j in range(20)})\n")
    env = dict(os.environ, PYTHONPATH=SRC)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(path), tag], env=env, stderr=subprocess.PIPE)
             for tag in "ab"]
    assert [p.wait(timeout=120) for p in procs] == [0, 0], [p.stderr.read() for p in procs]
    assert len(TranslationCache(path)) == 2 * 50 * 20


def test_no_cache_translates_each_distinct_text_once():
    counting = Counting(_FakeUpper())
    result = translate_cached(counting, ["a", "b", "a"], "id", "en", None)
    assert result.translations == ["A", "B", "A"] and counting.texts == ["a", "b"] and result.hits == 0


MOUNTINFO = """22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 0:40 / /home rw,relatime shared:2 - ext4 /dev/sda2 rw
31 30 0:41 /export /home/ana/shared rw,relatime shared:3 - nfs4 server:/export rw,vers=4.2
32 31 8:3 / /home/ana/shared/scratch rw,relatime shared:4 - xfs /dev/sdb1 rw
33 22 0:42 / /mnt/team\\040drive rw,relatime - cifs //nas/team rw
34 22 0:43 / /data rw,relatime - nfs server:/data rw
35 22 8:4 / /data rw,relatime - ext4 /dev/sdc1 rw
"""


def test_the_mount_holding_a_path_is_the_longest_mount_point_containing_it():
    from xlt.mt.cache import mount_type

    assert [mount_type(MOUNTINFO, path) for path in (
        "/home/ana/x.sqlite", "/home/ana/shared/c.sqlite", "/home/ana/shared/scratch/c.sqlite", "/home/ana/sharedx",
        "/mnt/team drive/c.sqlite", "/mnt/team", "/data/c.sqlite", "/tmp")] == [
        "ext4", "nfs4", "xfs", "ext4", "cifs", "ext4", "ext4", "ext4"]  # /data: the later mount over the NFS one
    proc_mounts = "/dev/sda1 / ext4 rw 0 0\nfs1:/vol /lustre lustre rw 0 0\n"
    assert mount_type(proc_mounts, "/lustre/u/c.sqlite") == "lustre" and mount_type("", "/x") is None


def test_a_translation_cache_on_a_network_filesystem_is_refused_before_anything_loads(tmp_path, monkeypatch, capsys):
    import xlt.mt.cache as cache

    (tmp_path / "nfs").mkdir()  # the mount point
    table = tmp_path / "mountinfo"
    table.write_text(MOUNTINFO + f"40 22 0:50 / {tmp_path / 'nfs'} rw - nfs4 server:/home rw\n")
    monkeypatch.setattr(cache, "MOUNT_TABLES", (str(tmp_path / "missing"), str(table)))
    refused = f"the translation cache {tmp_path / 'nfs' / 'new' / 'c.sqlite'} is on a network filesystem (nfs4), "
    with pytest.raises(XltError) as err:
        TranslationCache(tmp_path / "nfs" / "new" / "c.sqlite")
    assert str(err.value) == refused + ("where sqlite's locks fail and concurrent runs corrupt it; set XLT_CACHE_DIR "
                                        "(or --translation-cache, xlt translate's --cache-file) to a local disk")
    assert not (tmp_path / "nfs" / "new").exists()  # refused before sqlite made the file
    assert len(TranslationCache(tmp_path / "local" / "c.sqlite")) == 0  # a local disk is fine
    argv = ["train", "--model", "tiny-random/bert", "--task", "nusax", "--target-lang", "jv", "--method",
            "translate-train", "--translator", "lexicon", "--translation-cache",
            str(tmp_path / "nfs" / "new" / "c.sqlite"), "--output-dir", str(tmp_path / "run")]
    assert main(argv) == 2
    assert capsys.readouterr().err.strip().startswith("xlt: error: " + refused)
    assert not (tmp_path / "run").exists()


class _FakeUpper:
    fingerprint = {"backend": "upper"}

    def translate(self, texts, src, tgt):
        return [t.upper() for t in texts]


# --- chrF ----------------------------------------------------------------------------------------

def test_chrf_on_known_strings():
    same = corpus_chrf(["the cat sat", "ok"], ["the cat sat", "ok"])
    assert same.score == pytest.approx(100.0)
    assert same.signature.startswith("nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:")
    # "ab" vs "abc": 1-grams P=2/2 R=2/3, 2-grams P=1/1 R=1/2 (no 3-grams in the hypothesis: effective order 2);
    # averaged P=1, R=7/12, F(beta=2) = 5*P*R / (4P + R) = 7/11
    assert corpus_chrf(["ab"], ["abc"]).score == pytest.approx(700 / 11)
    assert corpus_chrf(["AB"], ["abc"], lowercase=True).score == pytest.approx(700 / 11)
    assert "case:lc" in corpus_chrf(["a"], ["a"], lowercase=True).signature
    assert corpus_chrf(["xyz"], ["abc"]).score == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(XltError, match="one reference per hypothesis: got 2 hypotheses and 1 references"):
        corpus_chrf(["a", "b"], ["a"])


# --- the lexicon translator ----------------------------------------------------------------------

@pytest.fixture
def small_lexicons(tmp_path):
    folder = tmp_path / "nusax" / "lexicon"
    folder.mkdir(parents=True)
    (folder / "acehnese.csv").write_text(
        ",indonesian,acehnese\n0,aku,lon\n1,saya,lon\n2,suka,galak\n3,makan,pajoh\n4,tidak ada,hana na\n")
    (folder / "english.csv").write_text(
        ",indonesian,english\n0,aku,i\n1,aku,me\n2,suka,like\n3,makan,eat\n4,nasi,rice\n")
    return tmp_path


def test_lexicon_translates_word_by_word(small_lexicons):
    lex = LexiconTranslator(small_lexicons)
    assert lex.translate(["Lon galak pajoh nasi!", "LON, galak... bu?", "hana na"], "ace", "en") == [
        "I like eat rice!",  # first entry (aku, not saya; i, not me); Indonesian 'nasi' is looked up too
        "I, like... bu?",  # case-insensitive; punctuation and unknown words kept
        "hana na",  # a multi-word local entry is never matched
    ]
    assert lex.translate(["lon galak"], "ace", "id") == ["aku suka"]
    assert lex.translate(["Makan nasi"], "id", "en") == ["Eat rice"]


def test_lexicon_refuses_pairs_it_has_no_lists_for(small_lexicons):
    lex = LexiconTranslator(small_lexicons)
    with pytest.raises(XltError, match=r"no word list for French \(fr\)"):
        lex.check_pair("fr", "en")
    with pytest.raises(XltError, match=r"cannot translate Acehnese \(ace\) into Javanese \(jv\)"):
        lex.check_pair("ace", "jv")
    with pytest.raises(XltError, match=r"lexicon file .*balinese.csv is missing"):
        lex.check_pair("ban", "en")


@pytest.mark.skipif(not HAVE_LEXICONS, reason="NusaX lexicons not present")
def test_lexicon_on_real_rows():
    lex = LexiconTranslator(DATA)
    # acehnese.csv rows 8 (aku,lon), 185 (cinta,galak: first of four), 75 (benar,beutoi), 969 (tidak,hana);
    # english.csv: aku -> i, cinta -> love, benar -> accurate (first of five), tidak -> no
    assert lex.translate(["Lon galak beutoi, hana."], "ace", "en") == ["I love accurate, no."]
    assert lex.translate(["Lon galak beutoi, hana."], "ace", "id") == ["Aku cinta benar, tidak."]


# --- xlt translate ---------------------------------------------------------------------------------

@pytest.fixture
def input_file(tmp_path):
    path = tmp_path / "in.txt"
    path.write_text("Lon galak beutoi, hana.\n\nNyo beutoi\n", encoding="utf-8")
    return path


def test_cli_translates_with_tiny_m2m100_through_the_cache(input_file, tmp_path, capsys):
    out, cache = tmp_path / "out" / "en.txt", tmp_path / "cache.sqlite"
    args = ["translate", "--model", "tiny-random/m2m100", "--from", "ace", "--to", "en", "--input",
            str(input_file), "--output", str(out), "--batch-size", "2", "--max-new-tokens", "6",
            "--cache-file", str(cache)]
    assert main(args) == 0
    lines = out.read_text(encoding="utf-8").split("\n")
    expected = Seq2SeqTranslator("tiny-random/m2m100", max_new_tokens=6).translate(
        ["Lon galak beutoi, hana.", "Nyo beutoi"], "ace", "en")
    assert lines == [expected[0], "", expected[1], ""]  # blank lines stay blank, one line per input line
    assert "2 sent to the translator, 0 from the cache" in capsys.readouterr().err
    assert main(args) == 0
    assert "0 sent to the translator, 2 from the cache" in capsys.readouterr().err
    assert out.read_text(encoding="utf-8").split("\n") == lines


@pytest.mark.skipif(not HAVE_LEXICONS, reason="NusaX lexicons not present")
def test_cli_translates_with_the_lexicon(input_file, tmp_path, capsys):
    out = tmp_path / "en.txt"
    assert main(["translate", "--model", "lexicon", "--from", "acehnese", "--to", "en", "--input", str(input_file),
                 "--output", str(out), "--no-cache", "--data-dir", str(DATA)]) == 0
    assert out.read_text(encoding="utf-8") == "I love accurate, no.\n\nAy accurate\n"
    assert "no cache" in capsys.readouterr().err


@pytest.fixture
def no_model_loads(monkeypatch):
    import xlt.mt.factory

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(xlt.mt.factory, "load_translator", refuse)


@pytest.mark.parametrize("change, message", [
    ({"--from": "mad"}, r"tiny-random/m2m100 cannot translate: Madurese \(mad\) is not a FLORES-200 language"),
    ({"--from": "xx"}, "unknown language 'xx'"),
    ({"--to": "ace"}, r"--from and --to are the same language \(ace\)"),
    ({"--model": "lexicon", "--to": "fr"}, r"lexicon translator cannot translate Acehnese \(ace\) into French"),
    ({"--model": "lexicon", "--from": "th"}, r"lexicon translator has no word list for Thai \(th\)"),
    ({"--input": "{tmp}/missing.txt"}, "--input .*missing.txt does not exist"),
    ({"--output": "{in}"}, "--output .*in.txt is the same file as --input"),
    ({"--output": "{in}/x.txt"}, "x.txt: the folder .*in.txt is an existing file, not a folder"),
    ({"--output": "{tmp}"}, "--output .* is a folder"),
    ({"--cache-file": "{in}"}, "--cache-file .*in.txt is the same file as --input"),
    ({"--beams": "0"}, "--beams must be at least 1, got 0"),
    ({"--model": "./no/such/folder"}, "model folder ./no/such/folder does not exist"),
])
def test_cli_bad_input_is_one_line_and_exit_2_before_any_model_loads(change, message, input_file, tmp_path,
                                                                      capsys, no_model_loads):
    args = {"--model": "tiny-random/m2m100", "--from": "ace", "--to": "en", "--input": str(input_file),
            "--output": str(tmp_path / "out.txt"), "--data-dir": str(DATA)}
    args.update({k: v.format(tmp=tmp_path, **{"in": input_file}) for k, v in change.items()})
    assert main(["translate", *[x for kv in args.items() for x in kv]]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("xlt: error: ")
    assert re.search(message, err), err
    assert not (tmp_path / "out.txt").exists()


def test_cli_refuses_a_cache_file_together_with_no_cache(input_file, tmp_path, capsys):
    assert main(["translate", "--model", "lexicon", "--from", "ace", "--to", "en", "--input", str(input_file),
                 "--output", str(tmp_path / "o.txt"), "--no-cache", "--cache-file", str(tmp_path / "c")]) == 2
    assert "not allowed with argument --no-cache" in capsys.readouterr().err


# --- CTranslate2 -----------------------------------------------------------------------------------

def test_ctranslate2_missing_is_one_line_naming_the_extra(monkeypatch, tmp_path):
    from xlt.mt.ct2 import CTranslate2Translator

    monkeypatch.setitem(sys.modules, "ctranslate2", None)  # as if not installed
    with pytest.raises(XltError, match=r'need the ctranslate2 package: pip install "xlt\[ctranslate2\]"'):
        CTranslate2Translator(str(tmp_path))


def test_ctranslate2_matches_transformers_on_tiny_m2m100(m2m, tmp_path):
    pytest.importorskip("ctranslate2")
    from ctranslate2.converters import TransformersConverter

    folder = tmp_path / "ct2"
    TransformersConverter(m2m.path, copy_files=["tokenizer.json", "tokenizer_config.json"]).convert(str(folder))
    ct2 = load_translator(str(folder), batch_size=2, max_new_tokens=6)
    assert type(ct2).__name__ == "CTranslate2Translator"
    assert ct2.translate(TEXTS, "ace", "en") == m2m.translate(TEXTS, "ace", "en")
    with pytest.raises(XltError, match=r"cannot translate Ngaju \(nij\)"):
        ct2.check_pair("nij", "en")
