"""Write the README's "Results" section from reports/: one headline figure per section with a sentence
on what it shows, and the claims tally of each notebook (holds / does not hold at this profile /
asserted exact), read from each notebook's tables/claims.csv and headline.json.

    python scripts/readme_results.py          # rewrite the block between the markers in README.md
    python scripts/readme_results.py --check  # exit 1 if the README's block is not what reports/ gives

The block lives between ``<!-- results:start -->`` and ``<!-- results:end -->``; nothing outside it
changes. The DVC stage ``readme_results`` runs this after the notebooks, and a test runs ``--check``.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- results:start -->", "<!-- results:end -->"

# per section: (title, headline figure, what the figure shows)
SECTIONS = {
    "01_gaussian_mixture": (
        "§1 · 2-D Gaussian mixture (GDM §3.1, §3.3, Fig. 1a/1c, Prop. 3.3)", "fig1a_process.png",
        "The generative process of the scalar model and of GDM generating x₁ then x₂ (rows: trained "
        "scalar, trained GDM, exact oracle; columns: t from 1 to 0): GDM forms the x₁ modes by t = 0.5 "
        "while x₂ still holds its latent."),
    "02_ar_cdm_equivalence": (
        "§2 · AR and cascaded models as GDMs (GDM Prop. 3.1, 3.2, App. C–D)", "fig13_cdm_process.png",
        "A cascaded diffusion model run as a two-group GDM: the 2×-subsampled grid is generated first, "
        "the remaining pixels second, and the grid stays bitwise fixed while they are generated."),
    "03_grouping_ordering": (
        "§3 · Grouping and ordering (GDM Table 1, Fig. 5, Fig. 11, Fig. 1b–c)", "table1.png",
        "Table 1 at laptop scale: sample quality (a classifier Fréchet distance on 12×12 digits, lower is "
        "better, ± std over 3 runs) of the four k = 2 grouping strategies, next to the paper's FID10K on "
        "CIFAR-10; Bottom→Top comes first and Right→Left second, as in the paper."),
    "04_semantic_band": (
        "§4 · GDM-F: the semantic band, factors of variation, editing (GDM §3.4, §4.2–4.5)", "factor_band.png",
        "How much each known factor of the procedural shapes changes when one frequency band's latents are "
        "resampled, GDM-F against the same index sets under a scalar schedule (k = 1): the lowest band "
        "moves position, scale and hue far more than the highest."),
    "04_semantic_band_digits": (
        "§4 on real images · GDM-F on the 8×8 digits (notebook 04, stage 04_semantic_band_digits)",
        "fig4a_variance.png",
        "Fig. 4a on scikit-learn's handwritten digits: the perceptual variance (pixels and the features of "
        "a digit classifier trained in the notebook) of images generated with the lowest m latent components "
        "fixed, GDM-F (bands [0, 29], [30, 63]) against k = 1."),
    "05_gud_softness": (
        "§5 · GUD soft conditioning: softness, whitening, ordering (GUD §4.2–4.5, §5.1)", "fig3_softness.png",
        "Fig. 3 at laptop scale: NLL (bits/dim, probability-flow ODE) and sample quality against the "
        "softness a, unwhitened and whitened, one network per scaling trained over a drawn per batch."),
    "06_column_extension": (
        "§6 · Column-wise generation and image extension (GUD §5.2, App. C)", "fig7_strips_oracle.png",
        "Image extension (App. C) of a stationary Gaussian random field with the exact oracle: strips 8 "
        "windows long, with the derived condition under which appending prior noise restores the state."),
    "07_haar": (
        "§7 · Haar wavelets ⊗ column-wise schedules (GUD §5.3, eq. 22)", "schedule_generation_times.png",
        "When each Haar coefficient is generated (its SNR crosses 1) for several (a, b), with eq. 22 as "
        "corrected: coarsest level first, left columns first within a level."),
}


def _tally(claims_csv: Path) -> dict[str, int]:
    rows = list(csv.DictReader(claims_csv.open(encoding="utf-8")))
    t = {"asserted (exact), hold": 0, "reported, hold": 0,
         "reported, do not hold at this profile": 0, "reported, not separable at this profile": 0}
    for r in rows:
        if r["checked"] == "asserted":
            if r["verdict"] != "holds":
                raise SystemExit(f"{claims_csv}: asserted claim {r['claim']!r} did not hold; the "
                                 "notebook run should have failed — rerun it")
            t["asserted (exact), hold"] += 1
        elif r["verdict"] == "holds":
            t["reported, hold"] += 1
        elif r["verdict"] == "not separable at this profile":
            t["reported, not separable at this profile"] += 1
        else:
            t["reported, do not hold at this profile"] += 1
    return t


def block() -> str:
    """The Markdown between the markers, built from reports/."""
    lines = [START, "", "## Results", "",
             "Generated by `scripts/readme_results.py` from `reports/` (the committed laptop-profile run;",
             "numbers are at the laptop's scale, not the papers'). *Asserted* claims are exact identities",
             "that stop the run if they fail; *reported* claims depend on the training budget.", ""]
    for stem, (title, fig, caption) in SECTIONS.items():
        nb = ROOT / "reports" / stem
        if not (nb / "tables" / "claims.csv").is_file():
            continue
        tally = _tally(nb / "tables" / "claims.csv")
        head = json.loads((nb / "headline.json").read_text()) if (nb / "headline.json").is_file() else {}
        lines += [f"### {title}", "", f"![{stem}](reports/{stem}/figures/{fig})", "", caption, "",
                  "| claims | count |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in tally.items() if v]
        if head:
            lines += ["", "Headline numbers (`headline.json`): "
                      + ", ".join(f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}"
                                  for k, v in head.items()) + "."]
        table = f"reports/{stem}/tables/claims.md"
        lines += ["", f"Full claims table: [`{table}`]({table}).", ""]
    lines.append(END)
    return "\n".join(lines)


def render(readme: str) -> str:
    """``readme`` with its results block replaced (appended before "## Library API" if missing)."""
    new = block()
    if START in readme and END in readme:
        a, b = readme.index(START), readme.index(END) + len(END)
        return readme[:a] + new + readme[b:]
    anchor = readme.find("## Library API")
    anchor = anchor if anchor >= 0 else len(readme)
    return readme[:anchor] + new + "\n\n" + readme[anchor:]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="only check that README.md is current")
    args = ap.parse_args(argv)
    path = ROOT / "README.md"
    old = path.read_text(encoding="utf-8")
    new = render(old)
    if args.check:
        if new != old:
            print("README.md's results block is out of date with reports/: run "
                  "`uv run --frozen python scripts/readme_results.py`", file=sys.stderr)
            return 1
        return 0
    if new != old:
        sys.path.insert(0, str(ROOT / "src"))
        from gdmkit import files

        files.write_text(path, new)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
