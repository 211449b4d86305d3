"""Taking turns: how the benchmark keeps a noisy machine's drift off its ratios.

The machine is shared: its speed drifts by tens of per cent over minutes. Measuring A
and then B charges the drift to their ratio; measuring them in turns, several rounds
each starting one further along, spreads it over both.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence


def rotations(names: Sequence[str], rounds: int) -> Iterator[str]:
    """Every name once per round, each round starting one further along."""
    for round_ in range(rounds):
        for offset in range(len(names)):
            yield names[(round_ + offset) % len(names)]


def back_and_forth(names: Sequence[str], rounds: int) -> Iterator[tuple[int, str]]:
    """``(round, name)``: the names in order, then in reverse, and so on.

    For measurements paired with a neighbour in *names*: each pair stays side by side
    in every round, and which of the two goes first alternates.
    """
    for round_ in range(rounds):
        for name in names if round_ % 2 == 0 else reversed(names):
            yield round_, name
