"""A chapter's slow results, kept in ``results/chapters/`` under a key of everything they depend on.

A chapter's heaviest cells (hundreds of perturbation curves, optimised masks, IG budget sweeps) cost
minutes, and every build of the book ran them again. ``ChapterStore(name, model)(entry, compute)`` runs
``compute()`` once and keeps its value in ``results/chapters/<name>/<entry>.<sha>.json``; a later run returns the
kept value only when its key is unchanged. The key is a SHA-256 of

* the chapter's code: every code cell of ``<name>.md`` (or its notebook ``<name>.ipynb``) in the working
  folder, as saved (the prose is left out, so editing a sentence keeps the results);
* the package: the source of the ``xai_helpers`` modules the chapter imported, and of every module those
  import, directly or not (``package_digest``);
* the model: the SHA-256 of its weights (``weights_fingerprint``);
* the versions of NumPy, SciPy, TensorFlow, Keras and tf-keras-vis;
* the ``settings`` the cell passes, and the names in ``drop`` (fields of the value's dataclasses that the
  chapter does not use: left out of the file, and None whether computed or read).

Any change of those computes the entry again (and overwrites the file), so a kept value is what the same
code gives on the same data; no value is kept across a change. The file's name carries the weights' SHA-256
(its first 12 digits, ``<entry>.<sha>.json``), so one entry computed for two models is two files, not one
file that each model's run overwrites. The file is JSON: arrays as base64 of their
zlib-compressed bytes (exact, dtype and shape kept), dataclasses and named tuples of this package by name,
so it can be read without running anything from it (no pickle). Progress lines (read, computing, computed)
go to the build's log (``buildlog.note``), not into the book.
"""
from __future__ import annotations

import base64
import dataclasses
import hashlib
import importlib
import json
import sys
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from .buildlog import note
from .paths import RESULTS_DIR

#: Where the kept results go: ``results/chapters/<chapter>/<entry>.<weights sha256[:12]>.json``.
STORE_DIR = RESULTS_DIR / "chapters"
_PACKAGE_DIR = Path(__file__).resolve().parent
_VERSIONED = ("numpy", "scipy", "tensorflow-cpu", "keras", "tf-keras-vis")


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "absent"


def package_imports(module: str) -> set[str]:
    """Return the package's modules that ``module`` imports (``from . import x``, ``from .x import y``, inside
    functions too: the lazy imports count), read from the source."""
    import ast

    path = _PACKAGE_DIR / f"{module}.py"
    names = {p.stem for p in _PACKAGE_DIR.glob("*.py")}
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found.update([node.module.split(".")[0]] if node.module else [a.name for a in node.names])
    return found & names - {module}


def used_modules(roots: Sequence[str]) -> list[str]:
    """Return ``roots`` and every package module they import, directly or not (sorted)."""
    seen: set[str] = set()
    todo = [r for r in roots if (_PACKAGE_DIR / f"{r}.py").is_file()]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(package_imports(module) - seen)
    return sorted(seen)


def package_digest(roots: Sequence[str] | None = None) -> str:
    """SHA-256 of the source (name and bytes) of the package modules ``used_modules(roots)``; every module's
    when ``roots`` is None. A chapter's roots are the modules it has imported, and ``__init__``'s public
    names, so an edit of the command line or the study runner keeps a single-photo chapter's results."""
    modules = sorted(p.stem for p in _PACKAGE_DIR.glob("*.py")) if roots is None else used_modules(roots)
    digest = hashlib.sha256()
    for module in modules:
        digest.update(module.encode() + b"\0" + (_PACKAGE_DIR / f"{module}.py").read_bytes() + b"\0")
    return digest.hexdigest()


def _chapter_roots() -> list[str]:
    """The package modules imported in this process so far, and those behind ``xai_helpers``'s lazy names."""
    import xai_helpers

    loaded = [name.split(".", 1)[1] for name in sys.modules if name.startswith("xai_helpers.")]
    return sorted({"__init__", *loaded, *xai_helpers._PUBLIC.values()})


def chapter_code(chapter: str, folder: Path | str = ".") -> str:
    """Return the code cells of chapter ``chapter`` (``<chapter>.md`` or ``.ipynb`` in ``folder``), joined.

    Raises ``FileNotFoundError`` (one sentence) when neither file is there.
    """
    import jupytext

    folder = Path(folder)
    for suffix in (".md", ".ipynb"):
        path = folder / f"{chapter}{suffix}"
        if path.is_file():
            notebook = jupytext.read(path)
            return "\n# -- cell --\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")
    raise FileNotFoundError(f"ChapterStore({chapter!r}) keys its results on the chapter's code, but neither "
                            f"{chapter}.md nor {chapter}.ipynb is in {folder.resolve()}; run the chapter from "
                            "its own folder.")


def _encode(value: Any, arrays: dict[int, int], blobs: list[dict], drop: frozenset = frozenset()) -> Any:
    if isinstance(value, np.ndarray):
        if id(value) not in arrays:   # one copy of an array that several results share
            arrays[id(value)] = len(blobs)
            data = np.ascontiguousarray(value)
            blobs.append({"dtype": data.dtype.str, "shape": list(data.shape),
                          "zlib": base64.b64encode(zlib.compress(data.tobytes(), 6)).decode("ascii")})
        return {"__array__": arrays[id(value)]}
    if isinstance(value, np.generic):
        return _encode(value.item(), arrays, blobs, drop)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: None if f.name in drop else _encode(getattr(value, f.name), arrays, blobs, drop)
                  for f in dataclasses.fields(value) if f.init}
        return {"__object__": f"{type(value).__module__}.{type(value).__qualname__}", "fields": fields}
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        fields = {name: None if name in drop else _encode(getattr(value, name), arrays, blobs, drop)
                  for name in value._fields}
        return {"__object__": f"{type(value).__module__}.{type(value).__qualname__}", "fields": fields}
    if isinstance(value, Mapping):
        return {"__dict__": [[_encode(k, arrays, blobs, drop), _encode(v, arrays, blobs, drop)]
                             for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        return {"__list__" if isinstance(value, list) else "__tuple__":
                [_encode(v, arrays, blobs, drop) for v in value]}
    if isinstance(value, float):
        return {"__float__": repr(value)}   # NaN and infinities too, exactly
    if value is None or isinstance(value, (bool, int, str)):
        return value
    raise TypeError(f"ChapterStore cannot keep a {type(value).__name__}; return arrays, numbers, strings, "
                    "lists, dicts, or dataclasses of xai_helpers.")


def _class(name: str) -> type:
    module, _, qualname = name.rpartition(".")
    if module.split(".")[0] != "xai_helpers":
        raise ValueError(f"a stored result names the class {name!r}, which is not one of xai_helpers.")
    return getattr(importlib.import_module(module), qualname)


def _decode(value: Any, blobs: list[np.ndarray]) -> Any:
    if not isinstance(value, dict):
        return value
    if "__array__" in value:
        return blobs[value["__array__"]]
    if "__object__" in value:
        fields = {k: _decode(v, blobs) for k, v in value["fields"].items()}
        return _class(value["__object__"])(**fields)
    if "__dict__" in value:
        return {_decode(k, blobs): _decode(v, blobs) for k, v in value["__dict__"]}
    if "__list__" in value:
        return [_decode(v, blobs) for v in value["__list__"]]
    if "__tuple__" in value:
        return tuple(_decode(v, blobs) for v in value["__tuple__"])
    if "__float__" in value:
        return float(value["__float__"])
    raise ValueError(f"a stored result holds an unknown entry {sorted(value)!r}.")


def encode(value: Any, drop: Sequence[str] = ()) -> dict:
    """Return ``value`` as a JSON-ready dict (see the module docstring); ``decode`` inverts it exactly.

    ``drop``: names of dataclass fields written as None (results the reader does not need).
    """
    blobs: list[dict] = []
    return {"value": _encode(value, {}, blobs, frozenset(drop)), "arrays": blobs}


def decode(document: Mapping) -> Any:
    """Return the value that ``encode`` wrote (arrays read-only copies of the kept bytes)."""
    blobs = [np.frombuffer(zlib.decompress(base64.b64decode(b["zlib"])), dtype=np.dtype(b["dtype"]))
             .reshape(b["shape"]).copy() for b in document["arrays"]]
    return _decode(document["value"], blobs)


class ChapterStore:
    """``store(entry, compute, drop=(), **settings)``: ``compute()``'s value, kept under the chapter's key.

    ``models``: the Keras models the chapter's results depend on (their weights' SHA-256 enter the key).
    ``folder``: where the chapter's ``.md`` or ``.ipynb`` is (the working folder, as when it runs).
    """

    def __init__(self, chapter: str, models: object | list = (), folder: Path | str = ".",
                 store_dir: Path | str | None = None):
        from .provenance import weights_fingerprint

        models = list(models) if isinstance(models, (list, tuple)) else [models]
        self.chapter = chapter
        self.directory = Path(store_dir or STORE_DIR) / chapter
        weights = [weights_fingerprint(m)["sha256"] for m in models]
        self.base_key = {"chapter code": hashlib.sha256(chapter_code(chapter, folder).encode()).hexdigest(),
                         "package": package_digest(_chapter_roots()),
                         "weights": weights,
                         "versions": {d: _version(d) for d in _VERSIONED}}
        self._suffix = "".join(f".{sha[:12]}" for sha in weights) + ".json"

    def path(self, entry: str) -> Path:
        """Where ``entry`` is kept: ``<store_dir>/<chapter>/<entry>[.<weights sha256[:12]> ...].json``."""
        return self.directory / f"{entry}{self._suffix}"

    def key(self, entry: str, settings: Mapping[str, Any]) -> str:
        document = {**self.base_key, "entry": entry, "settings": encode(dict(settings))}
        return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()

    def __call__(self, entry: str, compute: Callable[[], Any], drop: Sequence[str] = (), **settings: Any) -> Any:
        path = self.path(entry)
        key = self.key(entry, {**settings, "dropped fields": sorted(drop)})
        if path.is_file():
            try:
                document = json.loads(path.read_text())
            except (OSError, ValueError) as error:
                raise ValueError(f"{path} is not a readable stored result ({error}); delete it to compute "
                                 "it again.") from None
            if document.get("key") == key:
                note(f"{self.chapter}/{entry}: read from {path} (same code, weights and settings; computed "
                     f"in {document['seconds']:.0f} s on {document['computed']})")
                return decode(document)
        note(f"{self.chapter}/{entry}: computing (not kept yet, or its code, weights or settings changed)")
        start = time.perf_counter()
        value = compute()
        seconds = time.perf_counter() - start
        document = {"key": key, "seconds": round(seconds, 1), "computed": time.strftime("%Y-%m-%d"),
                    "settings": {k: repr(v) for k, v in settings.items()}, **encode(value, drop)}
        self.directory.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(json.dumps(document))
        temporary.replace(path)
        note(f"{self.chapter}/{entry}: computed in {seconds:.0f} s, kept in {path}")
        return decode(document)   # the same value whether computed or read


__all__ = ["STORE_DIR", "ChapterStore", "chapter_code", "decode", "encode", "package_digest", "package_imports",
           "used_modules"]
