"""Run configs: one YAML file with `model`, `data`, `train` and `output` sections.

Validated as a whole (pydantic) before anything starts; every problem is reported
with the key and the line it is on. Four modules, one concern each:

- `settings`: the values settings take (names, limits, words) that other modules share;
- `sections`: the sections as pydantic models, and `RunConfig`, the whole config;
- `reading`: the file, ``--set`` overrides and options, then validation (`load`, `parse`);
- `located`: errors in the config's words, with the key's line (`with_lines`, `locate`).

>>> cfg = parse({"model": "mnist_net", "data": {"name": "mnist"}, "train": {"epochs": 2}})
>>> cfg.train.epochs, cfg.train.optimizer.name, cfg.train.optimizer.learning_rate
(2, 'adam', 0.001)
"""

from cnncli.config.located import (
    beside_config,
    given_by,
    line_of,
    locate,
    odd_key,
    with_lines,
)
from cnncli.config.reading import (
    check_part,
    inherit_older_run,
    load,
    load_document,
    load_run_config,
    parse,
)
from cnncli.config.sections import (
    AugmentSection,
    DataSection,
    EarlyStoppingSection,
    FineTuneSection,
    ModelSection,
    OptimizerSection,
    OutputSection,
    RunConfig,
    ScheduleSection,
    TrainSection,
    as_written,
    digest_of,
    schema,
)
from cnncli.config.settings import (
    BOOLEAN_HINT,
    DEVICE_FORMS,
    DEVICE_PATTERN,
    MAX_IMAGE_SIDE,
    PRECISIONS,
    PREPROCESSING_MODES,
    RESIZE_MODES,
    WEIGHTS_WORDS,
    device_hint,
    weights_setting,
)

__all__ = [
    "AugmentSection",
    "BOOLEAN_HINT",
    "DEVICE_FORMS",
    "DEVICE_PATTERN",
    "DataSection",
    "EarlyStoppingSection",
    "FineTuneSection",
    "ModelSection",
    "MAX_IMAGE_SIDE",
    "OptimizerSection",
    "OutputSection",
    "PRECISIONS",
    "PREPROCESSING_MODES",
    "RESIZE_MODES",
    "RunConfig",
    "ScheduleSection",
    "TrainSection",
    "WEIGHTS_WORDS",
    "as_written",
    "beside_config",
    "check_part",
    "device_hint",
    "digest_of",
    "given_by",
    "inherit_older_run",
    "line_of",
    "load",
    "load_document",
    "load_run_config",
    "locate",
    "odd_key",
    "parse",
    "schema",
    "weights_setting",
    "with_lines",
]
