"""Prompt templates of generation tasks, looked up by name.

A :class:`~xlt.data.examples.GenTaskData` names its template (and its metric, :mod:`xlt.scoring.generation`), so
the trainer (teacher forcing, greedy decoding) stays task-agnostic: a new generation task is one ``TEMPLATES``
entry plus one ``GEN_METRICS`` entry.

Template wording is English for every target language: the answer format (slot names, intent labels, ``None``)
is shared by all languages, and a fixed instruction keeps the prompt identical between source-language training
and target-language testing; only the ``{text}`` changes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from xlt.errors import XltError
from xlt.languages import english_name


@dataclass(frozen=True)
class Template:
    """A prompt template; ``{text}`` is replaced by the input (plain replace, not ``str.format``,
    so templates may contain literal braces, e.g. JSON). The prompt ends without a trailing space:
    where the answer starts (space, newline, EOS) is the tokenizer-side trainer's choice."""

    name: str
    text: str

    def prompt(self, text: str, passage: str = "") -> str:
        """The template with ``{text}`` and ``{passage}`` (QA's paragraph) filled in, in one pass, so braces
        inside either value are never read as a placeholder."""
        values = {"text": text, "passage": passage}
        return re.sub(r"\{(text|passage)\}", lambda m: values[m.group(1)], self.text)


JSON_NER_TYPES = ("PER", "LOC", "ORG")  # uner-json's entity types, in the order its prompt names them


def json_ner_template(types: tuple[str, ...]) -> Template:
    """The JSON NER prompt naming the entity types to find: UNER's three, or those of a custom-ner file."""
    named = types[0] if len(types) == 1 else f"{', '.join(types[:-1])} or {types[-1]}"
    return Template("json_ner", 'List the named entities of the sentence as a JSON list of {"type": ..., '
                                f'"text": ...}} objects with type {named} ([] if none).\n'
                                "Sentence: {text}\nEntities:")


TEMPLATES: dict[str, Template] = {
    "slots": Template("slots", "Extract the slots from the utterance as 'slot: words; ...' or None.\n"
                               "Utterance: {text}\nSlots:"),
    "intent": Template("intent", "Give the intent label of the utterance.\nUtterance: {text}\nIntent:"),
    # extractive QA on decoders and mT5 (xlt.data.qa_generation): the paragraph first, so the question and the cue
    # end the prompt whatever part of the paragraph fits (xlt.kinds.passages)
    "qa": Template("qa", "Answer the question with a short span copied from the paragraph.\n"
                         "Paragraph: {passage}\nQuestion: {text}\nAnswer:"),
    "json_ner": json_ner_template(JSON_NER_TYPES),
    # nusax-mt: the text names both languages (xlt.data.prompts.translation_prompt), so one instruction serves every direction
    "mt": Template("mt", "Translate the sentence into the language named on the last line.\n{text}"),
}


def get_template(name: str | Template) -> Template:
    """The template registered as ``name``; a :class:`Template` built for one data set (custom-ner's entity
    types) is its own."""
    if isinstance(name, Template):
        return name
    if name not in TEMPLATES:
        raise XltError(f"unknown prompt template {name!r}; known: {', '.join(TEMPLATES)}")
    return TEMPLATES[name]


TRANSLATION_TEMPLATE = "mt"  # xlt.scoring.generation: the instruction and the BLEU/chrF metric


def language_word(code: str) -> str:
    """How the prompt names a language: 'Acehnese', 'Toba Batak'; a code xlt does not know (a user's file,
    task custom-mt, may be in any language) as it is given."""
    try:
        return english_name(code)
    except XltError:
        return code


def translation_prompt(sentence: str, source: str, target: str) -> str:
    return f"{language_word(source)}: {sentence}\n{language_word(target)}:"
