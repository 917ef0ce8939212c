"""The language a person reads gradaudit in: gettext catalogs and one active language.

Every sentence shown to a person (terminal and HTML reports, rule summaries, messages and
documentation, diagnosis reasons, recommendations) goes through `_` (or `ngettext`), which looks it
up in the active language's compiled catalog `gradaudit/locale/<lang>/LC_MESSAGES/gradaudit.mo`
with the standard library's `gettext` (no runtime dependency). English is the source language:
its "catalog" is the identity. Strings defined before a language is active (tables of titles)
are marked with `N_` for extraction and translated where they are shown.

The active language is a context variable, set around an audit and its rendering by
`use_language`: findings and recommendations are worded while the audit runs, so an `Audit`
records the language it was written in (`Audit.language`) and renders in it. Machine-readable
parts (JSON/SARIF/JUnit keys, rule codes, the diagnosis and verdict words of the JSON contract)
never pass through here. `tools/catalog.py` extracts the messages, updates the `.po` sources
and compiles the `.mo` files (README, "Languages").
"""

from __future__ import annotations

import contextlib
import functools
import gettext
from contextvars import ContextVar
from pathlib import Path
from typing import Iterator

from gradaudit.errors import InputError

DOMAIN = "gradaudit"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
SOURCE_LANGUAGE = "en"
LANGUAGES = (SOURCE_LANGUAGE, "zh")  # zh: Simplified Chinese

_active: ContextVar[tuple[str, gettext.NullTranslations]] = ContextVar(
    "gradaudit_language", default=(SOURCE_LANGUAGE, gettext.NullTranslations()))


def checked_language(lang: str) -> str:
    """`lang` when gradaudit speaks it, else an InputError listing the languages it speaks."""
    if lang not in LANGUAGES:
        raise InputError(f"unknown language {lang!r} (choose from {', '.join(LANGUAGES)})")
    return lang


@functools.cache
def translations(lang: str) -> gettext.NullTranslations:
    """The compiled catalog of `lang` (the identity for English), read once per process."""
    if checked_language(lang) == SOURCE_LANGUAGE:
        return gettext.NullTranslations()
    return gettext.translation(DOMAIN, LOCALE_DIR, languages=[lang])


@contextlib.contextmanager
def use_language(lang: str) -> Iterator[None]:
    """Translate every message produced inside the block into `lang`."""
    token = _active.set((lang, translations(lang)))
    try:
        yield
    finally:
        _active.reset(token)


def current_language() -> str:
    """The language messages are translated into right now."""
    return _active.get()[0]


def _(message: str) -> str:
    """`message` in the active language (unchanged where the catalog has no entry)."""
    # gettext("") is the catalog's header, never a translation of an empty text
    return _active.get()[1].gettext(message) if message else message


def ngettext(singular: str, plural: str, count: int) -> str:
    """The singular or plural form of a message for `count`, in the active language."""
    return _active.get()[1].ngettext(singular, plural, count)


def N_(message: str) -> str:
    """Mark `message` for extraction only; it is translated with `_` where it is shown."""
    return message
