"""Regenerate the testnet corpus shipped in zoo_node/data/testnet_corpus.txt (deterministic; stdlib only).

The text is generated, so it is free of copyright: simple English sentences about a few made-up animals and
places, counting, and small sums. It has enough structure (repeated words, agreement, arithmetic) that a tiny
model's loss falls quickly, which is what the testnet and the training tests need. Run:
`python scripts/make_testnet_corpus.py > zoo_node/data/testnet_corpus.txt`, then update the hash in
`zoo_node/data/corpus.py`.
"""

from __future__ import annotations

import random
import sys

ANIMALS = ["fox", "owl", "cat", "dog", "hare", "crow", "bear", "wolf", "deer", "frog", "seal", "mole"]
PLACES = ["the river", "the hill", "the old barn", "the forest", "the garden", "the lake", "the meadow", "the road"]
COLOURS = ["red", "brown", "grey", "white", "black", "green", "golden", "silver"]
VERBS = ["walks to", "runs to", "looks at", "sleeps near", "sings by", "waits at", "jumps over", "digs under"]
TIMES = ["in the morning", "at noon", "in the evening", "at night", "after the rain", "before the snow"]
NUMBERS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]


def sentence(rng: random.Random) -> str:
    kind = rng.randrange(5)
    if kind == 0:
        a, b = rng.randrange(50), rng.randrange(50)
        return f"{a} plus {b} is {a + b}."
    if kind == 1:
        n = rng.randrange(1, 10)
        return "We count: " + ", ".join(NUMBERS[: n + 1]) + "."
    animal = rng.choice(ANIMALS)
    if kind == 2:
        return f"The {rng.choice(COLOURS)} {animal} {rng.choice(VERBS)} {rng.choice(PLACES)} {rng.choice(TIMES)}."
    if kind == 3:
        n = rng.randrange(2, 11)
        return f"There are {NUMBERS[n]} {animal}s near {rng.choice(PLACES)}."
    return f"The {animal} says hello to the {rng.choice(ANIMALS)}, and they go to {rng.choice(PLACES)} together."


def main(n_bytes: int = 256 * 1024, seed: int = 20261204) -> None:
    rng = random.Random(seed)
    out, size = [], 0
    while size < n_bytes:
        paragraph = " ".join(sentence(rng) for _ in range(rng.randrange(3, 8))) + "\n"
        out.append(paragraph)
        size += len(paragraph)
    sys.stdout.write("".join(out))


if __name__ == "__main__":
    main()
