"""Typed config composed by Hydra from conf/ over the dataclass defaults."""

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException

from rolecall.cli import CONF_DIR
from rolecall.config import register


def _compose(overrides):
    register()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def test_defaults_and_dataset_groups():
    cfg = _compose([])
    assert cfg.data.name == "hm" and cfg.data.split == "date"
    assert cfg.data.exclude_seen and cfg.data.primary_metric == "HR@12"
    assert cfg.serve.port == 8080 and cfg.serve.host == "127.0.0.1"
    assert cfg.train.device == "auto"
    yc = _compose(["data=yoochoose", "train.epochs=3"])
    assert yc.data.split == "source" and not yc.data.exclude_seen
    assert yc.train.epochs == 3


def test_misspelled_key_fails_loudly():
    with pytest.raises(ConfigCompositionException):
        _compose(["train.epoch=3"])
    with pytest.raises(ConfigCompositionException):
        _compose(["train.epochs=many"])


def test_reliability_limits_compose_and_override():
    cfg = _compose(["serve.max_inflight=0", "serve.session_ttl_s=60"])
    assert cfg.serve.max_inflight == 0 and cfg.serve.session_ttl_s == 60
    assert cfg.serve.max_queue == 64 and cfg.serve.max_queue_ms == 50
    assert cfg.serve.redis_timeout_s == 0.5
    assert {"sessions", "overload"} <= set(cfg.bench.parts)
