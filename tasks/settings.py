"""The base of the pipeline's own settings: strict, frozen pydantic models, and the name of a dataset or experiment.

Each settings class lives beside the code that uses it (``tasks.sources.download.DatasetSpec``,
``tasks.steps.calibrate.CalibrateSettings``, ...); ``tasks.params`` composes them into params.yaml's schema.
Model settings are the models' own dataclasses (``models.settings``), validated by pydantic the same way.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from models.errors import GadflowError

NAME = r"^[a-z0-9][a-z0-9_-]*$"  # dataset and experiment names (used as folder and model names)
Name = Annotated[str, Field(pattern=NAME)]


class ParamsError(GadflowError):
    """params.yaml (or an overlay) is invalid."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
