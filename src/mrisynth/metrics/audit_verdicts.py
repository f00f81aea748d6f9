"""Plain-language verdicts of the memorisation audit (the issue-10 verdicts contract).

`topic` "copying" (the Z_U test and the per-image flags) and "data" (no held-out patients).
Levels: "warning" for likely data-copying, "ok" when the test ran and found none, "info" when
it could not run. Text is plain: no Markdown, no backticks.
"""

from __future__ import annotations

P_COPYING = 0.001  # one-sided p of Z_U below which the set is called data-copying
FLAGGED_WARN = 0.05  # flagged fraction above which copies are called out (5x the 1 % calibration)
HOLDOUT_HINT = "mrisynth dataset --holdout-patients N"


def _fmt(x: float | None, spec: str = ".3g") -> str:
    return "n/a" if x is None else format(x, spec)


def _support(copy_test: dict) -> str:
    """', over K regions and H held-out images': how much the statistic rests on."""
    cells = copy_test.get("cells") or []
    held = sum(int(c.get("num_holdout", 0)) for c in cells)
    if not cells:
        return ""
    return f"; {len(cells)} region{'s' if len(cells) > 1 else ''}, {held} held-out images"


def _no_single_copy(num_flagged: int) -> str:
    """Why a low Z_U with no flagged image is over-fitting evidence, not proof of a copy."""
    if num_flagged:
        return ""
    return (
        " No single image is a near-copy: the generator sits close to typical training "
        "anatomy, which a collapsed or over-fitted generator also does; read this with the "
        "diversity verdict and inspect the closest pairs."
    )


def copy_verdicts(copy_test: dict, num_gen: int) -> list[dict]:
    """Verdicts from the `copy_test` block of an audit summary."""
    out: list[dict] = []
    n_flag = copy_test["num_flagged"]
    frac = copy_test["flagged_fraction"]
    flags = (
        f"{n_flag} of {num_gen} generated images are closer to a training image than "
        f"{100 - copy_test['threshold_percentile']:g} % of real between-patient pairs."
    )
    value, p = copy_test["value"], copy_test["p_value"]
    stat = f"Meehan Z_U {_fmt(value, '.2f')} (p {_fmt(p)}{_support(copy_test)})."
    if value is not None and p is not None and p < P_COPYING:
        out.append(
            {
                "topic": "copying",
                "level": "warning",
                "title": f"{'Data-copying' if n_flag else 'Possible data-copying'}: generated "
                "images sit closer to training patients than new patients do",
                "text": f"{stat} {flags}{_no_single_copy(n_flag)}",
            }
        )
    elif frac > FLAGGED_WARN:
        out.append(
            {
                "topic": "copying",
                "level": "warning",
                "title": f"{n_flag} generated image{'s look' if n_flag > 1 else ' looks'} "
                "like a copy of a training image",
                "text": f"{flags} Inspect them beside their nearest training images.",
            }
        )
    elif copy_test["holdout"] and value is None:
        out.append(
            {
                "topic": "copying",
                "level": "info",
                "title": "Too few images for the data-copying statistic",
                "text": "No region of the training set held 5 generated and 5 held-out images; "
                f"evaluate more images or hold out more patients. {flags}",
            }
        )
    elif copy_test["holdout"]:
        out.append(
            {
                "topic": "copying",
                "level": "ok",
                "title": "No sign of data-copying",
                "text": f"{stat} {flags}",
            }
        )
    elif copy_test["threshold"] is not None:
        out.append(
            {
                "topic": "copying",
                "level": "ok" if n_flag == 0 else "info",
                "title": "No image flagged as a copy" if n_flag == 0 else "A few images flagged",
                "text": flags,
            }
        )
    if not copy_test["holdout"]:
        out.insert(0, _no_holdout(flags, said=any(flags in v["text"] for v in out)))
    return out


def _no_holdout(flags: str, said: bool) -> dict:
    """The note that the statistic could not run; the flag count only when no other verdict
    says it (each thing said once)."""
    return {
        "topic": "data",
        "level": "info",
        "title": "No held-out patients: no data-copying statistic",
        "text": "The copy test compares generated images with patients training never saw; "
        f"build the archive with {HOLDOUT_HINT} to get them.{'' if said else ' ' + flags}",
    }
