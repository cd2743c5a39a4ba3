"""kubernetes_asyncio without its generated classes until something asks for one.

Importing any part of ``kubernetes_asyncio`` runs its packages' ``__init__``, which import every
generated API and model class: about 850 modules and 30 MiB of RSS, in processes that use only the
ApiClient, the Configuration and the config loaders (kopf imports three model classes for its
isinstance checks). ``install()`` registers those packages without running their ``__init__``. A
name read from one is imported from the module that ``__init__`` would import it from (found by
reading its source), so a class costs only its own module. Any other name (``__all__``,
``__version__``, one the ``__init__`` makes some other way) runs the real ``__init__`` first: code
using the library sees the same names and objects, only later.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

PACKAGES = (
    "kubernetes_asyncio",
    "kubernetes_asyncio.client",
    "kubernetes_asyncio.client.api",
    "kubernetes_asyncio.client.models",
)
_FROM = re.compile(r"^from (kubernetes_asyncio[\w.]*) import (\w+)(?: as (\w+))?\s*$", re.M)
_IMPORT_AS = re.compile(r"^import (kubernetes_asyncio[\w.]*) as (\w+)\s*$", re.M)


def install() -> bool:
    """Register the packages lazily; False when one was imported already (the usual way then)."""
    if any(name in sys.modules for name in PACKAGES):
        return False
    return all(_lazy(name) for name in PACKAGES)


def _lazy(name: str) -> bool:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or spec.origin is None or spec.submodule_search_locations is None:
        return False
    module = importlib.util.module_from_spec(spec)
    table: dict[str, tuple[str, str | None]] = {}

    def real_init() -> None:
        vars(module).pop("__getattr__", None)
        spec.loader.exec_module(module)  # type: ignore[union-attr]

    def __getattr__(attr: str) -> Any:  # PEP 562
        if attr.startswith("__") and attr not in ("__all__", "__version__"):
            raise AttributeError(attr)
        if importlib.util.find_spec(f"{name}.{attr}") is not None:  # a subpackage or submodule
            return importlib.import_module(f"{name}.{attr}")
        if not table:
            text = Path(str(spec.origin)).read_text(encoding="utf-8")
            table.update({alias or what: (source, what) for source, what, alias in _FROM.findall(text)})
            table.update({alias: (source, None) for source, alias in _IMPORT_AS.findall(text)})
        if attr not in table:
            real_init()
            return getattr(module, attr)
        source, what = table[attr]
        value = importlib.import_module(source)
        if what is not None:
            value = getattr(value, what)
        setattr(module, attr, value)
        return value

    vars(module)["__getattr__"] = __getattr__
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)
    return True


def loaded(prefix: str = "kubernetes_asyncio") -> list[str]:
    """The modules of ``prefix`` imported so far (for tests and benchmarks)."""
    return sorted(m for m in sys.modules if m == prefix or m.startswith(prefix + "."))


__all__ = ["PACKAGES", "install", "loaded"]
