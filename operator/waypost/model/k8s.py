"""The Kubernetes vocabulary of waypost, in one place.

API group, version, kinds, plurals, the label and annotation keys on the
objects the operator makes, the finalizer and the prefix of kopf's
bookkeeping — as CloudNativePG keeps them in ``api/v1/groupversion_info.go``
and ``pkg/utils/labels_annotations.go``. Everything that names a waypost
resource or key imports it from here (``from waypost.model import k8s``), so a
rename is one edit and the CRDs, the handlers, the Pods and the mirror cannot
disagree.

This module holds strings only: the model layer does not import the
Kubernetes client.
"""

from __future__ import annotations

from typing import Final

# -- group and version (groupversion_info.go) ---------------------------------

GROUP: Final = "waypost.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
#: ``kubectl get waypost`` lists both kinds.
CATEGORY: Final = "waypost"

TASK_KIND: Final = "Task"
TASK_PLURAL: Final = "tasks"
TASKRUN_KIND: Final = "TaskRun"
TASKRUN_PLURAL: Final = "taskruns"

# -- well-known labels (app.kubernetes.io) --------------------------------------

LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_PART_OF: Final = "app.kubernetes.io/part-of"
#: The value of ``managed-by`` and ``part-of`` on everything waypost makes.
MANAGED_BY: Final = "waypost"
COMPONENT_RUNNER: Final = "runner"

# -- waypost's own labels and annotations (labels_annotations.go) -----------------

#: On runner Pods and Secrets and on scheduled TaskRuns: the Task (as a label value).
LABEL_TASK: Final = f"{GROUP}/task"
LABEL_RUN_ID: Final = f"{GROUP}/run-id"
LABEL_ATTEMPT: Final = f"{GROUP}/attempt"
# On warm runner Pods: the runner id they poll with (their attempt changes).
LABEL_WARM_RUNNER: Final = f"{GROUP}/warm-runner"
#: On TaskRuns made by a schedule: the schedule's name.
LABEL_SCHEDULE: Final = f"{GROUP}/schedule"
ANNOTATION_CLAIM_TOKEN: Final = f"{GROUP}/claim-token"
ANNOTATION_TRACE_ID: Final = f"{GROUP}/trace-id"
#: The Task's full name (a label value is cut to 63 characters).
ANNOTATION_TASK: Final = f"{GROUP}/task-name"

# -- kopf's bookkeeping -------------------------------------------------------------

#: Domain-qualified, so it is clearly ours and not kopf's default.
FINALIZER: Final = f"{GROUP}/finalizer"
#: kopf stores its progress and diff base in annotations under this prefix.
KOPF_ANNOTATION_PREFIX: Final = GROUP
KOPF_LAST_HANDLED_KEY: Final = "last-handled-configuration"

