"""ChapterStore: a chapter's slow results kept exactly, and computed again whenever what they depend on changes."""
from __future__ import annotations

import json

import numpy as np
import pytest

from xai_helpers.chapters import stored
from xai_helpers.chapters.stored import ChapterStore, decode, encode
from xai_helpers.methods.integrated_gradients import IGResult
from xai_helpers.methods.interventions import PerturbationCurve

CHAPTER = """---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---

# A chapter

Some prose.

```{code-cell} ipython3
N = 3
```
"""


def _value():
    random = np.random.default_rng(0).normal(size=(5, 3))
    curves = {name: PerturbationCurve(np.linspace(0, 1, 3), np.array([0.0, 0.4, 1.0]), random, 0.5, -1.0)
              for name in ("a", "b")}
    ig = IGResult(np.arange(12, dtype=np.float32).reshape(2, 2, 3), 1.0, 0.0, float("nan"), 3, "margin",
                  "riemann_trapezoid", 16, contrast_class=None)
    return {("FGSM", "head", "off the animal"): np.array([True, False]), "curves": curves, "ig": ig,
            "numbers": [1, 2.5, float("inf"), None, "text", (np.float64(0.1), np.int64(7))]}


def test_encode_then_decode_gives_back_every_value_exactly_and_shares_one_copy_of_a_shared_array():
    document = json.loads(json.dumps(encode(_value())))   # through text, as on disk
    value = decode(document)
    original = _value()
    assert value.keys() == original.keys()
    np.testing.assert_array_equal(value["FGSM", "head", "off the animal"], [True, False])
    assert value["FGSM", "head", "off the animal"].dtype == bool
    for name in ("a", "b"):
        got, want = value["curves"][name], original["curves"][name]
        assert isinstance(got, PerturbationCurve) and got.auc == want.auc
        np.testing.assert_array_equal(got.random, want.random)
    assert value["curves"]["a"].random is value["curves"]["b"].random
    assert len(document["arrays"]) == 7   # 2 curves x 2 own arrays, the mask, IG, and the shared random array once
    ig = value["ig"]
    assert isinstance(ig, IGResult) and np.isnan(ig.delta) and ig.contrast_class is None
    assert ig.attributions.dtype == np.float32 and ig.attributions.shape == (2, 2, 3)
    assert value["numbers"][:5] == [1, 2.5, float("inf"), None, "text"]
    assert value["numbers"][5] == (0.1, 7)


def test_a_value_of_another_kind_or_a_class_outside_the_package_is_refused():
    with pytest.raises(TypeError, match="cannot keep a set"):
        encode({1, 2})
    document = encode(_value())
    document["value"]["__dict__"][2][1]["__object__"] = "os.PathLike"
    document["value_sha256"] = stored._value_digest(document)   # (an edit that also fixed the hash)
    with pytest.raises(stored.StoredResultError, match="names the type 'os.PathLike', which is none of the result"):
        decode(document, "kept.json")


@pytest.fixture
def chapter(tmp_path):
    folder = tmp_path / "book"
    folder.mkdir()
    (folder / "demo.md").write_text(CHAPTER)
    return folder


def test_the_store_computes_once_then_reads_and_computes_again_when_the_code_or_settings_change(chapter, tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"x": np.arange(3.0)}

    def store():
        return ChapterStore("demo", folder=chapter, store_dir=tmp_path / "kept")

    first = store()("entry", compute, n=3)
    again = store()("entry", compute, n=3)
    assert len(calls) == 1
    np.testing.assert_array_equal(again["x"], first["x"])
    assert (tmp_path / "kept" / "demo" / "entry.json").is_file()
    store()("entry", compute, n=4)                       # other settings
    assert len(calls) == 2
    (chapter / "demo.md").write_text(CHAPTER.replace("Some prose.", "Other prose."))
    store()("entry", compute, n=4)                       # prose does not enter the key
    assert len(calls) == 2
    (chapter / "demo.md").write_text(CHAPTER.replace("N = 3", "N = 4"))
    store()("entry", compute, n=4)                       # code does
    assert len(calls) == 3


def test_the_package_source_and_the_weights_enter_the_key(chapter, tmp_path, monkeypatch, linear):
    plain = ChapterStore("demo", folder=chapter, store_dir=tmp_path)
    with_model = ChapterStore("demo", linear.model, folder=chapter, store_dir=tmp_path)
    assert plain.key("e", {}) != with_model.key("e", {})
    monkeypatch.setattr(stored, "package_digest", lambda roots=None: "another package")
    assert ChapterStore("demo", folder=chapter, store_dir=tmp_path).key("e", {}) != plain.key("e", {})


def test_one_entry_kept_for_two_models_is_two_files_each_read_back(chapter, tmp_path, linear, cam_net):
    stores = {name: ChapterStore("demo", model, folder=chapter, store_dir=tmp_path)
              for name, model in (("linear", linear.model), ("cam", cam_net.model))}
    for name, store in stores.items():
        store("entry", lambda: name)
    assert stores["linear"].path("entry") != stores["cam"].path("entry")
    assert sorted(p.name.count(".") for p in (tmp_path / "demo").iterdir()) == [2, 2]   # entry.<sha>.json
    for name, store in stores.items():   # neither run overwrote the other's file
        assert store("entry", lambda: pytest.fail("computed again")) == name


def test_a_missing_chapter_or_an_unreadable_file_says_what_to_do(chapter, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"neither other\.md nor other\.ipynb is in"):
        ChapterStore("other", folder=chapter)
    kept = tmp_path / "kept" / "demo"
    kept.mkdir(parents=True)
    (kept / "entry.json").write_text("{not json")
    # A file that cannot be read is computed again (the build's log says why) and replaced.
    assert ChapterStore("demo", folder=chapter, store_dir=tmp_path / "kept")("entry", lambda: 1) == 1
    assert json.loads((kept / "entry.json").read_text())["value"] == 1



def test_the_package_digest_follows_the_imports_of_the_chapters_modules_and_no_others():
    used = stored.used_modules(["methods.sufficiency"])
    assert {"methods.sufficiency", "methods.interventions", "classifier.forward", "classifier.passes"} <= set(used)
    assert not {"cli.main", "study.runner", "study.table", "study.distributed"} & set(used)
    assert stored.used_modules(["methods.interventions"]) == sorted(set(stored.used_modules(["methods.interventions"])))
    assert stored.package_digest(["methods.sufficiency"]) != stored.package_digest(["methods.sufficiency", "cli.main"])
    assert stored.package_digest(["methods.sufficiency"]) == stored.package_digest(["methods.sufficiency"])


# ---- hostile kept results: data, never calls (each refused in one sentence naming the file) ----

def _document(value=None):
    return json.loads(json.dumps(encode(_value() if value is None else value)))


def test_a_kept_result_that_names_a_function_runs_nothing(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("mine")
    document = _document({"x": 1})
    document["value"] = {"__object__": "xai_helpers.study.outputs.write_text_atomic",
                         "fields": {"path": str(victim), "text": "overwritten"}}
    document["value_sha256"] = stored._value_digest(document)
    with pytest.raises(stored.StoredResultError, match=r"^bad\.json cannot be read as a kept result: it names the type"):
        decode(document, "bad.json")
    assert victim.read_text() == "mine"


def _bomb(shape, dtype="<f4", data=b"\0" * 2 ** 20):
    import base64
    import zlib
    document = _document({"x": 1})
    document["arrays"] = [{"dtype": dtype, "shape": shape, "zlib": base64.b64encode(zlib.compress(data)).decode()}]
    document["value"] = {"__array__": 0}
    document["value_sha256"] = stored._value_digest(document)
    return document


@pytest.mark.parametrize("document, says", [
    (_bomb([2 ** 28]), "larger than"),                         # 1 GiB claimed: refused before inflating
    (_bomb([16]), "do not fill"),                              # 1 MiB of zeros where 64 bytes belong: cut at 65
    (_bomb([4], dtype="|O"), "not numbers or booleans"),
    (_bomb([-1]), "shape"),
    (_bomb("4"), "shape"),
    ([1, 2, 3], "not a kept result"),
    ({"value": 1}, "not a kept result"),
    ({"value": 1, "arrays": "abc"}, "not a kept result"),
])
def test_malformed_and_oversized_kept_results_are_one_sentence(document, says):
    with pytest.raises(stored.StoredResultError, match=says) as excinfo:
        decode(document, "kept.json")
    assert str(excinfo.value).startswith("kept.json cannot be read as a kept result:")
    assert "\n" not in str(excinfo.value)


def _edited(edit):
    document = _document()
    edit(document)
    document["value_sha256"] = stored._value_digest(document)
    return document


@pytest.mark.parametrize("edit, says", [
    (lambda d: d["value"]["__dict__"][1][1]["__dict__"][0][1].update(__object__="PerturbationCurve", fields={}),
     "does not hold exactly the fields"),
    (lambda d: d["value"]["__dict__"][0][1].update(__array__=99), "refers to array 99"),
    (lambda d: d["arrays"][0].update(zlib="!!not base64!!"), "cannot be read"),
    (lambda d: d["value"].update(__list__=[]), "unknown entry"),
    (lambda d: d.update(value=json.loads("[" * 30 + "]" * 30)), "bare list"),
])
def test_edited_kept_results_are_refused(edit, says):
    with pytest.raises(stored.StoredResultError, match=says):
        decode(_edited(edit), "kept.json")


def test_deep_nesting_and_an_edited_value_are_refused():
    deep = {"__list__": [1]}
    for _ in range(200):
        deep = {"__list__": [deep]}
    document = _document({"x": 1})
    document["value"] = deep
    document["value_sha256"] = stored._value_digest(document)
    with pytest.raises(stored.StoredResultError, match="deeper than"):
        decode(document, "kept.json")
    document = _document()
    document["value"]["__dict__"][3][1]["__list__"][0] = 2   # the "numbers" list edited, the old hash kept
    with pytest.raises(stored.StoredResultError, match="does not match its value_sha256"):
        decode(document, "kept.json")


def test_the_store_computes_again_instead_of_trusting_a_hostile_file(chapter, tmp_path, capfd):
    store = ChapterStore("demo", folder=chapter, store_dir=tmp_path)
    assert store("entry", lambda: {"n": 1}) == {"n": 1}
    path = tmp_path / "demo" / "entry.json"
    document = json.loads(path.read_text())
    document["value"] = {"__object__": "xai_helpers.cli.main.main", "fields": {"argv": ["--help"]}}
    document["value_sha256"] = stored._value_digest(document)
    path.write_text(json.dumps(document))
    assert store("entry", lambda: {"n": 2}) == {"n": 2}
    assert "none of the result types" in capfd.readouterr().err
    assert json.loads(path.read_text())["value"] != document["value"]
