"""Tasks declared with the SDK decorator as Task specs and Task manifests.

The conversion itself is the SDK's (:meth:`waypost.sdk.TaskDefinition.as_dict`,
which the runner image can carry without pydantic); here it is validated by the
model that is the CRD schema, so dev mode, ``waypost manifests`` and the
operator accept the same specs.
"""

from __future__ import annotations

from typing import Any

from waypost.model import k8s
from waypost.model.task import TaskDefinition, TaskSpec
from waypost.sdk.decorator import TaskDefinition as SdkTaskDefinition


def task_spec(sdk: SdkTaskDefinition, *, image: str | None = None) -> TaskSpec:
    """The Task spec equivalent to what ``@task(...)`` declared."""
    return TaskSpec.model_validate(sdk.as_dict(image=image))


def task_definition(
    sdk: SdkTaskDefinition, *, namespace: str = "default", image: str | None = None
) -> TaskDefinition:
    """The Task as the store keeps it, for dev mode's registration."""
    return TaskDefinition(namespace=namespace, name=sdk.id, spec=task_spec(sdk, image=image))


def task_manifest(
    sdk: SdkTaskDefinition, *, namespace: str | None = None, image: str | None = None
) -> dict[str, Any]:
    """The ``Task`` object to apply with kubectl or GitOps (validated first)."""
    task_spec(sdk, image=image)  # what the API server would refuse fails here, naming the field
    metadata: dict[str, Any] = {"name": sdk.id}
    if namespace is not None:
        metadata["namespace"] = namespace
    return {"apiVersion": k8s.API_VERSION, "kind": k8s.TASK_KIND, "metadata": metadata,
            "spec": sdk.as_dict(image=image)}
