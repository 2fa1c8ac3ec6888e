"""The command line, driven as a user drives it: ``python -m xai_helpers explain ...`` in a subprocess.

Each subprocess pays TensorFlow's import (~5 s on 2 cores), so the commands are started together: one
successful run on the whiptail photo (16 IG steps) and one run per kind of bad input, all of which are
rejected before the model is loaded.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

import xai_helpers as xh
from xai_helpers.cli import build_parser, main, resolve_class

COMMAND = [sys.executable, "-m", "xai_helpers"]

#: Bad inputs: (case, arguments, what the one stderr line must say). WHIPTAIL and NOT_AN_IMAGE are
#: replaced by real paths.
BAD_INPUTS = [
    ("missing file", ["explain", "no_such_photo.jpg"], "No image file"),
    ("not an image", ["explain", "NOT_AN_IMAGE"], "not a readable image"),
    ("unknown class", ["explain", "WHIPTAIL", "--target-class", "komodo_dragn"],
     "no ImageNet class is named"),
    ("eps out of range", ["explain", "WHIPTAIL", "--eps", "300"], "--eps must be between 0 and 127.5"),
    ("steps not a number", ["explain", "WHIPTAIL", "--steps", "many"], "argument --steps"),
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every command of this file, started at once (each pays TensorFlow's import; they overlap).

    Returns {case: (returncode, stdout, stderr, folder)}; "whiptail" is a real run with 16 IG steps
    and ``--json numbers.json``, in an empty folder so that the default figure name can be checked.
    """
    not_an_image = tmp_path_factory.mktemp("input") / "notes.jpg"
    not_an_image.write_text("this is text, not a JPEG\n")
    paths = {"WHIPTAIL": xh.sample_image("whiptail"), "NOT_AN_IMAGE": str(not_an_image)}
    commands = {"whiptail": ["explain", paths["WHIPTAIL"], "--steps", "16", "--json", "numbers.json"]}
    commands.update({case: [paths.get(a, a) for a in args] for case, args, _ in BAD_INPUTS})
    started = {}
    for case, args in commands.items():
        folder = tmp_path_factory.mktemp("run")
        started[case] = (subprocess.Popen([*COMMAND, *args], cwd=folder, text=True, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE), folder)
    results = {}
    for case, (proc, folder) in started.items():
        out, err = proc.communicate(timeout=600)
        results[case] = (proc.returncode, out, err, folder)
    return results


@pytest.fixture(scope="module")
def whiptail_run(runs):
    """The whiptail run: (returncode, stdout, stderr, folder, numbers from its JSON)."""
    code, out, err, folder = runs["whiptail"]
    assert code == 0, err[-2000:]
    return out, err, folder, json.loads((folder / "numbers.json").read_text())


def test_explain_writes_the_figure_next_to_the_user_and_says_where(whiptail_run):
    out, err, folder, _ = whiptail_run
    figure = folder / "n01685808_whiptail_explained.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert figure.stat().st_size > 50_000  # nine 224 x 224 panels, not an empty canvas
    assert f"wrote {figure}" in out
    assert "wrote numbers.json" in out
    assert "Traceback" not in err


def test_explain_prints_top5_map_comparison_delta_and_weights(whiptail_run):
    out, _, _, numbers = whiptail_run
    assert "whiptail" in out and "Grad-CAM" in out and "IG" in out
    assert numbers["adversarial"]["top5"][0]["name"] in out
    assert numbers["weights"]["sha256"][:16] in out


def test_explain_json_has_sane_numbers(whiptail_run):
    numbers = whiptail_run[3]
    assert {"image", "figure", "eps", "attack", "clean", "adversarial", "explanations", "weights",
            "versions", "seconds"} <= set(numbers)
    assert numbers["eps"] == pytest.approx({"levels": 1.0, "model_units": 2 / 255})
    assert numbers["adversarial"]["linf_levels"] <= 1.0 + 1e-4
    clean, adv = numbers["clean"]["top5"], numbers["adversarial"]["top5"]
    assert len(clean) == len(adv) == 5
    assert clean[0]["name"] == "whiptail" and clean[0]["class_index"] == 41
    for top in (clean, adv):
        probs = [p["probability"] for p in top]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    assert numbers["attack"]["kind"] == "fgsm"
    assert numbers["attack"]["succeeded"] == (adv[0]["class_index"] != clean[0]["class_index"])
    assert [(e["method"], e["target"]) for e in numbers["explanations"]] == \
        [("gradcam", "logits"), ("integrated_gradients", "softmax")]
    for e in numbers["explanations"]:
        assert 0 <= e["compare"]["top_iou"] <= 1
        assert -1 <= e["compare"]["spearman"] <= 1
        assert 0 <= e["compare"]["com_shift_px"] <= 224 * 2 ** 0.5
    ig = numbers["explanations"][1]
    assert ig["steps"] == 16
    assert ig["clean"]["class_index"] == 41 and ig["adversarial"]["class_index"] == adv[0]["class_index"]
    for side in ("clean", "adversarial"):
        assert 0 <= ig[side]["relative_delta"] < 0.5  # 16 steps: a few per cent, never wild
    assert len(numbers["weights"]["sha256"]) == 64


@pytest.mark.parametrize("case, says", [(case, says) for case, _, says in BAD_INPUTS])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(runs, case, says):
    code, out, err, folder = runs[case]
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert says in lines[0]
    assert list(folder.iterdir()) == []


# In-process checks of the parser and the class lookup (no model is loaded).


def test_explain_is_the_default_subcommand(capsys):
    assert main(["no_such_photo.jpg"], prog="xai-explain") == 2
    assert main(["explain", "no_such_photo.jpg"], prog="xai-explain") == 2
    err = capsys.readouterr().err.splitlines()
    assert err == ["xai-explain explain: error: No image file at no_such_photo.jpg."] * 2


def test_usage_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["photo.jpg", "--targets", "sideways"], prog="xai-explain")
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "invalid choice: 'sideways'" in err


def test_parser_offers_explain_and_study():
    from xai_helpers import study

    parser = build_parser("x")
    args = parser.parse_args(["explain", "p.jpg", "--eps", "2", "--targets", "both"])
    assert (args.image, args.eps, args.eps_units, args.targets) == ("p.jpg", 2.0, "levels", "both")
    assert parser.parse_args(["study"]).func is study.run_from_args


@pytest.mark.parametrize("text, index", [("Komodo_dragon", 48), ("komodo dragon", 48), ("n01695060", 48),
                                         ("48", 48), ("whiptail", 41)])
def test_target_class_by_name_wnid_or_index(text, index):
    assert resolve_class(text) == index


@pytest.mark.parametrize("text, says", [("crane", "ambiguous"), ("komodo_dragn", "did you mean"),
                                        ("1000", "[0, 999]"), ("n00000000", "WNID")])
def test_bad_target_class_is_one_sentence(text, says):
    with pytest.raises(ValueError, match=says.replace("[", r"\[").replace("]", r"\]")):
        resolve_class(text)
