"""The split study's arms as data: the table "The runs" of docs/split-study.md (what each arm trains, its
seeds, the overrides of its command) and the order the rule runs them in. Read by the study's driver
(``src/split_study.py``), its rule (``split_study_rule.py``) and its report."""

from __future__ import annotations

from dataclasses import dataclass

#: The main runs' length, fixed by the pilot (docs/split-study.md, "Length"; 2026-12-07).
EPOCHS = 15


@dataclass(frozen=True)
class Arm:
    """One arm of the study: what it trains, with which seeds, and the overrides that make it."""

    what: str
    towers: int
    seeds: tuple[int, ...]
    overrides: tuple[str, ...] = ()


LENGTH = f"trainer.max_epochs={EPOCHS}"
ARMS = {
    "A": Arm("two towers, 200 classes", 2, (1, 2, 3), (LENGTH,)),
    "C": Arm("one tower, 200 classes (the control)", 1, (1, 2, 3), ("model.towers=1", LENGTH)),
    # 10 classes: 4,500 training images, 36 steps an epoch; 294 epochs of them are A's 10,560 steps (+24), and
    # validating every 21st (756 steps) ends on the last one, so the final snapshot is the tested weights
    # (docs/split-study.md, "B's command, amended").
    "B": Arm(
        "two towers, 10 classes, A's steps",
        2,
        (1, 2),
        (
            "data.classes=10",
            "data.num_classes=10",
            "trainer.max_epochs=294",
            "trainer.check_val_every_n_epoch=21",
        ),
    ),
    "E": Arm("four towers, 200 classes", 4, (1, 2), ("model.towers=4", LENGTH)),
}
#: A and C first, then B and E alternating, as the rule says.
ORDER = ("A_s1", "A_s2", "A_s3", "C_s1", "C_s2", "C_s3", "B_s1", "E_s1", "B_s2", "E_s2")
