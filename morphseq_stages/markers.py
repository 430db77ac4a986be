"""The hook markers: a leaf module, so that any module may import them without cycles."""

import pluggy

PROJECT_NAME = "morphseq_stages"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
