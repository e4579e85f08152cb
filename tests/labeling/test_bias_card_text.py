"""The bias card's sentences (labeling.bias_card). Pure."""
import math

import pytest

from labeling.bias_card import band_names, bias_sentence, not_enough, scatter_sentence


def test_band_names():
    assert band_names((20.0, 40.0, 60.0)) == [("people under 20", 0, 19), ("people aged 20-39", 20, 39),
                                              ("people aged 40-59", 40, 59), ("people over 60", 60, None)]
    assert band_names(()) == [("people", 0, None)]


def test_bias_sentences():
    assert bias_sentence(4.2, 1.24, "people over 60") == "You guess people over 60 about 4 years too old (± 1.2)."
    assert bias_sentence(-1.0, 0.5, "people under 20") == "You guess people under 20 about 1 year too young (± 0.5)."
    assert bias_sentence(0.8, 0.61) == "You guess people about 0.8 years too old (± 0.6)."
    assert bias_sentence(0.3, 0.9) == "You guess people about right (± 0.9 years)."
    assert bias_sentence(-12.6, 2.0, "x") == "You guess x about 13 years too young (± 2.0)."


def test_scatter_and_not_enough():
    assert scatter_sentence(6.2, 0.44) == "Your guesses scatter by about ± 6 years (give or take 0.4)."
    assert not_enough("people over 60") == "People over 60: not enough guesses yet."


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_no_sentence_from_no_number(bad):
    with pytest.raises(ValueError):
        bias_sentence(bad, 1.0)
    with pytest.raises(ValueError):
        scatter_sentence(3.0, bad)
