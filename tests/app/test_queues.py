from __future__ import annotations

from typing import Any

from experiments import queues


def test_the_target_picks_the_queue(settings: Any) -> None:
    settings.WATTLAB_QUEUE_PREFIX = ""
    assert queues.queue_for_target("any") == "gpu"
    assert queues.queue_for_target("gpu01") == "gpu.gpu01"
    assert queues.queue_for_target("gpu01:3") == "gpu.gpu01.3"


def test_a_worker_listens_on_its_gpu_its_host_and_the_shared_queue(settings: Any) -> None:
    settings.WATTLAB_QUEUE_PREFIX = ""
    assert queues.worker_queues("gpu01", 3) == ["gpu", "gpu.gpu01", "gpu.gpu01.3"]
    assert queues.worker_queues("laptop", None) == ["gpu", "gpu.laptop", "gpu.laptop.cpu"]
    assert queues.control_queue("gpu01") == "control.gpu01"


def test_the_prefix_separates_installations(settings: Any) -> None:
    settings.WATTLAB_QUEUE_PREFIX = "lab2."
    assert queues.queue_for_target("gpu01:0") == "lab2.gpu.gpu01.0"
    assert queues.control_queue("gpu01") == "lab2.control.gpu01"
