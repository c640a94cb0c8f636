"""pilish.plan: for each digit position, the word lengths that may come next without a dead end."""

import pytest

from pilish.plan import DigitPlan
from pilish.rules import PilishError

DONE = 99  # what the position after the last digit points at (the processor's row of closing tokens)


def test_plan_offers_the_length_of_each_digit():
    plan = DigitPlan.build("3140", "basic", set(range(1, 11)), done_row=DONE)
    assert len(plan) == 4 and plan.finishable == (True,) * 5
    assert plan.one_digit_length.tolist() == [3, 1, 4, 10, DONE]  # 0 is spelled by 10 letters
    assert plan.two_digit_length.tolist() == [0] * 5  # basic: no word spells two digits


def test_plan_avoids_the_moves_that_lead_to_a_dead_end():
    # lengths 1, 4, 13 but no 3: in "1134" the 3 must be covered by the 13-letter word, so the first
    # "1" takes one letter and the second "1" starts the 13-letter word ("11" has no 11-letter word)
    plan = DigitPlan.build("1134", "standard", {1, 4, 13}, done_row=DONE)
    assert plan.finishable == (True, True, False, True, True)  # from digit 2, "34" has no spelling
    assert plan.one_digit_length.tolist() == [1, 0, 0, 4, DONE]
    assert plan.two_digit_length.tolist() == [0, 13, 0, 0, 0]


def test_plan_refuses_what_cannot_be_spelled_and_starts_it_cannot_continue_from():
    with pytest.raises(PilishError, match="no words of 3 letters"):
        DigitPlan.build("1134", "basic", {1, 4, 13}, done_row=DONE)
    with pytest.raises(PilishError, match="digits to spell"):
        DigitPlan.build("31a", "basic", set(range(1, 11)), done_row=DONE)
    plan = DigitPlan.build("1134", "standard", {1, 4, 13}, done_row=DONE)
    plan.check_start(0)
    plan.check_start(4)
    for start in (2, 5, -1):
        with pytest.raises(PilishError, match=f"cannot continue the Pilish from digit {start} of 4"):
            plan.check_start(start)


def test_check_start_takes_a_tensor_of_starts_and_to_moves_only_the_tensors():
    import torch
    plan = DigitPlan.build("1134", "standard", {1, 4, 13}, done_row=DONE)
    plan.check_start(torch.tensor([[0], [3], [4]]))
    with pytest.raises(PilishError) as error:
        plan.check_start(torch.tensor([0, 2]))
    assert str(error.value) == ("cannot continue the Pilish from digit 2 of 4: start from 0 or from a digit count "
                                "an earlier run reached")
    moved = plan.to("meta")  # a device every machine has, unlike a GPU: each tensor must go there
    assert isinstance(moved, DigitPlan) and (moved.digits, moved.rules, moved.finishable) == (
        plan.digits, plan.rules, plan.finishable)
    assert moved.one_digit_length.device.type == moved.two_digit_length.device.type == "meta"
    assert plan.one_digit_length.device.type == "cpu"  # the original stays
    assert torch.equal(plan.to("cpu").one_digit_length, plan.one_digit_length)
