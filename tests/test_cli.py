"""The command line, driven as a user drives it: ``python -m xai_helpers explain ...`` in a subprocess.

Each real run pays TensorFlow's import (~5 s on 2 cores), so the commands are started together: one
successful run on the whiptail photo (16 IG steps), one targeted attack that cannot reach its class
(eps 0), and one run per kind of bad input, all of which are rejected before the model is loaded (and
before TensorFlow is imported).
"""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import xai_helpers as xh
from xai_helpers.classifier.labels import resolve_class
from xai_helpers.cli import parser as cli_parser
from xai_helpers.cli.main import build_parser, main
from xai_helpers.cli.parser import DEFAULT_EPS_LEVELS, EXIT_TARGET_MISSED, IG_BASELINES, IG_METHODS, LEVEL
from xai_helpers.cli.study_command import run_study_command
from xai_helpers.methods.targets import TARGET_SETS
from xai_helpers.study.analysis import ExplainOptions

COMMAND = [sys.executable, "-m", "xai_helpers"]

#: Bad inputs: (case, arguments, what the one stderr line must say). WHIPTAIL, PHOTO (a copy of the
#: whiptail photo in another folder) and NOT_AN_IMAGE are replaced by real paths.
BAD_INPUTS = [
    ("missing file", ["explain", "no_such_photo.jpg"], "No image file"),
    ("not an image", ["explain", "NOT_AN_IMAGE"], "not a readable image"),
    ("unknown class", ["explain", "WHIPTAIL", "--target-class", "komodo_dragn"],
     "no ImageNet class is named"),
    ("eps out of range", ["explain", "WHIPTAIL", "--eps", "300"], "--eps must be between 0 and 127.5"),
    ("steps not a number", ["explain", "WHIPTAIL", "--steps", "many"], "argument --steps"),
    ("json is the photo", ["explain", "PHOTO", "--json", "PHOTO"], "is the input"),
    ("json is the figure", ["explain", "WHIPTAIL", "--out", "a.png", "--json", "a.png"],
     "give each output its own name"),
    ("json in a missing folder", ["explain", "WHIPTAIL", "--json", "no/such/folder/n.json"],
     "does not exist"),
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every command of this file, started at once (each pays TensorFlow's import; they overlap).

    Returns {case: (returncode, stdout, stderr, folder)}; "whiptail" is a real run with 16 IG steps
    and ``--json numbers.json``, in an empty folder so that the default figure name can be checked.
    """
    not_an_image = tmp_path_factory.mktemp("input") / "notes.jpg"
    not_an_image.write_text("this is text, not a JPEG\n")
    photo = not_an_image.parent / "photo.jpg"
    shutil.copy(xh.sample_image("whiptail"), photo)
    paths = {"WHIPTAIL": xh.sample_image("whiptail"), "NOT_AN_IMAGE": str(not_an_image), "PHOTO": str(photo)}
    commands = {"whiptail": ["explain", paths["WHIPTAIL"], "--steps", "16", "--json", "numbers.json"],
                "missed": ["explain", paths["WHIPTAIL"], "--target-class", "Komodo dragon", "--eps", "0",
                           "--iterations", "1", "--steps", "2", "--quiet", "--json", "missed.json"]}
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
    results["photo digest"] = hashlib.sha256(photo.read_bytes()).hexdigest()
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
    assert f"wrote {folder / 'numbers.json'}" in out  # every printed path is absolute
    written = [line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("wrote ")]
    assert len(written) == 2 and all(Path(p).is_absolute() for p in written)
    assert out.splitlines()[0] == f"photo:   {xh.sample_image('whiptail')}"
    assert "Traceback" not in err


def test_explain_prints_top5_map_comparison_delta_and_weights(whiptail_run):
    out, _, _, numbers = whiptail_run
    assert "whiptail" in out and "Grad-CAM" in out and "IG" in out
    assert "Grad-CAM of the class score (logit)" in out and "IG of the class probability (softmax)" in out
    assert numbers["adversarial"]["top5"][0]["name"] in out
    assert numbers["weights"]["sha256"][:16] in out


def test_explain_json_has_sane_numbers(whiptail_run):
    numbers = whiptail_run[3]
    assert {"image", "figure", "eps", "attack", "clean", "adversarial", "explanations", "weights",
            "versions", "seconds"} <= set(numbers)
    # --eps auto (the default): the smallest budget in steps of 1/8 level at which FGSM changes the label
    search, levels = numbers["attack"]["eps_search"], numbers["eps"]["levels"]
    assert search["auto"] and search["flipping_levels"] == pytest.approx(levels) and numbers["attack"]["succeeded"]
    assert levels > 0 and (8 * levels) == pytest.approx(round(8 * levels))
    assert numbers["eps"]["model_units"] == pytest.approx(levels * 2 / 255)
    assert numbers["adversarial"]["linf_levels"] <= levels + 1e-4
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
    original = hashlib.sha256(Path(xh.sample_image("whiptail")).read_bytes()).hexdigest()
    assert runs["photo digest"] == original  # the photo is untouched


def test_a_targeted_attack_that_misses_says_so_and_exits_3(runs):
    code, out, err, folder = runs["missed"]
    assert code == EXIT_TARGET_MISSED == 3, err
    warning = [line for line in err.splitlines() if "missed" in line]
    assert len(warning) == 1 and "Komodo_dragon" in warning[0] and "%" in warning[0], err
    numbers = json.loads((folder / "missed.json").read_text())
    attack = numbers["attack"]
    assert attack["succeeded"] is False and attack["target_class"]["class_index"] == 48
    assert 0 <= attack["target_probability"]["adversarial"] < 0.5
    assert f"{attack['target_probability']['adversarial']:.1%}" in warning[0]
    assert (folder / "n01685808_whiptail_explained.png").stat().st_size > 50_000  # the figure is written


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
    parser = build_parser("x")
    args = parser.parse_args(["explain", "p.jpg", "--eps", "2", "--targets", "both"])
    assert (args.image, args.eps, args.eps_units, args.targets) == (["p.jpg"], 2.0, "levels", "both")
    study_args = parser.parse_args(["study", "--force-new"])
    assert study_args.func is run_study_command and study_args.force_new


# Outputs: checked before any work (here: before the photo is even read, so no model is ever loaded).


@pytest.fixture
def no_work(monkeypatch):
    """Make reading the photo fail with a marker, so that reaching it means every output check passed."""
    def stop(path, size=224):
        raise ValueError("reached the photo.")

    monkeypatch.setattr("xai_helpers.classifier.data.load_image", stop)


def test_an_existing_figure_is_not_replaced_without_force(tmp_path, capsys, no_work):
    figure = tmp_path / "f.png"
    figure.write_bytes(b"an earlier figure")
    assert main(["explain", "p.jpg", "--out", str(figure)], prog="x") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(figure) in err and "--force" in err
    assert main(["explain", "p.jpg", "--out", str(figure), "--force"], prog="x") == 2
    assert "reached the photo" in capsys.readouterr().err
    assert figure.read_bytes() == b"an earlier figure"


def test_the_default_figure_name_is_checked_too(tmp_path, monkeypatch, capsys, no_work):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p_explained.png").write_bytes(b"old")
    assert main(["explain", "photos/p.jpg"], prog="x") == 2
    assert f"{tmp_path / 'p_explained.png'} already exists" in capsys.readouterr().err


def test_json_equal_to_the_photo_is_refused_even_with_force(tmp_path, capsys, no_work):
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"jpeg")
    assert main(["explain", str(photo), "--json", str(photo), "--force", "--out", str(tmp_path / "f.png")],
                prog="x") == 2
    assert "is the input photo.jpg itself" in capsys.readouterr().err
    assert photo.read_bytes() == b"jpeg"


# The command line as users expect: fast help, documented exit statuses, constants that agree.


def test_help_and_version_answer_without_loading_tensorflow():
    # Help stays fast because it never imports TensorFlow, Keras or matplotlib; the import list is
    # the property, a wall-clock limit would only measure how busy the machine is.
    code = ("import sys; from xai_helpers.cli.main import main\n"
            "for argv in (['--version'], ['--help'], ['explain', '--help'], ['study', '--help']):\n"
            "    try: main(argv)\n"
            "    except SystemExit: pass\n"
            "heavy = ('tensorflow', 'keras', 'matplotlib', 'xai_helpers.study.runner')\n"
            "print(sorted(m for m in heavy if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip().splitlines()[-1] == "[]"
    for argv in (["--version"], ["explain", "--help"]):
        subprocess.run([*COMMAND, *argv], capture_output=True, check=True, timeout=60)


def test_a_missing_or_unreadable_photo_is_refused_before_tensorflow_loads(tmp_path):
    # (a class name needs the label file, which comes through Keras's loader, so it is checked after)
    text = tmp_path / "notes.jpg"
    text.write_text("not a JPEG")
    code = ("import sys; from xai_helpers.cli.main import main\n"
            f"codes = [main(['explain', {str(tmp_path / 'none.jpg')!r}]), main(['explain', {str(text)!r}])]\n"
            "print(codes, 'tensorflow' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.stdout.strip().splitlines()[-1] == "[2, 2] False", proc.stderr


def test_help_lists_the_exit_statuses():
    text = build_parser("x")._subparsers._group_actions[0].choices["explain"].format_help()
    assert "3 the targeted attack missed" in " ".join(text.split())
    assert "2 bad input" in " ".join(text.split())


def test_the_cli_copies_of_library_constants_agree_with_the_library():
    import importlib

    from xai_helpers.methods import attacks

    ig = importlib.import_module("xai_helpers.methods.integrated_gradients")
    assert IG_METHODS == ig.METHODS and IG_BASELINES == ig.BASELINES
    assert (cli_parser.IG_DEFAULT_METHOD, cli_parser.IG_DEFAULT_STEPS) == (ig.DEFAULT_METHOD, ig.DEFAULT_STEPS)
    assert LEVEL == attacks.pixels_to_eps(1) and DEFAULT_EPS_LEVELS == attacks.DEFAULT_EPS_PIXELS
    from xai_helpers.classifier.data import RESIZE_POLICIES

    assert cli_parser.RESIZE_POLICIES == RESIZE_POLICIES


def test_the_figure_shows_the_answer_its_overlap_numbers_and_what_each_map_explains():
    import matplotlib

    matplotlib.use("Agg")
    from xai_helpers.study.explain_figure import explain_figure

    x = np.zeros((224, 224, 3), np.float32)
    result = _canned_explanation(None, x, 2 / 255, None, ExplainOptions(target_sets=TARGET_SETS))
    numbers = {"top_iou": 0.4321, "spearman": -0.25, "com_shift_px": 12.3}
    result.comparisons.update({name: (numbers, dict(numbers, top_iou=float("nan"))) for name in TARGET_SETS})
    attack = {"description": "targeted iterative FGSM toward Komodo_dragon", "succeeded": False,
              "target_class": {"name": "Komodo_dragon"}, "target_probability": {"adversarial": 0.003}}
    fig = explain_figure(x, result, attack, 2 / 255)
    text = "\n".join([ax.get_title() for ax in fig.axes] + [t.get_text() for ax in fig.axes for t in ax.texts])
    assert text.count("IoU 0.43") == 2 and text.count("IoU undefined") == 2
    assert text.count("Spearman -0.25") == 4
    assert "target Komodo_dragon: 0.3% (MISSED)" in text
    assert "Which pixels carry the attack?" in text and "no causal panels" in text
    assert "standard" not in text and "reversed" not in text
    assert "Grad-CAM of the class score (logit)" in text and "IG of the class probability (softmax)" in text


@pytest.mark.parametrize("text, index", [("Komodo_dragon", 48), ("komodo dragon", 48), ("n01695060", 48),
                                         ("48", 48), ("whiptail", 41)])
def test_target_class_by_name_wnid_or_index(text, index):
    assert resolve_class(text) == index


@pytest.mark.parametrize("text, says", [("crane", "ambiguous"), ("komodo_dragn", "did you mean"),
                                        ("1000", "[0, 999]"), ("n00000000", "WNID")])
def test_bad_target_class_is_one_sentence(text, says):
    with pytest.raises(ValueError, match=says.replace("[", r"\[").replace("]", r"\]")):
        resolve_class(text)


def _canned_explanation(model, x, eps, target_class=None, options=None, progress=None):
    """A finished analysis without the model's work: an FGSM-like image pair, flat maps, no intervention."""
    from xai_helpers.classifier.forward import Prediction
    from xai_helpers.study.analysis import PhotoExplanation

    top = [Prediction(41, "n01685808", "whiptail", 0.9), Prediction(48, "n01695060", "Komodo_dragon", 0.05)]
    flat = np.full(x.shape[:2], 0.5, np.float32)
    numbers = {"top_iou": 0.5, "spearman": 0.1, "com_shift_px": 3.0}
    target_sets = options.target_sets
    return PhotoExplanation(top, np.clip(x + eps, -1, 1), top[::-1], {name: ([flat, flat], [flat, flat])
                            for name in target_sets}, {name: (numbers, numbers) for name in target_sets}, [],
                            None, {"skipped": "canned"})


def test_a_full_disk_while_writing_the_json_leaves_neither_output(tmp_path, monkeypatch, capsys,
                                                                 whiptail_path):
    # The figure is written first; a JSON that cannot be written must not leave it behind on its own.
    from xai_helpers.study import outputs

    def full_disk(self, path, text):
        def write(f):
            f.write(text[:10].encode())
            raise OSError(28, "No space left on device")
        return self.write(path, write)

    monkeypatch.setattr(outputs.PendingFiles, "write_text", full_disk)
    monkeypatch.setattr("xai_helpers.study.analysis.explain_photo", _canned_explanation)  # only the files matter here
    figure, numbers = tmp_path / "f.png", tmp_path / "n.json"
    assert main(["explain", whiptail_path, "--steps", "2", "--quiet", "--out", str(figure),
                 "--json", str(numbers)], prog="x") == 4   # (exit status 4: the disk is full)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(numbers) in err[0] and "No space left" in err[0], err
    assert list(tmp_path.iterdir()) == []


def test_the_package_imports_lazily_keeps_every_public_name_and_keeps_tensorflow_quiet():
    code = ("import sys, xai_helpers as xh\n"
            "assert 'tensorflow' not in sys.modules\n"
            "import xai_helpers.methods.integrated_gradients, xai_helpers.methods.gradcam\n"  # named like functions
            "assert callable(xh.integrated_gradients) and callable(xh.gradcam)\n"
            "assert all(getattr(xh, name) is not None for name in xh.__all__)\n"
            "assert xh.load_model.__module__ == 'xai_helpers.classifier.loading'\n"
            "print('tensorflow' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "True"
    assert proc.stderr == ""  # TensorFlow's start-up lines (absl, oneDNN) do not reach stderr


#: Packages of the extras (pyproject's [study], [book] and [test]) that the command line must not need.
EXTRAS = ("ray", "pandas", "statsmodels", "jupyter_book", "myst_nb", "jupytext", "jupyterlab", "sphinx",
          "selenium", "art", "pytest", "nbmake", "pypdf")


def test_explain_needs_only_the_package_s_own_dependencies(tmp_path, whiptail_path):
    """``pip install .`` (no extras) must give a working ``explain``: here every extra is made unimportable
    and one photo is explained; and every third-party module the command line's wings import is a core
    dependency of pyproject.toml."""
    import tomllib

    blocker = ("import sys, importlib.abc\n"
               f"BLOCKED = {EXTRAS!r}\n"
               "class Block(importlib.abc.MetaPathFinder):\n"
               "    def find_spec(self, name, path=None, target=None):\n"
               "        if name.split('.')[0] in BLOCKED: raise ImportError(f'{name} is an extra')\n"
               "sys.meta_path.insert(0, Block())\n"
               "from xai_helpers.cli.main import main\n"
               "sys.exit(main(sys.argv[1:], prog='xai-explain'))\n")
    out = tmp_path / "f.png"
    proc = subprocess.run([sys.executable, "-c", blocker, whiptail_path, "--steps", "2", "--eps", "1", "--quiet",
                           "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert out.is_file()
    help_run = subprocess.run([sys.executable, "-c", blocker, "--help"], capture_output=True, text=True, timeout=60)
    assert help_run.returncode == 0 and "explain" in help_run.stdout
    core = " ".join(tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
                    ["project"]["dependencies"]).lower()
    for module in ("tensorflow", "keras", "tf-keras-vis", "numpy", "scipy", "pillow", "matplotlib", "tqdm",
                   "scikit-learn", "ai-edge-litert"):
        assert module in core, module
    assert not any(extra in core for extra in ("ray", "pandas", "jupyter", "selenium"))
