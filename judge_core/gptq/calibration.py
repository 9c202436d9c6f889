"""Calibration prompts for GPTQ: judge prompts exactly as the judge sees them, both orders of each pair.

The Hessian of each layer should come from the inputs the judge will meet, so calibration text is
built with the judge's own system message, JSON user message and chat template (prompts.render_prompt).
Sources: the embedded sample pairs plus a few written here, or a user file (JSONL or JSON list, each
pair a dict with instruction/response_1/response_2 or a 3-list).
"""

from __future__ import annotations

import json
from pathlib import Path

# A few short pairs of our own so that calibration spans several registers besides the samples.
EXTRA_PAIRS = [
    ("Write the opening line of a detective novel set on a space station.",
     "The body had been floating in Hydroponics for three hours before anyone thought to ask why the tomatoes "
     "were growing toward it.",
     "It was a dark and stormy night on the space station. A detective arrived."),
    ("Describe the taste of rain to someone who has never felt it.",
     "Rain tastes like the inside of a cloud that has been thinking about stones: cold, a little metallic, "
     "and gone before you can name it.",
     "Rain tastes like water. It is wet and it falls from the sky and you can drink it."),
    ("Write a haiku about a forgotten umbrella.",
     "Left by the doorframe / it keeps the shape of a storm / no one walked home in",
     "Umbrella alone / nobody took it with them / it is sad today"),
    ("Give a villain a one-paragraph monologue about kindness.",
     "You think kindness is soft? Kindness is patient. It waits at every door you close, and it remembers "
     "your name long after you have forgotten its face. I learned cruelty from kind people — they never stop.",
     "I am the villain and I do not like kindness because it is bad and I am evil. Ha ha ha."),
    ("Retell Little Red Riding Hood in three sentences from the wolf's point of view.",
     "I only wanted the basket; the girl wanted the story. By the time the woodsman arrived, I had become the "
     "lesson everyone needed. Nobody asks the wolf how hungry the winter was.",
     "The wolf saw a girl. The wolf ate the grandmother. Then a man came and it was over."),
    ("Write a short letter from a lighthouse to the sea.",
     "Dear Sea, I have spent a hundred years saying no to you in the politest light I know. Keep the ships; "
     "give me one calm night. Yours, steadily, the Lighthouse.",
     "Hello sea. I am a lighthouse. I shine a light. Please be nice to boats. Goodbye."),
]


def builtin_pairs() -> list[tuple[str, str, str]]:
    """The embedded sample pairs (when present) followed by EXTRA_PAIRS."""
    sample = Path(__file__).resolve().parent.parent / "embedded" / "sample_pairs.jsonl"
    pairs = load_pairs(sample) if sample.exists() else []
    return pairs + list(EXTRA_PAIRS)


def load_pairs(path: str | Path) -> list[tuple[str, str, str]]:
    """Pairs from a JSONL file or a JSON list; each a dict with instruction/response_1/response_2 or a 3-list."""
    from ..pairs import normalize_pair

    text = Path(path).read_text(encoding="utf-8")
    stripped = text.lstrip()
    rows = json.loads(stripped) if stripped.startswith("[") else [json.loads(l) for l in text.splitlines() if l.strip()]
    pairs = []
    for n, row in enumerate(rows, 1):
        try:
            pairs.append(normalize_pair(row))
        except ValueError as e:
            raise ValueError(f"{path}: pair {n}: {e}") from None
    if not pairs:
        raise ValueError(f"{path}: no pairs")
    return pairs


def calibration_token_ids(tokenizer, pairs, *, n_prompts: int, max_tokens: int = 2048) -> list[list[int]]:
    """Up to n_prompts token lists: pass 1 and pass 2 prompts of each pair, each cut to max_tokens."""
    from ..prompts import render_prompt

    texts = []
    for instruction, r1, r2 in pairs:
        texts += [render_prompt(tokenizer, instruction, r1, r2), render_prompt(tokenizer, instruction, r2, r1)]
        if len(texts) >= n_prompts:
            break
    ids = tokenizer(texts[:n_prompts], add_special_tokens=False)["input_ids"]
    return [list(x[:max_tokens]) for x in ids]
