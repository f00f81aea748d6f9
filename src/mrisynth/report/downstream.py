"""The report's downstream section: `mrisynth downstream`'s Dice table, paired test and figure.

`downstream.json` is read as untrusted input (bounded, every shown value checked): the
report shows only finite numbers and the study's own organ names.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from mrisynth import untrusted as u

log = logging.getLogger(__name__)

RESULT_NAME = "downstream.json"  # as downstream.study writes it
FIGURE_NAME = "downstream.png"
FORMAT = "mrisynth-downstream"
ARMS = ("real", "synthetic", "real+synthetic")
MAX_BYTES = 32 * 2**20


def find_downstream(run_dir: Path) -> Path | None:
    """`RUN/downstream.json` or `RUN/<folder>/downstream.json` (e.g. `--outdir RUN/downstream`)."""
    direct = run_dir / RESULT_NAME
    if direct.is_file():
        return direct
    found = sorted(p for p in run_dir.glob(f"*/{RESULT_NAME}") if p.is_file())
    return found[0] if found else None


def read_downstream(path: Path) -> dict[str, Any] | None:
    """The checked parts of a downstream.json, or None (logged) when it is not one."""
    try:
        return check_document(u.loads(path.read_bytes(), path.name, MAX_BYTES))
    except (OSError, u.BadValue) as e:
        log.warning("%s: not shown in the report (%s)", path, e)
        return None


def check_document(doc: Any) -> dict[str, Any]:
    """What the report and the CLI show of a downstream document; BadValue if malformed."""
    doc = u.mapping(doc, RESULT_NAME)
    if doc.get("format") != FORMAT:
        raise u.BadValue("not a downstream study (format)")
    organs = [u.text(o, "organs[]", 64) for o in u.sequence(doc.get("organs"), "organs", 1, 64)]
    results = u.mapping(doc.get("results"), "results")
    means = u.mapping(u.mapping(results.get("dice"), "dice").get("means"), "dice.means")
    keys = [*organs, "all_organs"]
    test = u.mapping(results.get("paired_test"), "paired_test")
    seeds = u.sequence(u.mapping(doc.get("options"), "options").get("seeds"), "seeds", 1, 100)
    budget = u.mapping(doc.get("budget"), "budget")
    chance = u.sequence(doc.get("chance_dice"), "chance_dice", 0, 64)
    return {
        "organs": organs,
        "table": {arm: _cells(u.mapping(means.get(arm), arm), keys) for arm in ARMS},
        "hd95": _hd95_table(results.get("hd95"), organs),
        "test": {k: u.optional(u.number, test.get(k), k) for k in _TEST_NUMBERS},
        "num_seeds": len(seeds),
        "steps": u.integer(budget.get("steps"), "budget.steps", 1),
        "batch_size": u.integer(budget.get("batch_size"), "budget.batch_size", 1),
        "chance": [u.number(v, "chance_dice[]", 0, 1) for v in chance],
        "generator_checked": _generator_checked(doc.get("data")),
    }


def _generator_checked(data: Any) -> bool | None:
    """data.generator.checked: whether the generator's own training data was checked free of
    held-out patients (None: a study from before it was recorded)."""
    if not isinstance(data, dict) or not isinstance(data.get("generator"), dict):
        return None
    return u.boolean(data["generator"].get("checked"), "data.generator.checked")


_TEST_NUMBERS = ("pairs", "mean_difference", "median_difference", "wins", "losses", "p_value")


def _cells(
    arm: Any, keys: list[str], hi: float = 1.0
) -> dict[str, tuple[float | None, float | None]]:
    out = {}
    for k in keys:
        cell = u.mapping(arm.get(k), k)
        out[k] = (
            u.optional(u.number, cell.get("mean"), f"{k}.mean", 0, hi),
            u.optional(u.number, cell.get("std"), f"{k}.std", 0, hi),
        )
    return out


MAX_HD95_PX = 1e5  # no slice is wider: a larger distance is not a measurement


def _hd95_table(block: Any, organs: list[str]) -> dict[str, Any] | None:
    """{arm: {organ: (mean, std)}} in pixels, or None when the study measured no HD95
    (`--no-hd95`, or an older document without the block)."""
    if block is None:
        return None
    means = u.mapping(u.mapping(block, "hd95").get("means"), "hd95.means")
    table = {arm: _cells(u.mapping(means.get(arm), arm), organs, MAX_HD95_PX) for arm in ARMS}
    measured = any(m is not None for arm in table.values() for m, _ in arm.values())
    return table if measured else None


def dice_rows(checked: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows: one row per arm, 'mean ± std' per organ and over organs, and chance."""
    organs = checked["organs"]
    header = ["arm", *(o.replace("_", " ") for o in organs), "all organs"]
    rows = []
    for arm in ARMS:
        cells = [checked["table"][arm][k] for k in [*organs, "all_organs"]]
        rows.append([arm, *(_mean_std(m, s) for m, s in cells)])
    if len(checked["chance"]) == len(organs):
        rows.append(["chance (label frequency)", *(f"{v:.3f}" for v in checked["chance"]), ""])
    return header, rows


def hd95_rows(checked: dict[str, Any]) -> tuple[list[str], list[list[str]]] | None:
    """Header and rows of HD95 in pixels ('mean ± std' over seeds per organ), or None."""
    table = checked.get("hd95")
    if table is None:
        return None
    organs = checked["organs"]
    header = ["arm", *(f"{o.replace('_', ' ')} HD95 (px)" for o in organs)]
    rows = [[arm, *(_mean_std(*table[arm][o], digits=1) for o in organs)] for arm in ARMS]
    return header, rows


HD95_NOTE = (
    "HD95: 95th-percentile Hausdorff distance in pixels (lower is better), per slice where "
    "both truth and prediction show the organ, averaged over those slices, then mean ± std "
    "over seeds; n/a where no slice had both."
)


def _mean_std(mean: float | None, std: float | None, digits: int = 3) -> str:
    if mean is None:
        return "n/a"
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def test_sentence(checked: dict[str, Any]) -> str:
    """One plain sentence: the budget, the paired test and what it can and cannot say."""
    t = checked["test"]
    head = (
        f"Dice on held-out real patients, mean ± std over {checked['num_seeds']} seed(s); every "
        f"arm trained {checked['steps']} steps of {checked['batch_size']} slices."
    )
    head += _LEAKAGE.get(checked.get("generator_checked"), "")
    if t["pairs"] is None or t["mean_difference"] is None:
        return head + " No paired comparison of real + synthetic with real."
    p = "not computed" if t["p_value"] is None else f"p = {t['p_value']:.3g}"
    return (
        f"{head} Real + synthetic vs real: mean Dice difference {t['mean_difference']:+.3f} "
        f"over {t['pairs']:.0f} (seed, organ) pairs ({t['wins']:.0f} better, {t['losses']:.0f} "
        f"worse; Wilcoxon signed-rank {p}). Organs of one network are not independent, so the "
        "p-value is optimistic; the result holds for this data and budget only."
    )


_LEAKAGE = {
    True: " The generator's recorded training data holds no held-out patient (checked).",
    False: " Whether the generator trained on held-out patients could not be checked (its run "
    "or training archive was not found; downstream.json data.generator says why).",
}


HEADING = "Downstream segmentation: does synthetic data help?"
CAPTION = (
    "Dice of the same MONAI U-Net trained on real, synthetic and real + synthetic slices, "
    "scored on held-out real patients (bars: mean, whiskers: std over seeds; dashes: chance)."
)


def load_section(run_dir: Path) -> tuple[dict[str, Any], bytes | None] | None:
    """The checked study found in the run folder and its figure (None when not a readable
    PNG of sane size), or None when the run holds no downstream study."""
    from mrisynth.report.grids import decode_png

    path = find_downstream(run_dir)
    checked = None if path is None else read_downstream(path)
    if checked is None:
        return None
    figure = path.parent / FIGURE_NAME
    try:
        data = (
            figure.read_bytes() if figure.is_file() and figure.stat().st_size < MAX_BYTES else None
        )
    except OSError:
        data = None
    return checked, data if data is not None and decode_png(data) is not None else None


def section_lines(checked: dict[str, Any]) -> list[str]:
    """The section as Markdown lines (the HTML page uses dice_rows and test_sentence)."""
    header, rows = dice_rows(checked)
    lines = ["", f"## {HEADING}", "", "| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines += ["", test_sentence(checked)]
    hd95 = hd95_rows(checked)
    if hd95 is not None:
        header, rows = hd95
        lines += ["", "| " + " | ".join(header) + " |"]
        lines.append("|" + "|".join("---" for _ in header) + "|")
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        lines += ["", HD95_NOTE]
    return lines
