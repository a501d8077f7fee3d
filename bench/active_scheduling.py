"""Active pair scheduling: how many judgments each allocation policy needs to recover a
known ranking of candidate sources (issue 21, part 4).

A simulation in memory, not through the database: the allocator's choice is reproduced
with the functions it calls (``annotation.bradley_terry.most_uncertain_first`` over a
window of ``annotation.allocator.ACTIVE_WINDOW`` items in the least-covered order, the
quick ``fit_strengths`` refitted every ``--refit`` judgments as the allocator's cache
does, and the plain order at ``--random-percent``).

The world: ``--sources`` sources with true Bradley–Terry strengths evenly spread over
``--spread`` log-odds (their order shuffled), prompts with 4 candidates of 4 different
sources, every pair of a prompt's candidates an item (pairwise mode, one annotation each),
items in a random order (the least-covered order when nothing is covered yet). A
simulated annotator prefers a candidate with the true probability ``sigmoid(θa − θb)``
and calls a tie ``--tie-percent`` of the time.

Every 50 judgments the leaderboard's fit (``fit`` with its default prior) is compared with
the truth by Kendall's tau; "judgments needed" is the first count from which tau stays at
or above 0.9 up to the budget. Printed per policy over ``--seeds`` seeds: the median and
the spread (min–max); a run that never settles counts as the budget and is flagged.

Target: the uncertain policy needs fewer judgments than the random order (median).

    .venv/bin/python bench/active_scheduling.py [--seeds 10] [--sources 10] [--budget 8000]
"""

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path[:0] = [str(Path(__file__).resolve().parents[1])]
from annotation import bradley_terry as bt  # noqa: E402

ACTIVE_WINDOW = 64  # annotation.allocator.ACTIVE_WINDOW (that module needs Django)
CHECK_EVERY = 50
TARGET_TAU = 0.9


def kendall_tau(x, y) -> float:
    """Kendall's tau-a of two score vectors (no ties in the truth)."""
    n, total = len(x), 0
    for i in range(n):
        for j in range(i + 1, n):
            total += np.sign(x[i] - x[j]) * np.sign(y[i] - y[j])
    return total / (n * (n - 1) / 2)


def simulate(policy: str, seed: int, args) -> tuple[int, bool, list]:
    rng = np.random.default_rng(seed)
    truth = rng.permutation(np.linspace(-args.spread / 2, args.spread / 2, args.sources))
    names = [f"s{i}" for i in range(args.sources)]
    prompts = args.budget // 6 + ACTIVE_WINDOW  # enough items never to run out
    items = []
    for _ in range(prompts):
        four = rng.choice(args.sources, 4, replace=False)
        items.extend((int(four[i]), int(four[j])) for i in range(4) for j in range(i + 1, 4))
    order = list(rng.permutation(len(items)))  # the least-covered order: random_order
    taken = np.zeros(len(items), bool)
    head = 0  # first item of the order not yet taken
    counts: dict = {}
    a, b, y = [], [], []
    strengths = None  # no fit before the first battle
    curve, settled_at = [], None
    coin = np.random.default_rng(seed + 10_000)
    for n in range(1, args.budget + 1):
        while taken[order[head]]:
            head += 1
        window, k = [], head
        while len(window) < ACTIVE_WINDOW and k < len(order):
            if not taken[order[k]]:
                window.append(order[k])
            k += 1
        pick = window[0]
        if policy == "uncertain" and coin.random() * 100 >= args.random_percent:
            if (n - 1) % args.refit == 0 or strengths is None:
                strengths = bt.fit_strengths(counts)
            options = [[names[items[i][0]], names[items[i][1]]] for i in window]
            pick = window[bt.most_uncertain_first(options, strengths)[0]]
        taken[pick] = True
        first, second = items[pick]
        roll = rng.random()
        if roll * 100 < args.tie_percent:
            outcome = 0.5
        else:
            outcome = float(rng.random() < bt.win_probability(truth[first], truth[second]))
        a.append(first), b.append(second), y.append(outcome)
        if outcome != 0.5:  # the allocator's quick fit leaves ties out, as in production
            winner, loser = (first, second) if outcome == 1.0 else (second, first)
            key = (names[winner], names[loser], 1.0)
            counts[key] = counts.get(key, 0) + 1
        if n % CHECK_EVERY == 0:
            theta, _ = bt.fit(bt.Table.from_battles(args.sources, a, b, y))
            tau = kendall_tau(theta, truth)
            curve.append((n, tau))
            if tau >= TARGET_TAU and settled_at is None:
                settled_at = n
            elif tau < TARGET_TAU:
                settled_at = None
    return (settled_at or args.budget), settled_at is not None, curve


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--sources", type=int, default=10)
    parser.add_argument("--spread", type=float, default=2.0, help="log-odds, best to worst")
    parser.add_argument("--budget", type=int, default=8000)
    parser.add_argument("--random-percent", type=float, default=20.0)
    parser.add_argument("--tie-percent", type=float, default=10.0)
    parser.add_argument("--refit", type=int, default=25, help="judgments between refits")
    args = parser.parse_args()

    results = {}
    for policy in ("least_covered", "uncertain"):
        needed, unsettled = [], 0
        for seed in range(args.seeds):
            n, settled, _ = simulate(policy, seed, args)
            needed.append(n)
            unsettled += not settled
        results[policy] = (needed, unsettled)

    print(
        f"{args.sources} sources, true strengths evenly over {args.spread} log-odds, 4 "
        f"candidates per prompt, {args.tie_percent:g}% ties, {args.seeds} seeds, budget "
        f"{args.budget}; uncertain keeps {args.random_percent:g}% in the plain order, window "
        f"{ACTIVE_WINDOW}, refit every {args.refit}"
    )
    print()
    print("| policy | judgments to Kendall tau ≥ 0.9 (median) | min–max | never settled |")
    print("|---|---|---|---|")
    for policy, (needed, unsettled) in results.items():
        print(
            f"| {policy} | {int(np.median(needed))} | {min(needed)}–{max(needed)} | "
            f"{unsettled} of {args.seeds} |"
        )
    random_median = np.median(results["least_covered"][0])
    active_median = np.median(results["uncertain"][0])
    print()
    print(
        f"target: uncertain < random (median) · measured {active_median:.0f} vs "
        f"{random_median:.0f} ({active_median / random_median:.0%} of random) · "
        f"{'PASS' if active_median < random_median else 'FAIL'}"
    )
    return 0 if active_median < random_median else 1


if __name__ == "__main__":
    sys.exit(main())
