"""ChapterStore: a chapter's slow results kept exactly, and computed again whenever what they depend on changes."""
from __future__ import annotations

import json

import numpy as np
import pytest

from xai_helpers import stored
from xai_helpers.integrated_gradients import IGResult
from xai_helpers.interventions import PerturbationCurve
from xai_helpers.stored import ChapterStore, decode, encode

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
    with pytest.raises(ValueError, match="not one of xai_helpers"):
        decode(document)


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
    with pytest.raises(ValueError, match=r"entry\.json is not a readable stored result .*delete it"):
        ChapterStore("demo", folder=chapter, store_dir=tmp_path / "kept")("entry", lambda: 1)



def test_dropped_fields_are_none_whether_computed_or_read_and_stay_out_of_the_file(chapter, tmp_path):
    from xai_helpers.sufficiency import MinimalRegions

    def compute():
        return {"FGSM": MinimalRegions(np.array([0.1]), np.ones((1, 4, 4), bool), np.array([0.5]), np.array([0.5]),
                                       np.array([0.4]), np.array([True]), np.full((1, 4, 4), 0.7, np.float32))}

    store = ChapterStore("demo", folder=chapter, store_dir=tmp_path)
    computed = store("entry", compute, drop=["soft_masks"])
    read = store("entry", lambda: pytest.fail("computed again"), drop=["soft_masks"])
    for value in (computed, read):
        assert value["FGSM"].soft_masks is None and value["FGSM"].masks.dtype == bool
    assert len(json.loads((tmp_path / "demo" / "entry.json").read_text())["arrays"]) == 6


def test_the_package_digest_follows_the_imports_of_the_chapters_modules_and_no_others():
    used = stored.used_modules(["sufficiency"])
    assert {"sufficiency", "interventions", "model", "passes"} <= set(used)
    assert not {"cli", "study", "table", "distributed"} & set(used)
    assert stored.used_modules(["interventions"]) == sorted(set(stored.used_modules(["interventions"])))
    assert stored.package_digest(["sufficiency"]) != stored.package_digest(["sufficiency", "cli"])
    assert stored.package_digest(["sufficiency"]) == stored.package_digest(["sufficiency"])
