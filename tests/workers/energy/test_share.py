"""The foreground's split of one GPU (workers.energy.share), tick by tick.

Ticks and samples are given on a made-up wall clock so the arithmetic is exact: 100 J
per 0.1 s tick above no idle baseline unless said, the driver's sample period 0.2 s.
"""

from __future__ import annotations

import pytest

from workers.energy.share import GpuShare, Owner

FG, BG, STRANGER = 10, 20, 30
OWNERS: dict[int, Owner] = {FG: "foreground", BG: "experiment", STRANGER: "other"}


def _share(idle_w: float = 0.0) -> GpuShare:
    return GpuShare(idle_w, OWNERS.__getitem__, period_s=0.2, settle_s=1.0)


def _ticks(share: GpuShare, until: float, watts: float = 1000.0) -> None:
    for k in range(1, round(until / 0.1) + 1):
        share.add_tick(k * 0.1, 0.1, watts * 0.1)


def _us(seconds: float) -> int:
    return round(seconds * 1_000_000)


def test_each_sample_covers_the_driver_period_before_its_own_stamp() -> None:
    share = _share()
    _ticks(share, 1.0)
    # [0.2, 0.4]: the foreground alone; [0.6, 0.8]: the foreground and another 1:3.
    share.add_samples(((FG, 100.0, _us(0.4)),))
    share.add_samples(((FG, 25.0, _us(0.8)), (BG, 75.0, _us(0.8))))
    result = share.finish()
    assert result.covered_s == pytest.approx(0.4)
    assert result.uncovered_s == pytest.approx(0.6)
    covered_fg = 200.0 * 1.0 + 200.0 * 0.25  # J: all of the first period, 1/4 of the second
    # The 0.6 s no sample covers get the covered parts' average share, not 0.
    assert result.fg_j == pytest.approx(covered_fg + 600.0 * covered_fg / 400.0)
    assert result.ticks_j == pytest.approx(1000.0)


def test_a_process_missing_from_a_read_is_no_zero_share_outside_its_samples() -> None:
    """Issue 19, 2.4: a duty-cycled foreground idle when the driver sampled it is absent
    from that read: only the period that read's samples cover goes to the others."""
    share = _share()
    _ticks(share, 3.0)
    share.add_samples(((FG, 50.0, _us(1.0)), (BG, 50.0, _us(1.0))))
    share.add_samples(((BG, 100.0, _us(2.0)),))  # the foreground idle at that instant
    share.add_samples(((FG, 50.0, _us(3.0)), (BG, 50.0, _us(3.0))))
    result = share.finish()
    # Covered: 0.2 s at 1/2, 0.2 s at 0, 0.2 s at 1/2: an average of 1/3 for the rest.
    # The old split gave the whole second before each read that read's share: 1/3 as
    # well here, but 0 for every second in which the foreground's sample came late.
    assert result.fg_j / result.ticks_j == pytest.approx(1 / 3)


def test_the_idle_energy_follows_the_idle_rule() -> None:
    share = _share(idle_w=400.0)  # 40 J of each 100 J tick is idle energy
    _ticks(share, 0.6)
    share.add_samples(((FG, 100.0, _us(0.2)),))  # alone: all of the idle part
    share.add_samples(((FG, 50.0, _us(0.4)), (BG, 50.0, _us(0.4))))  # with another: half
    share.add_samples(((BG, 100.0, _us(0.6)),))  # only the other: none
    result = share.finish()
    expected = 2 * (60 + 40) + 2 * (30 + 20) + 2 * (0 + 0)
    assert result.fg_j == pytest.approx(expected)


def test_a_sample_that_comes_late_is_used_until_its_ticks_settle() -> None:
    share = _share()
    _ticks(share, 1.0)
    share.add_samples(((BG, 100.0, _us(1.0)),))
    share.settle(1.5)  # ticks up to 0.5 s are split: [0, 0.5] had no sample
    share.add_samples(((FG, 100.0, _us(0.8)),))  # older stamp, arrives later: still used
    share.add_samples(((FG, 100.0, _us(0.2)),))  # its ticks are already split: late
    result = share.finish()
    assert result.late_samples == 1
    assert result.proc_samples == 3
    # [0.6, 0.8] the foreground alone, [0.8, 1.0] the other alone; the rest at 1/2.
    assert result.fg_j == pytest.approx(200.0 + 0.0 + 600.0 * 0.5)


def test_it_keeps_each_process_s_sm_time_with_whose_it_is() -> None:
    share = _share()
    _ticks(share, 1.0)
    share.add_samples(((FG, 40.0, _us(0.5)), (STRANGER, 60.0, _us(0.5))))
    result = share.finish()
    assert result.processes[STRANGER] == ("other", pytest.approx(0.12))
    assert result.processes[FG] == ("foreground", pytest.approx(0.08))
    assert result.sm_seconds == pytest.approx(0.2)
