"""The shipped weights' headline claims (issue 26): weights/claims.json holds the figures of the
weights card (real 07 lidar-report rows, the demo's held-out synthetic frames with the
controls, the proposal recall there), their tolerance and the orderings they show; scripts/claims.py measures them and
renders the card's block. Here: the file belongs to the shipped weights, the card shows the
file, the checker catches what it is for, and the weights reproduce every figure and ordering."""
from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import claims as C  # noqa: E402

REGENERATE = "scripts/in-env.sh python scripts/claims.py --write --card"


@pytest.fixture(scope="module")
def stored() -> dict:
    if not C.CLAIMS.is_file():
        pytest.fail(f"{C.CLAIMS} missing: measure the shipped weights with `{REGENERATE}`")
    return json.loads(C.CLAIMS.read_text())


def test_the_claims_belong_to_the_shipped_weights(stored):
    assert stored["weights_sha256"] == C.sha256(C.WEIGHTS), \
        f"{C.WEIGHTS.name} changed since its claims were measured: `{REGENERATE}`"
    assert set(stored["tolerance"]) == {"real_07", "synthetic_08", "proposals_08"}
    assert stored["synthetic_08"]["voxel_prior"]["file"] == str(C.PRIOR.relative_to(C.REPO)) and C.PRIOR.is_file()


def test_the_card_shows_the_claims_file(stored):
    block = C.card_block(C.CARD.read_text())
    assert block is not None, f"the card has no claims block: `{REGENERATE}`"
    assert block == C.render(stored), f"the card's figures differ from weights/claims.json: `{REGENERATE}`"


def test_the_stored_orderings_hold_in_the_stored_figures(stored):
    assert C.differences(stored, stored) == []
    for section in stored["tolerance"]:
        assert C.orderings(section, stored[section]["rows"], stored["tolerance"][section]) == \
            stored[section]["orderings"]


def _claims(model: dict, control: dict) -> dict:
    rows = {"model (mono)": dict(model), "model (stereo)": dict(model), "shuffled image": dict(control)}
    section = {"rows": rows, "orderings": C.orderings("synthetic_08", rows, 0.1)}
    return {"tolerance": {"synthetic_08": 0.1}, "synthetic_08": section}


def test_the_check_fails_a_model_that_ignores_the_image_or_loses_to_a_control():
    claims = _claims({"iou": 30.0, "miou": 6.0}, {"iou": 20.0, "miou": 3.0})
    assert {"figure": "miou", "better": "model (mono)", "worse": "shuffled image"} in claims["synthetic_08"]["orderings"]
    same = copy.deepcopy(claims)
    assert C.differences(claims, same) == []
    # Within tolerance: passes; a model whose figures fall to the shuffled image's: fails twice
    # over (figures moved, ordering lost), even when the tolerance is opened wide.
    nudged = copy.deepcopy(claims)
    nudged["synthetic_08"]["rows"]["model (mono)"]["iou"] += 0.05
    assert C.differences(claims, nudged) == []
    blind = copy.deepcopy(claims)
    blind["synthetic_08"]["rows"]["model (mono)"] = {"iou": 20.0, "miou": 3.0}
    wide = copy.deepcopy(claims)
    wide["tolerance"]["synthetic_08"] = 100.0
    assert any("not better than shuffled image in miou" in d for d in C.differences(wide, blind))
    assert any("model (mono) iou: measured 20.0, claimed 30.0" in d for d in C.differences(claims, blind))
    # A control that now wins.
    loses = copy.deepcopy(claims)
    loses["synthetic_08"]["rows"]["shuffled image"] = {"iou": 35.0, "miou": 7.0}
    assert any("not better than shuffled image" in d for d in C.differences(wide, loses))


@pytest.mark.slow
def test_the_shipped_weights_reproduce_their_claims(stored, kitti_samples, tmp_path_factory):
    """The card's figures measured again: real 07 (5 frames, mono and stereo) and the demo's
    held-out synthetic frames (written here) with the controls and the proposal recall."""
    proposals, synthetic = C.measure_synthetic(C.WEIGHTS, C.synthetic_root(tmp_path_factory.mktemp("syn08")))
    measured = {"real_07": C.measure_real(C.WEIGHTS, kitti_samples / "sequences" / "07"),
                "synthetic_08": synthetic, "proposals_08": proposals}
    assert measured["real_07"]["frames"] == stored["real_07"]["frames"]
    assert measured["synthetic_08"]["frames"] == stored["synthetic_08"]["frames"]
    assert C.differences(stored, measured) == []
