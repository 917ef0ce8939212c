"""The remedies, one module beside each rule module: answers/flow.py answers gradaudit/rules/flow.py.

Importing this package imports every module in it, which registers its remedies
(gradaudit.remedies.remedy_registry): a new module here needs no other line to take part.
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
