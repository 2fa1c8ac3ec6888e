"""The index page of a many-photo ``explain``: one card per photo, sortable, readable on a phone, and unable
to run script whatever the photos are called.

Every link and image address is relative and URL-encoded (``./`` and ``urllib.parse.quote`` of a file name
the run made itself), every text is HTML-escaped, and characters that would hide or reorder a name
(controls, bidirectional marks) are shown as ``\\uXXXX``. The page needs no network: its style and its
sorting script are inline.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape
from urllib.parse import quote

#: Keys the cards can be sorted by: (label, the card's data attribute).
SORT_KEYS = (("file name", "name"), ("attack succeeded first", "fooled"), ("eps", "eps"),
             ("top-10% share of the attack", "share"))

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1rem;max-width:1400px}
h1{font-size:1.4rem} .cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:1rem}
.card{border:1px solid #bbb;border-radius:6px;padding:.6rem;overflow-wrap:anywhere}
.card img{width:100%;height:auto} .card h2{font-size:1rem;margin:.2rem 0 .4rem}
.card dl{display:grid;grid-template-columns:auto 1fr;gap:.1rem .6rem;font-size:.9rem;margin:.4rem 0}
.card dt{color:#555} .error{border-color:#b00000;color:#8a0000} .failed{color:#b00000;font-weight:bold}
"""
_SCRIPT = """
function sortCards(key){const box=document.getElementById('cards');
const cards=[...box.children];const num=k=>k!=='name';
cards.sort((a,b)=>{const x=a.dataset[key],y=b.dataset[key];
return num(key)?(parseFloat(y)||-1)-(parseFloat(x)||-1):x.localeCompare(y);});
cards.forEach(c=>box.appendChild(c));}
"""


def visible(text: str) -> str:
    """``text`` with controls and bidirectional marks shown as ``\\uXXXX``, then HTML-escaped."""
    shown = "".join(f"\\u{ord(c):04x}" if (ord(c) < 32 or 0x7f <= ord(c) <= 0x9f or c in "\u200e\u200f"
                                          or 0x202a <= ord(c) <= 0x202e or 0x2066 <= ord(c) <= 0x2069) else c
                    for c in text)
    return escape(shown, quote=True)


def local_url(file_name: str) -> str:
    """A relative, URL-encoded address of a file beside the page: ``./`` + the quoted name (no scheme)."""
    return "./" + quote(file_name, safe="")


def _number(value, fmt: str) -> str:
    return format(value, fmt) if isinstance(value, (int, float)) and math.isfinite(value) else "-"


def _card(entry: Mapping) -> str:
    photo = visible(entry["photo"])
    if "error" in entry:
        return (f"<article class='card error' data-name='{photo}' data-fooled='0' data-eps='' data-share=''>"
                f"<h2>{photo}</h2><p>not explained: {visible(entry['error'])}</p></article>")
    report = entry["report"]
    attack, clean, adv = report["attack"], report["clean"]["top5"][0], report["adversarial"]["top5"][0]
    share = (report.get("interventions") or {}).get("attribution", {}).get("top_share")
    eps = report.get("eps", {}).get("levels")
    outcome = ("succeeded" if attack.get("succeeded") else "<span class='failed'>failed</span>")
    figure, numbers = local_url(entry["figure"]), local_url(entry["json"])
    return (f"<article class='card' data-name='{photo}' data-fooled='{int(bool(attack.get('succeeded')))}' "
            f"data-eps='{_number(eps, 'g')}' data-share='{_number(share, '.4f')}'>"
            f"<h2>{photo}</h2><a href='{figure}'><img src='{figure}' alt='the explanation of {photo}' "
            f"loading='lazy'></a><dl>"
            f"<dt>before</dt><dd>{visible(clean['name'])} ({_number(clean['probability'], '.1%')})</dd>"
            f"<dt>after</dt><dd>{visible(adv['name'])} ({_number(adv['probability'], '.1%')})</dd>"
            f"<dt>attack</dt><dd>{outcome}, eps = {_number(eps, 'g')} level(s)</dd>"
            f"<dt>top 10%</dt><dd>{'carry ' + _number(share, '.0%') + ' of the attack' if share is not None else '-'}"
            f"</dd></dl><p><a href='{figure}'>figure</a> &middot; <a href='{numbers}'>numbers (JSON)</a></p></article>")


def index_page(entries: Sequence[Mapping], title: str) -> str:
    """Return the HTML page of several photos' explanations: one card per photo.

    ``entries``: per photo ``{"photo": name, "figure": and "json": file names beside the page, "report":
    explain's JSON report}`` or ``{"photo": name, "error": one sentence}`` for a photo that could not be
    explained.
    """
    explained = sum("error" not in e for e in entries)
    fooled = sum("error" not in e and bool(e["report"]["attack"].get("succeeded")) for e in entries)
    options = "".join(f"<option value='{key}'>{label}</option>" for label, key in SORT_KEYS)
    return "\n".join([
        "<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>{visible(title)}</title><style>{_STYLE}</style><script>{_SCRIPT}</script></head><body>",
        f"<h1>{visible(title)}</h1>",
        f"<p>{explained} of {len(entries)} photos explained; the attack succeeded on {fooled} of them. Each figure "
        "shows the photo, the perturbation and the adversarial image, which pixels carry the attack (the attack "
        "attribution, with the share of the attack its top 10% of pixels carry), Grad-CAM and Integrated "
        "Gradients of both images, and each map's perturbation curve. Click a figure for its full size.</p>",
        f"<p><label>Sort by <select onchange='sortCards(this.value)'>{options}</select></label></p>",
        "<main id='cards' class='cards'>", *(_card(e) for e in entries), "</main></body></html>", ""])


__all__ = ["SORT_KEYS", "index_page", "local_url", "visible"]
