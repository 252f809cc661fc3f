"""kopf's bookkeeping never carries a TaskRun's payload (issue 16: a payload between
about 256 KiB and the 512 KiB limit put kopf's last-handled-configuration annotation
over the apiserver's 256 KiB limit, and the TaskRun could never be deleted)."""

from __future__ import annotations

import json

import kopf

from waypost.controller import handlers
from waypost.model import k8s

APISERVER_ANNOTATIONS_LIMIT = 256 * 1024


def taskrun(payload_bytes: int) -> kopf.Body:
    return kopf.Body({
        "apiVersion": f"{k8s.GROUP}/{k8s.VERSION}", "kind": "TaskRun",
        "metadata": {"name": "big", "namespace": "default", "uid": "u-1",
                     "labels": {"app": "x"}},
        "spec": {"taskRef": {"name": "hello"}, "payload": {"blob": "x" * payload_bytes},
                 "priority": 3, "replay": {"fromRun": "r", "payload": "y" * payload_bytes}},
    })


def test_the_diff_base_of_a_taskrun_leaves_its_payload_out() -> None:
    settings = kopf.OperatorSettings()
    handlers.configure(settings=settings)
    storage = settings.persistence.diffbase_storage
    essence = storage.build(body=taskrun(500 * 1024))
    assert essence["spec"] == {"taskRef": {"name": "hello"}, "priority": 3,
                               "replay": {"fromRun": "r"}}
    patch = kopf.Patch()
    storage.store(body=taskrun(500 * 1024), patch=patch, essence=essence)
    annotations = patch["metadata"]["annotations"]
    assert all(key.startswith(f"{k8s.KOPF_ANNOTATION_PREFIX}/") for key in annotations)
    assert len(json.dumps(annotations)) < 4096 < APISERVER_ANNOTATIONS_LIMIT
