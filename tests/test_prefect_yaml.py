"""prefect.yaml deployments point at real flows that accept their declared parameters."""

import importlib
import inspect
from pathlib import Path

import yaml
from prefect import Flow

from tasks.params import load_params

REPO = Path(__file__).resolve().parent.parent


def test_every_deployment_entrypoint_is_a_flow_with_valid_parameters():
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    experiments = set(load_params(REPO / "params.yaml").experiments)
    assert spec["deployments"], "no deployments declared"
    for deployment in spec["deployments"]:
        path, func = deployment["entrypoint"].split(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        flow = getattr(module, func)
        assert isinstance(flow, Flow), deployment["entrypoint"]
        accepted = set(inspect.signature(flow.fn).parameters)
        assert set(deployment["parameters"]) <= accepted, deployment["name"]
        if "experiment" in deployment["parameters"]:
            assert deployment["parameters"]["experiment"] in experiments
        if "deployment" in deployment["parameters"]:  # train-all fans out through another deployment of this file
            flow_name, name = deployment["parameters"]["deployment"].split("/")
            target = next(d for d in spec["deployments"] if d["name"] == name)
            path, func = target["entrypoint"].split(":")
            assert getattr(importlib.import_module(path.removesuffix(".py").replace("/", ".")), func).name == flow_name
        assert deployment["work_pool"]["name"] in {"gpu", "cpu"}
