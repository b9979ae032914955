"""The PNG snapshots' axes: Grafana's units, and labels that tell ticks apart."""

from tests.dashboards.rig import plot


def test_ticks_of_a_narrow_range_get_the_digits_that_tell_them_apart():
    labels = plot.tick_labels([0.7079, 0.70792, 0.70794, 0.70796], "percentunit")
    assert len(set(labels)) == 4
    assert labels[1] == "70.792%"


def test_ticks_keep_grafanas_units():
    assert plot.tick_labels([0, 0.5, 1.5], "s") == ["0 s", "500 ms", "1.5 s"]
    assert plot.tick_labels([0, 2048], "bytes") == ["0 B", "2 KiB"]
