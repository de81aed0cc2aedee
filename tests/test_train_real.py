"""Real training on real data: the lecture's ConvNet on the full Fashion-MNIST."""

from pathlib import Path

import pytest

from cnncli import config
from cnncli.infer import evaluate as evaluation
from cnncli.run import train as training

FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.slow
@pytest.mark.skipif(not FASHION.is_dir(), reason="needs Debian's dataset-fashion-mnist")
def test_mnist_net_learns_fashion_mnist_in_one_epoch(tmp_path):
    cfg = config.load("configs/fashion_mnist.yaml", [
        "train.epochs=1", f"output.dir={tmp_path}", "data.offline=true",
        "train.schedule.name=constant", "train.optimizer.learning_rate=1e-3"])
    result = training.train(cfg, config_file="configs/fashion_mnist.yaml")
    assert result.metrics.dataset.train == 54_000
    assert str(FASHION) in result.metrics.dataset.source
    report = evaluation.evaluate(result.run)
    assert report.result.count == 10_000
    assert report.result.accuracy >= 0.88
