"""Metric regexes of the earlier profiler against logs in the formats they describe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.metrics import (
    check_patterns,
    extract_metrics,
    extract_metrics_report,
    strip_ansi,
    succeeded,
)

DATA = Path(__file__).resolve().parents[2] / "data"
MODELS_CONFIG = DATA / "legacy" / "models_config.json"
MRT_TRACE = DATA / "traces" / "rtx3080" / "MRT-OAST_default_035_parallel"


def legacy_patterns(repository: str) -> dict[str, str]:
    config = json.loads(MODELS_CONFIG.read_text(encoding="utf-8"))
    return config["models"][repository]["performance_metrics"]["log_patterns"]


def test_the_real_mrt_oast_log_gives_what_the_profiler_recorded():
    log = (MRT_TRACE / "training_log_tail.txt").read_text(encoding="utf-8")
    recorded = json.loads((MRT_TRACE / "experiment.json").read_text(encoding="utf-8"))
    expected = recorded["foreground"]["performance_metrics"]
    assert "\x1b[" in log  # the tail really carries colour codes
    metrics = extract_metrics(log, legacy_patterns("MRT-OAST"))
    # Earlier epochs print "Accuracy: 4552/5000 = 0.9104" (the first group is 4552
    # there): only the last match counts. F1 comes from "F1 score : 0.836527"; the
    # later "F1分数 (F1-Score): 0.8368" does not fit the profiler's F1 pattern.
    assert metrics == {name: expected[name] for name in ("accuracy", "precision", "recall", "f1")}
    assert (metrics["accuracy"], metrics["precision"], metrics["recall"]) == (
        0.8618,
        0.9768,
        0.7318,
    )


def test_mrt_oast_chinese_labels_alone_are_found():
    log = "准确率: 0.91\n精确率: 0.93\n召回率: 0.88\nF1-score: 0.905\n"
    assert extract_metrics(log, legacy_patterns("MRT-OAST")) == {
        "accuracy": 0.91,
        "precision": 0.93,
        "recall": 0.88,
        "f1": 0.905,
    }


def test_bug_localization_top_k_lines():
    log = (
        "Fold 1 Top-1 Accuracy: 0.3000\n"
        "Top-1 Accuracy: 0.4123\nTop-5 Accuracy: 0.6521\n"
        "Top- 10: 0.7410\nTop-20 Accuracy : 0.8302\n"
    )
    assert extract_metrics(log, legacy_patterns("bug-localization-by-dnn-and-rvsm")) == {
        "top1_accuracy": 0.4123,
        "top5_accuracy": 0.6521,
        "top10_accuracy": 0.741,
        "top20_accuracy": 0.8302,
    }


def test_resnet_last_epoch_wins():
    log = "\n".join(
        [f"Epoch {e}: 测试准确率: {80 + e}.5 最佳验证准确率: {80 + e}.9" for e in range(5)]
    )
    assert extract_metrics(log, legacy_patterns("pytorch_resnet_cifar10")) == {
        "test_accuracy": 84.5,
        "best_val_accuracy": 84.9,
    }


def test_vulberta_both_eval_loss_spellings_and_throughput():
    patterns = legacy_patterns("VulBERTa")
    log = (
        "{'eval_loss': 0.7012, 'epoch': 1.0}\n"
        "eval_loss: 0.6873753070831299\n"
        "Final training loss: 0.8171\n"
        "eval_samples_per_second: 58.854\n"
        "train_samples_per_second: 120.5\n"
    )
    assert extract_metrics(log, patterns) == {
        "eval_loss": 0.6873753070831299,
        "final_training_loss": 0.8171,
        "eval_samples_per_second": 58.854,
        "train_samples_per_second": 120.5,
    }
    assert extract_metrics("{'eval_loss': 0.55}", patterns) == {"eval_loss": 0.55}


def test_person_reid_rank_lines_do_not_mix_rank1_and_rank10():
    log = "Rank@1:0.909145 Rank@5:0.963480 Rank@10:0.977435 mAP:0.753173\n"
    assert extract_metrics(log, legacy_patterns("Person_reID_baseline_pytorch")) == {
        "rank1": 0.909145,
        "rank5": 0.96348,
        "map": 0.753173,
    }


def test_examples_success_prefix_percent_and_case():
    log = (
        "\x1b[0;32m[SUCCESS]\x1b[0m Test Accuracy: 98.52%\n"
        "TEST ERROR: 0.0148\n"
        "Train Error: 0.0102\n"
    )
    assert extract_metrics(log, legacy_patterns("examples")) == {
        "test_accuracy": 98.52,
        "test_error": 0.0148,
        "train_error": 0.0102,
    }


def test_every_metric_found_is_kept_even_without_a_legacy_column():
    # The profiler's CSV had no f1 or test_error column and dropped them; we keep all.
    patterns = {**legacy_patterns("MRT-OAST"), "custom_thing": r"custom[:\s]+([0-9.e-]+)"}
    log = "Accuracy: 0.5\nF1-score: 0.6\ncustom: 1e-3\n"
    assert extract_metrics(log, patterns) == {"accuracy": 0.5, "f1": 0.6, "custom_thing": 0.001}


def test_a_match_that_is_not_a_number_is_reported_not_dropped_silently():
    report = extract_metrics_report("Accuracy: .\n", legacy_patterns("MRT-OAST"))
    assert report.values == {}
    assert "accuracy" in report.problems and "not a number" in report.problems["accuracy"]


def test_a_broken_pattern_is_reported_and_the_others_still_work():
    patterns = {"bad": "Accuracy[:(", "loss": r"loss[:\s]+([0-9.]+)"}
    assert set(check_patterns(patterns)) == {"bad"}
    report = extract_metrics_report("loss: 0.25", patterns)
    assert report.values == {"loss": 0.25}
    assert "does not compile" in report.problems["bad"]


def test_a_pattern_without_group_reads_the_number_in_its_match():
    assert extract_metrics("epoch time 12.5s", {"t": r"time \S+"}) == {"t": 12.5}


def test_success_needs_exit_zero_and_the_pattern():
    log = (MRT_TRACE / "training_log_tail.txt").read_text(encoding="utf-8")
    assert succeeded(log, 0, r"Training finished with exit code: 0")
    assert succeeded(log, 0, None)
    assert not succeeded(log, 1, None)
    assert not succeeded(log, 0, r"never printed")
    assert not succeeded(log, 0, r"unbalanced[")


@pytest.mark.parametrize("code", ["\x1b[0;32m", "\x1b[1;31m", "\x1b[0m", "\x1b[?25l"])
def test_colour_codes_are_stripped(code):
    assert strip_ansi(f"{code}Accuracy{code}: 0.5") == "Accuracy: 0.5"
