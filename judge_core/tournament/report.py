"""Write a ranking to disk: leaderboards (JSON, CSV, Markdown, PNG), statistics, game logs.

Files per mode M (isolated | bootstrap): leaderboard_M.{json,csv,md,png}, games_M.jsonl; and one
stats.json for the run. matplotlib is imported only here, lazily: without it the PNG is skipped
with a one-line warning.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from ..wording import plural
from .runner import ModeResult, RankResult

LEADERBOARD_COLUMNS = ("rank", "writer", "elo_mean", "elo_std", "elo_p2_5", "elo_p97_5", "samples")
# Below this many Elo samples per writer, the 2.5 / 97.5 percentiles are little more than the smallest and
# largest sample: the "95% interval" is shown with a warning.
MIN_INTERVAL_SAMPLES = 20


def _fmt(value, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def omega_squared_text(value) -> str:
    """omega-squared, with the word a reader needs when it is negative (the estimator goes below 0 when the
    writers' Elo samples differ less than chance alone would make them)."""
    text = _fmt(value)
    return f"{text} (negative: no separability beyond chance)" if value is not None and value < 0 else text


def interval_warnings(result: ModeResult) -> list[str]:
    """Why the 95% interval column should not be read as one: too few samples behind it."""
    counts = [r["samples"] for r in result.leaderboard]
    if not counts or min(counts) >= MIN_INTERVAL_SAMPLES:
        return []
    what = "bootstrap samples" if result.mode == "bootstrap" else "prompts (one Elo sample each)"
    fewest = min(counts)
    return [f"{result.mode}: the 95% interval comes from only {fewest} {what} per writer (fewer than "
            f"{MIN_INTERVAL_SAMPLES}): it is close to the range of those samples, not a 95% interval"
            + (" (--bootstrap-samples raises it)" if result.mode == "bootstrap" else "")]


def leaderboard_markdown(result: ModeResult, head: int | None = None) -> str:
    """A Markdown table, Elo ± spread (sample std over the Elo samples), best first."""
    s = result.stats
    title = ("Option A: prompt-isolated Swiss tournaments" if result.mode == "isolated"
             else "Option B: bootstrapped global Swiss tournaments")
    lines = [f"## {title}", "",
             f"Elo: start {s['elo']['initial']:g}, K {s['elo']['k_factor']:g}; samples: {s['elo']['samples_are']}; "
             f"± is the sample standard deviation over them.", "",
             "| Rank | Writer | Elo ± spread | 95% interval | Samples |", "|---:|---|---:|---:|---:|"]
    rows = result.leaderboard if head is None else result.leaderboard[:head]
    for r in rows:
        lines.append(f"| {r['rank']} | {r['writer']} | {r['elo_mean']:.1f} ± {r['elo_std']:.1f} | "
                     f"{r['elo_p2_5']:.1f} .. {r['elo_p97_5']:.1f} | {r['samples']} |")
    warnings = [f"Warning: {w}." for w in interval_warnings(result)]
    lines += [""] + (warnings + [""] if warnings else [])
    lines += [f"omega-squared {omega_squared_text(s['omega_squared'])}, mean |Cliff's delta| "
              f"{_fmt(s['mean_abs_cliffs_delta'])} "
              f"({s['cliffs_delta_pairs']} writer pairs: {s['cliffs_delta_pairs_rule']}), "
              f"combined separability {_fmt(s['combined'], 2)}.",
              f"Positional bias: position 1 won {_fmt(s['positional_bias']['position1_win_share'])} of passes. "
              f"Length bias: the longer response won {_fmt(s['length_bias']['longer_win_rate'])} by characters "
              f"(mean margin {_fmt(s['length_bias']['mean_margin_longer'], 2)} points, "
              f"{plural(s['length_bias']['pairs'], 'pair')}), {_fmt(s['length_bias_words']['longer_win_rate'])} "
              f"by words (margin {_fmt(s['length_bias_words']['mean_margin_longer'], 2)}, "
              f"{plural(s['length_bias_words']['pairs'], 'pair')}).",
              f"{plural(s['games'], 'game')} (unique pairs {s['unique_pairs_judged']}), failed {s['error_games']}, "
              f"{plural(s['rematches'], 'rematch')}, {plural(s['byes'], 'bye')}.", ""]
    return "\n".join(lines)


def _write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=LEADERBOARD_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def axis_label(result: ModeResult) -> str:
    """The plot's x label: "Elo (mean ± std over prompts)"."""
    return "Elo (mean ± std over " + result.stats["elo"]["samples_are"].replace("one Elo per ", "") + "s)"


def _write_png(path: Path, result: ModeResult) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")  # files only; never open a window
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"matplotlib is not installed: skipping {path.name} (it is a judge_core dependency: "
              "pip install matplotlib)", file=sys.stderr)
        return False
    rows = result.leaderboard[::-1]  # best at the top of a horizontal bar chart
    height = max(2.5, 0.28 * len(rows) + 1.2)
    fig, ax = plt.subplots(figsize=(8.0, height))
    ax.errorbar([r["elo_mean"] for r in rows], range(len(rows)), xerr=[r["elo_std"] for r in rows],
                fmt="o", capsize=3)
    ax.set_yticks(range(len(rows)), [r["writer"] for r in rows], fontsize=7)
    ax.axvline(result.stats["elo"]["initial"], color="grey", linewidth=0.6, linestyle="--")
    ax.set_xlabel(axis_label(result))
    ax.set_title(f"{result.mode}: combined separability {_fmt(result.stats['combined'], 2)}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def write_reports(result: RankResult, outdir: str | Path) -> list[Path]:
    """Write every report file for `result` into `outdir`; returns the paths written."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    for mode, r in result.modes.items():
        base = outdir / f"leaderboard_{mode}"
        base.with_suffix(".json").write_text(json.dumps(r.leaderboard, indent=1) + "\n", encoding="utf-8")
        _write_csv(base.with_suffix(".csv"), r.leaderboard)
        base.with_suffix(".md").write_text(leaderboard_markdown(r), encoding="utf-8")
        written += [base.with_suffix(s) for s in (".json", ".csv", ".md")]
        if _write_png(base.with_suffix(".png"), r):
            written.append(base.with_suffix(".png"))
        games = outdir / f"games_{mode}.jsonl"
        with open(games, "w", encoding="utf-8") as f:
            for g in r.games:
                f.write(json.dumps(g, ensure_ascii=False) + "\n")
        written.append(games)
    stats = outdir / "stats.json"
    stats.write_text(json.dumps(result.stats_dict(), indent=1) + "\n", encoding="utf-8")
    written.append(stats)
    return written
