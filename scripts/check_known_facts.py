"""Re-check which facts a model knows, or rebuild the book's facts file from the relation tables.

    python scripts/check_known_facts.py --model smollm2-135m                  # check the book's facts
    python scripts/check_known_facts.py --model gemma3-270m --out kept.json   # keep the ones Gemma knows
    python scripts/check_known_facts.py --model PATH --facts counterfact.json # any CounterFact / known_1000 file
    python scripts/check_known_facts.py --model smollm2-135m --build          # rebuild lib/locedit/data/facts.json

The filter is ROME's: a fact is known when the greedy next token after the raw prompt (no chat template) is the
first token of " " + the true object.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

from locedit.data import FACTS_PATH, build_facts, known_mask, load_facts
from locedit.models import load_model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m", help="built-in name, local folder or HF id")
    parser.add_argument("--facts", default=None, help="facts file (default: the book's)")
    parser.add_argument("--out", default=None, help="write the kept records here (JSON)")
    parser.add_argument("--build", action="store_true", help="rebuild the facts file from the relation tables")
    parser.add_argument("--seed", type=int, default=0, help="seed of the counterfactual targets (with --build)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    model = load_model(args.model, device=args.device)
    if args.build:
        records, summary = build_facts(model, seed=args.seed)
        out = Path(args.out) if args.out else FACTS_PATH
        out.write_text(json.dumps(records, indent=1, ensure_ascii=False) + "\n")
        print(f"{'relation':10} {'candidates':>10} {'known':>6} {'kept':>5}")
        for rel in summary["candidates"]:
            c, k, n = (summary[x].get(rel, 0) for x in ("candidates", "known", "kept"))
            print(f"{rel:10} {c:10d} {k:6d} {n:5d}")
        print(f"{len(records)} records written to {out} ({time.perf_counter() - started:.0f} s)")
        return 0

    records = load_facts(args.facts)
    rewrites = [r["requested_rewrite"] for r in records]
    checks = known_mask(
        model, [rw["prompt"].format(rw["subject"]) for rw in rewrites], [rw["target_true"]["str"] for rw in rewrites]
    )
    kept = [r for r, c in zip(records, checks, strict=True) if c["known"]]
    total, hits = Counter(), Counter()
    for rw, c in zip(rewrites, checks, strict=True):
        total[rw["relation_id"]] += 1
        hits[rw["relation_id"]] += c["known"]
    for rel in total:
        print(f"{rel!s:10} {hits[rel]:5d} / {total[rel]:5d} known")
    print(f"{args.model}: {len(kept)} of {len(records)} facts known ({time.perf_counter() - started:.0f} s)")
    if args.out:
        Path(args.out).write_text(json.dumps(kept, indent=1, ensure_ascii=False) + "\n")
        print(f"kept records written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
