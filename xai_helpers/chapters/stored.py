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
zlib-compressed bytes (exact, dtype and shape kept), and the package's result types by their name in
``RESULT_TYPES``, the one allow-list: reading a file calls no code that the file names (no pickle, no import
of a name read from disk), checks the SHA-256 of the stored value, and inflates an array only after its dtype
(numbers or booleans) and shape (at most ``MAX_ARRAY_BYTES``) were checked. A malformed file is one sentence
naming it (``StoredResultError``); ``ChapterStore`` then computes the entry again and replaces the file.
Progress lines (read, computing, computed) go to the build's log (``buildlog.note``), not into the book.
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

from xai_helpers.chapters.buildlog import note
from xai_helpers.chapters.paths import RESULTS_DIR

#: Where the kept results go: ``results/chapters/<chapter>/<entry>.<weights sha256[:12]>.json``.
STORE_DIR = RESULTS_DIR / "chapters"
_PACKAGE_DIR = Path(__file__).resolve().parents[1]
_VERSIONED = ("numpy", "scipy", "tensorflow-cpu", "keras", "tf-keras-vis")
#: The only classes a kept result may hold: name in the file -> (module, class). Nothing else is decoded.
RESULT_TYPES = {
    "PerturbationCurve": ("xai_helpers.methods.interventions", "PerturbationCurve"),
    "IGResult": ("xai_helpers.methods.integrated_gradients", "IGResult"),
    "CompletenessPoint": ("xai_helpers.chapters.sweeps", "CompletenessPoint"),
}
#: Array kinds a kept result may hold: booleans, integers, unsigned integers, floats.
ARRAY_KINDS = "biuf"
#: The largest array a kept result may hold, in bytes (checked before a byte is inflated).
MAX_ARRAY_BYTES = 256 * 2 ** 20
#: Deepest nesting of a kept value (lists, dicts, objects) that is decoded.
MAX_DEPTH = 64


class StoredResultError(ValueError):
    """A kept result that cannot be read as one: the message names the file and what is wrong."""


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "absent"


def _module_path(module: str) -> Path | None:
    """The source file of the package's ``module`` ("methods.interventions", "study" for a wing's
    ``__init__``, "__init__" for the package's), or None when there is none."""
    base = _PACKAGE_DIR.joinpath(*module.split(".")) if module != "__init__" else _PACKAGE_DIR
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def package_imports(module: str) -> set[str]:
    """Return the package's modules that ``module`` imports (absolute ``xai_helpers.x.y`` or relative, inside
    functions too: the lazy imports count), read from the source."""
    import ast

    found: set[str] = set()
    for node in ast.walk(ast.parse(_module_path(module).read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "xai_helpers" and not node.level:
            target = node.module.split(".")[1:]
            for alias in node.names:
                whole = ".".join(target + [alias.name])
                found.add(whole if _module_path(whole) else ".".join(target) or "__init__")
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".", 1)[1] for a in node.names if a.name.startswith("xai_helpers."))
    return {m for m in found if _module_path(m)} - {module}


def used_modules(roots: Sequence[str]) -> list[str]:
    """Return ``roots`` and every package module they import, directly or not (sorted)."""
    seen: set[str] = set()
    todo = [r for r in roots if _module_path(r)]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(package_imports(module) - seen)
    return sorted(seen)


def all_modules() -> list[str]:
    """Every module of the package, named as ``used_modules`` names them."""
    names = []
    for path in sorted(_PACKAGE_DIR.rglob("*.py")):
        parts = path.relative_to(_PACKAGE_DIR).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts) or "__init__")
    return names


def package_digest(roots: Sequence[str] | None = None) -> str:
    """SHA-256 of the source (name and bytes) of the package modules ``used_modules(roots)``; every module's
    when ``roots`` is None. A chapter's roots are the modules it has imported, and ``__init__``'s public
    names, so an edit of the command line or the study runner keeps a single-photo chapter's results."""
    modules = all_modules() if roots is None else used_modules(roots)
    digest = hashlib.sha256()
    for module in modules:
        digest.update(module.encode() + b"\0" + _module_path(module).read_bytes() + b"\0")
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
        return {"__object__": _type_name(type(value)), "fields": fields}
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
                    f"lists, dicts, or one of the result types {sorted(RESULT_TYPES)}.")


def _type_name(cls: type) -> str:
    """The allow-list's name of ``cls`` (``RESULT_TYPES``); ``TypeError`` for any other class."""
    for name, (module, qualname) in RESULT_TYPES.items():
        if cls.__module__ == module and cls.__qualname__ == qualname:
            return name
    raise TypeError(f"ChapterStore cannot keep a {cls.__qualname__}: it keeps only the result types "
                    f"{sorted(RESULT_TYPES)} (add the class to stored.RESULT_TYPES).")


def _result_type(name: Any) -> type:
    """The class that the allow-list ``RESULT_TYPES`` gives ``name``; ``ValueError`` for any other name."""
    if not isinstance(name, str) or name not in RESULT_TYPES:
        raise ValueError(f"it names the type {name!r}, which is none of the result types {sorted(RESULT_TYPES)}")
    module, qualname = RESULT_TYPES[name]
    return getattr(importlib.import_module(module), qualname)


def _object(value: dict, blobs: list[np.ndarray], depth: int) -> Any:
    cls = _result_type(value["__object__"])
    fields = value.get("fields")
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    if not isinstance(fields, dict) or set(fields) != names:
        raise ValueError(f"its {value['__object__']} does not hold exactly the fields {sorted(names)}")
    return cls(**{k: _decode(v, blobs, depth + 1) for k, v in fields.items()})


def _pairs(items: Any, what: str) -> list:
    if not isinstance(items, list) or not all(isinstance(i, list) and len(i) == 2 for i in items):
        raise ValueError(f"its {what} entry is not a list of pairs")
    return items


def _decode(value: Any, blobs: list[np.ndarray], depth: int = 0) -> Any:
    if depth > MAX_DEPTH:
        raise ValueError(f"it nests deeper than {MAX_DEPTH} levels")
    if not isinstance(value, dict):
        if isinstance(value, list):
            raise ValueError("it holds a bare list where a tagged value belongs")
        return value
    tags = set(value) & {"__array__", "__object__", "__dict__", "__list__", "__tuple__", "__float__"}
    if len(tags) != 1:
        raise ValueError(f"it holds an unknown entry {sorted(map(str, value))!r}")
    tag = tags.pop()
    item = value[tag]
    if tag == "__array__":
        if isinstance(item, bool) or not isinstance(item, int) or not 0 <= item < len(blobs):
            raise ValueError(f"it refers to array {item!r} of {len(blobs)}")
        return blobs[item]
    if tag == "__object__":
        return _object(value, blobs, depth)
    if tag == "__dict__":
        return {_decode(k, blobs, depth + 1): _decode(v, blobs, depth + 1) for k, v in _pairs(item, tag)}
    if tag == "__float__":
        return float(item) if isinstance(item, str) else _fail(f"its float {item!r} is not text")
    if not isinstance(item, list):
        raise ValueError(f"its {tag} entry is not a list")
    decoded = [_decode(v, blobs, depth + 1) for v in item]
    return decoded if tag == "__list__" else tuple(decoded)


def _fail(message: str):
    raise ValueError(message)


def _array(blob: Any) -> np.ndarray:
    """One stored array, its dtype and shape checked before a byte is inflated (no decompression bomb)."""
    if not isinstance(blob, dict) or set(blob) != {"dtype", "shape", "zlib"}:
        raise ValueError("an array entry does not hold exactly dtype, shape and zlib")
    try:
        dtype = np.dtype(blob["dtype"]) if isinstance(blob["dtype"], str) else None
    except TypeError:
        dtype = None
    if dtype is None or dtype.kind not in ARRAY_KINDS or dtype.hasobject:
        raise ValueError(f"an array has the dtype {blob['dtype']!r}, not numbers or booleans")
    shape = blob["shape"]
    if not isinstance(shape, list) or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                                              for n in shape):
        raise ValueError(f"an array has the shape {shape!r}")
    size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize if shape else dtype.itemsize
    if size > MAX_ARRAY_BYTES:
        raise ValueError(f"an array of {size} bytes is larger than the {MAX_ARRAY_BYTES} a kept result may hold")
    try:
        packed = base64.b64decode(blob["zlib"], validate=True)
        inflater = zlib.decompressobj()
        data = inflater.decompress(packed, size + 1)
    except (TypeError, ValueError, zlib.error) as error:
        raise ValueError(f"an array's bytes cannot be read ({error})") from None
    if len(data) != size or inflater.unconsumed_tail:
        raise ValueError(f"an array's bytes do not fill its shape {shape} of {dtype}")
    return np.frombuffer(data, dtype=dtype).reshape(shape).copy()


def encode(value: Any, drop: Sequence[str] = ()) -> dict:
    """Return ``value`` as a JSON-ready dict (see the module docstring); ``decode`` inverts it exactly.

    ``drop``: names of dataclass fields written as None (results the reader does not need). The dict holds
    ``value_sha256``, the SHA-256 of its value and arrays, which ``decode`` checks.
    """
    blobs: list[dict] = []
    document = {"value": _encode(value, {}, blobs, frozenset(drop)), "arrays": blobs}
    return {**document, "value_sha256": _value_digest(document)}


def _value_digest(document: Mapping) -> str:
    text = json.dumps({"value": document["value"], "arrays": document["arrays"]}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def decode(document: Any, source: str | Path = "a stored result") -> Any:
    """Return the value that ``encode`` wrote (arrays are fresh copies of the kept bytes).

    Raises ``StoredResultError`` (one sentence naming ``source``) when the document is not what ``encode``
    writes: another shape, an edited value (its SHA-256 differs), a type outside ``RESULT_TYPES``, an array
    of another kind or larger than ``MAX_ARRAY_BYTES``, bytes that do not fill the array, or deep nesting.
    """
    try:
        if not isinstance(document, dict) or not isinstance(document.get("arrays"), list) or "value" not in document:
            raise ValueError("it is not a kept result (no value and arrays)")
        if document.get("value_sha256") != _value_digest(document):
            raise ValueError("its value does not match its value_sha256 (the file was edited or damaged)")
        blobs = [_array(b) for b in document["arrays"]]
        return _decode(document["value"], blobs)
    except (ValueError, TypeError, RecursionError) as error:
        raise StoredResultError(f"{source} cannot be read as a kept result: {error}; delete it to compute it "
                                "again.") from None


_MISSING = object()   # (what ``ChapterStore._read`` returns when there is no value to read)


class ChapterStore:
    """``store(entry, compute, drop=(), **settings)``: ``compute()``'s value, kept under the chapter's key.

    ``models``: the Keras models the chapter's results depend on (their weights' SHA-256 enter the key).
    ``folder``: where the chapter's ``.md`` or ``.ipynb`` is (the working folder, as when it runs).
    """

    def __init__(self, chapter: str, models: object | list = (), folder: Path | str = ".",
                 store_dir: Path | str | None = None):
        from xai_helpers.classifier.provenance import weights_fingerprint

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
            kept = self._read(path, key)
            if kept is not _MISSING:
                return kept
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
        return decode(document, path)   # the same value whether computed or read

    def _read(self, path: Path, key: str) -> Any:
        """The value kept at ``path`` under ``key``; ``_MISSING`` (and, for a malformed file, its sentence in
        the build's log) when its key differs or it cannot be read, so that the entry is computed again."""
        try:
            document = json.loads(path.read_text())
            if not isinstance(document, dict):
                raise StoredResultError(f"{path} cannot be read as a kept result: it is not a JSON object")
            if document.get("key") != key:
                return _MISSING
            value = decode(document, path)
        except (OSError, ValueError, RecursionError) as error:
            sentence = str(error) if isinstance(error, StoredResultError) else \
                f"{path} cannot be read as a kept result: {type(error).__name__}: {error}"
            note(f"{self.chapter}: {sentence.rstrip('.')}; computing it again")
            return _MISSING
        note(f"{self.chapter}/{path.name}: read from {path} (same code, weights and settings; computed "
             f"in {document.get('seconds', float('nan')):.0f} s on {document.get('computed', '?')})")
        return value


__all__ = ["ARRAY_KINDS", "MAX_ARRAY_BYTES", "MAX_DEPTH", "RESULT_TYPES", "STORE_DIR", "ChapterStore",
           "StoredResultError", "all_modules", "chapter_code", "decode", "encode", "package_digest",
           "package_imports", "used_modules"]
