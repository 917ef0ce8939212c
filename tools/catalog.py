"""Maintain gradaudit's message catalogs: extract, update the translations, compile.

    python tools/catalog.py update    # extract every message; add new ones to each .po, drop gone ones
    python tools/catalog.py compile   # .po -> the .mo files gradaudit reads at run time
    python tools/catalog.py check     # exit 1 listing untranslated messages or an outdated .mo

Messages come from three places: `_`/`N_`/`ngettext` calls in the package's Python code, `_()`
calls and `{% trans %}` blocks in the jinja2 templates (jinja2.ext.i18n), and the rule registry
(each rule's summary, message template and documentation, which are data, not calls). Babel does
the extraction, the .po merge and the compilation; it is a development dependency only (the
package reads the .mo files with the standard library's gettext).
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po
from jinja2.ext import babel_extract

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from gradaudit import __version__  # noqa: E402
from gradaudit.i18n import DOMAIN, LANGUAGES, LOCALE_DIR, SOURCE_LANGUAGE  # noqa: E402

# {% trans %} blocks extract as gettext (and ngettext with pluralize)
KEYWORDS = {"_": None, "N_": None, "gettext": None, "ngettext": (1, 2)}
TEMPLATE_OPTIONS = {"extensions": "jinja2.ext.i18n", "trimmed": "true"}
POT = LOCALE_DIR / f"{DOMAIN}.pot"
WIDTH = 100
UPDATE_COMMAND = "python tools/catalog.py update"
COMPILE_COMMAND = "python tools/catalog.py compile"


def po_path(lang: str) -> Path:
    return LOCALE_DIR / lang / "LC_MESSAGES" / f"{DOMAIN}.po"


def mo_path(lang: str) -> Path:
    return po_path(lang).with_suffix(".mo")


def translated_languages() -> list[str]:
    return [lang for lang in LANGUAGES if lang != SOURCE_LANGUAGE]


def _sources() -> list[tuple[Path, object]]:
    """Each file messages are extracted from, with its Babel extraction method."""
    code = sorted((ROOT / "gradaudit").rglob("*.py"))
    templates = sorted((ROOT / "templates").glob("*.j2"))
    return [(path, "python") for path in code] + [(path, babel_extract) for path in templates]


def _registry_messages() -> list[tuple[str, str]]:
    """(message, where) of every rule's summary, message template and documentation."""
    from gradaudit.rules import all_rules

    return [(text, f"rule {rule.code} {part}") for rule in all_rules()
            for part, text in (("summary", rule.summary), ("message", rule.message), ("doc", rule.doc)) if text]


def extracted() -> Catalog:
    """Every message gradaudit can show, with where it comes from."""
    catalog = Catalog(domain=DOMAIN, project="gradaudit", version=__version__, copyright_holder="the gradaudit authors",
                      msgid_bugs_address="the gradaudit issue tracker", last_translator="the gradaudit authors",
                      charset="utf-8", fuzzy=False)
    for path, method in _sources():
        options = TEMPLATE_OPTIONS if method is babel_extract else {}
        with path.open("rb") as handle:
            for lineno, message, comments, context in extract(method, handle, KEYWORDS, options=options):
                catalog.add(message, None, [(str(path.relative_to(ROOT)), lineno)], auto_comments=comments,
                            context=context)
    for message, where in _registry_messages():
        catalog.add(message, None, [(where, 0)])
    return catalog


def _read(path: Path) -> Catalog:
    with path.open("rb") as handle:
        return read_po(handle)


def _write_po(catalog: Catalog, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        write_po(handle, catalog, width=WIDTH, ignore_obsolete=True, omit_header=False, sort_output=False)


def compiled(lang: str) -> bytes:
    """The .mo file the .po of `lang` compiles to (Babel's writer is deterministic)."""
    buffer = io.BytesIO()
    write_mo(buffer, _read(po_path(lang)))
    return buffer.getvalue()


def update() -> None:
    """Rewrite the template and merge it into each language's .po (new messages untranslated)."""
    template = extracted()
    _write_po(template, POT)
    for lang in translated_languages():
        path = po_path(lang)
        catalog = _read(path) if path.is_file() else Catalog(locale=lang, domain=DOMAIN, fuzzy=False)
        catalog.update(template, no_fuzzy_matching=True)
        for field in ("project", "version", "msgid_bugs_address", "last_translator"):
            setattr(catalog, field, getattr(template, field))  # a new .po starts with Babel's placeholders
        _write_po(catalog, path)


def compile_all() -> None:
    for lang in translated_languages():
        mo_path(lang).write_bytes(compiled(lang))


def missing(lang: str) -> list[str]:
    """Extracted messages without a (non-fuzzy) translation in the .po of `lang`."""
    catalog = _read(po_path(lang))
    return [message.id for message in extracted() if message.id
            and not ((entry := catalog.get(message.id)) is not None and entry.string and not entry.fuzzy)]


def stale(lang: str) -> bool:
    """Does the shipped .mo of `lang` differ from what its .po compiles to?"""
    return not mo_path(lang).is_file() or mo_path(lang).read_bytes() != compiled(lang)


def check() -> int:
    problems = []
    for lang in translated_languages():
        absent = missing(lang)
        if absent:
            problems.append(f"{len(absent)} message(s) without a {lang} translation:\n"
                            + "\n".join(f"  {message!r}" for message in absent))
        if stale(lang):
            problems.append(f"{mo_path(lang).relative_to(ROOT)} is out of date with its .po: run {COMPILE_COMMAND}")
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


def main(argv: list[str]) -> int:
    commands = {"update": update, "compile": compile_all}
    if len(argv) != 1 or argv[0] not in (*commands, "check"):
        print(__doc__, file=sys.stderr)
        return 2
    if argv[0] == "check":
        return check()
    commands[argv[0]]()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
