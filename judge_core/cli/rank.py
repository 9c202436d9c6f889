"""`judge-core rank MODEL ITEMS.jsonl -o OUTDIR`: Swiss/Elo tournaments of writer models, judge statistics.

ITEMS lines: {"prompt_id", "model", "response"} plus the instruction as "instruction" or "prompt"
(.jsonl or .jsonl.gz). Writes OUTDIR/leaderboard_<mode>.{json,csv,md,png}, stats.json,
games_<mode>.jsonl and judgements.jsonl (the cache: a rerun into the same OUTDIR judges nothing
twice and resumes an interrupted run). The method is described in judge_core/tournament/__init__.py.

--spec: any pairwise judge spec whose prompt needs only the instruction and the two responses (a spec that
also needs a criterion or rubric per pair, or a pointwise spec, is refused before anything loads). A spec
other than the default keys the cache on its hash: judgements made under one spec are never read under another.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .model_arg import add_judge_arguments

HELP = "rank writer models with Swiss/Elo tournaments and measure the judge's separability and biases"
CACHE_FILE = "judgements.jsonl"


def add_arguments(parser) -> None:
    add_judge_arguments(parser)
    parser.add_argument("items", help="JSONL (or .jsonl.gz) of {prompt_id, model, response, instruction|prompt}")
    parser.add_argument("-o", "--outdir", required=True, help="output directory (also holds the judgement cache)")
    parser.add_argument("--mode", choices=("isolated", "bootstrap", "both"), default="both",
                        help="isolated: a Swiss tournament per prompt (Option A); bootstrap: resampled prompts, "
                             "global tournaments (Option B); both (default)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="Swiss rounds per tournament (default: 5 isolated, 20 bootstrap)")
    parser.add_argument("--bootstrap-samples", type=int, default=10, help="prompt resamples in bootstrap mode (10)")
    parser.add_argument("--games-per-match", type=int, default=1,
                        help="bootstrap mode: prompts one match is played on, mean outcome (default 1)")
    parser.add_argument("--per-prompt", choices=("first", "sample"), default="first",
                        help="several responses of a writer to one prompt: first = lowest iteration always "
                             "plays (default); sample = one drawn per game under the seed")
    parser.add_argument("--seed", type=int, default=0, help="seed for pairing order, response_1 coin flips, bootstrap")
    parser.add_argument("--max-chars", type=int, default=None, help="truncate each response to N characters (default: whole responses)")
    parser.add_argument("--prompts", type=int, default=None, help="use only the first K prompt ids of the file (default: all)")
    parser.add_argument("--head", type=int, default=10, help="leaderboard rows printed per mode (default 10)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    from .score_ray import add_ray_arguments

    add_ray_arguments(parser)  # --replicas N: judge each round on N Ray replicas (score_ray.judge_pool)


def build_judge(args):
    """The judge for this run (a seam: tests put a synthetic judge here)."""
    from .model_arg import judge_from_args

    if getattr(args, "replicas", None) is not None:
        from .score_ray import judge_pool

        return judge_pool(args)

    return judge_from_args(args)


def judge_label(args) -> str:
    """What the cache file is tied to: the model as named (embedded.model_label) and the options that
    change the prompt text; a spec other than the default adds its name and hash (the default keeps the
    label it always had, so existing caches stay valid)."""
    from ..embedded.resolve import model_label
    from ..tournament.cache import spec_key

    label = f"{model_label(args.model, getattr(args, 'revision', None))}|ascii_json={not args.unicode_json}|" \
            f"no_thinking={args.no_thinking}"
    spec = getattr(args, "spec", None)
    if spec is not None and not isinstance(spec, str) and spec_key(spec) is not None:
        label += f"|spec={spec.name}@{spec.hash}"
    return label


def pairwise_spec(args):
    """args.spec loaded and checked to be one rank can play (docstring); raises ValueError saying why not."""
    from ..specs import SpecError, load_spec
    from ..specs.items import extra_fields

    try:
        spec = load_spec(getattr(args, "spec", None))
    except SpecError as e:
        raise ValueError(str(e)) from None
    if not spec.pairwise:
        raise ValueError(f"--spec {spec.name}: rank plays pairwise games and this spec is {spec.kind}: use a pairwise "
                         "spec (creative-writing, reference-pairwise or a file of kind pairwise), or score its items "
                         "with `judge-core score --spec`")
    extras = extra_fields(spec)
    if extras:
        raise ValueError(f"--spec {spec.name}: its messages use {', '.join('{' + f + '}' for f in extras)}, and rank "
                         "items hold only the instruction and the responses")
    return spec


class LazyJudge:
    """The judge, built at the first `compare_many` call: a rerun whose cache answers every judgement
    never loads the model. Passes `progress` to a Judge's compare_many (a bar within each round)."""

    def __init__(self, load, progress: bool, spec=None):
        self._load, self.progress = load, progress
        self.spec = spec  # known before the model loads: the cache keys on it
        self.judge = None
        self.loads = 0  # how many times the model was built (0 or 1)

    def compare_many(self, pairs):
        if self.judge is None:
            self.judge = self._load()
            self.loads += 1
        try:
            return self.judge.compare_many(pairs, progress=self.progress)
        except TypeError as e:
            if "progress" not in str(e):
                raise
            return self.judge.compare_many(pairs)


def run(args) -> int:
    from ..tournament import ItemsError, JudgementCache, RankSettings, load_items, rank
    from ..tournament.cache import CacheMismatchError, spec_key
    from ..tournament.report import leaderboard_markdown, write_reports
    from ..wording import plural
    from .model_arg import judge_argument_problem

    problem = judge_argument_problem(args)  # a bad option ends the run now, not at the first judgement
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        args.spec = pairwise_spec(args)  # the judge is built from this very spec (a file is read once)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    try:
        items = load_items(args.items, max_chars=args.max_chars, max_prompts=args.prompts)
    except ItemsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for warning in items.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"{plural(len(items.writers), 'writer')} x {plural(len(items.prompt_ids), 'prompt')} from {args.items}",
          file=sys.stderr)

    try:
        settings = RankSettings(
            isolated_rounds=5 if args.rounds is None else args.rounds,
            bootstrap_rounds=20 if args.rounds is None else args.rounds,
            bootstrap_samples=args.bootstrap_samples, games_per_match=args.games_per_match,
            per_prompt=args.per_prompt, seed=args.seed, progress=not args.no_progress)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    outdir = Path(args.outdir)
    try:
        cache = JudgementCache(outdir / CACHE_FILE, judge_label=judge_label(args), spec_hash=spec_key(args.spec))
    except CacheMismatchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if cache.loaded:
        print(f"resuming: {plural(cache.loaded, 'judgement')} cached in {cache.path}", file=sys.stderr)

    judge = LazyJudge(lambda: build_judge(args), progress=not args.no_progress, spec=args.spec)
    modes = ("isolated", "bootstrap") if args.mode == "both" else (args.mode,)
    result = rank(judge, items, settings, modes=modes, cache=cache)
    written = write_reports(result, outdir)

    for mode_result in result.modes.values():  # the table, its statistics and warnings, once (stdout)
        print(leaderboard_markdown(mode_result, head=args.head))
    c = result.cache
    loaded = "" if judge.loads else "; the model was not loaded (the cache held every judgement)"
    print(f"judgements: {c['misses']} judged, {c['hits']} from cache, in "
          f"{plural(c['judge_calls'], 'compare_many call')}{loaded}", file=sys.stderr)
    print("wrote " + ", ".join(str(p) for p in written), file=sys.stderr)
    return 0
