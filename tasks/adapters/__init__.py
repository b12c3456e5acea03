"""One adapter per data kind: ``image`` (uint8 image arrays), ``tabular`` (feature tables), ``series`` (windows of series).

An adapter module owns its kind's prepared folder (writing and loading the splits), what thresholds and reports
see of the scores (a series maps window scores to time points), the files a trained model of that kind carries,
and the served model's input. Each module has a ``Data`` class (a loaded prepared folder) and a ``Served`` class
(the pyfunc's input decoding); the steps call them and never branch on the kind.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from types import ModuleType

from .base import PreparedData, ServedInput, read_schema

ADAPTERS = {"image": "tasks.adapters.image", "tabular": "tasks.adapters.tabular", "series": "tasks.adapters.series"}
MODEL_INPUT = {"image": "image", "tabular": "tabular", "series": "window"}  # the models' InputSpec kind each data kind gives


def adapter(kind: str) -> ModuleType:
    return import_module(ADAPTERS[kind])


def load_prepared(folder: Path) -> PreparedData:
    """The prepared dataset in ``folder``, after checking its files are all there (splits load on first use)."""
    schema = read_schema(Path(folder))
    return adapter(schema.get("kind", "image")).Data(Path(folder), schema)


def served_input(model_dir: Path, detector) -> ServedInput:
    """What a served model of this kind takes (pixel rows, raw records, sensor rows) and how it scores them."""
    data_kind = next(k for k, v in MODEL_INPUT.items() if v == detector.inputs.kind)
    return adapter(data_kind).Served(Path(model_dir), detector)
