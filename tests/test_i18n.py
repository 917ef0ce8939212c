"""The message catalogs: every message has a Chinese translation, the shipped .mo is compiled from
the .po, a translation keeps its message's placeholders, and the active language is scoped."""

from __future__ import annotations

import re

import pytest
from babel.messages.pofile import read_po

from gradaudit.errors import InputError
from gradaudit.i18n import N_, _, current_language, ngettext, translations, use_language
from tools import catalog

# str.format fields ({name}, {name:.2f}) and the %(name)s fields of the jinja2 templates
PLACEHOLDER = re.compile(r"\{[A-Za-z_][^{}]*\}|%\([a-z_]+\)[sd]")


@pytest.mark.parametrize("lang", catalog.translated_languages())
def test_every_message_has_a_translation(lang):
    absent = catalog.missing(lang)
    assert not absent, (
        f"{len(absent)} message(s) extracted from the code, the templates and the rule registry have no "
        f"{lang} translation in {catalog.po_path(lang).relative_to(catalog.ROOT)}:\n"
        + "\n".join(f"  {message!r}" for message in absent)
        + f"\nRun `{catalog.UPDATE_COMMAND}` (adds them to the .po), translate each msgstr, "
        f"then `{catalog.COMPILE_COMMAND}`."
    )


@pytest.mark.parametrize("lang", catalog.translated_languages())
def test_shipped_mo_is_compiled_from_the_po(lang):
    assert not catalog.stale(lang), (
        f"{catalog.mo_path(lang).relative_to(catalog.ROOT)} is out of date with its .po: "
        f"run `{catalog.COMPILE_COMMAND}` and commit the .mo")


@pytest.mark.parametrize("lang", catalog.translated_languages())
def test_translations_keep_the_placeholders_of_their_message(lang):
    with catalog.po_path(lang).open("rb") as handle:
        entries = [entry for entry in read_po(handle) if entry.id and entry.string]
    wrong = []
    for entry in entries:
        ids = entry.id if isinstance(entry.id, tuple) else (entry.id,)
        strings = entry.string if isinstance(entry.string, tuple) else (entry.string,)
        expected = sorted(PLACEHOLDER.findall(ids[-1]))
        wrong += [entry.id for text in strings if sorted(PLACEHOLDER.findall(text)) != expected]
    assert not wrong, wrong


def test_the_four_remedies_carry_the_names_the_method_uses():
    with use_language("zh"):
        names = [_(title) for title in ("Pruning / weight cutting", "Normalization", "Learning-rate adaptation",
                                        "Batch shift (re-centering)")]
    assert names == ["权重剪枝", "批量归一化", "自适应学习率调整", "批量项平移（重新居中）"]


def test_the_language_is_scoped_and_english_is_the_identity():
    assert current_language() == "en" and _("What to do") == "What to do"
    with use_language("zh"):
        assert current_language() == "zh"
        assert _("What to do") == "怎么做"
        assert ngettext("{count} model", "{count} models", 3) == "{count} 个模型"
        assert _("") == ""  # never the catalog's header
    assert current_language() == "en" and _("What to do") == "What to do"
    assert N_("What to do") == "What to do"


def test_an_unknown_language_is_an_input_error_naming_the_choices():
    with pytest.raises(InputError, match="'xx'.*en, zh"):
        translations("xx")
