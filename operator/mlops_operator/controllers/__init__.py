"""kopf handlers, one module per kind; thin: read, call builders, apply.

`configure` holds the settings every handler relies on, so it is registered
whatever kinds exist.
"""

from typing import Any

import kopf

from mlops_operator import GROUP


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # Our own names, so two operators (or a kopf default) never fight over them.
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    # Events are for humans reading `kubectl describe`; debug chatter is not.
    settings.posting.level = 20  # logging.INFO
