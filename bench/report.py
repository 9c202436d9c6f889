"""Bench output: the results dict as JSON, a Markdown table, and PNG plots of the sweeps."""

from __future__ import annotations

import json
import math
from pathlib import Path


def _fmt(value, spec: str = ",.0f", none: str = "-") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return none
    return format(value, spec)


def _mib(n) -> str:
    return "-" if n is None else f"{n / 2**20:,.0f}"


def _rss(memory: dict) -> str:
    if memory.get("peak_rss_bytes") is None:
        return "-"
    extra = memory.get("peak_rss_over_preload_bytes")
    return _mib(memory["peak_rss_bytes"]) + ("" if extra is None else f" (+{_mib(extra)})")


def write_json(results: dict, path: str | Path) -> Path:
    path = Path(path)
    path.write_text(json.dumps(results, indent=2, default=str))
    return path


def markdown_table(results: dict) -> str:
    """The side-by-side table: speed, memory, accuracy against the reference twin, the card's metrics."""
    lines = []
    meta = results.get("meta", {})
    wl = results.get("workload", {})
    lines.append(f"Workload: {wl.get('description', '?')}; {wl.get('n_pairs', '?')} pairs, "
                 f"{wl.get('prompts', '?')} prompts, prompt tokens median {wl.get('prompt_tokens_median', '?')} "
                 f"(p90 {wl.get('prompt_tokens_p90', '?')}, max {wl.get('prompt_tokens_max', '?')}). "
                 f"Model: {meta.get('model', '?')}. Device: {meta.get('device_name', '?')}, "
                 f"torch threads {meta.get('machine', {}).get('torch_threads', '?')}.")
    peaks = results.get("matmul_peak", {})
    if peaks:
        lines.append("Matmul peak measured here: " + ", ".join(f"{k} {v['tflops']:.2f} TFLOP/s" for k, v in peaks.items())
                     + ".")
    lines.append("")
    lines.append("| system | status | prompt tok/s | pairs/s | pad eff | s/batch | MFU | peak GPU MiB | peak RSS MiB (+this system) "
                 "| max \\|dp1\\| vs ref | mean \\|dp1\\| | verdict agree | strict acc | pos. consist. | target mass |")
    lines.append("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for s in results.get("systems", []):
        sp, acc, card = s.get("speed", {}), s.get("vs_reference", {}), s.get("card", {})
        status = s["status"] if s["status"] == "ok" else f"{s['status']}: {s.get('reason', '')[:80]}"
        mfu = sp.get("mfu")
        lines.append("| " + " | ".join([
            s["name"], status.replace("|", "/"),
            _fmt(sp.get("prompt_tokens_per_s")), _fmt(sp.get("pairs_per_s"), ".2f"),
            _fmt(sp.get("padding_efficiency"), ".3f"), _fmt(sp.get("seconds_per_batch"), ".3f"),
            "-" if mfu is None else f"{100 * mfu:.2f}%",
            _mib(s.get("memory", {}).get("peak_gpu_bytes")), _rss(s.get("memory", {})),
            _fmt(acc.get("max_abs_delta_p1"), ".2e"), _fmt(acc.get("mean_abs_delta_p1"), ".2e"),
            _fmt(acc.get("verdict_agreement"), ".1%"),
            _fmt(card.get("strict_accuracy"), ".1%"), _fmt(card.get("positional_consistency"), ".1%"),
            _fmt(card.get("mean_target_mass"), ".1f"),
        ]) + " |")
    drift = results.get("drift", [])
    if drift:
        lines += ["", "Drift, bf16 vs fp32 and quantized vs unquantized (same system, same pairs):", "",
                  "| system | vs | max \\|dp1\\| | mean \\|dp1\\| | verdict agree |", "|---|---|--:|--:|--:|"]
        for d in drift:
            lines.append(f"| {d['system']} | {d['against']} | {_fmt(d.get('max_abs_delta_p1'), '.2e')} | "
                         f"{_fmt(d.get('mean_abs_delta_p1'), '.2e')} | {_fmt(d.get('verdict_agreement'), '.1%')} |")
    cut = results.get("cutoff")
    if cut and cut.get("pairs_compared"):
        lines += ["", f"Card's top-10 cutoff (reference with logprobs=10, -100 if missing) vs exact logits, "
                      f"{cut['pairs_compared']} pairs: pair verdict changed {cut['pair_verdict_changed']:.1%}, "
                      f"pass verdict changed {cut['pass_verdict_changed']:.1%}, passes with a candidate outside "
                      f"the top 10 {cut['passes_with_a_candidate_missing']:.1%}, max |dp1| {cut['max_abs_delta_p1']:.2f}."]
    for name, points in results.get("sweeps", {}).items():
        ok = [p for p in points if p.get("status") == "ok"]
        if not ok:
            continue
        if name == "token_budget":
            lines += ["", f"Token-budget sweep ({ok[0]['system']}):", "",
                      "| token budget | prompt tok/s | pad eff | batches |", "|--:|--:|--:|--:|"]
            for p in ok:
                lines.append(f"| {p['token_budget']:,} | {p['prompt_tokens_per_s']:,.0f} | "
                             f"{p['padding_efficiency']:.3f} | {p['batches']} |")
        elif name == "prompt_length":
            lines += ["", "Prompt-length sweep (synthetic pairs, fixed response length):", "",
                      "| system | response tokens | mean prompt tokens | prompt tok/s |", "|---|--:|--:|--:|"]
            for p in ok:
                lines.append(f"| {p['system']} | {p['response_tokens']:,} | {p['mean_prompt_tokens']:,.0f} | "
                             f"{p['prompt_tokens_per_s']:,.0f} |")
    targets = results.get("targets", [])
    if targets:
        lines += ["", "Targets (tracked, not asserted):", ""]
        for t in targets:
            lines.append(f"- {'MET' if t['met'] else 'NOT MET'}: {t['target']} ({t['detail']})")
    return "\n".join(lines) + "\n"


def plot_sweeps(results: dict, out_dir: str | Path) -> list[Path]:
    """PNG plots of the sweeps (matplotlib imported here, headless backend); [] if none or no matplotlib."""
    sweeps = results.get("sweeps", {})
    if not any(p.get("status") == "ok" for points in sweeps.values() for p in points):
        return []
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    out_dir = Path(out_dir)
    written = []
    meta = results.get("meta", {})
    title_tail = f"\n{meta.get('model', '')}\n{meta.get('device_name', '')}"
    budget = [p for p in sweeps.get("token_budget", []) if p.get("status") == "ok"]
    if budget:
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot([p["token_budget"] for p in budget], [p["prompt_tokens_per_s"] for p in budget], "o-")
        ax.set_xscale("log", base=2)
        ax.set_xticks([p["token_budget"] for p in budget])
        ax.set_xticklabels([f"{p['token_budget'] / 1024:g}k" for p in budget])
        ax.set_ylim(bottom=0)
        ax.set_xlabel("token budget per batch")
        ax.set_ylabel("prompt tokens / s")
        ax.set_title(f"{budget[0]['system']}: throughput vs token budget" + title_tail, fontsize=8)
        ax.grid(True, alpha=0.3)
        fig.tight_layout()
        path = out_dir / "sweep_token_budget.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    length = [p for p in sweeps.get("prompt_length", []) if p.get("status") == "ok"]
    if length:
        fig, ax = plt.subplots(figsize=(6, 4))
        for system in dict.fromkeys(p["system"] for p in length):
            pts = [p for p in length if p["system"] == system]
            ax.plot([p["mean_prompt_tokens"] for p in pts], [p["prompt_tokens_per_s"] for p in pts], "o-", label=system)
        xs = [p["mean_prompt_tokens"] for p in length]
        if max(xs) > 4 * min(xs):
            ax.set_xscale("log", base=2)
        ax.set_xlabel("mean prompt length (tokens)")
        ax.set_ylabel("prompt tokens / s")
        ax.set_ylim(bottom=0)
        ax.set_title("throughput vs prompt length" + title_tail, fontsize=8)
        ax.legend(fontsize=8)
        ax.grid(True, alpha=0.3)
        fig.tight_layout()
        path = out_dir / "sweep_prompt_length.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written


def write_all(results: dict, out_dir: str | Path) -> dict:
    """results.json, results.md and the sweep PNGs under `out_dir`; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md = markdown_table(results)
    (out_dir / "results.md").write_text(md)
    paths = {"json": str(write_json(results, out_dir / "results.json")), "markdown": str(out_dir / "results.md"),
             "plots": [str(p) for p in plot_sweeps(results, out_dir)]}
    return paths
